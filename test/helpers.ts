// Shared by the tests: the PyTorch fixtures (test/fixtures, written by generate.py) and comparisons.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect } from 'vitest'
import { loadAddon } from '../lib/engines/addon.js'
import { loadWasm } from '../lib/engines/wasm.js'
import { BirnnError } from '../lib/errors.js'
import { parseSafetensors, toFloat32 } from '../lib/loading/safetensors.js'
import { GATES, WASM_SIMD } from '../lib/spec.js'
import type { ForwardOptions, LoadOptions, Mode, ModelConfig, Simd, Tensor, WasmSimd } from '../lib/types.js'

export const fixturesDir = join(import.meta.dirname, 'fixtures')

export interface FixtureCase {
  name: string
  model: string
  io: string
  options: LoadOptions
  config: ModelConfig
  forward: { lengths?: number[]; h0: boolean; c0: boolean; unbatched: boolean }
  dtype: string
  note: string
}

export const cases: FixtureCase[] = JSON.parse(readFileSync(join(fixturesDir, 'manifest.json'), 'utf8'))

export function fixture(name: string): FixtureCase {
  const found = cases.find((c) => c.name === name)
  if (!found) throw new Error(`no fixture ${name}`)
  return found
}

export const modelPath = (c: FixtureCase) => join(fixturesDir, c.model)

/** Every tensor of a safetensors file, as float32. */
export function readTensors(path: string): Record<string, Tensor> {
  const tensors = parseSafetensors(readFileSync(path))
  return Object.fromEntries([...tensors].map(([name, t]) => [name, toFloat32(name, t)]))
}

/** The fixture's inputs and PyTorch's outputs. */
export function readIo(c: FixtureCase) {
  const io = readTensors(join(fixturesDir, c.io))
  const options: ForwardOptions = {}
  if (io.h0) options.h0 = io.h0
  if (io.c0) options.c0 = io.c0
  if (c.forward.lengths) options.lengths = c.forward.lengths
  const layers = Array.from({ length: c.config.numLayers }, (_, l) => io[`layer${l}`])
  return { input: io.input, options, output: io.output, hN: io.hN, cN: io.cN, layers }
}

/**
 * Largest difference from the reference, |a - b| / max(1, |b|): absolute for values up to 1, and
 * relative beyond, where float32 itself (PyTorch's included) carries only ~7 significant digits.
 */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY
  let max = 0
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i]))
    if (!(d <= max)) max = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d
  }
  return max
}

/**
 * Why the native tests cannot run here (the addon did not load), or undefined when they can.
 * `.ci/run` sets BIRNN_REQUIRE_NATIVE=1: there, a missing addon fails the run instead.
 */
export function nativeMissing(): string | undefined {
  const native = loadAddon()
  if (native.addon) return undefined
  if (process.env.BIRNN_REQUIRE_NATIVE === '1') {
    throw new Error(`BIRNN_REQUIRE_NATIVE=1 but the native addon did not load: ${native.reason}`)
  }
  return `the native addon did not load: ${native.reason}`
}

/** The native instruction sets this machine can run, best first; none when the addon does not load. */
export function nativeIsas(): Simd[] {
  const native = loadAddon()
  return nativeMissing() === undefined ? native.addon!.isa().supported : []
}

/**
 * Why a build of the wasm kernel cannot run here (not built: npm run build:wasm), or undefined
 * when it can; 'auto': the one the engine picks. `.ci/run` builds both and sets
 * BIRNN_REQUIRE_WASM=1: there, a missing module fails the run instead (vitest.config.ts gives
 * Node 20 the flag that relaxed SIMD needs there).
 */
export function wasmMissing(simd: 'auto' | WasmSimd = 'auto'): string | undefined {
  const wasm = loadWasm(simd)
  if (wasm.module) return undefined
  if (process.env.BIRNN_REQUIRE_WASM === '1') {
    throw new Error(`BIRNN_REQUIRE_WASM=1 but the WebAssembly module did not load: ${wasm.reason}`)
  }
  return `the WebAssembly module did not load: ${wasm.reason}`
}

/** Every engine the tests compare: the JS engine, each build of the wasm kernel and each native SIMD path. */
export function engines(): Array<{ label: string; options: LoadOptions }> {
  return [
    { label: 'js', options: { backend: 'js' } },
    ...WASM_SIMD.filter((simd) => wasmMissing(simd) === undefined).map((simd) => ({
      label: simd,
      options: { backend: 'wasm', simd } satisfies LoadOptions,
    })),
    ...nativeIsas().map((isa) => ({
      label: `native ${isa}`,
      options: { backend: 'native', simd: isa } satisfies LoadOptions,
    })),
  ]
}

/** Runs fn with environment variable `name` free to change, and restores it afterwards (even on failure). */
export async function withEnv<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  const saved = process.env[name]
  try {
    return await fn()
  } finally {
    if (saved === undefined) delete process.env[name]
    else process.env[name] = saved
  }
}

/** Deterministic pseudo-random numbers (mulberry32), so generated cases are reproducible. */
export function rng(seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next())
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1))
  const floats = (n: number, scale = 1) => Float32Array.from({ length: n }, () => normal() * scale)
  return { next, normal, int, floats }
}

/** A random PyTorch state_dict for a module of the given shape (H hidden, P projection, L layers, D directions). */
export function randomStateDict(
  r: ReturnType<typeof rng>,
  shape: { mode: Mode; I: number; H: number; P?: number; L: number; D: number; bias: boolean },
): Record<string, Tensor> {
  const { mode, I, H, P = 0, L, D, bias } = shape
  const G = GATES[mode]
  const Hout = P || H
  const scale = 1 / Math.sqrt(H)
  const tensors: Record<string, Tensor> = {}
  const add = (name: string, dims: number[]) => {
    tensors[name] = {
      data: r.floats(
        dims.reduce((a, b) => a * b, 1),
        scale,
      ),
      shape: dims,
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

/** A safetensors file from a raw header object and data bytes (tests build malformed ones too). */
export function safetensorsBytes(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header))
  const out = new Uint8Array(8 + json.length + data.length)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true)
  out.set(json, 8)
  out.set(data, 8 + json.length)
  return out
}

/** A valid float32 safetensors file holding the given tensors. */
export function encodeTensors(tensors: Record<string, Tensor>): Uint8Array {
  const header: Record<string, unknown> = {}
  let offset = 0
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] }
    offset += t.data.byteLength
  }
  const data = new Uint8Array(offset)
  offset = 0
  for (const t of Object.values(tensors)) {
    data.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), offset)
    offset += t.data.byteLength
  }
  return safetensorsBytes(header, data)
}

type ErrorClass = new (...args: never[]) => Error

/** What `fn` threw (or the rejection of a promise): fails the test when nothing was thrown. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  throw new Error('expected a throw, but the call returned')
}
export const rejection = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => {
      throw new Error('expected a rejection, but the promise resolved')
    },
    (error: unknown) => error,
  )

/** An error of class `kind` with the stable `code` and the message (exactly, or matching). */
export function expectError(error: unknown, kind: ErrorClass, code: string, message: string | RegExp): void {
  expect(error).toBeInstanceOf(kind)
  expect(error).toBeInstanceOf(BirnnError)
  expect((error as { code?: string }).code).toBe(code)
  if (typeof message === 'string') expect((error as Error).message).toBe(message)
  else expect((error as Error).message).toMatch(message)
}

/**
 * The oracle of the forward option `output` 'last' and 'mean', from a full output (layout given by
 * batchFirst) of B sequences of T steps: forward direction at the last valid step, backward at
 * step 0; or the mean over the valid steps, summed in float64 in step order.
 */
export function pooledFromFull(
  output: Float32Array,
  kind: 'last' | 'mean',
  shape: { B: number; T: number; W: number; D: number; batchFirst: boolean },
  lengths?: ArrayLike<number>,
): Float32Array {
  const { B, T, W, D, batchFirst } = shape
  const at = (b: number, t: number) => (batchFirst ? b * T + t : t * B + b) * W
  const rows = new Float32Array(B * W)
  for (let b = 0; b < B; b++) {
    const length = lengths ? lengths[b] : T
    const half = W / D
    for (let w = 0; w < W; w++) {
      if (kind === 'last') {
        rows[b * W + w] = output[at(b, w < half ? length - 1 : 0) + w]
        continue
      }
      let sum = 0
      for (let t = 0; t < length; t++) sum += output[at(b, t) + w]
      rows[b * W + w] = sum / length
    }
  }
  return rows
}
