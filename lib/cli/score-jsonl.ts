// `birnn score` on JSONL input: one sequence per line, of any length; each batch of lines runs as
// one padded batch with per-sequence lengths, and each output line is written as it comes.

import type { Model } from '../model/model.js'
import { directions, outputSize } from '../spec.js'
import { RunError } from './errors.js'
import { type Batch, type Job, openStates, pauseEvery, type ScoreOptions, shardRange } from './job.js'
import { countSequences, JsonRows, LineReader, parseSequence } from './jsonl.js'
import { writeAll } from './npy.js'
import type { PendingOutput } from './output-file.js'
import { plural } from './text.js'

export function openJsonlJob(model: Model, options: ScoreOptions, pending: () => PendingOutput): Job {
  const { config } = model
  const N = countSequences(options.input)
  const [start, end] = shardRange(N, options.shard)
  const states = openStates(config, options, N)
  const reader = new LineReader(options.input)
  const close = () => {
    reader.close()
    states.close()
  }
  const W = directions(config) * outputSize(config)
  const I = config.inputSize
  let fd: number
  try {
    reader.skip(start)
    fd = pending().fd
  } catch (error) {
    close()
    throw error
  }
  let cursor = start
  // A batch of long lines takes seconds to parse or to print: signals get in every 50 ms.
  const pause = pauseEvery(50)
  const text = new JsonRows()
  return {
    count: end - start,
    outputShape: `${plural(end - start, 'line')} of ${options.outputKind === 'full' ? `steps × ${W}` : W} numbers`,
    async next() {
      if (cursor >= end) return undefined
      const first = cursor
      const B = Math.min(options.batchSize, end - cursor)
      cursor += B
      const sequences: Float32Array[] = []
      for (let b = 0; b < B; b++) {
        const line = reader.next()
        if (line === undefined)
          throw new RunError(
            `input ${options.input}: ended at line ${reader.lineNumber}, expected ${N} lines (was it changed while being read?)`,
          )
        sequences.push(parseSequence(line, `input ${options.input} line ${reader.lineNumber}`, I))
        await pause()
      }
      const lengths = sequences.map((s) => s.length / I)
      const T = Math.max(...lengths)
      // Batch-first, padded with zeros past each sequence's length (the model never reads them).
      const data = new Float32Array(B * T * I)
      for (const [b, s] of sequences.entries()) data.set(s, b * T * I)
      const input = { data, shape: [B, T, I] }
      return { first, count: B, T, input, lengths, ...states.slice(first, B) } satisfies Batch
    },
    async write(batch, output) {
      const { T } = batch
      const lengths = batch.lengths!
      if (options.outputKind === 'full') {
        // A line at a time: a batch of long sequences' text would take hundreds of MB at once.
        for (let b = 0; b < batch.count; b++) {
          text.text('[')
          for (let t = 0; t < lengths[b]; t++) {
            if (t > 0) text.text(',')
            text.row(output.data.subarray((b * T + t) * W, (b * T + t + 1) * W))
          }
          text.text(']\n')
          writeAll(fd, text.take(), null)
          await pause()
        }
      } else {
        for (let b = 0; b < batch.count; b++) {
          text.row(output.data.subarray(b * W, (b + 1) * W))
          text.text('\n')
        }
        writeAll(fd, text.take(), null)
      }
    },
    close,
  }
}
