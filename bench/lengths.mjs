// Issue #9's 2-core targets, as ratios within one run (medians of interleaved repeats):
//   node bench/lengths.mjs [--reps 7]
// - lengths: a batch whose sequences all end at step 20 of a T = 100 tensor vs the same data as a
//   T = 20 tensor (target ≤ 1.15×); lengths uniform in 20..100 vs (Σ lengths / (N·T)) × the
//   unpadded time (target ≤ 1.15×);
// - small models at batch 64: GFLOP/s on 1 thread (best of the repeats) and its % of the FMA peak
//   of the kernel's SIMD path (bench/peak-fma; target ≥ 65%), and
//   2 threads vs 1 (target ≥ 1.7×; W-b64 ≥ 1.8×);
// - the same lengths 20..100 on 2 threads, against the share of the 2-thread unpadded time: a
//   unidirectional model's rows are then split between the threads, which must get even work.
// Uses the built package (dist/, `npm run build`) and random weights.
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { forwardFlops, ROOT, randn, randomStateDict } from './lib/common.mjs'
import { measurePeak } from './peak-fma/peak.mjs'

const { fromStateDict } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href)
const reps = Number(process.argv[process.argv.indexOf('--reps') + 1]) || 7

function model(mode, I, H, L, threads, directions) {
  return fromStateDict(randomStateDict(mode, { I, H, L, D: directions, seed: 1 }), { backend: 'native', threads })
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
function time(fn) {
  fn()
  const t0 = performance.now()
  fn()
  return performance.now() - t0
}
/** Interleaved repeats of every case, so drift on a shared machine hits all of them alike: the
 * median of each, and the best (for the GFLOP/s, which the target takes as best of runs). */
function measure(cases) {
  const times = cases.map(() => [])
  for (let r = 0; r < reps; r++) {
    for (const [i, c] of cases.entries()) times[i].push(time(c))
  }
  return { medians: times.map(median), best: times.map((xs) => Math.min(...xs)) }
}
const flops = (mode, I, H, L, D, steps) =>
  forwardFlops({ mode, inputSize: I, hiddenSize: H, numLayers: L, bidirectional: D === 2 }, steps, 1)

const N = 64
const T = 100
// The 1-thread FMA peak with the vectors of the kernel's SIMD path (bench/peak-fma).
const simd = model('LSTM', 1, 1, 1, 1, 1).simd
const peak = measurePeak({ isa: simd === 'avx512' ? 'avx512' : 'avx2', threads: [1], trials: 5, seconds: 0.3 })
console.log(peak.error ? `FMA peak: ${peak.error}` : `FMA peak (${peak.isa}, 1 thread): ${peak[1].toFixed(1)} GFLOP/s`)
const rows = []
for (const [name, mode, I, H, L, D] of [
  ['LSTM bi, 1 layer, I32 H64', 'LSTM', 32, 64, 1, 2],
  ['RNN(25, 50, 4, bi) (the seed)', 'RNN_TANH', 25, 50, 4, 2],
  ['LSTM bi, 2 layers, I128 H256 (W-b64)', 'LSTM', 128, 256, 2, 2],
  ['LSTM uni, 2 layers, I128 H256', 'LSTM', 128, 256, 2, 1],
]) {
  const m1 = model(mode, I, H, L, 1, D)
  const m2 = model(mode, I, H, L, 2, D)
  const x100 = { data: randn(T * N * I, 7), shape: [T, N, I] }
  const x20 = { data: x100.data.subarray(0, 20 * N * I), shape: [20, N, I] }
  const all20 = Array(N).fill(20)
  const mixed = Array.from({ length: N }, (_, n) => 20 + ((n * 37) % 81))
  const sum = mixed.reduce((a, b) => a + b, 0)
  const { medians, best } = measure([
    () => m1.forwardSync(x100),
    () => m1.forwardSync(x100, { lengths: all20 }),
    () => m1.forwardSync(x20),
    () => m1.forwardSync(x100, { lengths: mixed }),
    () => m2.forwardSync(x100),
    () => m2.forwardSync(x100, { lengths: mixed }),
  ])
  const [full, padded20, real20, varied, twoThreads, variedTwo] = medians
  rows.push({
    model: name,
    'T=100 ms': full.toFixed(2),
    'lengths 20 / real T=20': (padded20 / real20).toFixed(2),
    'lengths 20..100 / share of T=100': (varied / ((sum / (N * T)) * full)).toFixed(2),
    'GFLOP/s 1t (best)': (flops(mode, I, H, L, D, T * N) / best[0] / 1e6).toFixed(1),
    '% of peak': peak.error ? '-' : ((100 * flops(mode, I, H, L, D, T * N)) / best[0] / 1e6 / peak[1]).toFixed(0),
    '2t / 1t': (full / twoThreads).toFixed(2),
    '2t lengths 20..100 / share of 2t T=100': (variedTwo / ((sum / (N * T)) * twoThreads)).toFixed(2),
  })
  m1.dispose()
  m2.dispose()
}
console.table(rows)
