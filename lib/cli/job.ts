// What `score` runs, whatever the input kind: batches of sequences in, their outputs out, and the
// pieces both kinds share (the shard's range, the initial states sliced per batch).

import { setImmediate } from 'node:timers/promises'
import { directions, outputSize } from '../spec.js'
import type { ModelConfig, OutputKind, Tensor } from '../types.js'
import { RunError, requireFile } from './errors.js'
import { formatNpyShape, NpyReader } from './npy.js'
import type { ModelOptions, Shard } from './options.js'

/** `birnn score`'s options, as commander parses them. */
export interface ScoreOptions extends ModelOptions {
  input: string
  output: string
  outputKind: OutputKind
  batchFirst?: boolean
  batchSize: number
  lengths?: string
  h0?: string
  c0?: string
  shard?: Shard
  json?: boolean
  quiet?: boolean
  preview?: boolean
}

/** One batch of sequences: the model's input and forward options, and where it sits in the input. */
export interface Batch {
  /** Index of its first sequence in the whole input (not the shard). */
  first: number
  count: number
  /** Steps of the batch tensor (the longest sequence, for JSONL). */
  T: number
  input: Tensor
  lengths?: number[]
  h0?: Tensor
  c0?: Tensor
}

/** One kind of input file, read batch by batch, and its output, written batch by batch. */
export interface Job {
  /** Sequences this run scores (the shard's). */
  count: number
  /** Output shape, for the summary. */
  outputShape: string
  /** Async so that a long parse or format lets the event loop turn (pauseEvery). */
  next(): Promise<Batch | undefined>
  write(batch: Batch, output: Tensor): Promise<void>
  close(): void
}

/**
 * A check to await inside a long synchronous loop: once `ms` of work have passed since the last
 * turn, it lets the event loop turn (setImmediate), so that a signal stops the run within that
 * time (Ctrl-C, SIGTERM) and a progress bar moves; otherwise it costs nothing.
 */
export function pauseEvery(ms: number): () => Promise<void> | undefined {
  let last = performance.now()
  return () => {
    const now = performance.now()
    if (now - last < ms) return undefined
    last = now
    return setImmediate()
  }
}

/** The part [start, end) of `total` sequences that shard i/n scores: equal parts, in order. */
export function shardRange(total: number, shard: Shard | undefined): [number, number] {
  if (!shard) return [0, total]
  return [Math.floor((shard.index * total) / shard.count), Math.floor(((shard.index + 1) * total) / shard.count)]
}

/** Reads --h0/--c0: a float array (numLayers*D, N, size). */
function openState(path: string, name: string, expected: number[]): NpyReader {
  requireFile(path, name)
  const reader = new NpyReader(path)
  const { shape } = reader
  if (shape.length !== 3 || shape.some((d, i) => d !== expected[i])) {
    reader.close()
    throw new RunError(
      `${name} ${path}: expected shape ${formatNpyShape(expected)} (numLayers*D, N, ${name === '--c0' ? 'hiddenSize' : 'Hout'}), received ${formatNpyShape(shape)}`,
    )
  }
  return reader
}

export interface InitialStates {
  /** The states of sequences [first, first + count), for a batch. */
  slice(first: number, count: number): Pick<Batch, 'h0' | 'c0'>
  close(): void
}

/** --h0 and --c0 for an input of N sequences, whose slices follow the sequences of each batch. */
export function openStates(config: ModelConfig, paths: { h0?: string; c0?: string }, N: number): InitialStates {
  if (paths.c0 && config.mode !== 'LSTM')
    throw new RunError(`--c0: only an LSTM has a cell state, but the model is ${config.mode}`)
  const LD = config.numLayers * directions(config)
  const sizes = { h0: outputSize(config), c0: config.hiddenSize }
  const readers: Array<['h0' | 'c0', NpyReader]> = []
  const close = () => {
    for (const [, reader] of readers) reader.close()
  }
  try {
    for (const name of ['h0', 'c0'] as const) {
      const path = paths[name]
      if (path) readers.push([name, openState(path, `--${name}`, [LD, N, sizes[name]])])
    }
  } catch (error) {
    close()
    throw error
  }
  return {
    slice(first, count) {
      const states: Pick<Batch, 'h0' | 'c0'> = {}
      for (const [name, reader] of readers) {
        states[name] = { data: reader.readFloat32(1, first, count), shape: [LD, count, sizes[name]] }
      }
      return states
    },
    close,
  }
}
