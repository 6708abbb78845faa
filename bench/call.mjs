// One call shape, timed: for an A/B of two builds, run it alternately with each addon
// (BIRNN_NATIVE_PATH=path/to/birnn.node) and compare the figures of the same machine minute.
//
//   node bench/call.mjs [--mode lstm|gru|rnn_tanh|rnn_relu] [--input 25] [--hidden 50] [--layers 4]
//                       [--directions 2] [--batch 64] [--steps 100] [--lengths random|full]
//                       [--threads 1] [--seconds 2] [--async | --batcher]
//
// A model of random weights, a batch-first input of `batch` sequences in a
// tensor of `steps` steps, each of a length uniform in 20..steps (`random`) or all of them; calls of
// forwardSync() (forward(), awaited one at a time, with --async; with --batcher, a default
// model.batcher()'s forward(), awaited one at a time: a lone request each time, what it adds to
// forward() at low load) for `seconds` after 0.3 s of warm-up. Prints the best and median call,
// the GFLOP/s of the real steps (2 flops per multiply-add of the input projection and the
// recurrence) and the sequences per second.
// Uses the built package (dist/, `npm run build`).
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { forwardFlops, ROOT, randn, randomStateDict } from './lib/common.mjs'

const { fromStateDict } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href)
const { values: o } = parseArgs({
  options: {
    mode: { type: 'string', default: 'rnn_tanh' },
    input: { type: 'string', default: '25' },
    hidden: { type: 'string', default: '50' },
    layers: { type: 'string', default: '4' },
    directions: { type: 'string', default: '2' },
    batch: { type: 'string', default: '64' },
    steps: { type: 'string', default: '100' },
    lengths: { type: 'string', default: 'random' },
    threads: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '2' },
    async: { type: 'boolean', default: false },
    batcher: { type: 'boolean', default: false },
  },
})
const [I, H, L, D, N, T, threads, seconds] = [
  'input',
  'hidden',
  'layers',
  'directions',
  'batch',
  'steps',
  'threads',
  'seconds',
].map((k) => Number(o[k]))
const mode = o.mode.toUpperCase()
const tensors = randomStateDict(mode, { I, H, L, D, seed: 1 })
const rnn = mode.startsWith('RNN') ? { nonlinearity: mode === 'RNN_RELU' ? 'relu' : 'tanh' } : {}
const model = fromStateDict(tensors, { backend: 'native', threads, batchFirst: true, ...rnn })
const input = { data: randn(N * T * I, 7), shape: [N, T, I] }
const lengths = Array.from({ length: N }, (_, n) => (o.lengths === 'full' ? T : 20 + ((n * 37) % (T - 19))))
const real = lengths.reduce((a, b) => a + b, 0)
const flops = forwardFlops({ mode, inputSize: I, hiddenSize: H, numLayers: L, bidirectional: D === 2 }, real, 1)
const batcher = o.batcher ? model.batcher() : undefined
const call = batcher
  ? () => batcher.forward(input, { lengths })
  : o.async
    ? () => model.forward(input, { lengths })
    : () => model.forwardSync(input, { lengths })
const how = batcher ? 'batcher.forward()' : o.async ? 'forward()' : 'forwardSync()'

for (const end = performance.now() + 300; performance.now() < end; ) await call()
const times = []
for (const end = performance.now() + seconds * 1000; performance.now() < end; ) {
  const start = performance.now()
  await call()
  times.push(performance.now() - start)
}
times.sort((a, b) => a - b)
const best = times[0]
const median = times[times.length >> 1]
console.log(
  `${o.mode} I${I} H${H} L${L} D${D} N${N} T${T} lengths ${o.lengths}, threads ${threads}, ${how} (${model.simd}): ` +
    `best ${best.toFixed(3)} ms, median ${median.toFixed(3)} ms (n=${times.length}); ` +
    `${(flops / best / 1e6).toFixed(1)} GFLOP/s best; ${Math.round((N / median) * 1000)} seq/s median`,
)
await batcher?.close()
