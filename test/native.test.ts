// The native kernel against the JS engine (the oracle), on every SIMD path this CPU has, plus
// what only the native backend promises: identical results for any thread count, an event loop
// that keeps running, many concurrent calls, worker threads, dispose while calls are in flight,
// and its own argument checks in C++.
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { fromStateDict, load } from '../lib/index.js'
import { loadNative } from '../lib/native.js'
import type { LoadOptions, Mode, Tensor } from '../lib/types.js'
import { fixture, maxAbsDiff, modelPath, nativeIsas, rng } from './helpers.js'

const native = loadNative()

it('the addon loads on this machine and is the default backend', async () => {
  expect(native.addon, native.addon ? '' : native.reason).toBeDefined()
  const model = await load(modelPath(fixture('lstm_uni_l1_tm')))
  expect(model.backend).toBe('native')
  expect(model.backendReason).toMatch(/^the native kernel \((avx512|avx2|generic)\) from .*birnn.*\.node$/)
  expect(model.simd).toBe(native.addon!.isa().best)
})

/** A random PyTorch state_dict for the given shape of module. */
function stateDict(
  r: ReturnType<typeof rng>,
  mode: Mode,
  I: number,
  H: number,
  P: number,
  L: number,
  D: number,
  bias: boolean,
) {
  const G = { RNN_TANH: 1, RNN_RELU: 1, GRU: 3, LSTM: 4 }[mode]
  const Hout = P || H
  const scale = 1 / Math.sqrt(H)
  const tensors: Record<string, Tensor> = {}
  const add = (name: string, shape: number[]) => {
    tensors[name] = {
      data: r.floats(
        shape.reduce((a, b) => a * b, 1),
        scale,
      ),
      shape,
    }
  }
  for (let l = 0; l < L; l++) {
    for (let d = 0; d < D; d++) {
      const s = `_l${l}${d ? '_reverse' : ''}`
      add(`weight_ih${s}`, [G * H, l ? D * Hout : I])
      add(`weight_hh${s}`, [G * H, Hout])
      if (bias) {
        add(`bias_ih${s}`, [G * H])
        add(`bias_hh${s}`, [G * H])
      }
      if (P) add(`weight_hr${s}`, [P, H])
    }
  }
  return tensors
}

describe.each(nativeIsas())('native %s against the JS engine', (isa) => {
  it('agrees on 60 random configurations (seeded): every mode and option, sizes 1..300', () => {
    const r = rng(isa.length * 7919)
    const modes: Mode[] = ['RNN_TANH', 'RNN_RELU', 'GRU', 'LSTM']
    for (let i = 0; i < 60; i++) {
      const mode = modes[i % 4]
      // Mostly small, sometimes up to 300 (odd sizes included); the cost stays bounded for the JS engine.
      const big = i % 10 === 9
      const H = big ? r.int(100, 300) : r.int(1, 40)
      const I = big ? r.int(1, 300) : r.int(1, 40)
      const P = mode === 'LSTM' && r.next() < 0.4 && H > 1 ? r.int(1, H - 1) : 0
      const L = big ? r.int(1, 2) : r.int(1, 5)
      const D = r.next() < 0.5 ? 2 : 1
      const bias = r.next() < 0.8
      const batchFirst = r.next() < 0.5
      const unbatched = r.next() < 0.15
      const T = big ? r.int(1, 4) : r.int(1, 12)
      const N = unbatched ? 1 : big ? r.int(1, 3) : r.int(1, 20)
      const nonlinearity = mode === 'RNN_RELU' ? 'relu' : mode === 'RNN_TANH' ? 'tanh' : undefined
      const tensors = stateDict(r, mode, I, H, P, L, D, bias)
      const options: LoadOptions = { nonlinearity, batchFirst }
      const js = fromStateDict(tensors, { ...options, backend: 'js' })
      const nat = fromStateDict(tensors, { ...options, backend: 'native', simd: isa as never, threads: r.int(1, 4) })
      const Hout = P || H
      const shape = unbatched ? [T, I] : batchFirst ? [N, T, I] : [T, N, I]
      const input = { data: r.floats(shape.reduce((a, b) => a * b, 1)), shape }
      const state = (size: number) => (unbatched ? [L * D, size] : [L * D, N, size])
      const args: Record<string, unknown> = { returnLayers: true }
      if (r.next() < 0.5) args.h0 = { data: r.floats(L * D * N * Hout, 0.5), shape: state(Hout) }
      if (mode === 'LSTM' && r.next() < 0.5) args.c0 = { data: r.floats(L * D * N * H, 0.5), shape: state(H) }
      if (!unbatched && r.next() < 0.5) args.lengths = Array.from({ length: N }, () => r.int(1, T))
      const a = js.forwardSync(input, args)
      const b = nat.forwardSync(input, args)
      const label = JSON.stringify({ i, mode, I, H, P, L, D, bias, batchFirst, unbatched, T, N })
      const scale = Math.max(1, ...Array.from(a.output.data, Math.abs))
      expect(b.output.shape, label).toEqual(a.output.shape)
      expect(maxAbsDiff(b.output.data, a.output.data) / scale, label).toBeLessThanOrEqual(1e-5)
      expect(maxAbsDiff(b.hN.data, a.hN.data) / scale, label).toBeLessThanOrEqual(1e-5)
      if (mode === 'LSTM') expect(maxAbsDiff(b.cN!.data, a.cN!.data) / scale, label).toBeLessThanOrEqual(1e-5)
      for (const [l, layer] of b.layers!.entries()) {
        expect(maxAbsDiff(layer.data, a.layers![l].data) / scale, label).toBeLessThanOrEqual(1e-5)
      }
    }
  })

  it('gives bit-identical results for every thread count, and for forward vs forwardSync', async () => {
    const r = rng(42)
    for (const [mode, D] of [
      ['LSTM', 2],
      ['GRU', 1],
      ['RNN_TANH', 2],
    ] as const) {
      const tensors = stateDict(r, mode, 24, 70, 0, 2, D, true)
      const T = 30
      const N = 45
      const input = { data: r.floats(T * N * 24), shape: [T, N, 24] }
      const lengths = Array.from({ length: N }, (_, n) => (n % 7 === 0 ? T : 1 + ((n * 13) % T)))
      const runs = [1, 2, 3, 8].map((threads) =>
        fromStateDict(tensors, { backend: 'native', simd: isa as never, threads }).forwardSync(input, { lengths }),
      )
      for (const run of runs.slice(1)) {
        expect(run.output.data).toEqual(runs[0].output.data)
        expect(run.hN.data).toEqual(runs[0].hN.data)
      }
      const model = fromStateDict(tensors, { backend: 'native', simd: isa as never, threads: 2 })
      const asyncRun = await model.forward(input, { lengths })
      expect(asyncRun.output.data).toEqual(runs[0].output.data)
    }
  })
})

describe('the native backend off the event loop', () => {
  // An LSTM sized so one forward takes about 3 s here.
  const big = () => {
    const r = rng(7)
    // One kernel thread, so the event loop has a core of its own even on a 2-core machine.
    const model = fromStateDict(stateDict(r, 'LSTM', 256, 256, 0, 1, 2, true), { backend: 'native', threads: 1 })
    const N = 64
    const make = (T: number) => ({ data: r.floats(T * N * 256), shape: [T, N, 256] })
    const probe = make(40)
    model.forwardSync(probe) // warm-up
    const start = performance.now()
    model.forwardSync(probe)
    const perStep = (performance.now() - start) / 40
    return { model, input: make(Math.max(40, Math.ceil(3000 / perStep))) }
  }

  it('keeps the event loop responsive during a forward of over a second', async () => {
    const { model, input } = big()
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
    // Blocking would show as one gap as long as the forward; allow for a busy, shared machine.
    expect(longest).toBeLessThan(100)
  })

  it('runs 200 concurrent forwards on one model, each exactly as forwardSync', async () => {
    const r = rng(3)
    const model = fromStateDict(stateDict(r, 'GRU', 8, 16, 0, 2, 2, true), { backend: 'native' })
    const inputs = Array.from({ length: 200 }, (_, i) => ({
      data: r.floats(6 * (1 + (i % 5)) * 8),
      shape: [6, 1 + (i % 5), 8],
    }))
    const results = await Promise.all(inputs.map((x) => model.forward(x)))
    for (const [i, res] of results.entries()) expect(res.output.data).toEqual(model.forwardSync(inputs[i]).output.data)
  })

  it('disposes safely while calls are in flight: they complete, later calls throw', async () => {
    const r = rng(5)
    const tensors = stateDict(r, 'LSTM', 32, 64, 0, 2, 2, true)
    const model = fromStateDict(tensors, { backend: 'native' })
    const reference = fromStateDict(tensors, { backend: 'native' })
    const input = { data: r.floats(50 * 16 * 32), shape: [50, 16, 32] }
    const pending = Array.from({ length: 20 }, () => model.forward(input))
    model.dispose()
    const expected = reference.forwardSync(input).output.data
    for (const result of await Promise.all(pending)) expect(result.output.data).toEqual(expected)
    await expect(model.forward(input)).rejects.toThrow('model is disposed')
  })

  it('points an async failure at the caller', async () => {
    const model = await load(modelPath(fixture('lstm_uni_l1_tm')), { backend: 'native' })
    const error = await model.forward({ data: new Float32Array(2), shape: [2] }).catch((e: Error) => e)
    expect(error).toBeInstanceOf(RangeError)
    expect((error as Error).stack).toMatch(/native\.test\.ts/)
  })
})

describe('the raw addon', () => {
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

  it('loads in worker threads, twice at once, and survives a worker terminated mid-forward', async () => {
    const source = `
      const { parentPort, workerData } = require('node:worker_threads')
      const addon = require(workerData.path)
      const T = workerData.T, N = 8, I = 64, H = 128
      const w = [new Float32Array(4 * H * I).fill(0.01), new Float32Array(4 * H * H).fill(0.01)]
      const net = new addon.Network({ mode: 3, inputSize: I, hiddenSize: H, projSize: 0, numLayers: 1, bidirectional: true, bias: false }, [...w, ...w], addon.isa().best)
      const input = new Float32Array(T * N * I).fill(0.5)
      const call = { seqLen: T, batch: N, batchFirst: false, input, returnLayers: false, threads: 1 }
      net.forward(call).then((r) => parentPort.postMessage(Array.from(r.hN.slice(0, 4))))
    `
    const run = (T: number) =>
      new Worker(source, { eval: true, workerData: { path: native.addon ? native.path : '', T } })
    const results = await Promise.all(
      [run(5), run(5)].map((w) => new Promise((resolve, reject) => w.once('message', resolve).once('error', reject))),
    )
    expect(results[0]).toEqual(results[1])
    expect((results[0] as number[]).every((v) => v > 0)).toBe(true)
    const doomed = run(4000)
    await new Promise((resolve) => setTimeout(resolve, 100))
    await doomed.terminate() // its forward is still running on the pool; the process must live on
    await new Promise((resolve) => setTimeout(resolve, 200))
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
      "isa: expected 'avx512', 'avx2' or 'generic', received string 'sse9'",
    ],
  ])('construction: %s', (_, make, kind, message) => {
    expect(make).toThrow(new kind(message))
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
      'a short h0',
      { h0: new Float32Array(3) },
      RangeError,
      'call.h0: expected Float32Array of length 4 ([numLayers*D, batch, Hout] = [1, 1, 4]), received length 3',
    ],
  ])('forward: %s', async (_, over, kind, message) => {
    const net = new addon.Network(config as never, weights(), 'generic')
    expect(() => net.forwardSync(call(over) as never)).toThrow(new kind(message))
    expect(() => net.forward(call(over) as never)).toThrow(new kind(message))
    net.dispose()
    expect(() => net.forwardSync(call() as never)).toThrow('Network is disposed')
  })
})

describe('choosing the SIMD path', () => {
  const path = modelPath(fixture('gru_bi_l3_tm'))
  const supported = nativeIsas()

  it.each(['avx512', 'avx2', 'generic'] as const)(
    'simd: %s runs where the CPU has it, and is a clear error where not',
    async (simd) => {
      if (supported.includes(simd)) {
        expect((await load(path, { simd })).simd).toBe(simd)
      } else {
        await expect(load(path, { simd })).rejects.toThrow(
          `simd '${simd}' is not supported by this CPU (supported: ${supported.join(', ')})`,
        )
      }
    },
  )

  it('BIRNN_SIMD forces a path too, and rejects an unknown name', async () => {
    const saved = process.env.BIRNN_SIMD
    try {
      process.env.BIRNN_SIMD = 'generic'
      expect((await load(path)).simd).toBe('generic')
      process.env.BIRNN_SIMD = 'sse2'
      await expect(load(path)).rejects.toThrow(
        new TypeError("BIRNN_SIMD: expected 'auto', 'avx512', 'avx2' or 'generic', received 'sse2'"),
      )
      // The JS engine needs no SIMD path, so the variable does not matter there.
      expect((await load(path, { backend: 'js' })).backend).toBe('js')
    } finally {
      if (saved === undefined) delete process.env.BIRNN_SIMD
      else process.env.BIRNN_SIMD = saved
    }
  })
})
