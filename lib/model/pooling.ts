// The forward option `output` 'last' and 'mean' (OutputKind): one row of W = D*Hout values per
// sequence, in place of the full output.

import type { OutputKind } from '../types.js'

/** The option's values (also `birnn score --output-kind` and `birnn serve`'s `?output=`). */
export const OUTPUT_KINDS = ['full', 'last', 'mean'] as const satisfies readonly OutputKind[]

/**
 * 'last': the final hidden states of the last layer, the directions side by side. They are the
 * full output's values at the forward direction's last valid step and at the backward one's step
 * 0: the kernels write each step's state to the output and the last one to hN, the same floats.
 */
export function lastOutput(hN: Float32Array, shape: { L: number; D: number; N: number; Hout: number }): Float32Array {
  const { L, D, N, Hout } = shape
  const rows = new Float32Array(N * D * Hout)
  for (let n = 0; n < N; n++) {
    for (let d = 0; d < D; d++) {
      const at = (((L - 1) * D + d) * N + n) * Hout
      rows.set(hN.subarray(at, at + Hout), (n * D + d) * Hout)
    }
  }
  return rows
}

/**
 * 'mean': each sequence's mean over its valid steps, summed in float64 in step order, of the
 * output of `B` sequences of T steps (layout given by batchFirst).
 */
export function meanOutput(
  output: Float32Array,
  shape: { B: number; T: number; W: number; batchFirst: boolean },
  lengths: ArrayLike<number> | undefined,
): Float32Array {
  const { B, T, W, batchFirst } = shape
  const at = (b: number, t: number) => (batchFirst ? b * T + t : t * B + b) * W
  const rows = new Float32Array(B * W)
  const sum = new Float64Array(W)
  for (let b = 0; b < B; b++) {
    const length = lengths ? lengths[b] : T
    sum.fill(0)
    for (let t = 0; t < length; t++) {
      const base = at(b, t)
      for (let w = 0; w < W; w++) sum[w] += output[base + w]
    }
    for (let w = 0; w < W; w++) rows[b * W + w] = sum[w] / length
  }
  return rows
}
