// forward() takes its inputs when it is called, on every engine: the caller may change or
// transfer input, h0, c0 and lengths right after the call without changing the result.
import { describe, expect, it } from 'vitest'
import { fromStateDict } from '../../lib/index.js'
import type { Tensor } from '../../lib/types.js'
import { engines, randomStateDict, rng } from '../helpers.js'

describe.each(engines())('inputs are taken at call time on $label', ({ options }) => {
  const r = rng(11)
  const tensors = randomStateDict(r, { mode: 'LSTM', I: 6, H: 8, L: 2, D: 2, bias: true })
  const T = 7
  const N = 3
  const inputs = () => {
    const input: Tensor = { data: r.floats(T * N * 6), shape: [T, N, 6] }
    const h0: Tensor = { data: r.floats(4 * N * 8), shape: [4, N, 8] }
    const c0: Tensor = { data: r.floats(4 * N * 8), shape: [4, N, 8] }
    return { input, h0, c0, lengths: new Int32Array([7, 2, 5]) }
  }

  it.each(['mutated', 'transferred'])('every input %s right after forward()', async (how) => {
    const model = fromStateDict(tensors, options)
    const { input, h0, c0, lengths } = inputs()
    const expected = model.forwardSync(input, { h0, c0, lengths })
    const pending = model.forward(input, { h0, c0, lengths })
    for (const array of [input.data, h0.data, c0.data, lengths]) {
      if (how === 'mutated') array.fill(3)
      else structuredClone(array.buffer, { transfer: [array.buffer] })
    }
    const result = await pending
    expect(result.output.data).toEqual(expected.output.data)
    expect(result.hN.data).toEqual(expected.hN.data)
    expect(result.cN!.data).toEqual(expected.cN!.data)
  })
})
