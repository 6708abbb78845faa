// --output-kind last and mean: one row per sequence from a batch's full output.

/** Reduces a batch's output (layout given by batchFirst) to one row of W values per sequence. */
export function reduceOutput(
  output: Float32Array,
  kind: 'last' | 'mean',
  shape: { B: number; T: number; W: number; D: number; batchFirst: boolean },
  lengths: ArrayLike<number> | undefined,
): Float32Array {
  const { B, T, W, D, batchFirst } = shape
  const at = (b: number, t: number) => (batchFirst ? b * T + t : t * B + b) * W
  const rows = new Float32Array(B * W)
  const sum = new Float64Array(W)
  for (let b = 0; b < B; b++) {
    const length = lengths ? lengths[b] : T
    const row = rows.subarray(b * W, (b + 1) * W)
    if (kind === 'last') {
      // Forward direction at the last valid step; backward direction at step 0, its final state.
      const half = W / D
      row.set(output.subarray(at(b, length - 1), at(b, length - 1) + half))
      if (D === 2) row.set(output.subarray(at(b, 0) + half, at(b, 0) + W), half)
    } else {
      sum.fill(0)
      for (let t = 0; t < length; t++) {
        const base = at(b, t)
        for (let w = 0; w < W; w++) sum[w] += output[base + w]
      }
      for (let w = 0; w < W; w++) row[w] = sum[w] / length
    }
  }
  return rows
}
