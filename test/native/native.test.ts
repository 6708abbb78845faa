// What only the native backend promises: identical results for any thread count, an event loop
// that keeps running, many concurrent calls, worker threads, dispose while calls are in flight,
// and the memory-protecting checks of its binding. Skipped, with the reason, where the addon
// does not load (and a failure instead under BIRNN_REQUIRE_NATIVE=1, as in .ci/run).
import { spawnSync } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { describe, expect, it } from 'vitest'
import { loadAddon } from '../../lib/engines/addon.js'
import { fromStateDict, load } from '../../lib/index.js'
import { defaultConcurrency } from '../../lib/serving/batcher.js'
import {
  expectError,
  fixture,
  modelPath,
  nativeIsas,
  nativeMissing,
  randomStateDict,
  rejection,
  rng,
  withEnv,
} from '../helpers.js'

const missing = nativeMissing()
const native = loadAddon()

describe.skipIf(missing)(`the addon${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('loads and is the default backend', async () => {
    const model = await load(modelPath(fixture('lstm_uni_l1_tm')))
    expect(model.backend).toBe('native')
    expect(model.backendReason).toMatch(/^the native kernel \((avx512|avx2|neon|generic)\) from .*birnn.*\.node$/)
    expect(model.simd).toBe(native.addon!.isa().best)
  })

  it("a model computes on the worker pool's threads, and its batcher's default concurrency follows them", async () => {
    const threads = native.addon!.computeThreads!()
    const most = Math.max(availableParallelism(), Number(process.env.BIRNN_POOL_THREADS ?? 0))
    expect(Number.isInteger(threads) && threads >= 1 && threads <= most).toBe(true)
    const model = await load(modelPath(fixture('lstm_uni_l1_tm')))
    expect(model.parallelism).toBe(threads)
    expect(model.batcher().options.concurrency).toBe(defaultConcurrency(threads))
  })
})

describe.skipIf(missing)('result arrays', () => {
  // Without padding the outputs come from memory that is not zeroed first (a Node Buffer's, in
  // forwardSync): each is still a Float32Array of its own ArrayBuffer, whole, as users hand on
  // `.buffer`; and padded steps are zero, whatever the memory held before.
  it('each owns an ArrayBuffer of exactly its size, padded or not, sync or async; padded steps are 0', async () => {
    const r = rng(7)
    const model = fromStateDict(randomStateDict(r, { mode: 'LSTM', I: 8, H: 300, L: 2, D: 2, bias: true }), {
      backend: 'native',
      threads: 2,
    })
    const [T, N] = [40, 24]
    const input = { data: r.floats(T * N * 8), shape: [T, N, 8] }
    const lengths = Array.from({ length: N }, (_, n) => 1 + ((n * 11) % T))
    for (const options of [{}, { lengths }, { returnLayers: true }, { lengths, returnLayers: true }]) {
      for (const result of [model.forwardSync(input, options), await model.forward(input, options)]) {
        const arrays = [result.output, result.hN, result.cN!, ...(result.layers ?? [])].map((t) => t.data)
        for (const data of arrays.slice(0, 3)) {
          expect(Object.getPrototypeOf(data)).toBe(Float32Array.prototype)
          expect([data.byteOffset, data.buffer.byteLength]).toEqual([0, data.byteLength])
        }
        if (!('lengths' in options)) continue
        for (const data of [result.output.data, ...(result.layers ?? []).map((t) => t.data)]) {
          for (let n = 0; n < N; n++) {
            for (let t = lengths[n]; t < T; t++) {
              const row = data.subarray((t * N + n) * 600, (t * N + n + 1) * 600)
              expect(row.every((v) => Object.is(v, 0))).toBe(true)
            }
          }
        }
      }
    }
    model.dispose()
  })
})

describe.each(nativeIsas())('native %s: results do not depend on threads or on sync vs async', (isa) => {
  it('gives bit-identical results for every thread count, and for forward vs forwardSync', async () => {
    const r = rng(42)
    for (const [mode, D] of [
      ['LSTM', 2],
      ['GRU', 1],
      ['RNN_TANH', 2],
    ] as const) {
      const tensors = randomStateDict(r, { mode, I: 24, H: 70, L: 2, D, bias: true })
      const T = 30
      const N = 45
      const input = { data: r.floats(T * N * 24), shape: [T, N, 24] }
      const lengths = Array.from({ length: N }, (_, n) => (n % 7 === 0 ? T : 1 + ((n * 13) % T)))
      const runs = [1, 2, 3, 8].map((threads) =>
        fromStateDict(tensors, { backend: 'native', simd: isa, threads }).forwardSync(input, { lengths }),
      )
      for (const run of runs.slice(1)) {
        expect(run.output.data).toEqual(runs[0].output.data)
        expect(run.hN.data).toEqual(runs[0].hN.data)
      }
      const model = fromStateDict(tensors, { backend: 'native', simd: isa, threads: 2 })
      const asyncRun = await model.forward(input, { lengths })
      expect(asyncRun.output.data).toEqual(runs[0].output.data)
    }
  })

  it('gives the same bits when threads share the steps of a few sequences (column parts)', async () => {
    // Unidirectional, a step worth sharing: the plan splits W_hh's panels among threads that meet
    // at a barrier after every step, on any machine with 2 cores or more.
    const r = rng(43)
    for (const [mode, H, P] of [
      ['GRU', 128, 0],
      ['RNN_TANH', 256, 0],
      ['LSTM', 160, 64],
    ] as const) {
      const tensors = randomStateDict(r, { mode, I: 16, H, P, L: 2, D: 1, bias: true })
      for (const N of [1, 3]) {
        const T = 60
        const input = { data: r.floats(T * N * 16), shape: [T, N, 16] }
        const lengths = Array.from({ length: N }, (_, n) => T - 17 * n)
        const Hout = P || H
        const h0 = { data: r.floats(2 * N * Hout), shape: [2, N, Hout] }
        const options = {
          lengths,
          h0,
          ...(mode === 'LSTM' ? { c0: { data: r.floats(2 * N * H), shape: [2, N, H] } } : {}),
        }
        const runs = [1, 2, 3, 8].map((threads) =>
          fromStateDict(tensors, { backend: 'native', simd: isa, threads }).forwardSync(input, options),
        )
        for (const run of runs.slice(1)) {
          expect(run.output.data).toEqual(runs[0].output.data)
          expect(run.hN.data).toEqual(runs[0].hN.data)
          expect(run.cN?.data).toEqual(runs[0].cN?.data)
        }
      }
    }
  })
})

describe.skipIf(missing)('the native backend off the event loop', () => {
  // An LSTM sized so one forward takes about 3 s here. Deep and wide for its input, so that its
  // arrays stay small for its work: forward() copies the input on the calling thread (by design),
  // and a shallow model's 3 s grow with the machine (I256 H256, one layer, on a Zen 5 core:
  // T = 2,200, a 144 MB input, 1.5 GB of work buffers mapped and unmapped by each call), where
  // forward() itself took 190-410 ms to return.
  const big = () => {
    const r = rng(7)
    // One kernel thread, so the event loop has a core of its own even on a 2-core machine.
    const model = fromStateDict(randomStateDict(r, { mode: 'LSTM', I: 32, H: 512, L: 4, D: 2, bias: true }), {
      backend: 'native',
      threads: 1,
    })
    const N = 16
    const make = (T: number) => ({ data: r.floats(T * N * 32), shape: [T, N, 32] })
    const probe = make(10) // 7 GFLOP: seconds under the sanitizer
    model.forwardSync(probe) // warm-up
    const start = performance.now()
    model.forwardSync(probe)
    const perStep = (performance.now() - start) / 10
    return { model, input: make(Math.max(10, Math.ceil(3000 / perStep))) }
  }

  it('keeps the event loop responsive during a forward of over a second', async () => {
    const { model, input } = big()
    // forward() copies its inputs on the calling thread (memory it then keeps for the next
    // calls): the first call of a size also pays the page faults of that copy, tens of ms here.
    await model.forward(input)
    let last = performance.now()
    let longest = 0
    const ticker = setInterval(() => {
      const now = performance.now()
      longest = Math.max(longest, now - last)
      last = now
    }, 2)
    const start = performance.now()
    await model.forward(input)
    const elapsed = performance.now() - start
    clearInterval(ticker)
    expect(elapsed).toBeGreaterThan(1000)
    // Blocking would show as one gap as long as the forward (about 3 s). A shared VM stalls the
    // whole process now and then: under the sanitizer in CI, once for 370 ms on a 2-core Zen 5.
    expect(longest).toBeLessThan(Math.max(100, elapsed / 4))
  })

  it('lets the event loop turn between results even when the caller works longer than the kernel', async () => {
    // Each result settles from a libuv callback that Node drains in a loop: a caller whose work
    // outlasts the next call would run again from that loop, with timers and signals waiting.
    const model = await load(modelPath(fixture('lstm_uni_l1_tm')), { backend: 'native' })
    const input = {
      data: new Float32Array(5 * 3 * model.config.inputSize).fill(0.1),
      shape: [5, 3, model.config.inputSize],
    }
    let iteration = 0
    let timerRanAt = -1
    let running = model.forward(input)
    for (; iteration < 8; iteration++) {
      const until = performance.now() + 20 // the caller's own work, far longer than the call's
      while (performance.now() < until) {}
      await running
      if (iteration === 2) setTimeout(() => (timerRanAt = iteration), 0) // set from inside the chain
      running = model.forward(input)
    }
    await running
    // Within a couple of results; starved, it would run only once the loop is over (8).
    expect(timerRanAt).toBeGreaterThanOrEqual(3)
    expect(timerRanAt).toBeLessThanOrEqual(4)
  })

  it('runs 200 concurrent forwards on one model, each exactly as forwardSync', async () => {
    const r = rng(3)
    const model = fromStateDict(randomStateDict(r, { mode: 'GRU', I: 8, H: 16, L: 2, D: 2, bias: true }), {
      backend: 'native',
    })
    const inputs = Array.from({ length: 200 }, (_, i) => ({
      data: r.floats(6 * (1 + (i % 5)) * 8),
      shape: [6, 1 + (i % 5), 8],
    }))
    const results = await Promise.all(inputs.map((x) => model.forward(x)))
    for (const [i, res] of results.entries()) expect(res.output.data).toEqual(model.forwardSync(inputs[i]).output.data)
  })

  it('disposes safely while calls are in flight: they complete, later calls throw', async () => {
    const r = rng(5)
    const tensors = randomStateDict(r, { mode: 'LSTM', I: 32, H: 64, L: 2, D: 2, bias: true })
    const model = fromStateDict(tensors, { backend: 'native' })
    const reference = fromStateDict(tensors, { backend: 'native' })
    const input = { data: r.floats(50 * 16 * 32), shape: [50, 16, 32] }
    const pending = Array.from({ length: 20 }, () => model.forward(input))
    model.dispose()
    const expected = reference.forwardSync(input).output.data
    for (const result of await Promise.all(pending)) expect(result.output.data).toEqual(expected)
    await expect(model.forward(input)).rejects.toThrow('model is disposed')
  })
})

describe.skipIf(missing)('the raw addon', () => {
  const addon = native.addon!
  const config = { mode: 3, inputSize: 3, hiddenSize: 4, projSize: 0, numLayers: 1, bidirectional: false, bias: true }
  const weights = () => [new Float32Array(48), new Float32Array(64), new Float32Array(16), new Float32Array(16)]
  const call = (over: Record<string, unknown> = {}) => ({
    seqLen: 2,
    batch: 1,
    batchFirst: false,
    input: new Float32Array(6),
    returnLayers: false,
    threads: 1,
    ...over,
  })

  // Each worker loads its own instance of the addon (context-aware, no shared globals). A worker
  // terminated while its forward() calls run on the pool, and more wait there for a free core,
  // must not take the process down: it runs in a child process so that a crash would show as its
  // exit status, not kill the test runner.
  it('loads in worker threads, twice at once, and survives workers terminated mid-forward', () => {
    const script = `
      const { Worker } = require('node:worker_threads')
      const source = \`
        const { parentPort, workerData } = require('node:worker_threads')
        const addon = require(workerData.path)
        const T = workerData.T, N = 8, I = 64, H = 128
        const w = [new Float32Array(4 * H * I).fill(0.01), new Float32Array(4 * H * H).fill(0.01)]
        const config = { mode: 3, inputSize: I, hiddenSize: H, projSize: 0, numLayers: 1, bidirectional: true, bias: false }
        const net = new addon.Network(config, [...w, ...w], addon.isa().best)
        const input = new Float32Array(T * N * I).fill(0.5)
        const call = { seqLen: T, batch: N, batchFirst: false, input, returnLayers: false, threads: 1 }
        net.forward(call).then((r) => parentPort.postMessage(Array.from(r.hN.slice(0, 4))))
        for (let i = 1; i < workerData.calls; i++) net.forward(call)
      \`
      const run = (T, calls = 1) => new Worker(source, { eval: true, workerData: { path: process.argv[1], T, calls } })
      const answer = (w) => new Promise((resolve, reject) => w.once('message', resolve).once('error', reject))
      const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
      ;(async () => {
        const [a, b] = await Promise.all([answer(run(5)), answer(run(5))])
        if (JSON.stringify(a) !== JSON.stringify(b) || !a.every((v) => v > 0)) throw new Error('workers disagree')
        for (let i = 0; i < 5; i++) {
          const doomed = run(4000, 2 + 2 * require('node:os').availableParallelism())
          await sleep(50)
          await doomed.terminate() // its calls still run or wait on the pool
        }
        await sleep(300)
        const after = await answer(run(5))
        process.stdout.write(JSON.stringify(after) === JSON.stringify(a) ? 'ok' : 'wrong result after terminations')
      })()
    `
    const child = spawnSync(process.execPath, ['-e', script, native.addon ? native.path : ''], {
      encoding: 'utf8',
      timeout: 120_000,
    })
    expect(child.stderr).toBe('')
    expect(child.status).toBe(0)
    expect(child.stdout).toBe('ok')
  })

  // forward()'s calls come back through a handle that holds the event loop only while calls are in
  // flight: a process whose last work is a pending forward() waits for it, then exits at once.
  it('keeps the process alive for a pending forward(), and lets it exit once it settles', () => {
    const script = `
      const addon = require(process.argv[1])
      const I = 16, H = 32, T = 200, N = 8
      const config = { mode: 2, inputSize: I, hiddenSize: H, projSize: 0, numLayers: 2, bidirectional: true, bias: false }
      const w = (l) => [new Float32Array(3 * H * (l ? 2 * H : I)).fill(0.02), new Float32Array(3 * H * H).fill(0.02)]
      const net = new addon.Network(config, [...w(0), ...w(0), ...w(1), ...w(1)], addon.isa().best)
      const input = new Float32Array(T * N * I).fill(0.5)
      for (let i = 0; i < 3; i++) {
        net.forward({ seqLen: T, batch: N, batchFirst: false, input, returnLayers: false, threads: 2 })
          .then((r) => process.stdout.write(r.hN.length + ' '))
      }
    `
    const child = spawnSync(process.execPath, ['-e', script, native.addon ? native.path : ''], {
      encoding: 'utf8',
      timeout: 60_000,
    })
    expect(child.stderr).toBe('')
    expect(child.status).toBe(0)
    expect(child.stdout).toBe('1024 1024 1024 ')
  })

  it.each([
    [
      'config of the wrong kind',
      () => new addon.Network(null as never, weights(), 'generic'),
      TypeError,
      'config: expected an object, received null',
    ],
    [
      'a mode out of range',
      () => new addon.Network({ ...config, mode: 7 } as never, weights(), 'generic'),
      RangeError,
      'config.mode: expected an integer in [0, 3], received number 7',
    ],
    [
      'too few weights',
      () => new addon.Network(config as never, weights().slice(1), 'generic'),
      RangeError,
      'weights: expected an array of 4 Float32Arrays (numLayers*D*4), received array of length 3',
    ],
    [
      'a short weight',
      () => new addon.Network(config as never, [new Float32Array(47), ...weights().slice(1)], 'generic'),
      RangeError,
      'weights[0]: expected Float32Array of length 48 (weight_ih_l0 [16, 3]), received length 47',
    ],
    [
      'a float64 weight',
      () => new addon.Network(config as never, [new Float64Array(48), ...weights().slice(1)] as never, 'generic'),
      TypeError,
      'weights[0]: expected Float32Array of length 48 (weight_ih_l0 [16, 3]), received Float64Array of length 48',
    ],
    [
      'an unknown isa',
      () => new addon.Network(config as never, weights(), 'sse9'),
      RangeError,
      "isa: expected 'generic', 'avx2', 'avx512' or 'neon', received string 'sse9'",
    ],
  ])('construction: %s', (_, make, kind, message) => {
    expect(make).toThrow(new kind(`birnn internal: ${message}`))
  })

  it.each([
    [
      'a short input',
      { input: new Float32Array(5) },
      RangeError,
      'call.input: expected Float32Array of length 6 ([seqLen, batch, inputSize] = [2, 1, 3]), received length 5',
    ],
    [
      'a length past seqLen',
      { lengths: new Int32Array([3]) },
      RangeError,
      'call.lengths[0]: expected an integer in [1, 2] (seqLen), received 3',
    ],
    [
      'lengths as numbers',
      { lengths: [2] },
      TypeError,
      'call.lengths: expected Int32Array of length 1 (one per batch entry), received array of length 1',
    ],
    ['a fractional seqLen', { seqLen: 1.5 }, TypeError, 'call.seqLen: expected an integer, received number 1.5'],
    ['zero threads', { threads: 0 }, RangeError, 'call.threads: expected an integer in [1, 4096], received number 0'],
    [
      'returnOutput a number',
      { returnOutput: 0 },
      TypeError,
      'call.returnOutput: expected a boolean, received number 0',
    ],
    [
      'a short h0',
      { h0: new Float32Array(3) },
      RangeError,
      'call.h0: expected Float32Array of length 4 ([numLayers*D, batch, Hout] = [1, 1, 4]), received length 3',
    ],
  ])('forward: %s', async (_, over, kind, message) => {
    const net = new addon.Network(config as never, weights(), 'generic')
    expect(() => net.forwardSync(call(over) as never)).toThrow(new kind(`birnn internal: ${message}`))
    expect(() => net.forward(call(over) as never)).toThrow(new kind(`birnn internal: ${message}`))
    net.dispose()
    expect(() => net.forwardSync(call() as never)).toThrow('birnn internal: network is disposed')
  })
})

describe.skipIf(missing)('the raw addon without the output', () => {
  // returnOutput false: only the final states come back, the same bits (the kernel writes no output).
  it.each(native.addon ? nativeIsas() : [])('%s: the same states, and no output unless returnLayers', async (isa) => {
    const addon = native.addon!
    const r = rng(31)
    const [I, H, T, N] = [5, 7, 9, 3]
    const config = { mode: 3, inputSize: I, hiddenSize: H, projSize: 0, numLayers: 2, bidirectional: true, bias: true }
    const weights = [0, 1, 2, 3].flatMap((ld) => [
      r.floats(4 * H * (ld < 2 ? I : 2 * H), 0.4),
      r.floats(4 * H * H, 0.4),
      r.floats(4 * H),
      r.floats(4 * H),
    ])
    const net = new addon.Network(config, weights, isa)
    for (const batchFirst of [false, true]) {
      for (const lengths of [undefined, new Int32Array([9, 4, 1])]) {
        const call = {
          seqLen: T,
          batch: N,
          batchFirst,
          input: r.floats(T * N * I),
          lengths,
          returnLayers: false,
          threads: 2,
        }
        const full = net.forwardSync(call)
        for (const result of [
          net.forwardSync({ ...call, returnOutput: false }),
          await net.forward({ ...call, returnOutput: false }),
        ]) {
          expect(result.output).toBeUndefined()
          expect(Buffer.from(result.hN.buffer)).toEqual(Buffer.from(full.hN.buffer))
          expect(Buffer.from(result.cN!.buffer)).toEqual(Buffer.from(full.cN!.buffer))
        }
        const layers = net.forwardSync({ ...call, returnOutput: false, returnLayers: true })
        expect(layers.output).toEqual(full.output)
      }
    }
    net.dispose()
  })
})

describe.skipIf(missing)('choosing the SIMD path', () => {
  const path = modelPath(fixture('gru_bi_l3_tm'))
  const supported = nativeIsas()

  it.each(['avx512', 'avx2', 'neon', 'generic'] as const)(
    'simd: %s runs where the CPU has it, and is a clear error where not',
    async (simd) => {
      if (supported.includes(simd)) {
        expect((await load(path, { simd })).simd).toBe(simd)
      } else {
        expectError(
          await rejection(load(path, { simd })),
          Error,
          'ERR_BIRNN_BACKEND',
          `simd '${simd}' is not supported by this CPU (supported: ${supported.join(', ')})`,
        )
      }
    },
  )

  it('BIRNN_SIMD forces a path too, and rejects an unknown name', async () => {
    await withEnv('BIRNN_SIMD', async () => {
      process.env.BIRNN_SIMD = 'generic'
      expect((await load(path)).simd).toBe('generic')
      process.env.BIRNN_SIMD = 'sse2'
      expectError(
        await rejection(load(path)),
        TypeError,
        'ERR_BIRNN_INVALID_ARG',
        `BIRNN_SIMD: expected 'auto', 'avx512', 'avx2', 'neon', 'generic', 'wasm-relaxed-simd' or 'wasm-simd128', received the string "sse2"`,
      )
      // The JS engine needs no SIMD path, so the variable does not matter there.
      expect((await load(path, { backend: 'js' })).backend).toBe('js')
    })
  })

  it('BIRNN_POOL_THREADS must be a whole number of threads from 1 to 1024', async () => {
    await withEnv('BIRNN_POOL_THREADS', async () => {
      process.env.BIRNN_POOL_THREADS = '3'
      expect((await load(path)).backend).toBe('native')
      process.env.BIRNN_POOL_THREADS = 'four'
      expectError(
        await rejection(load(path)),
        TypeError,
        'ERR_BIRNN_INVALID_ARG',
        'BIRNN_POOL_THREADS: expected a whole number of threads, received the string "four"',
      )
      for (const bad of ['0', '2000']) {
        process.env.BIRNN_POOL_THREADS = bad
        expectError(
          await rejection(load(path)),
          RangeError,
          'ERR_BIRNN_OUT_OF_RANGE',
          `BIRNN_POOL_THREADS: expected from 1 to 1024, received ${bad}`,
        )
      }
      expect((await load(path, { backend: 'js' })).backend).toBe('js')
    })
  })
})
