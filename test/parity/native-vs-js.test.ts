// The native kernel (on every SIMD path this CPU has) and the WebAssembly kernel against the JS
// engine (the oracle) on random configurations: every mode and option, odd sizes, h0/c0,
// lengths, both layouts, unbatched.
import { describe, expect, it } from 'vitest'
import { fromStateDict } from '../../lib/index.js'
import { MODES, WASM_SIMD } from '../../lib/spec.js'
import type { ForwardOptions, LoadOptions, Simd } from '../../lib/types.js'
import { maxAbsDiff, nativeIsas, nativeMissing, randomStateDict, rng, wasmMissing } from '../helpers.js'

const missing = nativeMissing()
const noWasm = wasmMissing()
/** The builds of the wasm kernel this runtime runs (both, in the tests: vitest.config.ts). */
const wasmBuilds = WASM_SIMD.filter((simd) => wasmMissing(simd) === undefined)

/** 60 seeded configurations: mostly small, every tenth up to 300 wide (bounded for the JS engine). */
const configurations = Array.from({ length: 60 }, (_, i) => {
  const r = rng(1000 + i)
  const mode = MODES[i % 4]
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
  return { i, mode, I, H, P, L, D, bias, batchFirst, unbatched, T, N }
})

/** Runs configuration c on the JS engine and on `options`' engine, and compares every result. */
function compare(c: (typeof configurations)[number], seed: number, engine: (r: ReturnType<typeof rng>) => LoadOptions) {
  const r = rng(seed)
  const tensors = randomStateDict(r, c)
  const options: LoadOptions = {
    batchFirst: c.batchFirst,
    ...(c.mode === 'RNN_RELU' ? { nonlinearity: 'relu' } : {}),
  }
  const js = fromStateDict(tensors, { ...options, backend: 'js' })
  const other = fromStateDict(tensors, { ...options, ...engine(r) })
  const { T, N, I, L, D, H } = c
  const Hout = c.P || H
  const shape = c.unbatched ? [T, I] : c.batchFirst ? [N, T, I] : [T, N, I]
  const input = { data: r.floats(shape.reduce((a, b) => a * b, 1)), shape }
  const state = (size: number) => (c.unbatched ? [L * D, size] : [L * D, N, size])
  const args: ForwardOptions = { returnLayers: true }
  if (r.next() < 0.5) args.h0 = { data: r.floats(L * D * N * Hout, 0.5), shape: state(Hout) }
  if (c.mode === 'LSTM' && r.next() < 0.5) args.c0 = { data: r.floats(L * D * N * H, 0.5), shape: state(H) }
  if (!c.unbatched && r.next() < 0.5) args.lengths = Array.from({ length: N }, () => r.int(1, T))
  const a = js.forwardSync(input, args)
  const b = other.forwardSync(input, args)
  other.dispose()
  const scale = Math.max(1, ...Array.from(a.output.data, Math.abs))
  expect(b.output.shape).toEqual(a.output.shape)
  expect(maxAbsDiff(b.output.data, a.output.data) / scale).toBeLessThanOrEqual(1e-5)
  expect(maxAbsDiff(b.hN.data, a.hN.data) / scale).toBeLessThanOrEqual(1e-5)
  if (c.mode === 'LSTM') expect(maxAbsDiff(b.cN!.data, a.cN!.data) / scale).toBeLessThanOrEqual(1e-5)
  expect(b.layers).toHaveLength(L)
  for (const [l, layer] of b.layers!.entries()) {
    expect(maxAbsDiff(layer.data, a.layers![l].data) / scale).toBeLessThanOrEqual(1e-5)
  }
}

describe.skipIf(missing).each(missing ? ['none'] : nativeIsas())(
  `native %s against the JS engine${missing ? ` (skipped: ${missing})` : ''}`,
  (isa) => {
    it.each(configurations)('configuration $i: $mode I$I H$H P$P L$L D$D T$T N$N', (c) => {
      compare(c, c.i * 7919 + isa.length, (r) => ({ backend: 'native', simd: isa as Simd, threads: r.int(1, 4) }))
    })
  },
)

describe.skipIf(noWasm).each(noWasm ? ['none'] : wasmBuilds)(
  `%s against the JS engine${noWasm ? ` (skipped: ${noWasm})` : ''}`,
  (simd) => {
    it.each(configurations)('configuration $i: $mode I$I H$H P$P L$L D$D T$T N$N', (c) => {
      compare(c, c.i * 7919 + 4, () => ({ backend: 'wasm', simd: simd as (typeof WASM_SIMD)[number] }))
    })
  },
)
