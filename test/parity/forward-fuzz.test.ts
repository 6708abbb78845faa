// Forward-call fuzzing: seeded random forward calls, most of them wrong in some way (shapes,
// lengths, h0/c0, layouts, unbatched, arrays of the wrong dtype, detached buffers, views on a
// SharedArrayBuffer or at an offset into a bigger buffer, NaN and ±Inf values). Every engine of
// engines() runs each call (forward() or forwardSync() at random, the JS engine both) and must
// agree with the JS engine (the oracle): the same result within 1e-5 (maxAbsDiff; NaN and ±Inf at
// the same places), or the same refusal (class, code and message).
// The counts printed show what was reached; each kind of refusal must be reached many times.
//
// BIRNN_FUZZ_CALLS sets the number of calls (default 10,000, a few seconds); the sanitizer run
// (scripts/sanitize.mjs) sets a smaller count.
import { describe, expect, it } from 'vitest'
import { fromStateDict, type Model } from '../../lib/index.js'
import { MODES } from '../../lib/spec.js'
import type { LoadOptions, Mode } from '../../lib/types.js'
import { engines, maxAbsDiff, nativeMissing, randomStateDict, rng } from '../helpers.js'

const CALLS = Number(process.env.BIRNN_FUZZ_CALLS ?? 10_000)
const TOLERANCE = 1e-5
const missing = nativeMissing()
const others = engines().filter((e) => e.label !== 'js')

type Rng = ReturnType<typeof rng>

interface Shape {
  mode: Mode
  I: number
  H: number
  P: number
  L: number
  D: number
  bias: boolean
  batchFirst: boolean
  /** Big enough that the native kernel splits a call over its 4 threads (directions, batch rows). */
  medium?: boolean
}

/**
 * Small models, so that ten thousand calls take seconds on the JS engine too, and three medium
 * ones (one call in 300) so that the native kernel's thread plan runs with these inputs as well.
 */
function shapes(r: Rng): Shape[] {
  const medium: Shape[] = [
    { mode: 'LSTM', I: 16, H: 48, P: 0, L: 2, D: 2, bias: true, batchFirst: false, medium: true },
    { mode: 'GRU', I: 20, H: 40, P: 0, L: 1, D: 2, bias: true, batchFirst: true, medium: true },
    { mode: 'LSTM', I: 12, H: 48, P: 24, L: 1, D: 2, bias: false, batchFirst: false, medium: true },
  ]
  const small = Array.from({ length: 16 }, (_, i): Shape => {
    const mode = MODES[i % 4]
    const H = r.int(1, 7)
    return {
      mode,
      I: r.int(1, 6),
      H,
      P: mode === 'LSTM' && H > 1 && r.next() < 0.4 ? r.int(1, H - 1) : 0,
      L: r.int(1, 3),
      D: r.next() < 0.5 ? 2 : 1,
      bias: r.next() < 0.8,
      batchFirst: i % 3 === 0,
    }
  })
  return [...small, ...medium]
}

/** What a call gave: a result, or the error it was refused with. */
type Outcome =
  | { ok: true; arrays: Record<string, { data: Float32Array; shape: number[] }> }
  | { ok: false; kind: string; code: string | undefined; message: string }

function outcomeOf(result: Awaited<ReturnType<Model['forward']>>): Outcome {
  const arrays: Record<string, { data: Float32Array; shape: number[] }> = { output: result.output, hN: result.hN }
  if (result.cN) arrays.cN = result.cN
  for (const [l, layer] of (result.layers ?? []).entries()) arrays[`layers[${l}]`] = layer
  return { ok: true, arrays }
}

function refusal(error: unknown): Outcome {
  const e = error as Error & { code?: string }
  return { ok: false, kind: e?.constructor?.name ?? typeof e, code: e?.code, message: String(e?.message ?? e) }
}

/** maxAbsDiff where NaN and ±Inf must sit at the same places, and the finite values agree. */
function disagreement(a: Float32Array, b: Float32Array): string | undefined {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`
  const fa = a.slice()
  const fb = b.slice()
  for (let i = 0; i < a.length; i++) {
    if (Number.isFinite(a[i]) && Number.isFinite(b[i])) continue
    if (Object.is(a[i], b[i]) || (Number.isNaN(a[i]) && Number.isNaN(b[i]))) {
      fa[i] = 0
      fb[i] = 0
    } else return `element ${i}: ${a[i]} vs ${b[i]}`
  }
  const d = maxAbsDiff(fa, fb)
  return d <= TOLERANCE ? undefined : `max difference ${d}`
}

/** Why two outcomes differ, or undefined when they agree. */
function compare(got: Outcome, want: Outcome): string | undefined {
  if (!want.ok || !got.ok) {
    if (want.ok !== got.ok) {
      return want.ok ? `refused (${(got as { message: string }).message}) where JS ran` : 'ran where JS refused'
    }
    const [g, w] = [got as Extract<Outcome, { ok: false }>, want as Extract<Outcome, { ok: false }>]
    if (g.kind !== w.kind || g.code !== w.code || g.message !== w.message) {
      return `refused with ${g.kind} ${g.code} "${g.message}", JS with ${w.kind} ${w.code} "${w.message}"`
    }
    return undefined
  }
  const keys = Object.keys(want.arrays)
  if (Object.keys(got.arrays).join() !== keys.join()) return `results ${Object.keys(got.arrays)} vs ${keys}`
  for (const key of keys) {
    const [g, w] = [got.arrays[key], want.arrays[key]]
    if (g.shape.join() !== w.shape.join()) return `${key} shape [${g.shape}] vs [${w.shape}]`
    const why = disagreement(g.data, w.data)
    if (why) return `${key}: ${why}`
  }
  return undefined
}

/** Float32 data of `length`, stored in one of the ways a caller may hand it over. */
function floats(r: Rng, length: number, special: boolean, tally: (k: string) => void): Float32Array {
  const values = r.floats(length)
  if (special && length > 0) {
    const count = r.int(1, Math.min(3, length))
    for (let k = 0; k < count; k++) values[r.int(0, length - 1)] = [Number.NaN, Infinity, -Infinity][r.int(0, 2)]
  }
  const storage = r.next()
  if (storage < 0.1) {
    tally('data: SharedArrayBuffer')
    const shared = new Float32Array(new SharedArrayBuffer(length * 4))
    shared.set(values)
    return shared
  }
  if (storage < 0.2) {
    tally('data: view at an offset')
    const before = r.int(1, 9)
    const big = r.floats(before + length + r.int(0, 9), 100)
    big.set(values, before)
    return big.subarray(before, before + length)
  }
  if (storage < 0.25) {
    tally('data: shared view at an offset')
    const before = r.int(1, 5)
    const big = new Float32Array(new SharedArrayBuffer((before + length + 3) * 4)).fill(-5)
    big.set(values, before)
    return big.subarray(before, before + length)
  }
  return values
}

function detached(length: number): Float32Array {
  const data = new Float32Array(length)
  structuredClone(data.buffer, { transfer: [data.buffer] })
  return data
}

/** The same numbers in an array of another kind: each is refused as not a Float32Array. */
function wrongKind(r: Rng, length: number): unknown {
  const makers = [
    () => new Float64Array(length),
    () => new Int32Array(length),
    () => new Uint8Array(length * 4),
    () => new Uint16Array(length * 2),
    () => Array.from({ length }, () => 0.5),
    () => new DataView(new ArrayBuffer(length * 4)),
    () => new ArrayBuffer(length * 4),
    () => detached(length),
    () => null,
    () => 'data',
  ]
  return makers[r.int(0, makers.length - 1)]()
}

const product = (shape: number[]) => shape.reduce((a, b) => a * b, 1)

/** A shape that is wrong in one place: a dimension off, swapped, missing or extra. */
function wrongShape(r: Rng, shape: number[]): number[] {
  const s = [...shape]
  switch (r.int(0, 4)) {
    case 0:
      s[r.int(0, s.length - 1)] += r.next() < 0.5 ? 1 : -1
      break
    case 1:
      s.reverse()
      break
    case 2:
      s.pop()
      break
    case 3:
      s.push(1)
      break
    default:
      s[r.int(0, s.length - 1)] = 0
  }
  return s.map((d) => Math.max(0, d))
}

/** One random call on a model of shape `c`: the input and the options, each possibly wrong. */
function randomCall(r: Rng, c: Shape, tally: (k: string) => void): { input: unknown; options: unknown } {
  const T = c.medium ? r.int(8, 16) : r.int(1, 6)
  const unbatched = r.next() < 0.15
  const N = unbatched ? 1 : c.medium ? r.int(8, 10) : r.int(1, 5)
  const Hout = c.P || c.H
  const LD = c.L * c.D
  const special = r.next() < 0.08
  if (special) tally('NaN/Inf values')

  // The input: mostly right; else a wrong shape, a wrong kind of array, a length that does not
  // match its shape, not a tensor at all, or a shape that is not an array of sizes.
  let shape = unbatched ? [T, c.I] : c.batchFirst ? [N, T, c.I] : [T, N, c.I]
  let input: unknown
  const dice = r.next()
  if (dice < 0.06) {
    shape = r.next() < 0.8 ? wrongShape(r, shape) : [T * N * c.I]
    input = { data: floats(r, product(shape), false, tally), shape }
  } else if (dice < 0.09) {
    input = { data: wrongKind(r, product(shape)), shape }
  } else if (dice < 0.11) {
    input = { data: floats(r, product(shape) + r.int(-1, 1) || 1, false, tally), shape }
  } else if (dice < 0.13) {
    input = [null, undefined, 5, 'x', { data: floats(r, 2, false, tally) }, { shape }][r.int(0, 5)]
  } else if (dice < 0.15) {
    input = {
      data: floats(r, product(shape), false, tally),
      shape: [[T], 'x', [1.5, 2], [-1, 2], Int32Array.from(shape)][r.int(0, 4)],
    }
  } else {
    input = { data: floats(r, product(shape), special, tally), shape }
  }

  // The options.
  const options: Record<string, unknown> = {}
  const stateShape = (size: number) => (unbatched ? [LD, size] : [LD, N, size])
  const state = (size: number): unknown => {
    const s = stateShape(size)
    const dice = r.next()
    if (dice < 0.07) {
      const bad = wrongShape(r, s)
      return { data: floats(r, product(bad), false, tally), shape: bad }
    }
    if (dice < 0.09) return { data: wrongKind(r, product(s)), shape: s }
    if (dice < 0.1) return { data: floats(r, product(s), false, tally), shape: unbatched ? [LD, 1, size] : [LD, size] }
    return { data: floats(r, product(s), special, tally), shape: s }
  }
  if (r.next() < 0.4) options.h0 = state(Hout)
  if (r.next() < (c.mode === 'LSTM' ? 0.4 : 0.02)) options.c0 = state(c.H)
  if (r.next() < 0.4) {
    const dice = r.next()
    const valid = () => Array.from({ length: N }, () => r.int(1, T))
    if (dice < 0.5) options.lengths = valid()
    else if (dice < 0.7) {
      const view = r.next()
      if (view < 0.3) options.lengths = Int32Array.from(valid())
      else if (view < 0.6) {
        const big = new Int32Array(N + 4).fill(99)
        big.set(valid(), 2)
        options.lengths = big.subarray(2, 2 + N)
        tally('lengths: view at an offset')
      } else {
        const shared = new Int32Array(new SharedArrayBuffer(N * 4))
        shared.set(valid())
        options.lengths = shared
        tally('lengths: SharedArrayBuffer')
      }
    } else if (dice < 0.9) {
      const lengths: unknown[] = valid()
      lengths[r.int(0, N - 1)] = [0, -1, T + 1, 1.5, Number.NaN, Infinity, '2', null, 2 ** 31][r.int(0, 8)]
      options.lengths = lengths
    } else {
      options.lengths = [
        valid().concat(1),
        valid().slice(1),
        Float32Array.from(valid()),
        new Float64Array(N).fill(1),
        (() => {
          const l = Int32Array.from(valid())
          structuredClone(l.buffer, { transfer: [l.buffer] })
          return l
        })(),
        'all',
        T,
      ][r.int(0, 6)]
    }
  }
  if (r.next() < 0.3) options.returnLayers = r.next() < 0.95 ? r.next() < 0.5 : 1
  if (r.next() < 0.01) options.hO = options.h0 // a typo
  if (r.next() < 0.01) return { input, options: [null, 7, 'options'][r.int(0, 2)] }
  return { input, options }
}

/** Runs the call on a model, sync or async; an async call scribbles over its inputs at once. */
async function run(model: Model, call: { input: unknown; options: unknown }, async: boolean): Promise<Outcome> {
  const { input, options } = call as { input: never; options: never }
  if (!async) {
    try {
      return outcomeOf(model.forwardSync(input, options))
    } catch (error) {
      return refusal(error)
    }
  }
  let pending: Promise<Awaited<ReturnType<Model['forward']>>>
  try {
    pending = model.forward(input, options)
  } catch (error) {
    return refusal(error) // forward() is async: this would itself be a defect, and the comparison shows it
  }
  // The call owns copies now: change every float input the caller gave, then put it back.
  const arrays = [input, (options as { h0?: unknown })?.h0, (options as { c0?: unknown })?.c0]
    .map((t) => (t as { data?: unknown } | null | undefined)?.data)
    .filter((d): d is Float32Array => d instanceof Float32Array && d.buffer.byteLength > 0)
  const saved = arrays.map((d) => d.slice())
  for (const d of arrays) d.fill(1234.5)
  try {
    return outcomeOf(await pending)
  } catch (error) {
    return refusal(error)
  } finally {
    for (const [i, d] of arrays.entries()) d.set(saved[i])
  }
}

const REFUSALS = ['ERR_BIRNN_INVALID_ARG', 'ERR_BIRNN_UNKNOWN_OPTION', 'ERR_BIRNN_SHAPE', 'ERR_BIRNN_OUT_OF_RANGE']

describe('forward-call fuzzing: every engine agrees with the JS engine, or refuses the same way', () => {
  const labels = ['js', ...others.map((e) => e.label)].join(', ')
  const skipped = missing ? ` (native half skipped: ${missing})` : ''
  it(`${CALLS} random calls on ${labels}${skipped}`, { timeout: 600_000 }, async () => {
    const r = rng(4242)
    const tally = new Map<string, number>()
    const count = (key: string) => tally.set(key, (tally.get(key) ?? 0) + 1)
    const outcomes = new Map<string, number>()
    const models = shapes(r).map((c) => {
      const tensors = randomStateDict(r, c)
      const load: LoadOptions = { batchFirst: c.batchFirst, ...(c.mode === 'RNN_RELU' ? { nonlinearity: 'relu' } : {}) }
      return {
        c,
        tensors,
        load,
        js: fromStateDict(tensors, { ...load, backend: 'js' }),
        others: others.map((e) => ({
          label: e.label,
          model: fromStateDict(tensors, { ...load, ...e.options, threads: c.medium ? 4 : r.int(1, 3) }),
        })),
      }
    })
    const small = models.filter((m) => !m.c.medium)
    const medium = models.filter((m) => m.c.medium)
    const failures: string[] = []
    for (let i = 0; i < CALLS && failures.length < 10; i++) {
      const pool = r.next() < 0.003 ? medium : small
      const m = pool[r.int(0, pool.length - 1)]
      if (m.c.medium) count('medium model, 4 threads')
      const call = randomCall(r, m.c, count)
      // A disposed model refuses every call the same way.
      const disposed = r.next() < 0.005
      const pick = (model: Model, options: LoadOptions) => {
        if (!disposed) return model
        const fresh = fromStateDict(m.tensors, { ...m.load, ...options })
        fresh.dispose()
        return fresh
      }
      const jsAsync = r.next() < 0.5
      const want = await run(pick(m.js, { backend: 'js' }), call, jsAsync)
      // The JS engine's other entry point, then every other engine.
      const twin = compare(await run(pick(m.js, { backend: 'js' }), call, !jsAsync), want)
      if (twin) failures.push(`call ${i} on js ${jsAsync ? 'forwardSync' : 'forward'}: ${twin}`)
      for (const other of m.others) {
        const options = others.find((e) => e.label === other.label)!.options
        const got = await run(pick(other.model, options), call, r.next() < 0.5)
        const why = compare(got, want)
        if (why)
          failures.push(
            `call ${i} (${m.c.mode} I${m.c.I} H${m.c.H} P${m.c.P} L${m.c.L} D${m.c.D}) on ${other.label}: ${why}`,
          )
      }
      const nonFinite = want.ok && Object.values(want.arrays).some((a) => a.data.some((v) => !Number.isFinite(v)))
      const key = want.ok ? (nonFinite ? 'ran (NaN/Inf in the result)' : 'ran') : `refused: ${want.code}`
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
    }
    for (const { js, others: rest } of models) for (const model of [js, ...rest.map((o) => o.model)]) model.dispose()
    const sorted = (map: Map<string, number>) => Object.fromEntries([...map].sort((a, b) => b[1] - a[1]))
    console.log(
      `forward fuzz: ${CALLS} calls on ${labels}${skipped}; outcomes`,
      sorted(outcomes),
      'inputs',
      sorted(tally),
    )
    expect(failures, failures.join('\n')).toEqual([])
    // Most calls run, and each kind of refusal is reached many times.
    expect(outcomes.get('ran') ?? 0).toBeGreaterThan(CALLS / 3)
    expect(outcomes.get('ran (NaN/Inf in the result)') ?? 0).toBeGreaterThan(CALLS / 100)
    for (const code of [...REFUSALS, 'ERR_BIRNN_DISPOSED']) {
      expect(outcomes.get(`refused: ${code}`) ?? 0, code).toBeGreaterThanOrEqual(Math.min(5, CALLS / 2000))
    }
  })
})
