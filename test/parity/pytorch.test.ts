// Every PyTorch fixture, on the JS engine and on every native SIMD path this CPU has:
// outputs, final states and each layer's output within 1e-5 of PyTorch's float32 results.
import { describe, expect, it } from 'vitest'
import { load } from '../../lib/index.js'
import { cases, engines, maxAbsDiff, modelPath, readIo } from '../helpers.js'

const TOLERANCE = 1e-5

describe.each(engines())('PyTorch fixtures on $label', ({ options }) => {
  it.each(cases)('$name', async (c) => {
    const model = await load(modelPath(c), { ...c.options, ...options })
    expect(model.config).toEqual(c.config)
    const io = readIo(c)
    const inputBefore = io.input.data.slice()
    const result = model.forwardSync(io.input, { ...io.options, returnLayers: true })

    expect(result.output.shape).toEqual(io.output.shape)
    expect(maxAbsDiff(result.output.data, io.output.data)).toBeLessThanOrEqual(TOLERANCE)
    expect(result.hN.shape).toEqual(io.hN.shape)
    expect(maxAbsDiff(result.hN.data, io.hN.data)).toBeLessThanOrEqual(TOLERANCE)
    if (c.config.mode === 'LSTM') {
      expect(result.cN?.shape).toEqual(io.cN.shape)
      expect(maxAbsDiff(result.cN!.data, io.cN.data)).toBeLessThanOrEqual(TOLERANCE)
    } else {
      expect(result.cN).toBeUndefined()
    }
    expect(result.layers).toHaveLength(c.config.numLayers)
    result.layers!.forEach((layer, l) => {
      expect(layer.shape).toEqual(io.layers[l].shape)
      expect(maxAbsDiff(layer.data, io.layers[l].data)).toBeLessThanOrEqual(TOLERANCE)
    })
    // The caller's input is never modified (padded steps hold NaN in the packed fixtures).
    expect(Buffer.from(io.input.data.buffer).equals(Buffer.from(inputBefore.buffer))).toBe(true)

    // forward() gives bit for bit what forwardSync() gives, with and without returnLayers.
    const asyncResult = await model.forward(io.input, io.options)
    expect(asyncResult.output).toEqual(result.output)
    expect(asyncResult.hN).toEqual(result.hN)
    expect(asyncResult.cN).toEqual(result.cN)
    expect(asyncResult.layers).toBeUndefined()
    model.dispose()
  })
})
