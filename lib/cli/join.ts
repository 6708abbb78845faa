// birnn join: the .npy parts of a sharded run, concatenated along the batch axis in bounded memory.

import { setImmediate } from 'node:timers/promises'
import { RunError, requireFile } from './errors.js'
import { FLOAT_DTYPES, formatNpyShape, NpyReader, NpyWriter, npyDtypeName } from './npy.js'
import { checkOutput, onInterrupt, PendingOutput } from './output-file.js'
import { plural } from './text.js'

/** Bytes read and written at a time, so that parts of any size join in bounded memory. */
const SLAB_BYTES = 64 << 20

interface JoinOptions {
  batchFirst?: boolean
  force?: boolean
  quiet?: boolean
}

export async function join(output: string, parts: string[], options: JoinOptions): Promise<void> {
  checkOutput(
    'output',
    output,
    parts.map((path) => ({ label: 'the part', path })),
    { replace: options.force === true, hint: ' (the output comes first: birnn join OUT.npy PART.npy…)' },
  )
  // Each part is open only while it is read (its header now, its data in its turn): a thousand
  // shards join under a default limit of 1024 open files.
  const shapes: Array<readonly number[]> = []
  let pending: PendingOutput | undefined
  const stopSignals = onInterrupt(() => pending?.discard())
  try {
    for (const part of parts) {
      requireFile(part, 'part')
      const reader = openPart(part)
      reader.close()
      if (!FLOAT_DTYPES.includes(reader.dtype))
        throw new RunError(`part ${part}: expected a float array, received ${npyDtypeName(reader.dtype)}`)
      shapes.push(reader.shape)
    }
    const first = shapes[0]
    if (first.length !== 2 && first.length !== 3) {
      throw new RunError(
        `part ${parts[0]}: shape ${formatNpyShape(first)} is not an output of birnn score; expected (N, W), (T, N, W) or with --batch-first (N, T, W)`,
      )
    }
    // (T, N, W) joins along N, axis 1; (N, T, W) with --batch-first and (N, W) along axis 0.
    const axis: 0 | 1 = first.length === 3 && !options.batchFirst ? 1 : 0
    for (const [k, shape] of shapes.entries()) {
      if (shape.length !== first.length || shape.some((d, i) => i !== axis && d !== first[i])) {
        throw new RunError(
          `part ${parts[k]}: shape ${formatNpyShape(shape)} does not join with ${formatNpyShape(first)} along axis ${axis}`,
        )
      }
    }
    const total = shapes.reduce((n, shape) => n + shape[axis], 0)
    const shape = first.map((d, i) => (i === axis ? total : d))
    pending = new PendingOutput(output)
    const writer = new NpyWriter(pending.fd, shape)
    let at = 0
    for (const [k, part] of parts.entries()) {
      const reader = openPart(part)
      try {
        if (formatNpyShape(reader.shape) !== formatNpyShape(shapes[k])) {
          throw new RunError(
            `part ${part}: changed while being joined (shape ${formatNpyShape(reader.shape)}, was ${formatNpyShape(shapes[k])})`,
          )
        }
        const perIndex = (reader.shape.reduce((a, b) => a * b, 1) / Math.max(1, reader.shape[axis])) * 4
        const step = Math.max(1, Math.floor(SLAB_BYTES / Math.max(1, perIndex)))
        for (let i = 0; i < reader.shape[axis]; i += step) {
          const count = Math.min(step, reader.shape[axis] - i)
          writer.write(axis, at + i, reader.readFloat32(axis, i, count))
          await setImmediate() // let a signal in between slabs
        }
      } finally {
        reader.close()
      }
      at += reader.shape[axis]
    }
    pending.commit()
    if (!options.quiet) {
      process.stdout.write(
        `birnn: joined ${plural(parts.length, 'part')} into ${output}: float32 ${formatNpyShape(shape)}\n`,
      )
    }
  } catch (error) {
    throw pending ? pending.abandon(error) : error
  } finally {
    stopSignals()
  }
}

/** A part's reader, its errors named as the part's. */
function openPart(part: string): NpyReader {
  try {
    return new NpyReader(part)
  } catch (error) {
    if (error instanceof RunError && error.message.startsWith(`${part}:`)) throw new RunError(`part ${error.message}`)
    throw error
  }
}
