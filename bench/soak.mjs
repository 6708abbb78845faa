// Soak test of the built library (dist/): many forward calls of varied sizes, many load/dispose
// cycles, the same in 4 worker threads at once, and workers terminated while their forward()
// runs on the thread pool. Resident memory (RSS) is sampled throughout; each phase fails when it
// grew by more than the limit between the end of its warm-up and its end (both after a full GC).
//
//   node bench/soak.mjs --full     100,000 calls, 10,000 load/dispose cycles, 200 terminations
//   node bench/soak.mjs            the reduced run of .ci/run (about 40 s on 2 cores)
//   options: --calls=N --cycles=N --terminations=N --workers=N --limit-mb=5 --dist=DIR
//            --only=calls,cycles,workers,terminations (the phases to run)
//
// Exit 0 when every phase stayed within the limit and every result checked was right, else 1.
// Needs the native addon (build/Release, or BIRNN_NATIVE_PATH): the JS engine holds no native
// memory and is too slow for this many calls; without it the run says so and exits 1.
import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { GATES, mulberry32, safetensorsBytes } from './lib/common.mjs'

// Two things that would read as growth without being held by anyone are pinned: V8's young
// generation, which grows in steps (8 → 12 → 20 MB of heap) as it sees fit, is fixed; and glibc,
// which gives each new thread its own malloc arena (up to 8 per core) and keeps freed memory in
// each, is held to 2 arenas (MALLOC_ARENA_MAX, unless set). Without that, RSS here settles 5-15 MB
// higher after the warm-up and stays there (a plateau, not a slope). The run re-executes itself.
const FLAGS = ['--expose-gc', '--min-semi-space-size=2', '--max-semi-space-size=2']
if (isMainThread && !FLAGS.every((flag) => process.execArgv.includes(flag))) {
  const child = spawnSync(process.execPath, [...FLAGS, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { MALLOC_ARENA_MAX: '2', ...process.env },
  })
  process.exit(child.status ?? 1)
}
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc')

function options(argv) {
  const full = argv.includes('--full')
  const get = (name, fallback) => {
    const found = argv.find((a) => a.startsWith(`--${name}=`))
    return found ? found.slice(name.length + 3) : fallback
  }
  const number = (name, reduced, fullSize) => Number(get(name, full ? fullSize : reduced))
  return {
    full,
    calls: number('calls', 12_000, 100_000),
    cycles: number('cycles', 2_000, 10_000),
    terminations: number('terminations', 30, 200),
    workers: number('workers', 4, 4),
    limitMb: number('limit-mb', 5, 5),
    dist: resolve(get('dist', fileURLToPath(new URL('../dist', import.meta.url)))),
    only: get('only', 'calls,cycles,workers,terminations').split(','),
  }
}

// ---- The work, the same on the main thread and in workers ------------------------------------

/** Seeded random numbers, integers and float arrays. */
function rng(seed) {
  const next = mulberry32(seed)
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1))
  const floats = (n, scale = 1) => Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale)
  return { next, int, floats }
}

function stateDict(r, { mode, I, H, P = 0, L, D }) {
  const G = GATES[mode]
  const Hout = P || H
  const tensors = {}
  const add = (name, shape) => {
    tensors[name] = {
      data: r.floats(
        shape.reduce((a, b) => a * b, 1),
        1 / Math.sqrt(H),
      ),
      shape,
    }
  }
  for (let l = 0; l < L; l++) {
    for (let d = 0; d < D; d++) {
      const s = `_l${l}${d ? '_reverse' : ''}`
      add(`weight_ih${s}`, [G * H, l ? D * Hout : I])
      add(`weight_hh${s}`, [G * H, Hout])
      add(`bias_ih${s}`, [G * H])
      add(`bias_hh${s}`, [G * H])
      if (P) add(`weight_hr${s}`, [P, H])
    }
  }
  return tensors
}

const SHAPES = [
  { mode: 'LSTM', I: 16, H: 32, L: 2, D: 2 },
  { mode: 'GRU', I: 24, H: 48, L: 1, D: 2 },
  { mode: 'RNN_TANH', I: 8, H: 64, L: 3, D: 1 },
  { mode: 'LSTM', I: 12, H: 40, P: 16, L: 1, D: 2 },
]
/** The largest T and N of a call (one call in 100 or so); each warm-up starts there. */
const MAX_T = 60
const MAX_N = 24
/** Each phase first runs this share of its work, then takes the RSS it must stay near ... */
const WARM_UP = 0.25
/** ... and at least this many calls (per thread): the kept work buffers settle within a few thousand. */
const MIN_WARM_UP_CALLS = 8_000
const warmUpCalls = (calls) => Math.max(Math.ceil(calls * WARM_UP), Math.min(calls, MIN_WARM_UP_CALLS))

/** Runs `calls` forward calls of varied sizes over the models; checks some results. */
async function forwardCalls(models, r, calls) {
  let checked = 0
  for (let i = 0; i < calls; ) {
    const concurrent = r.int(1, 4)
    const pending = []
    for (let k = 0; k < concurrent && i < calls; k++, i++) {
      const { model, shape } = models[r.int(0, models.length - 1)]
      const T = r.int(1, r.next() < 0.9 ? 12 : MAX_T)
      const N = r.int(1, r.next() < 0.9 ? 6 : MAX_N)
      const input = { data: r.floats(T * N * shape.I), shape: [T, N, shape.I] }
      const options = {}
      if (r.next() < 0.3) options.lengths = Array.from({ length: N }, () => r.int(1, T))
      if (r.next() < 0.2) {
        const LD = shape.L * shape.D
        options.h0 = { data: r.floats(LD * N * (shape.P || shape.H)), shape: [LD, N, shape.P || shape.H] }
      }
      if (r.next() < 0.1) options.returnLayers = true
      if (r.next() < 0.3) model.forwardSync(input, options)
      else if (i % 997 === 0) {
        // A check now and then: forward() gives exactly what forwardSync() gives.
        const expected = model.forwardSync(input, options).output.data
        pending.push(
          model.forward(input, options).then(({ output }) => {
            if (!output.data.every((v, j) => Object.is(v, expected[j]))) throw new Error('forward() != forwardSync()')
            checked++
          }),
        )
      } else pending.push(model.forward(input, options))
    }
    await Promise.all(pending)
  }
  return checked
}

/**
 * The start of every warm-up: each model runs 4 concurrent calls of the largest size (as many as
 * compute at once on 4 cores), so the work buffers a model keeps for its next calls reach their
 * most (a bounded number, sized by the largest calls) before the RSS is taken.
 */
async function largestCalls(models, r) {
  for (const { model, shape } of models) {
    const LD = shape.L * shape.D
    const input = { data: r.floats(MAX_T * MAX_N * shape.I), shape: [MAX_T, MAX_N, shape.I] }
    const h0 = { data: r.floats(LD * MAX_N * (shape.P || shape.H)), shape: [LD, MAX_N, shape.P || shape.H] }
    await Promise.all(Array.from({ length: 4 }, () => model.forward(input, { h0, returnLayers: true })))
    model.forwardSync(input, { h0, returnLayers: true })
  }
}

/** `cycles` times: load a model (from bytes or tensors), run it once, dispose it. */
async function loadCycles(lib, r, files, cycles) {
  for (let i = 0; i < cycles; i++) {
    const { bytes, tensors, shape } = files[i % files.length]
    const model =
      i % 2 ? await lib.load(bytes, { backend: 'native' }) : lib.fromStateDict(tensors, { backend: 'native' })
    const T = r.int(1, 8)
    const input = { data: r.floats(T * 2 * shape.I), shape: [T, 2, shape.I] }
    if (i % 3) model.forwardSync(input)
    else await model.forward(input)
    model.dispose()
  }
}

async function setup(dist, seed) {
  const lib = await import(pathToFileURL(`${dist}/index.js`).href)
  const r = rng(seed)
  // Each model also as a safetensors file, so the cycles go through load() and its parser too.
  const files = SHAPES.map((shape) => {
    const tensors = stateDict(r, shape)
    return { shape, tensors, bytes: safetensorsBytes(tensors) }
  })
  const models = files.map(({ shape, tensors }) => ({
    shape,
    model: lib.fromStateDict(tensors, { backend: 'native' }),
  }))
  return { lib, r, files, models }
}

const rss = () => process.memoryUsage.rss()
const MB = 2 ** 20
const mb = (bytes) => `${(bytes / MB).toFixed(1)} MB`

/** RSS after a full GC and a moment for freed pages to go back. */
async function settledRss() {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((r) => setTimeout(r, 20))
  }
  return rss()
}

// ---- Worker side -------------------------------------------------------------------------------

async function workerMain() {
  const { role, dist, seed, calls, cycles } = workerData
  if (role === 'doomed') {
    // Load, then start a forward that runs for a while on the pool; the main thread terminates us.
    const lib = await import(pathToFileURL(`${dist}/index.js`).href)
    const r = rng(seed)
    const model = lib.fromStateDict(stateDict(r, { mode: 'LSTM', I: 64, H: 128, L: 1, D: 2 }), { backend: 'native' })
    const T = 400
    const input = { data: r.floats(T * 16 * 64), shape: [T, 16, 64] }
    const pending = model.forward(input)
    parentPort.postMessage('running')
    await pending
    parentPort.postMessage('finished')
    return
  }
  const { lib, r, files, models } = await setup(dist, seed)
  // Warm-up: every model at its largest size, a share of the calls and cycles.
  await largestCalls(models, r)
  await forwardCalls(models, r, warmUpCalls(calls))
  await loadCycles(lib, r, files, Math.ceil(cycles * WARM_UP))
  gc()
  parentPort.postMessage({ warm: true })
  // Then a quarter of the work each time the main thread says so, which measures in between.
  for (;;) {
    const message = await new Promise((resolve) => parentPort.once('message', resolve))
    if (message === 'stop') break
    const checked = await forwardCalls(models, r, Math.ceil(calls / 4))
    await loadCycles(lib, r, files, Math.ceil(cycles / 4))
    gc()
    parentPort.postMessage({ checked })
  }
  for (const { model } of models) model.dispose()
}

// ---- Main side ---------------------------------------------------------------------------------

function phaseReport(name, counts, baseline, end, peak, limitMb) {
  const growth = end - baseline
  const ok = growth <= limitMb * MB
  console.log(
    `soak: ${name}: ${counts}; RSS after warm-up ${mb(baseline)}, at the end ${mb(end)}, ` +
      `growth ${growth >= 0 ? '+' : ''}${mb(growth)} (limit ${limitMb} MB), peak ${mb(peak)}: ${ok ? 'ok' : 'FAILED'}`,
  )
  return ok
}

function sampler() {
  let peak = rss()
  const timer = setInterval(() => {
    peak = Math.max(peak, rss())
  }, 50)
  return {
    stop: () => {
      clearInterval(timer)
      return Math.max(peak, rss())
    },
  }
}

async function mainThread() {
  const o = options(process.argv.slice(2))
  const started = performance.now()
  console.log(
    `soak: ${o.full ? 'full' : 'reduced'} run: ${o.calls} forward calls, ${o.cycles} load/dispose cycles, ` +
      `${o.workers} workers, ${o.terminations} terminations; library ${o.dist}; ` +
      `MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX ?? '(unset)'}`,
  )
  const { lib, r, files, models } = await setup(o.dist, 1)
  if (models[0].model.backend !== 'native') {
    console.log(`soak: the native addon did not load (${models[0].model.backendReason}); nothing to soak`)
    process.exit(1)
  }
  console.log(`soak: backend ${models[0].model.backend} (${models[0].model.simd})`)
  const results = []
  const trend = []
  let baseline
  let s

  // 1. Forward calls on the main thread.
  if (o.only.includes('calls')) {
    await largestCalls(models, r)
    await forwardCalls(models, r, warmUpCalls(o.calls))
    baseline = await settledRss()
    s = sampler()
    let checked = 0
    for (let part = 0; part < 4; part++) {
      checked += await forwardCalls(models, r, Math.ceil(o.calls / 4))
      trend.push(mb((await settledRss()) - baseline))
    }
    console.log(`soak: forward calls: RSS growth after each quarter: ${trend.join(', ')}`)
    results.push(
      phaseReport(
        'forward calls',
        `${o.calls} calls of T 1..${MAX_T}, N 1..${MAX_N} on ${models.length} models (${checked} checked)`,
        baseline,
        await settledRss(),
        s.stop(),
        o.limitMb,
      ),
    )
  }
  for (const { model } of models) model.dispose()

  // 2. Load/dispose cycles.
  if (o.only.includes('cycles')) {
    await loadCycles(lib, r, files, Math.max(50, Math.ceil(o.cycles * WARM_UP)))
    baseline = await settledRss()
    s = sampler()
    trend.length = 0
    for (let part = 0; part < 4; part++) {
      await loadCycles(lib, r, files, Math.ceil(o.cycles / 4))
      trend.push(mb((await settledRss()) - baseline))
    }
    console.log(`soak: load/dispose: RSS growth after each quarter: ${trend.join(', ')}`)
    results.push(phaseReport('load/dispose', `${o.cycles} cycles`, baseline, await settledRss(), s.stop(), o.limitMb))
  }

  // 3. The same in worker threads, all at once. Their warm-up is their share of WARM_UP, then two
  // more quarters: four heaps and the allocator under four threads settle later than one (with
  // one, a clean clone's run once measured a step of 3.8 MB in the first quarter, then +1.2 MB).
  const self = fileURLToPath(import.meta.url)
  const next = (w) =>
    new Promise((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
    })
  if (o.only.includes('workers')) {
    const workers = Array.from(
      { length: o.workers },
      (_, i) =>
        new Worker(self, {
          workerData: {
            role: 'soak',
            dist: o.dist,
            seed: 100 + i,
            calls: Math.ceil(o.calls / o.workers),
            cycles: Math.ceil(o.cycles / o.workers),
          },
        }),
    )
    await Promise.all(workers.map(next))
    const quarter = async () => {
      const pending = workers.map(next)
      for (const w of workers) w.postMessage('go')
      return (await Promise.all(pending)).reduce((sum, { checked }) => sum + checked, 0)
    }
    await quarter()
    await quarter()
    baseline = await settledRss()
    s = sampler()
    trend.length = 0
    let workerChecks = 0
    for (let part = 0; part < 4; part++) {
      workerChecks += await quarter()
      trend.push(mb((await settledRss()) - baseline))
    }
    console.log(`soak: ${o.workers} workers: RSS growth after each quarter: ${trend.join(', ')}`)
    results.push(
      phaseReport(
        `${o.workers} workers`,
        `${o.workers} × (${Math.ceil(o.calls / o.workers)} calls + ${Math.ceil(o.cycles / o.workers)} cycles), ` +
          `${workerChecks} checked`,
        baseline,
        await settledRss(),
        s.stop(),
        o.limitMb,
      ),
    )
    for (const w of workers) w.postMessage('stop')
    await Promise.all(workers.map((w) => new Promise((resolve) => w.once('exit', resolve))))
  }

  // 4. Workers terminated while their forward() runs on the pool.
  if (o.only.includes('terminations')) {
    const terminate = async (i) => {
      const w = new Worker(self, { workerData: { role: 'doomed', dist: o.dist, seed: 500 + i } })
      const message = await next(w)
      if (message !== 'running') throw new Error(`worker said ${message}`)
      await new Promise((resolve) => setTimeout(resolve, r.int(0, 15)))
      await w.terminate()
    }
    const warmTerminations = Math.max(5, Math.ceil(o.terminations / 10))
    for (let i = 0; i < warmTerminations; i++) await terminate(i)
    await new Promise((resolve) => setTimeout(resolve, 500)) // calls of terminated workers finish
    baseline = await settledRss()
    s = sampler()
    for (let i = 0; i < o.terminations; i++) await terminate(warmTerminations + i)
    await new Promise((resolve) => setTimeout(resolve, 500))
    results.push(
      phaseReport(
        'terminated workers',
        `${o.terminations} workers terminated mid-forward`,
        baseline,
        await settledRss(),
        s.stop(),
        o.limitMb,
      ),
    )
  }

  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  const failed = results.filter((ok) => !ok).length
  console.log(`soak: ${results.length - failed} of ${results.length} phases within ${o.limitMb} MB in ${seconds} s`)
  process.exit(failed ? 1 : 0)
}

if (isMainThread) {
  mainThread().catch((error) => {
    console.error(`soak: ${error?.stack ?? error}`)
    process.exit(1)
  })
} else {
  workerMain().catch((error) => {
    console.error(`soak worker: ${error?.stack ?? error}`)
    process.exit(1)
  })
}
