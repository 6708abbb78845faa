// The WebAssembly engine beyond the fixtures (which pytorch.test.ts runs on it, as on every
// engine): forward() on the worker pool leaves the event loop free, models share the pool,
// dispose() frees them there, and a kernel failure is reported and survived.
import { readFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { describe, expect, it } from 'vitest'
import { loadWasm, relaxedSimdSupported } from '../../lib/engines/wasm.js'
import { wasmKernel } from '../../lib/engines/wasm-kernel.js'
import { poolRun, poolSize } from '../../lib/engines/wasm-pool.js'
import { fromStateDict } from '../../lib/index.js'
import { defaultConcurrency } from '../../lib/serving/batcher.js'
import {
  expectError,
  maxAbsDiff,
  nativeIsas,
  nativeMissing,
  randomStateDict,
  rejection,
  rng,
  thrown,
  wasmMissing,
  withEnv,
} from '../helpers.js'

// A network as wasmKernel().create() takes it: an LSTM (mode 3) of input 2, hidden 3, no bias.
const lstmConfig = {
  mode: 3,
  inputSize: 2,
  hiddenSize: 3,
  projSize: 0,
  numLayers: 1,
  bidirectional: false,
  bias: false,
}

// Both builds: the tests below run each.
const missing = wasmMissing('wasm-relaxed-simd') ?? wasmMissing('wasm-simd128')

describe.skipIf(missing)(`the wasm engine${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('is chosen by backend: wasm, in its best build for this runtime, and says so', () => {
    const model = fromStateDict(randomStateDict(rng(1), { mode: 'GRU', I: 3, H: 4, L: 1, D: 1, bias: true }), {
      backend: 'wasm',
    })
    expect(model.backend).toBe('wasm')
    // vitest.config.ts gives Node 20 relaxed SIMD, which later Nodes have by default.
    expect(relaxedSimdSupported()).toBe(true)
    expect(model.simd).toBe('wasm-relaxed-simd')
    expect(model.backendReason).toMatch(
      /^the WebAssembly kernel \(relaxed SIMD\) from .*birnn-relaxed\.wasm was requested$/,
    )
    // Its calls compute on the worker pool, which its batcher's default concurrency follows.
    expect(model.parallelism).toBe(poolSize())
    expect(model.batcher().options.concurrency).toBe(defaultConcurrency(poolSize()))
    model.dispose()
  })

  it('runs the build that simd (or BIRNN_SIMD) names, under backend auto too', async () => {
    const tensors = randomStateDict(rng(5), { mode: 'LSTM', I: 6, H: 20, L: 2, D: 2, bias: true })
    const plain = fromStateDict(tensors, { simd: 'wasm-simd128' })
    expect([plain.backend, plain.simd]).toEqual(['wasm', 'wasm-simd128'])
    expect(plain.backendReason).toMatch(/^the WebAssembly kernel \(128-bit SIMD\) from .*birnn\.wasm was requested$/)
    await withEnv('BIRNN_SIMD', () => {
      process.env.BIRNN_SIMD = 'wasm-relaxed-simd'
      const relaxed = fromStateDict(tensors)
      expect([relaxed.backend, relaxed.simd]).toEqual(['wasm', 'wasm-relaxed-simd'])
      // The variable names the wasm build only: a native backend keeps its own best path.
      if (!nativeMissing()) {
        const native = fromStateDict(tensors, { backend: 'native' })
        expect(native.backend).toBe('native')
        native.dispose()
      }
      const x = { data: rng(6).floats(7 * 3 * 6), shape: [7, 3, 6] }
      const a = plain.forwardSync(x).output.data
      const b = relaxed.forwardSync(x).output.data
      // Fused and unfused multiply-adds: the same to float rounding, not to the bit.
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-5)
      relaxed.dispose()
    })
    plain.dispose()
  })

  it("gives the native kernel's bits: the 128-bit build the portable path's, the relaxed one AVX2's", () => {
    const isas = nativeIsas()
    // The same sums in the same order: one multiply and one add a term (generic, 128-bit), or
    // one fused multiply-add (AVX2, and relaxed SIMD on a CPU with FMA, which AVX2 implies).
    const pairs = [
      ...(isas.includes('generic') ? [['wasm-simd128', 'generic'] as const] : []),
      ...(isas.includes('avx2') ? [['wasm-relaxed-simd', 'avx2'] as const] : []),
    ]
    if (process.env.BIRNN_REQUIRE_NATIVE === '1') expect(pairs.length).toBeGreaterThan(0)
    const r = rng(8)
    for (const mode of ['RNN_TANH', 'GRU', 'LSTM'] as const) {
      const tensors = randomStateDict(r, { mode, I: 37, H: 45, P: mode === 'LSTM' ? 20 : 0, L: 2, D: 2, bias: true })
      const x = { data: r.floats(12 * 5 * 37), shape: [12, 5, 37] }
      const args = { lengths: [12, 3, 11, 7, 12], returnLayers: true }
      for (const [wasm, native] of pairs) {
        const a = fromStateDict(tensors, { simd: wasm })
        const b = fromStateDict(tensors, { backend: 'native', simd: native, threads: 2 })
        const ra = a.forwardSync(x, args)
        const rb = b.forwardSync(x, args)
        expect(ra.output.data, `${mode}: ${wasm} against ${native}`).toEqual(rb.output.data)
        expect(ra.hN.data).toEqual(rb.hN.data)
        a.dispose()
        b.dispose()
      }
    }
  })

  it('runs models of both builds on their own workers, concurrently', async () => {
    const r = rng(7)
    const tensors = randomStateDict(r, { mode: 'GRU', I: 5, H: 12, L: 2, D: 2, bias: true })
    const models = (['wasm-relaxed-simd', 'wasm-simd128'] as const).map((simd) => fromStateDict(tensors, { simd }))
    const x = { data: r.floats(9 * 4 * 5), shape: [9, 4, 5] }
    const expected = models.map((m) => m.forwardSync(x).output.data)
    // On a CPU with FMA the builds' bits differ, so a worker that ran the other build would show.
    if (nativeIsas().includes('avx2')) expect(expected[0]).not.toEqual(expected[1])
    const results = await Promise.all(Array.from({ length: 8 }, (_, k) => models[k % 2].forward(x)))
    for (const [k, res] of results.entries()) expect(res.output.data).toEqual(expected[k % 2])
    for (const m of models) m.dispose()
  })

  it('keeps the event loop free during a long forward()', async () => {
    const r = rng(2)
    const model = fromStateDict(randomStateDict(r, { mode: 'LSTM', I: 64, H: 256, L: 2, D: 2, bias: true }), {
      backend: 'wasm',
    })
    const input = { data: r.floats(200 * 8 * 64), shape: [200, 8, 64] }
    await model.forward({ data: input.data.subarray(0, 64), shape: [1, 1, 64] }) // the pool's worker starts
    // A blocked loop would stall for the whole call (well over 50 ms) on every attempt; a busy,
    // shared machine may stall any one attempt by itself, so the best of three counts.
    const stalls: number[] = []
    for (let attempt = 0; attempt < 3 && !(Math.min(...stalls) < 10); attempt++) {
      const histogram = monitorEventLoopDelay({ resolution: 1 })
      histogram.enable()
      const started = performance.now()
      await model.forward(input)
      const took = performance.now() - started
      histogram.disable()
      expect(took).toBeGreaterThan(50) // long enough for a blocked loop to show
      stalls.push(histogram.max / 1e6)
    }
    model.dispose()
    expect(Math.min(...stalls)).toBeLessThan(10)
  })

  it('runs concurrent calls of several models on the shared pool, each as forwardSync()', async () => {
    const r = rng(3)
    const models = (['RNN_TANH', 'GRU', 'LSTM'] as const).map((mode) =>
      fromStateDict(randomStateDict(r, { mode, I: 5, H: 9, L: 2, D: 2, bias: true }), { backend: 'wasm' }),
    )
    const inputs = models.map(() => ({ data: r.floats(6 * 4 * 5), shape: [6, 4, 5] }))
    const expected = models.map((m, i) => m.forwardSync(inputs[i]).output.data)
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, k) => models[k % 3].forward(inputs[k % 3]).then((res) => [k % 3, res] as const)),
    )
    for (const [i, res] of results) expect(res.output.data).toEqual(expected[i])
    // A disposed model is freed in the workers; the others still run there.
    models[1].dispose()
    expectError(
      await rejection(models[1].forward(inputs[1])),
      Error,
      'ERR_BIRNN_DISPOSED',
      'model is disposed: load it again to run it',
    )
    expect((await models[2].forward(inputs[2])).output.data).toEqual(expected[2])
    models[0].dispose()
    models[2].dispose()
  })

  it('a trap in a worker costs the other models there nothing: their next call is sent again with the weights', async () => {
    // A module of its own gets a worker of its own, and calls made one at a time all go to it.
    const { path } = loadWasm() as { path: string }
    const module = new WebAssembly.Module(readFileSync(path))
    const config = lstmConfig
    const r = rng(5)
    const tensors = [r.floats(12 * 2), r.floats(12 * 3)]
    const x = r.floats(6)
    // Each call's arrays are transferred to the worker: a fresh copy each time.
    const call = () => ({ T: 3, N: 1, batchFirst: false, input: x.slice(), returnLayers: false, returnOutput: true })
    const good = { id: 1e9, config, tensors }
    const first = await poolRun(module, good, call())
    // Loading this one traps the worker's instance: the good model's network there is lost with it.
    const broken = { id: 1e9 + 1, config: { ...config, inputSize: 0 }, tensors }
    await expect(poolRun(module, broken, call())).rejects.toThrow(
      'config: inputSize, hiddenSize and numLayers must be positive',
    )
    const again = await poolRun(module, good, call())
    expect(again.output).toEqual(first.output)
    expect(again.hN).toEqual(first.hN)
  })

  it('a call whose buffers would pass 32-bit addresses is refused, not wrapped', () => {
    const kernel = wasmKernel(loadWasm().module!)
    const config = { ...lstmConfig, inputSize: 1, hiddenSize: 16 }
    const r = rng(6)
    const handle = kernel.create(config, [r.floats(64), r.floats(64 * 16)])
    // 2^23 steps of 64 gate columns: the input projection alone is 2 GiB.
    const T = 2 ** 23
    const call = { T, N: 1, batchFirst: false, input: new Float32Array(T), returnLayers: false, returnOutput: false }
    expect(thrown(() => kernel.forward(handle, call))).toMatchObject({
      message: expect.stringMatching(
        /^seqLen x batch: this call's buffers would take 2048 MiB, past what this build can address/,
      ),
    })
  })

  it('a call whose buffers fit the addresses one by one but not together says it is out of memory', () => {
    const kernel = wasmKernel(loadWasm().module!)
    const r = rng(7)
    const config = { ...lstmConfig, inputSize: 1, hiddenSize: 16, bidirectional: true }
    const tensors = Array.from({ length: 2 }, () => [r.floats(64), r.floats(64 * 16)]).flat()
    const handle = kernel.create(config, tensors)
    // Each direction's input projection just under 2 GiB: the second cannot be allocated.
    const T = 2 ** 23 - 1
    const call = { T, N: 1, batchFirst: false, input: new Float32Array(T), returnLayers: false, returnOutput: false }
    expect(thrown(() => kernel.forward(handle, call))).toMatchObject({
      message: 'out of memory (a WebAssembly instance has at most 4 GiB)',
    })
    // The instance that ran out is replaced: the kernel goes on, with the network loaded again.
    const again = kernel.create(config, tensors)
    const small = { ...call, T: 3, input: r.floats(3) }
    expect(kernel.forward(again, small).hN).toHaveLength(2 * 16)
  })

  it('reports what the kernel threw, then goes on in a fresh instance', () => {
    const wasm = loadWasm()
    const kernel = wasmKernel(wasm.module!)
    const config = lstmConfig
    const r = rng(4)
    const tensors = [r.floats(12 * 2), r.floats(12 * 3)]
    const before = kernel.generation()
    const bad = thrown(() => kernel.create({ ...config, inputSize: 0 }, tensors))
    expect((bad as Error).message).toBe('config: inputSize, hiddenSize and numLayers must be positive')
    expect(kernel.generation()).toBe(before + 1)
    const handle = kernel.create(config, tensors)
    const call = { T: 2, N: 1, batchFirst: false, input: r.floats(4), returnLayers: false }
    const result = kernel.forward(handle, { ...call, returnOutput: true })
    expect(result.output).toHaveLength(6)
    expect(result.cN).toHaveLength(3)
    kernel.free(handle)
  })
})
