// The pure-JS engine: PyTorch's recurrence written out plainly, one sequence and one step at a
// time, with float64 arithmetic and float32 storage. It is the fallback where the addon does not
// load and the oracle the native kernel is tested against, so clarity wins over speed here.
//
// Per step, with x the layer input and h the previous hidden state (PyTorch's gate orders):
//   RNN   h' = act(W_ih x + b_ih + W_hh h + b_hh)
//   GRU   r, z = σ(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z})
//         n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));  h' = (1 − z) ⊙ n + z ⊙ h
//   LSTM  i, f, o = σ(...), g = tanh(...);  c' = f ⊙ c + i ⊙ g;  h' = o ⊙ tanh(c'),
//         then h' = W_hr h' with a projection.
// Layer k > 0 reads both directions of layer k−1, concatenated per time step [fwd | bwd]. The
// backward direction walks each sequence from its own last valid step down to 0 and writes each
// output at the time step it belongs to, so its outputs are already in time order.

import type { LayerWeights, Weights } from '../loading/state-dict.js'
import { directions, outputSize } from '../spec.js'
import type { ModelConfig } from '../types.js'
import type { Engine, Plan, RawResult } from './engine.js'

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))

/** out[r] = b[r] + Σ_k W[r, k] v[k] for the rows of W, starting at v[offset]. */
function matVec(
  W: Float32Array,
  b: Float32Array | undefined,
  v: ArrayLike<number>,
  offset: number,
  cols: number,
  out: Float64Array,
) {
  for (let r = 0; r < out.length; r++) {
    let acc = b ? b[r] : 0
    const row = r * cols
    for (let k = 0; k < cols; k++) acc += W[row + k] * v[offset + k]
    out[r] = acc
  }
}

function runDirection(
  config: ModelConfig,
  w: LayerWeights,
  plan: Plan,
  x: Float32Array,
  inWidth: number,
  reverse: boolean,
  state: number, // index of this (layer, direction) in h0/hN
  out: Float32Array,
  outColumn: number,
  result: RawResult,
) {
  const { T, N, batchFirst, lengths } = plan
  const H = config.hiddenSize
  const Hout = outputSize(config)
  const outWidth = directions(config) * Hout
  const G = w.wHh.length / (H * Hout)
  const gi = new Float64Array(G * H)
  const gh = new Float64Array(G * H)
  const h = new Float64Array(Hout)
  const c = new Float64Array(H)
  const cellOut = new Float64Array(H)
  for (let n = 0; n < N; n++) {
    const len = lengths ? lengths[n] : T
    const hBase = (state * N + n) * Hout
    const cBase = (state * N + n) * H
    for (let j = 0; j < Hout; j++) h[j] = plan.h0 ? plan.h0[hBase + j] : 0
    for (let j = 0; j < H; j++) c[j] = plan.c0 ? plan.c0[cBase + j] : 0
    for (let s = 0; s < len; s++) {
      const t = reverse ? len - 1 - s : s
      const row = batchFirst ? n * T + t : t * N + n
      matVec(w.wIh, w.bIh, x, row * inWidth, inWidth, gi)
      matVec(w.wHh, w.bHh, h, 0, Hout, gh)
      switch (config.mode) {
        case 'RNN_TANH':
          for (let j = 0; j < H; j++) h[j] = Math.tanh(gi[j] + gh[j])
          break
        case 'RNN_RELU':
          for (let j = 0; j < H; j++) h[j] = Math.max(0, gi[j] + gh[j])
          break
        case 'GRU':
          for (let j = 0; j < H; j++) {
            const r = sigmoid(gi[j] + gh[j])
            const z = sigmoid(gi[H + j] + gh[H + j])
            const nn = Math.tanh(gi[2 * H + j] + r * gh[2 * H + j])
            h[j] = (1 - z) * nn + z * h[j]
          }
          break
        case 'LSTM':
          for (let j = 0; j < H; j++) {
            const i = sigmoid(gi[j] + gh[j])
            const f = sigmoid(gi[H + j] + gh[H + j])
            const g = Math.tanh(gi[2 * H + j] + gh[2 * H + j])
            const o = sigmoid(gi[3 * H + j] + gh[3 * H + j])
            c[j] = f * c[j] + i * g
            cellOut[j] = o * Math.tanh(c[j])
          }
          if (w.wHr) matVec(w.wHr, undefined, cellOut, 0, H, h)
          else h.set(cellOut)
          break
      }
      out.set(h, row * outWidth + outColumn)
    }
    result.hN.set(h, hBase)
    result.cN?.set(c, cBase)
  }
}

export function forwardJs(weights: Weights, plan: Plan): RawResult {
  const { config } = weights
  const D = directions(config)
  const Hout = outputSize(config)
  const LD = config.numLayers * D
  const result: RawResult = {
    output: new Float32Array(0),
    hN: new Float32Array(LD * plan.N * Hout),
    cN: config.mode === 'LSTM' ? new Float32Array(LD * plan.N * config.hiddenSize) : undefined,
    layers: plan.returnLayers ? [] : undefined,
  }
  let x = plan.input
  let inWidth = config.inputSize
  for (let l = 0; l < config.numLayers; l++) {
    const out = new Float32Array(plan.T * plan.N * D * Hout) // padded steps stay 0
    for (let d = 0; d < D; d++) {
      runDirection(config, weights.layers[l * D + d], plan, x, inWidth, d === 1, l * D + d, out, d * Hout, result)
    }
    result.layers?.push(out)
    x = out
    inWidth = D * Hout
  }
  // layers[L-1] and output hold the same values in separate buffers, so neither aliases the other.
  result.output = plan.returnLayers ? x.slice() : x
  if (!result.cN) delete result.cN
  if (!result.layers) delete result.layers
  return result
}

/**
 * The JS engine computes on the main thread, so forward() can only defer the work: it copies the
 * inputs at call time (the caller may reuse them at once, as with the native engine; `lengths` is
 * already a copy), and queued
 * calls run one per event-loop turn, so I/O and timers get a turn between them.
 */
export function jsEngine(weights: Weights): Engine {
  return {
    runSync: (plan) => forwardJs(weights, plan),
    run: (plan) => {
      const own: Plan = { ...plan, input: plan.input.slice() }
      if (plan.h0) own.h0 = plan.h0.slice()
      if (plan.c0) own.c0 = plan.c0.slice()
      return new Promise((resolve, reject) => {
        queue.push(() => {
          try {
            resolve(forwardJs(weights, own))
          } catch (error) {
            reject(error)
          }
        })
        if (queue.length === 1) setImmediate(drainOne)
      })
    },
    dispose: () => {},
  }
}

/** forward() calls of every JS-engine model, in call order. */
const queue: Array<() => void> = []

function drainOne(): void {
  queue[0]()
  queue.shift()
  if (queue.length > 0) setImmediate(drainOne)
}
