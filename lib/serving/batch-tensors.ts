// Joining the batcher's requests into one forward call, and splitting its result: the tensor
// layout of a batch (batcher.ts decides which requests go together, and when).
//
// The batch is batch-first (N, T, F) whatever the model's layout, so that a sequence is one
// block of it: with row offset o in the batch and T its steps, sequence n of a request is T_r·F
// values at row (o + n)·T. A request has the model's layout: batch-first, or unbatched (one
// sequence), is one block per sequence; time-major with N_r > 1 sequences is one block of F
// values per step and sequence (a time-major batch would need that for every request: one copy
// per step, most of the batcher's own time on a small model). The states (LD, N_r, F) are one
// block of N_r·F per layer and direction, at ld·N + o.

import type { Plan } from '../engines/engine.js'
import { shapeResult } from '../model/forward-args.js'
import { meanOutput } from '../model/pooling.js'
import { directions, outputSize } from '../spec.js'
import type { ForwardOptions, ForwardResult, ModelConfig, Tensor } from '../types.js'

interface Slot {
  /** First sequence of the request in the batch. */
  offset: number
  T: number
  N: number
}

function slots(plans: Plan[]): { slots: Slot[]; T: number; N: number } {
  let N = 0
  let T = 0
  const out = plans.map((plan) => {
    const slot = { offset: N, T: plan.T, N: plan.N }
    N += plan.N
    T = Math.max(T, plan.T)
    return slot
  })
  return { slots: out, T, N }
}

/** Copies a request's sequence tensor (F values per step) into the batch's, or back (toBatch false). */
function moveSequence(
  requestBatchFirst: boolean,
  F: number,
  slot: Slot,
  T: number,
  request: Float32Array,
  batchData: Float32Array,
  toBatch: boolean,
): void {
  const move = (at: number, from: number, size: number) => {
    if (toBatch) batchData.set(request.subarray(from, from + size), at)
    else request.set(batchData.subarray(at, at + size), from)
  }
  if (requestBatchFirst || slot.N === 1) {
    const size = slot.T * F
    for (let n = 0; n < slot.N; n++) move((slot.offset + n) * T * F, n * size, size)
    return
  }
  for (let n = 0; n < slot.N; n++) {
    for (let t = 0; t < slot.T; t++) move(((slot.offset + n) * T + t) * F, (t * slot.N + n) * F, F)
  }
}

/** Copies a request's state (LD, N_r, F) into the batch's (LD, N, F), or back. */
function moveState(
  LD: number,
  F: number,
  slot: Slot,
  N: number,
  request: Float32Array,
  batchData: Float32Array,
  toBatch: boolean,
): void {
  const size = slot.N * F
  for (let ld = 0; ld < LD; ld++) {
    const at = (ld * N + slot.offset) * F
    if (toBatch) batchData.set(request.subarray(ld * size, (ld + 1) * size), at)
    else request.set(batchData.subarray(at, at + size), ld * size)
  }
}

/**
 * The requests' checked plans as one batch-first forward call, its input in `memory(n)`'s n floats:
 * any values, as every one that is not a request's is zeroed here (the batcher reuses one array,
 * since every engine takes its input at call time).
 */
export function join(
  config: Readonly<ModelConfig>,
  plans: Plan[],
  memory: (floats: number) => Float32Array,
): { input: Tensor; options: ForwardOptions } {
  const { slots: at, T, N } = slots(plans)
  const I = config.inputSize
  const LD = config.numLayers * directions(config)
  const Hout = outputSize(config)
  const H = config.hiddenSize
  const input = memory(T * N * I)
  const lengths = new Int32Array(N)
  let padded = false
  const anyH0 = plans.some((plan) => plan.h0)
  const anyC0 = plans.some((plan) => plan.c0)
  // A request without h0 or c0 gets zeros: exactly the default.
  const h0 = anyH0 ? new Float32Array(LD * N * Hout) : undefined
  const c0 = anyC0 ? new Float32Array(LD * N * H) : undefined
  let returnLayers = false
  plans.forEach((plan, r) => {
    const slot = at[r]
    moveSequence(plan.batchFirst, I, slot, T, plan.input, input, true)
    for (let n = 0; n < slot.N; n++) {
      input.fill(0, ((slot.offset + n) * T + slot.T) * I, (slot.offset + n + 1) * T * I) // its padding
      const length = plan.lengths ? plan.lengths[n] : plan.T
      lengths[slot.offset + n] = length
      if (length !== T) padded = true
    }
    if (plan.h0) moveState(LD, Hout, slot, N, plan.h0, h0!, true)
    if (plan.c0) moveState(LD, H, slot, N, plan.c0, c0!, true)
    if (plan.returnLayers) returnLayers = true
  })
  const options: ForwardOptions = {}
  if (padded) options.lengths = lengths
  if (h0) options.h0 = { data: h0, shape: [LD, N, Hout] }
  if (c0) options.c0 = { data: c0, shape: [LD, N, H] }
  if (returnLayers) options.returnLayers = true
  // The full output only where a request reads it ('last' rows come from the final states).
  if (plans.every((plan) => plan.output === 'last')) options.output = 'last'
  return { input: { data: input, shape: [N, T, I] }, options }
}

/** The batch's result, as each request's forward() result. */
export function split(config: Readonly<ModelConfig>, plans: Plan[], result: ForwardResult): ForwardResult[] {
  const { slots: at, T, N } = slots(plans)
  const LD = config.numLayers * directions(config)
  const Hout = outputSize(config)
  const H = config.hiddenSize
  const W = directions(config) * Hout
  return plans.map((plan, r) => {
    const slot = at[r]
    const sequence = (data: Float32Array) => {
      const out = new Float32Array(slot.T * slot.N * W)
      moveSequence(plan.batchFirst, W, slot, T, out, data, false)
      return out
    }
    const state = (data: Float32Array, F: number) => {
      const out = new Float32Array(LD * slot.N * F)
      moveState(LD, F, slot, N, out, data, false)
      return out
    }
    // A request's rows of the batch's output: its sequences, each of the batch's T steps.
    const mean = () => {
      const rows = result.output.data.subarray(slot.offset * T * W, (slot.offset + slot.N) * T * W)
      const lengths = plan.lengths ?? new Int32Array(slot.N).fill(slot.T)
      return meanOutput(rows, { B: slot.N, T, W, batchFirst: true }, lengths)
    }
    return shapeResult(
      config,
      plan,
      {
        ...(plan.output === 'full' ? { output: sequence(result.output.data) } : {}),
        hN: state(result.hN.data, Hout),
        ...(result.cN ? { cN: state(result.cN.data, H) } : {}),
        ...(plan.returnLayers && result.layers ? { layers: result.layers.map((layer) => sequence(layer.data)) } : {}),
      },
      plan.output === 'mean' ? mean() : undefined,
    )
  })
}
