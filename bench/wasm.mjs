#!/usr/bin/env node
// The WebAssembly engine against the JS engine and the native kernel on 1 thread, on the
// W-b1 and W-b64 workloads of run.mjs (make-models.py's big-rnn/gru/lstm: input 128, hidden
// 256, 2 layers, bidirectional, T = 100; batch 1 and 64). Weights are random with the same
// shapes (the time does not depend on their values), so neither PyTorch nor bench/out is needed.
// Imports the compiled package (dist/, `npm run build`) and wasm/birnn.wasm (`npm run build:wasm`).
//   node bench/wasm.mjs            median of several runs each (the JS engine: 1 run at batch 64)

import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { GATES, ROOT, randomStateDict } from './lib/common.mjs'

const { fromStateDict } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href)

async function median(fn, reps, warm = true) {
  if (warm) await fn() // warm-up (the wasm pool's worker starts, the kernel's buffers are made)
  const times = []
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now()
    await fn()
    times.push(performance.now() - t0)
  }
  times.sort((a, b) => a - b)
  return times[Math.floor(times.length / 2)]
}

const fmt = (ms) => (ms >= 100 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(2)} ms`)
const rows = []
for (const N of [1, 64]) {
  for (const mode of ['RNN_TANH', 'GRU', 'LSTM']) {
    const name = `W-b${N}-${mode === 'RNN_TANH' ? 'rnn' : mode.toLowerCase()}`
    const tensors = randomStateDict(mode, { I: 128, H: 256, L: 2, seed: N * 31 + GATES[mode] })
    const T = 100
    const x = { data: Float32Array.from({ length: T * N * 128 }, (_, i) => Math.sin(i)), shape: [T, N, 128] }
    const native = fromStateDict(tensors, { backend: 'native', threads: 1 })
    const wasm = fromStateDict(tensors, { backend: 'wasm' })
    const js = fromStateDict(tensors, { backend: 'js' })
    const reps = N === 1 ? 9 : 3
    const t = {
      native: await median(() => native.forwardSync(x), reps),
      wasmSync: await median(() => wasm.forwardSync(x), reps),
      wasm: await median(() => wasm.forward(x), reps),
      js: N === 1 ? await median(() => js.forwardSync(x), 3) : await median(() => js.forwardSync(x), 1, false),
    }
    native.dispose()
    wasm.dispose()
    rows.push(
      `| ${name} | ${fmt(t.native)} (${native.simd}) | ${fmt(t.wasmSync)} | ${fmt(t.wasm)} | ${fmt(t.js)} | ` +
        `${(t.js / t.wasmSync).toFixed(1)}× | ${(t.wasmSync / t.native).toFixed(2)}× |`,
    )
    console.error(rows.at(-1))
  }
}
console.log(
  [
    '| workload | native forwardSync() 1t | wasm forwardSync() | wasm forward() | JS forwardSync() | wasm vs JS | wasm / native 1t |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n'),
)
