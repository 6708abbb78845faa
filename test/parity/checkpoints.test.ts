// Every torch.save checkpoint and ONNX export of test/fixtures/checkpoints (generate_checkpoints.py),
// on the JS engine and on every native SIMD path: loaded from the path and from the bytes, the
// outputs and final states are within 1e-5 of PyTorch's own.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { load } from '../../lib/index.js'
import type { ForwardOptions, LoadOptions, ModelConfig } from '../../lib/types.js'
import { engines, fixturesDir, maxAbsDiff, readTensors } from '../helpers.js'

const TOLERANCE = 1e-5
const dir = join(fixturesDir, 'checkpoints')

export interface CheckpointCase {
  name: string
  file: string
  io?: string
  options?: LoadOptions
  config?: ModelConfig
  forward?: { h0: boolean; c0: boolean }
  refused?: boolean
  note: string
}

export const checkpointCases: CheckpointCase[] = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))
const loadable = checkpointCases.filter((c) => !c.refused)

describe('the checkpoint fixtures', () => {
  it('cover every mode as .pt and as ONNX, and the refusals', () => {
    for (const kind of ['.pt', '.onnx']) {
      const modes = new Set(loadable.filter((c) => c.file.endsWith(kind)).map((c) => c.config!.mode))
      expect([...modes].sort(), kind).toEqual(['GRU', 'LSTM', 'RNN_RELU', 'RNN_TANH'])
    }
    expect(checkpointCases.filter((c) => c.refused).length).toBeGreaterThanOrEqual(6)
  })
})

describe.each(engines())('checkpoints and ONNX exports on $label', ({ options }) => {
  it.each(loadable)('$name', async (c) => {
    const path = join(dir, c.file)
    const io = readTensors(join(dir, c.io!))
    const forward: ForwardOptions = {}
    if (io.h0) forward.h0 = io.h0
    if (io.c0) forward.c0 = io.c0
    for (const source of [path, readFileSync(path)]) {
      const model = await load(source, { ...c.options, ...options })
      expect(model.config).toEqual(c.config)
      const result = model.forwardSync(io.input, forward)
      expect(result.output.shape).toEqual(io.output.shape)
      expect(maxAbsDiff(result.output.data, io.output.data)).toBeLessThanOrEqual(TOLERANCE)
      expect(maxAbsDiff(result.hN.data, io.hN.data)).toBeLessThanOrEqual(TOLERANCE)
      if (c.config!.mode === 'LSTM') expect(maxAbsDiff(result.cN!.data, io.cN.data)).toBeLessThanOrEqual(TOLERANCE)
      model.dispose()
    }
  })
})
