// The WebAssembly engine beyond the fixtures (which pytorch.test.ts runs on it, as on every
// engine): forward() on the worker pool leaves the event loop free, models share the pool,
// dispose() frees them there, and a kernel failure is reported and survived.
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { describe, expect, it } from 'vitest'
import { loadWasm } from '../../lib/engines/wasm.js'
import { wasmKernel } from '../../lib/engines/wasm-kernel.js'
import { fromStateDict } from '../../lib/index.js'
import { expectError, randomStateDict, rejection, rng, thrown, wasmMissing } from '../helpers.js'

const missing = wasmMissing()

describe.skipIf(missing)(`the wasm engine${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('is chosen by backend: wasm, and says so', () => {
    const model = fromStateDict(randomStateDict(rng(1), { mode: 'GRU', I: 3, H: 4, L: 1, D: 1, bias: true }), {
      backend: 'wasm',
    })
    expect(model.backend).toBe('wasm')
    expect(model.simd).toBeUndefined()
    expect(model.backendReason).toMatch(/^the WebAssembly kernel \(128-bit SIMD\) from .*birnn\.wasm was requested$/)
    model.dispose()
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

  it('reports what the kernel threw, then goes on in a fresh instance', () => {
    const wasm = loadWasm()
    const kernel = wasmKernel(wasm.module!)
    const config = {
      mode: 3,
      inputSize: 2,
      hiddenSize: 3,
      projSize: 0,
      numLayers: 1,
      bidirectional: false,
      bias: false,
    }
    const r = rng(4)
    const tensors = [r.floats(12 * 2), r.floats(12 * 3)]
    const before = kernel.generation()
    const bad = thrown(() => kernel.create({ ...config, inputSize: 0 }, tensors))
    expect((bad as Error).message).toBe('config: inputSize, hiddenSize and numLayers must be positive')
    expect(kernel.generation()).toBe(before + 1)
    const handle = kernel.create(config, tensors)
    const result = kernel.forward(handle, { T: 2, N: 1, batchFirst: false, input: r.floats(4), returnLayers: false })
    expect(result.output).toHaveLength(6)
    expect(result.cN).toHaveLength(3)
    kernel.free(handle)
  })
})
