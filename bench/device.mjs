// The many-core figures of issues #9 and #10, for the lent machine (../shared/device/README.md):
//   node bench/device.mjs            (after `npm run build`; random weights, same shapes as run.mjs)
// 1. Thread sweep: W-b1 and W-b64 (bi, 2 layers, I128 H256, T = 100) for LSTM, GRU and RNN at
//    threads 1, 2, 4, 8, 16 and the default, forwardSync, median of repeats (ms).
// 2. Concurrency: 16 concurrent W-b1 LSTM forward() calls, default threads vs threads: 1.
// 3. Serving in process: 64 concurrent callers, one sequence each (T uniform in 20..100), on the
//    standard LSTM: model.forward() per request vs the batcher (default, concurrency 1, 3, 8), seq/s.
// For an A/B of two builds, `node bench/device.mjs --batches 64,128 --threads 1,16` runs only the
// sweep, for those batch sizes and thread counts; alternate the builds with BIRNN_NATIVE_PATH.
// `--serving r,default,c1,c8t2` runs only part 3, with those contenders: r, one model.forward()
// per request; default, a batcher with no options; cN, concurrency N (for N > 8 maxBatch is 16
// unless bM says, since c6f402d: earlier runs' cN had 64); bM, maxBatch M; tK, on a model of
// `threads: K` (rt1: per request, one thread a call). `--steps` runs only a per-step view of
// W-b1: T = 25, 50, 100, 200 (median of 41 calls, µs) for each mode, at the default threads or
// those of --threads; the slope is a step's cost, the rest the call's fixed cost.
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { median, mulberry32, ROOT, randomStateDict } from './lib/common.mjs'

const { fromStateDict } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href)
const I = 128
const weights = (mode) => randomStateDict(mode, { I, H: 256, L: 2, seed: 7 })
const input = (T, N, seed) => {
  const u = mulberry32(seed)
  return { data: Float32Array.from({ length: T * N * I }, () => u() * 2 - 1), shape: [T, N, I] }
}
const fmt = (ms) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(2))
const { values: args } = parseArgs({
  options: {
    batches: { type: 'string' },
    threads: { type: 'string' },
    serving: { type: 'string' },
    steps: { type: 'boolean' },
  },
})
// `default` (no `threads` option) may be named among the thread counts.
const list = (text, fallback) =>
  text === undefined ? fallback : text.split(',').map((t) => (t === 'default' ? undefined : Number(t)))
const batches = list(args.batches, [1, 64])
const threadCounts = list(args.threads, [1, 2, 4, 8, 16, undefined])
const sweepOnly = args.batches !== undefined || args.threads !== undefined
const servingOnly = !sweepOnly && args.serving !== undefined
// 'c2b32t4' → a batcher of { concurrency: 2, maxBatch: 32 } on a model of { threads: 4 }; 'r…': none
const contender = (name) => {
  if (!/^(default|r(t\d+)?|([cbt]\d+)+)$/.test(name))
    throw new Error(`--serving: '${name}' is not r, rtK, default or a mix of cN, bM and tK`)
  const batcher = {}
  const model = {}
  for (const [, key, value] of name.matchAll(/([cbt])(\d+)/g)) {
    if (key === 't') model.threads = Number(value)
    else batcher[key === 'c' ? 'concurrency' : 'maxBatch'] = Number(value)
  }
  return { name, batcher: name.startsWith('r') ? null : batcher, model }
}
const contenders = (args.serving ?? 'r,default,c1,c3,c8').split(',').map(contender)

if (args.steps) {
  steps(list(args.threads, [undefined]))
  process.exit(0)
}
if (!servingOnly) sweep()
if (sweepOnly) process.exit(0)
if (!servingOnly) await concurrentCalls()
await serving()

function steps(counts) {
  const lengths = [25, 50, 100, 200]
  console.log('## W-b1 by sequence length (forwardSync, median µs)\n')
  console.log(`| workload | threads | ${lengths.map((T) => `T ${T}`).join(' | ')} |`)
  console.log(`|---|---|${lengths.map(() => '---|').join('')}`)
  for (const mode of ['LSTM', 'GRU', 'RNN_TANH']) {
    const tensors = weights(mode)
    for (const threads of counts) {
      const model = fromStateDict(tensors, { backend: 'native', ...(threads ? { threads } : {}) })
      const cells = lengths.map((T) => {
        const x = input(T, 1, T)
        for (let i = 0; i < 5; i++) model.forwardSync(x)
        const times = []
        for (let r = 0; r < 41; r++) {
          const t0 = performance.now()
          model.forwardSync(x)
          times.push(performance.now() - t0)
        }
        return (median(times) * 1000).toFixed(0)
      })
      console.log(`| W-b1 ${mode === 'RNN_TANH' ? 'RNN' : mode} | ${threads ?? 'default'} | ${cells.join(' | ')} |`)
      model.dispose()
    }
  }
}

function sweep() {
  console.log('## Thread sweep (forwardSync, median ms)\n')
  console.log(`| workload | ${threadCounts.map((t) => t ?? 'default').join(' | ')} |`)
  console.log(`|---|${threadCounts.map(() => '---|').join('')}`)
  for (const N of batches) {
    for (const mode of ['LSTM', 'GRU', 'RNN_TANH']) {
      const tensors = weights(mode)
      const x = input(100, N, 3)
      const reps = N === 1 ? 31 : 5
      const cells = []
      for (const threads of threadCounts) {
        const model = fromStateDict(tensors, { backend: 'native', ...(threads ? { threads } : {}) })
        model.forwardSync(x)
        const times = []
        for (let r = 0; r < reps; r++) {
          const t0 = performance.now()
          model.forwardSync(x)
          times.push(performance.now() - t0)
        }
        cells.push(fmt(median(times)))
        model.dispose()
      }
      console.log(`| W-b${N} ${mode === 'RNN_TANH' ? 'RNN' : mode} | ${cells.join(' | ')} |`)
    }
  }
}

async function concurrentCalls() {
  console.log('\n## 16 concurrent W-b1 LSTM forward() calls (calls/s, best of 5 rounds)\n')

  const tensors = weights('LSTM')
  const xs = Array.from({ length: 16 }, (_, i) => input(100, 1, 10 + i))
  for (const threads of [undefined, 1]) {
    const model = fromStateDict(tensors, { backend: 'native', ...(threads ? { threads } : {}) })
    await Promise.all(xs.map((x) => model.forward(x)))
    let best = 0
    for (let round = 0; round < 5; round++) {
      const t0 = performance.now()
      for (let k = 0; k < 4; k++) await Promise.all(xs.map((x) => model.forward(x)))
      best = Math.max(best, (64 * 1000) / (performance.now() - t0))
    }
    console.log(`- threads ${threads ?? 'default'}: ${best.toFixed(0)} calls/s`)
    model.dispose()
  }
}

async function serving() {
  console.log('\n## Serving in process: 64 callers, standard LSTM, T in 20..100 (seq/s, 3 s each)\n')
  const u = mulberry32(5)
  const xs = Array.from({ length: 512 }, (_, i) => {
    const T = 20 + Math.floor(u() * 81)
    const x = input(T, 1, 100 + i)
    return { data: x.data, shape: [T, I] }
  })
  const tensors = weights('LSTM')
  for (const { name, batcher: options, model: modelOptions } of contenders) {
    const model = fromStateDict(tensors, { backend: 'native', ...modelOptions })
    const batcher = options ? model.batcher(options) : null
    const forward = batcher ? (x) => batcher.forward(x) : (x) => model.forward(x)
    await Promise.all(xs.slice(0, 64).map(forward))
    let next = 0
    let done = 0
    const end = performance.now() + 3000
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (performance.now() < end) {
          await forward(xs[next++ % xs.length])
          done++
        }
      }),
    )
    const what = batcher
      ? `batcher, concurrency ${batcher.options.concurrency}, maxBatch ${batcher.options.maxBatch}`
      : 'model.forward() per request'
    const threads = modelOptions.threads ? `, threads ${modelOptions.threads}` : ''
    console.log(`- ${name}: ${what}${threads}: ${((done * 1000) / (performance.now() - t0)).toFixed(0)} seq/s`)
    await batcher?.close()
    model.dispose()
  }
}
