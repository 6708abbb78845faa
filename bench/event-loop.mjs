// How long the event loop waits while concurrent native forward() calls run: the README says
// forward() never blocks it. The W-b64 workload of the main bench (a bidirectional LSTM, 2 layers,
// inputSize 128, hidden 256; T = 100, N = 64), random weights, on the built library (dist/).
//
//   node bench/event-loop.mjs                 16 concurrent calls, 3 rounds
//   options: --calls=16 --rounds=3 --T=100 --N=64 --threads=N (default: all cores) --limit-ms=20
//            --dist=DIR
//
// Each round: perf_hooks.monitorEventLoopDelay (1 ms resolution) is enabled, then all calls are
// started at once and awaited; a 1 ms interval timer records the longest gap between its ticks
// too, and the time the forward() calls themselves take to return (their synchronous part: checks,
// the input copy, the output arrays) is printed. Prints the max and p99 delay per round; exits 1
// when the worst round's max is over the limit.
import { resolve } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath, pathToFileURL } from 'node:url'

const argv = process.argv.slice(2)
const get = (name, fallback) => {
  const found = argv.find((a) => a.startsWith(`--${name}=`))
  return found ? found.slice(name.length + 3) : fallback
}
const CALLS = Number(get('calls', 16))
const ROUNDS = Number(get('rounds', 3))
const T = Number(get('T', 100))
const N = Number(get('N', 64))
const LIMIT_MS = Number(get('limit-ms', 20))
const threads = get('threads', undefined)
const dist = resolve(get('dist', fileURLToPath(new URL('../dist', import.meta.url))))
const I = 128
const H = 256
const L = 2

let seed = 12345
const random = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
  return seed / 4294967296
}
const floats = (n, scale) => Float32Array.from({ length: n }, () => (random() * 2 - 1) * scale)

const { fromStateDict } = await import(pathToFileURL(`${dist}/index.js`).href)
const tensors = {}
for (let l = 0; l < L; l++) {
  for (const s of ['', '_reverse']) {
    const inputs = l ? 2 * H : I
    tensors[`weight_ih_l${l}${s}`] = { data: floats(4 * H * inputs, 1 / 16), shape: [4 * H, inputs] }
    tensors[`weight_hh_l${l}${s}`] = { data: floats(4 * H * H, 1 / 16), shape: [4 * H, H] }
    tensors[`bias_ih_l${l}${s}`] = { data: floats(4 * H, 1 / 16), shape: [4 * H] }
    tensors[`bias_hh_l${l}${s}`] = { data: floats(4 * H, 1 / 16), shape: [4 * H] }
  }
}
const model = fromStateDict(tensors, { backend: 'native', ...(threads ? { threads: Number(threads) } : {}) })
const inputs = Array.from({ length: CALLS }, () => ({ data: floats(T * N * I, 1), shape: [T, N, I] }))

const ms = (ns) => ns / 1e6
const now = () => performance.now()

console.log(
  `event-loop: ${CALLS} concurrent forward() calls of a bi-LSTM, ${L} layers, I${I} H${H}, T=${T}, N=${N}; ` +
    `backend ${model.backend} (${model.simd}), threads ${threads ?? 'default (all cores)'}; ${ROUNDS} rounds`,
)
await model.forward(inputs[0]) // warm-up: work buffers, code paths
let worst = 0
for (let round = 1; round <= ROUNDS; round++) {
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  let last = now()
  let longestGap = 0
  const ticker = setInterval(() => {
    const t = now()
    longestGap = Math.max(longestGap, t - last)
    last = t
  }, 1)
  histogram.enable()
  // The histogram records the gaps between its own timer's ticks: let it tick once before the
  // calls start, or a block while they are being started would not count.
  await new Promise((r) => setTimeout(r, 20))
  const start = now()
  const calls = inputs.map((x) => model.forward(x))
  const starting = now() - start
  await Promise.all(calls)
  const seconds = (now() - start) / 1000
  histogram.disable()
  clearInterval(ticker)
  longestGap = Math.max(longestGap, now() - last)
  const max = ms(histogram.max)
  worst = Math.max(worst, max)
  console.log(
    `event-loop: round ${round}: ${CALLS} calls in ${seconds.toFixed(2)} s; event-loop delay max ${max.toFixed(1)} ms, ` +
      `p99 ${ms(histogram.percentile(99)).toFixed(1)} ms, mean ${ms(histogram.mean).toFixed(2)} ms; ` +
      `longest gap between 1 ms ticks ${longestGap.toFixed(1)} ms; starting the ${CALLS} calls took ${starting.toFixed(1)} ms`,
  )
  await new Promise((r) => setTimeout(r, 200))
}
model.dispose()
const ok = worst <= LIMIT_MS
console.log(`event-loop: worst max delay ${worst.toFixed(1)} ms (limit ${LIMIT_MS} ms): ${ok ? 'ok' : 'OVER'}`)
process.exit(ok ? 0 : 1)
