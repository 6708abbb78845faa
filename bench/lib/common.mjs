// Shared helpers of the benchmark: paths, safetensors reading, timing, flop counts, comparisons.

import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const BENCH = dirname(dirname(fileURLToPath(import.meta.url)))
export const ROOT = dirname(BENCH)
export const OUT = join(BENCH, 'out')

/** Reads a float32 safetensors file written by make-models.py: name -> { data, shape }. */
export function readSafetensors(path) {
  const buf = readFileSync(path)
  const n = Number(buf.readBigUInt64LE(0))
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'))
  const out = {}
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue
    if (t.dtype !== 'F32') throw new Error(`${path}: ${name} is ${t.dtype}, expected F32`)
    const [a, b] = t.data_offsets
    const bytes = buf.subarray(8 + n + a, 8 + n + b)
    out[name] = {
      data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)),
      shape: t.shape,
    }
  }
  return out
}

/** Deterministic uniform numbers in [0, 1) (mulberry32). */
export function mulberry32(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * A state_dict of uniform random weights in [-1/16, 1/16) (timing does not depend on their
 * values), bidirectional unless D is 1: { name: { data: Float32Array, shape } }, PyTorch's names
 * and shapes.
 */
export function randomStateDict(mode, { I, H, L, D = 2, seed }) {
  const u = mulberry32(seed)
  const tensors = {}
  const add = (name, shape) => {
    tensors[name] = { data: Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => (u() - 0.5) / 8), shape }
  }
  for (let l = 0; l < L; l++) {
    for (const sfx of ['', '_reverse'].slice(0, D)) {
      add(`weight_ih_l${l}${sfx}`, [GATES[mode] * H, l ? D * H : I])
      add(`weight_hh_l${l}${sfx}`, [GATES[mode] * H, H])
      add(`bias_ih_l${l}${sfx}`, [GATES[mode] * H])
      add(`bias_hh_l${l}${sfx}`, [GATES[mode] * H])
    }
  }
  return tensors
}

/** A safetensors file of float32 tensors ({ name: { data: Float32Array, shape } }), in order. */
export function safetensorsBytes(tensors) {
  const header = {}
  let offset = 0
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] }
    offset += t.data.byteLength
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - (json.length % 8)) % 8) // the data starts 8-byte aligned
  const bytes = new Uint8Array(8 + json.length + offset)
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true)
  bytes.set(Buffer.from(json), 8)
  let at = 8 + json.length
  for (const t of Object.values(tensors)) {
    bytes.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at)
    at += t.data.byteLength
  }
  return bytes
}

/** Deterministic standard normal floats (xorshift32 + Box–Muller), for sweep inputs. */
export function randn(count, seed = 1) {
  let s = seed >>> 0 || 1
  const u = () => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return (s + 1) / 4294967297
  }
  const out = new Float32Array(count)
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u()))
    const th = 2 * Math.PI * u()
    out[i] = r * Math.cos(th)
    if (i + 1 < count) out[i + 1] = r * Math.sin(th)
  }
  return out
}

/** Gate rows per hidden unit of each mode, as in a PyTorch state_dict. */
export const GATES = { RNN_TANH: 1, RNN_RELU: 1, GRU: 3, LSTM: 4 }

/**
 * Floating-point work of one forward, counting 2 flops per multiply-add of the input projection
 * (G*H x I_layer per step) and of the recurrent GEMM (G*H x Hout per step), plus the LSTM
 * projection (P x H) when there is one; activations and biases are not counted.
 */
export function forwardFlops(cfg, T, N) {
  const G = GATES[cfg.mode]
  const H = cfg.hiddenSize
  const P = cfg.projSize || 0
  const Hout = P || H
  const D = cfg.bidirectional ? 2 : 1
  let perStep = 0
  for (let l = 0; l < cfg.numLayers; l++) {
    const I = l === 0 ? cfg.inputSize : D * Hout
    perStep += D * (G * H * (I + Hout) + P * H)
  }
  return 2 * perStep * T * N
}

export function maxAbsDiff(a, b) {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY
  let m = 0
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i])
    if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d
  }
  return m
}

/** The tolerance above which a contender is reported as disagreeing and not ranked. */
export const TOLERANCE = 1e-4

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

export function stats(times) {
  return { runs: times.length, median: median(times), min: Math.min(...times), max: Math.max(...times), times }
}

/**
 * How many times to run. The correctness call (output()) that precedes timing is the first
 * warm-up; then `warmup` more untimed calls, and more until `warmupMs` have passed (a call of
 * microseconds reaches its steady state, JIT, caches and idle threads, only after hundreds of
 * calls: W-seed's median was 1.5× its steady state after one warm-up and 200 timed calls); then
 * timed calls until `budgetMs` of timed work (at least minReps, at most maxReps). A contender
 * whose calls take `slowMs` or more gets no extra warm-up and only minSlowReps timed calls; one
 * of `verySlowMs` or more gets a single timed call
 * (n=1 in the table: tfjs cpu and birnn's JS engine at W-b64 take a minute or more per call).
 */
export function timingPlan(quick) {
  return quick
    ? { warmup: 0, warmupMs: 0, minReps: 3, maxReps: 15, budgetMs: 250, slowMs: 250, minSlowReps: 1, verySlowMs: 250 }
    : {
        warmup: 1,
        warmupMs: 300,
        minReps: 5,
        maxReps: 2000,
        budgetMs: 2000,
        slowMs: 5000,
        minSlowReps: 3,
        verySlowMs: 20000,
      }
}

const now = () => Number(process.hrtime.bigint()) / 1e6

/** Runs fn once and returns [its result, milliseconds]. */
export async function timed(fn) {
  const t0 = now()
  const r = await fn()
  return [r, now() - t0]
}

/** Times an async (or sync) function by the plan; returns the per-call milliseconds. */
export async function timeRuns(fn, plan, firstMs = 0) {
  let slow = firstMs >= plan.slowMs
  const warmUntil = now() + plan.warmupMs
  for (let i = 0; !slow && (i < plan.warmup || now() < warmUntil); i++) slow = (await timed(fn))[1] >= plan.slowMs
  const times = []
  const t1 = now()
  for (;;) {
    times.push((await timed(fn))[1])
    slow ||= times[0] >= plan.slowMs
    const verySlow = Math.max(firstMs, times[0]) >= plan.verySlowMs
    const enough = verySlow ? 1 : slow ? plan.minSlowReps : plan.minReps
    if (times.length >= plan.maxReps) break
    if (times.length >= enough && (slow || now() - t1 >= plan.budgetMs)) break
  }
  return times
}

/** Shape helpers: time-major [T, N, F] <-> batch-major [N, T, F]. */
export function swap01(data, A, B, F) {
  const out = new Float32Array(data.length)
  for (let a = 0; a < A; a++) {
    for (let b = 0; b < B; b++) out.set(data.subarray((a * B + b) * F, (a * B + b + 1) * F), (b * A + a) * F)
  }
  return out
}

export const fmtMs = (ms) =>
  ms < 1 ? `${(ms * 1000).toFixed(1)} µs` : ms < 100 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(0)} ms`

export function log(...args) {
  console.log(...args)
}
