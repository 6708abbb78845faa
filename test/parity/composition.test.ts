// The report behind birnn: nn.RNN(25, 50, 4, batch_first=True, bidirectional=True) rebuilt from
// single-layer, single-direction RNNs. Composed the right way (the backward direction's outputs
// flipped back into time order before the concatenation) it equals the stacked model and
// PyTorch; composed the report's way (concatenating the still-reversed backward outputs) it
// matches in layer 1 and goes wrong from layer 2 on.
import { describe, expect, it } from 'vitest'
import { fromStateDict, load } from '../../lib/index.js'
import type { Tensor } from '../../lib/types.js'
import { fixture, maxAbsDiff, modelPath, readIo, readTensors } from '../helpers.js'

const report = fixture('report_rnn_25_50_4_bi')
const [N, H] = [15, 50]

/** Reverses the time axis of a batch-first (N, T, F) tensor. */
function flipTime(x: Tensor): Tensor {
  const [n, t, f] = x.shape
  const data = new Float32Array(x.data.length)
  for (let b = 0; b < n; b++) {
    for (let s = 0; s < t; s++)
      data.set(x.data.subarray((b * t + s) * f, (b * t + s + 1) * f), (b * t + (t - 1 - s)) * f)
  }
  return { data, shape: [n, t, f] }
}

/** Concatenates two (N, T, F) tensors along the feature axis: [fwd | bwd] at every step. */
function concatFeatures(a: Tensor, b: Tensor): Tensor {
  const [n, t, f] = a.shape
  const data = new Float32Array(n * t * 2 * f)
  for (let r = 0; r < n * t; r++) {
    data.set(a.data.subarray(r * f, (r + 1) * f), r * 2 * f)
    data.set(b.data.subarray(r * f, (r + 1) * f), r * 2 * f + f)
  }
  return { data, shape: [n, t, 2 * f] }
}

/** h0 slice for one (layer, direction) of the stacked (8, N, H) h0, as a (1, N, H) tensor. */
const stateOf = (h0: Tensor, index: number): Tensor => ({
  data: h0.data.slice(index * N * H, (index + 1) * N * H),
  shape: [1, N, H],
})

describe('a stacked bidirectional RNN equals its single-layer, single-direction parts', async () => {
  const weights = readTensors(modelPath(report))
  const io = readIo(report)
  const h0 = io.options.h0!
  const stacked = await load(modelPath(report), { batchFirst: true, backend: 'js' })
  const expected = stacked.forwardSync(io.input, { h0, returnLayers: true })

  // Layer l, direction d of the stack as its own nn.RNN(in, 50, 1, batch_first=True): the same
  // tensors, renamed to the names a one-layer module uses.
  const part = (l: number, d: number) => {
    const suffix = `_l${l}${d ? '_reverse' : ''}`
    const tensors = Object.fromEntries(
      ['weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'].map((k) => [`${k}_l0`, weights[`${k}${suffix}`]]),
    )
    return fromStateDict(tensors, { batchFirst: true, backend: 'js' })
  }

  const compose = (flipBack: boolean) => {
    let x = io.input
    const layers: Tensor[] = []
    for (let l = 0; l < 4; l++) {
      const forward = part(l, 0).forwardSync(x, { h0: stateOf(h0, 2 * l) }).output
      // The backward direction reads the sequence from its last step; its h0 enters there.
      const reversed = part(l, 1).forwardSync(flipTime(x), { h0: stateOf(h0, 2 * l + 1) }).output
      x = concatFeatures(forward, flipBack ? flipTime(reversed) : reversed)
      layers.push(x)
    }
    return layers
  }

  it('the parts carry the shapes of the report: weight_ih of layers 1-3 has 2*hidden columns', () => {
    expect(stacked.config).toMatchObject({
      mode: 'RNN_TANH',
      inputSize: 25,
      hiddenSize: H,
      numLayers: 4,
      bidirectional: true,
    })
    expect(weights.weight_ih_l0.shape).toEqual([H, 25])
    for (const l of [1, 2, 3]) {
      expect(weights[`weight_ih_l${l}`].shape).toEqual([H, 2 * H])
      expect(weights[`weight_ih_l${l}_reverse`].shape).toEqual([H, 2 * H])
    }
    expect(h0.shape).toEqual([8, N, H])
  })

  it('composed with the backward outputs flipped back into time order, every layer equals the stack and PyTorch', () => {
    const layers = compose(true)
    layers.forEach((layer, l) => {
      expect(maxAbsDiff(layer.data, expected.layers![l].data)).toBeLessThanOrEqual(1e-6)
      expect(maxAbsDiff(layer.data, io.layers[l].data)).toBeLessThanOrEqual(1e-5)
    })
    expect(maxAbsDiff(layers[3].data, io.output.data)).toBeLessThanOrEqual(1e-5)
  })

  it("composed the report's way, layer 1 matches in its forward half only and layer 2 differs", () => {
    const layers = compose(false)
    const half = (x: Tensor, d: number) => {
      const out = new Float32Array(x.data.length / 2)
      for (let r = 0; r < out.length / H; r++)
        out.set(x.data.subarray(r * 2 * H + d * H, r * 2 * H + (d + 1) * H), r * H)
      return out
    }
    // Layer 1's outputs hold the right values, the backward half at mirrored time steps.
    expect(maxAbsDiff(half(layers[0], 0), half(expected.layers![0], 0))).toBe(0)
    expect(maxAbsDiff(half(flipTime(layers[0]), 1), half(expected.layers![0], 1))).toBeLessThanOrEqual(1e-6)
    // Layer 2 reads them at the wrong time steps, and from there on nothing matches.
    expect(maxAbsDiff(layers[1].data, expected.layers![1].data)).toBeGreaterThan(1e-2)
    expect(maxAbsDiff(layers[3].data, io.output.data)).toBeGreaterThan(1e-2)
  })
})
