// Shared by the tests: the PyTorch fixtures (test/fixtures, written by generate.py) and comparisons.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadNative } from '../lib/native.js'
import { parseSafetensors, toFloat32 } from '../lib/safetensors.js'
import type { ForwardOptions, LoadOptions, ModelConfig, Tensor } from '../lib/types.js'

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
  const { tensors } = parseSafetensors(readFileSync(path))
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

/** The native instruction sets this machine can run, best first; none when the addon does not load. */
export function nativeIsas(): string[] {
  const native = loadNative()
  return native.addon ? native.addon.isa().supported : []
}

/** Every engine the tests compare: the JS engine and each native SIMD path. */
export function engines(): Array<{ label: string; options: LoadOptions }> {
  return [
    { label: 'js', options: { backend: 'js' } },
    ...nativeIsas().map((isa) => ({
      label: `native ${isa}`,
      options: { backend: 'native', simd: isa } as LoadOptions,
    })),
  ]
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
