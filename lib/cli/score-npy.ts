// `birnn score` on .npy input: a 3-D float array, time-major or batch-first, read slab by slab; the
// output is a float32 .npy whose batch slabs are written where they belong.

import type { Model } from '../model/model.js'
import { directions, outputSize } from '../spec.js'
import { RunError, requireFile } from './errors.js'
import { type Batch, type InitialStates, type Job, openStates, type ScoreOptions, shardRange } from './job.js'
import { formatNpyShape, NpyReader, NpyWriter, npyDtypeName } from './npy.js'
import type { PendingOutput } from './output-file.js'

function openLengths(path: string, N: number): NpyReader {
  requireFile(path, '--lengths')
  const reader = new NpyReader(path)
  const { shape, dtype } = reader
  const problem =
    shape.length !== 1 || shape[0] !== N
      ? `expected shape (${N},), one length per sequence, received ${formatNpyShape(shape)}`
      : dtype !== '<i4' && dtype !== '<i8'
        ? `expected int32 or int64, received ${npyDtypeName(dtype)}`
        : undefined
  if (problem) {
    reader.close()
    throw new RunError(`--lengths ${path}: ${problem}`)
  }
  return reader
}

export function openNpyJob(model: Model, options: ScoreOptions, pending: () => PendingOutput): Job {
  const { config } = model
  const reader = new NpyReader(options.input)
  let lengths: NpyReader | undefined
  let states: InitialStates | undefined
  const close = () => {
    reader.close()
    lengths?.close()
    states?.close()
  }
  try {
    const { shape } = reader
    const { batchFirst } = model.config
    const layout = batchFirst ? '(N, T, inputSize)' : '(T, N, inputSize)'
    if (shape.length !== 3) {
      throw new RunError(
        `input ${options.input}: expected a 3-D array ${layout}, received shape ${formatNpyShape(shape)}`,
      )
    }
    if (shape[2] !== config.inputSize) {
      throw new RunError(
        `input ${options.input}: its last dimension is ${shape[2]} (shape ${formatNpyShape(shape)}) but the model's inputSize is ${config.inputSize}`,
      )
    }
    const nAxis = batchFirst ? 0 : 1
    const N = shape[nAxis]
    const T = shape[1 - nAxis]
    if (T === 0) throw new RunError(`input ${options.input}: shape ${formatNpyShape(shape)} has no time steps`)
    const [start, end] = shardRange(N, options.shard)
    if (options.lengths) lengths = openLengths(options.lengths, N)
    states = openStates(config, options, N)

    const W = directions(config) * outputSize(config)
    const count = end - start
    const outShape = options.outputKind === 'full' ? (batchFirst ? [count, T, W] : [T, count, W]) : [count, W]
    const writer = new NpyWriter(pending().fd, outShape)
    let cursor = start
    return {
      count,
      outputShape: `float32 ${formatNpyShape(outShape)}`,
      async next() {
        if (cursor >= end) return undefined
        const first = cursor
        const B = Math.min(options.batchSize, end - cursor)
        cursor += B
        const data = reader.readFloat32(nAxis, first, B)
        const input = { data, shape: batchFirst ? [B, T, config.inputSize] : [T, B, config.inputSize] }
        const batch: Batch = { first, count: B, T, input, ...states!.slice(first, B) }
        if (lengths) {
          batch.lengths = lengths.readIntegers(0, first, B)
          batch.lengths.forEach((length, b) => {
            if (!Number.isInteger(length) || length < 1 || length > T) {
              throw new RunError(
                `--lengths ${options.lengths}: entry ${first + b} is ${length}; expected a length in [1, ${T}] (T)`,
              )
            }
          })
        }
        return batch
      },
      async write(batch, output) {
        const at = batch.first - start
        // Full outputs along the batch's axis; rows per sequence ('last', 'mean') along axis 0.
        writer.write(options.outputKind === 'full' ? nAxis : 0, at, output.data)
      },
      close,
    }
  } catch (error) {
    close()
    throw error
  }
}
