// The batcher's promise: each request's result is bit-identical to model.forward() of that request
// alone, whatever it is batched with. Checked over many random mixes of requests (unbatched and
// batched, random lengths, with and without h0/c0, returnLayers, every `output` kind) on random
// models of every mode, in both layouts, on every engine and SIMD path (test/helpers.ts engines()).
// And forward()'s `output` 'last' and 'mean' rows are those of its full output, bit for bit.
import { afterAll, describe, expect, it } from 'vitest'
import { type Engine, needsOutput } from '../../lib/engines/engine.js'
import { forwardJs } from '../../lib/engines/js.js'
import { nativeEngine } from '../../lib/engines/native.js'
import { wasmEngine } from '../../lib/engines/wasm.js'
import { fromStateDict } from '../../lib/index.js'
import { openRecord } from '../../lib/loading/source.js'
import { readStateDict } from '../../lib/loading/state-dict.js'
import { planForward } from '../../lib/model/forward-args.js'
import type { BatchRequestOptions, ForwardResult, Mode, Tensor } from '../../lib/types.js'
import { engines, pooledFromFull, randomStateDict, rng } from '../helpers.js'

interface Shape {
  mode: Mode
  I: number
  H: number
  P?: number
  L: number
  D: number
}

/** The raw bits, so that -0 vs 0 and NaN payloads count as differences too. */
const bits = (t: Tensor) => new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length)

function expectSameBits(got: ForwardResult, want: ForwardResult, label: string): void {
  const pairs: Array<[string, Tensor | undefined, Tensor | undefined]> = [
    ['output', got.output, want.output],
    ['hN', got.hN, want.hN],
    ['cN', got.cN, want.cN],
    ...(want.layers ?? []).map((layer, l): [string, Tensor | undefined, Tensor] => [
      `layers[${l}]`,
      got.layers?.[l],
      layer,
    ]),
  ]
  expect(got.layers?.length, `${label}: layers`).toBe(want.layers?.length)
  for (const [name, a, b] of pairs) {
    if (b === undefined) {
      expect(a, `${label}: ${name}`).toBeUndefined()
      continue
    }
    expect(a?.shape, `${label}: ${name} shape`).toEqual(b.shape)
    const x = bits(a!)
    const y = bits(b)
    let first = -1
    for (let i = 0; i < y.length && first < 0; i++) if (x[i] !== y[i]) first = i
    expect(first, `${label}: ${name} differs first at element ${first} (${a!.data[first]} vs ${b.data[first]})`).toBe(
      -1,
    )
  }
}

type Request = { input: Tensor; options: BatchRequestOptions }

/** A random request: unbatched (T, I) or N sequences in the model's layout, random lengths and states. */
function randomRequest(
  r: ReturnType<typeof rng>,
  s: Shape,
  batchFirst: boolean,
  maxT: number,
  maxN: number,
  allLast: boolean,
): Request {
  const Hout = s.P || s.H
  const LD = s.L * s.D
  const T = r.int(1, maxT)
  const unbatched = r.next() < 0.25
  const N = unbatched ? 1 : r.int(1, maxN)
  const shape = unbatched ? [T, s.I] : batchFirst ? [N, T, s.I] : [T, N, s.I]
  const input = { data: r.floats(T * N * s.I), shape }
  const options: BatchRequestOptions = {}
  if (!unbatched && r.next() < 0.6) options.lengths = Array.from({ length: N }, () => r.int(1, T))
  const state = (F: number) => ({ data: r.floats(LD * N * F, 0.5), shape: unbatched ? [LD, F] : [LD, N, F] })
  if (r.next() < 0.5) options.h0 = state(Hout)
  if (s.mode === 'LSTM' && r.next() < 0.5) options.c0 = state(s.H)
  if (r.next() < 0.15) options.returnLayers = true
  const kind = r.next()
  // A batch of 'last' requests only computes no full output at all.
  if (allLast || kind < 0.2) options.output = 'last'
  else if (kind < 0.4) options.output = 'mean'
  return { input, options }
}

/** forward()'s and forwardSync()'s 'last' or 'mean' rows against the full output's. */
async function expectPooledFromFull(
  model: ReturnType<typeof fromStateDict>,
  { input, options }: Request,
  pooled: ForwardResult,
  label: string,
): Promise<void> {
  const kind = options.output
  if (kind !== 'last' && kind !== 'mean') return
  const { output } = await model.forward(input, { ...options, output: 'full' })
  const unbatched = input.shape.length === 2
  const [B, T] = unbatched
    ? [1, input.shape[0]]
    : model.config.batchFirst
      ? [input.shape[0], input.shape[1]]
      : [input.shape[1], input.shape[0]]
  const W = output.shape[output.shape.length - 1]
  const shape = { B, T, W, D: model.config.bidirectional ? 2 : 1, batchFirst: unbatched || model.config.batchFirst }
  const want = {
    ...pooled,
    output: { data: pooledFromFull(output.data, kind, shape, options.lengths), shape: unbatched ? [W] : [B, W] },
  }
  expectSameBits(pooled, want, label)
  expectSameBits(model.forwardSync(input, options), want, `${label}, forwardSync`)
}

const SHAPES: Shape[] = [
  { mode: 'RNN_TANH', I: 5, H: 7, L: 2, D: 2 },
  { mode: 'RNN_RELU', I: 3, H: 9, L: 1, D: 1 },
  { mode: 'GRU', I: 6, H: 5, L: 2, D: 2 },
  { mode: 'GRU', I: 4, H: 11, L: 1, D: 1 },
  { mode: 'LSTM', I: 4, H: 6, L: 2, D: 2 },
  { mode: 'LSTM', I: 7, H: 8, P: 3, L: 2, D: 2 },
  { mode: 'LSTM', I: 3, H: 5, L: 1, D: 1 },
]

// Bigger shapes on the native paths only (the JS engine is slow there): widths past one SIMD
// register and tile, batches of many rows, so full and partial tiles of the kernel are both hit.
const NATIVE_SHAPES: Shape[] = [
  { mode: 'LSTM', I: 32, H: 64, L: 1, D: 2 },
  { mode: 'RNN_TANH', I: 25, H: 50, L: 4, D: 2 },
  { mode: 'GRU', I: 19, H: 37, L: 2, D: 2 },
  { mode: 'LSTM', I: 33, H: 40, P: 17, L: 2, D: 2 },
]

for (const engine of engines()) {
  const native = engine.label !== 'js'
  describe(`batcher on ${engine.label}: every request bit-identical to forward() alone`, () => {
    const shapes = native ? [...SHAPES, ...NATIVE_SHAPES] : SHAPES
    shapes.forEach((s, index) => {
      for (const batchFirst of [false, true]) {
        const name = `${s.mode}${s.P ? ` proj ${s.P}` : ''} I${s.I} H${s.H} L${s.L} ${s.D === 2 ? 'bi' : 'uni'}, ${batchFirst ? 'batch-first' : 'time-major'}`
        it(name, async () => {
          const r = rng(1000 + index * 2 + Number(batchFirst))
          const big = index >= SHAPES.length
          const model = fromStateDict(randomStateDict(r, { ...s, bias: r.next() < 0.8 }), {
            ...engine.options,
            batchFirst,
            ...(s.mode === 'RNN_RELU' ? { nonlinearity: 'relu' } : {}),
            threads: 2,
          })
          const mixes = native ? 12 : 5
          for (let mix = 0; mix < mixes; mix++) {
            const requests = Array.from({ length: r.int(2, big ? 40 : 12) }, () =>
              randomRequest(r, s, batchFirst, big ? 60 : 9, big ? 5 : 3, mix % 4 === 3),
            )
            // Some mixes in one batch, some split by maxBatch / maxBatchTokens into several, some of them
            // two batches at a time (shortest requests together).
            const batcher = model.batcher(
              mix % 3 === 0
                ? { maxBatch: 1024, maxBatchTokens: 1 << 20, concurrency: 1 }
                : { maxBatch: r.int(2, 9), maxBatchTokens: big ? 1500 : 200, concurrency: 1 + (mix % 2) },
            )
            const results = await Promise.all(requests.map((q) => batcher.forward(q.input, q.options)))
            await batcher.close()
            // Submitted together, they wait for one microtask and go as one batch when it may hold them all.
            if (mix % 3 === 0) expect(batcher.stats.batches).toBe(1)
            else expect(batcher.stats.batches).toBeLessThanOrEqual(requests.length)
            for (let i = 0; i < requests.length; i++) {
              const alone = await model.forward(requests[i].input, requests[i].options)
              expectSameBits(results[i], alone, `mix ${mix}, request ${i} of ${requests.length}`)
              await expectPooledFromFull(model, requests[i], alone, `mix ${mix}, request ${i}, output`)
            }
          }
          model.dispose()
        })
      }
    })
  })
}

// output 'last' is served from the final states: the kernels (native, wasm) return no output at
// all, unless every layer's output is asked for too. (The JS engine computes it regardless.)
describe("the engines with output 'last'", () => {
  const r = rng(77)
  const weights = readStateDict(openRecord(randomStateDict(r, { mode: 'GRU', I: 5, H: 7, L: 2, D: 2, bias: true })), {})
  const input = { data: r.floats(6 * 3 * 5), shape: [6, 3, 5] }
  const kernels: Engine[] = []
  const native = nativeEngine(weights, { threads: 2, simd: 'auto' })
  const wasm = wasmEngine(weights)
  if ('engine' in native) kernels.push(native.engine)
  if ('engine' in wasm) kernels.push(wasm.engine)
  it.each([false, true])('returnLayers %s', async (returnLayers) => {
    const plan = planForward(weights.config, input, { output: 'last', returnLayers })
    expect(needsOutput(plan)).toBe(returnLayers)
    expect(forwardJs(weights, plan).output).toBeDefined()
    for (const engine of kernels) {
      expect(engine.runSync(plan).output !== undefined).toBe(returnLayers)
      expect((await engine.run(plan)).output !== undefined).toBe(returnLayers)
    }
  })
  it('found a kernel to check', () => expect(kernels.length).toBeGreaterThan(0))
  afterAll(() => {
    for (const engine of kernels) engine.dispose()
  })
})
