#!/usr/bin/env node
// The WebAssembly engine against the JS engine and the native kernel on 1 thread, on the
// W-b1 and W-b64 workloads of run.mjs (make-models.py's big-rnn/gru/lstm: input 128, hidden
// 256, 2 layers, bidirectional, T = 100; batch 1 and 64). Weights are random with the same
// shapes (the time does not depend on their values), so neither PyTorch nor bench/out is needed.
// Imports the compiled package (dist/, `npm run build`) and wasm/ (`npm run build:wasm`); each
// build of the wasm kernel this runtime has runs (Node 20: add --experimental-wasm-relaxed-simd
// for the relaxed-SIMD one, which later Nodes have by default).
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
const builds = ['wasm-relaxed-simd', 'wasm-simd128'].filter((simd) => {
  try {
    fromStateDict(randomStateDict('RNN_TANH', { I: 1, H: 1, L: 1, seed: 1 }), { simd }).dispose()
    return true
  } catch {
    console.error(`${simd}: not in this runtime`)
    return false
  }
})
const rows = []
for (const N of [1, 64]) {
  for (const mode of ['RNN_TANH', 'GRU', 'LSTM']) {
    const name = `W-b${N}-${mode === 'RNN_TANH' ? 'rnn' : mode.toLowerCase()}`
    const tensors = randomStateDict(mode, { I: 128, H: 256, L: 2, seed: N * 31 + GATES[mode] })
    const T = 100
    const x = { data: Float32Array.from({ length: T * N * 128 }, (_, i) => Math.sin(i)), shape: [T, N, 128] }
    const native = fromStateDict(tensors, { backend: 'native', threads: 1 })
    const js = fromStateDict(tensors, { backend: 'js' })
    const reps = N === 1 ? 9 : 3
    const tNative = await median(() => native.forwardSync(x), reps)
    const tJs = N === 1 ? await median(() => js.forwardSync(x), 3) : await median(() => js.forwardSync(x), 1, false)
    for (const simd of builds) {
      const wasm = fromStateDict(tensors, { simd })
      const sync = await median(() => wasm.forwardSync(x), reps)
      const async = await median(() => wasm.forward(x), reps)
      wasm.dispose()
      rows.push(
        `| ${name} | ${fmt(tNative)} (${native.simd}) | ${simd} | ${fmt(sync)} | ${fmt(async)} | ${fmt(tJs)} | ` +
          `${(tJs / sync).toFixed(1)}× | ${(sync / tNative).toFixed(2)}× |`,
      )
      console.error(rows.at(-1))
    }
    native.dispose()
  }
}
console.log(
  [
    `Node ${process.versions.node}`,
    '',
    '| workload | native forwardSync() 1t | wasm build | wasm forwardSync() | wasm forward() | JS forwardSync() | wasm vs JS | wasm / native 1t |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n'),
)
