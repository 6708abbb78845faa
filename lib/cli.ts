#!/usr/bin/env node
// The `birnn` command: info, score, bench (and join, for the parts of a sharded run).
// See docs/cli.md. Exit codes: 0 done; 1 the run failed (a file is missing or invalid, the input
// does not fit the model, an I/O error); 2 the command line is wrong; 130/143 interrupted by
// SIGINT/SIGTERM (the partial output is removed).
//
// score streams: it reads one batch of sequences, hands it to the model and, while the model
// computes, reads the next one and writes the previous result. Memory is bounded by the batch
// size, whatever the file size. Output goes to a temporary file in the output's folder that is
// renamed over the output only when every sequence is written.

import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
} from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import cliProgress from 'cli-progress'
import { Command, type CommanderError, InvalidArgumentError, Option } from 'commander'
import { load, type Model } from './index.js'
import { countLines, formatRow, JsonlError, LineReader, parseSequence } from './jsonl.js'
import { formatNpyShape, isNpy, NpyReader, NpyWriter, npyDtypeName, writeAll } from './npy.js'
import { parseSafetensors } from './safetensors.js'
import type { ForwardOptions, LoadOptions, ModelConfig, Tensor } from './types.js'

const EXIT_FAILED = 1
const EXIT_USAGE = 2

/** The command line is wrong (exit 2); the message is printed alone. */
class UsageError extends Error {
  override name = 'UsageError'
}

/** The run cannot go on (exit 1); the message is printed alone. */
class RunError extends Error {
  override name = 'RunError'
}

// ---------------------------------------------------------------------------------------------
// Option values
// ---------------------------------------------------------------------------------------------

function positiveInteger(value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError('expected a positive integer.')
  return n
}

function positiveNumber(value: string): number {
  const n = Number(value)
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError('expected a positive number.')
  return n
}

function integerList(value: string): number[] {
  const parts = value.split(',').map((part) => part.trim())
  if (!parts.every((part) => /^\d+$/.test(part) && Number(part) > 0)) {
    throw new InvalidArgumentError('expected positive integers separated by commas, e.g. 1,16,128.')
  }
  return parts.map(Number)
}

export interface Shard {
  index: number
  count: number
}

/** `i/n`, 0-based: 0/4 … 3/4 are the four parts. */
export function parseShard(value: string): Shard {
  const match = /^(\d+)\/(\d+)$/.exec(value.trim())
  const index = match ? Number(match[1]) : Number.NaN
  const count = match ? Number(match[2]) : Number.NaN
  if (!match || !(count >= 1) || !(index < count)) {
    throw new InvalidArgumentError(`expected i/n with 0 ≤ i < n, 0-based (the parts of 4 are 0/4, 1/4, 2/4 and 3/4).`)
  }
  return { index, count }
}

/** The part [start, end) of `total` sequences that shard i/n scores: equal parts, in order. */
export function shardRange(total: number, shard: Shard | undefined): [number, number] {
  if (!shard) return [0, total]
  return [Math.floor((shard.index * total) / shard.count), Math.floor(((shard.index + 1) * total) / shard.count)]
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/** Checks up front that a file named on the command line can be read, with a plain message. */
function requireFile(path: string, what: string): void {
  let stats: ReturnType<typeof statSync>
  try {
    stats = statSync(path)
  } catch (error) {
    throw new RunError(`${what} ${path}: ${fsReason(error)}`)
  }
  if (stats.isDirectory()) throw new RunError(`${what} ${path}: is a folder, not a file`)
}

function fsReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code
  switch (code) {
    case 'ENOENT':
      return 'no such file'
    case 'EACCES':
    case 'EPERM':
      return 'permission denied'
    case 'ENOSPC':
      return 'no space left on the device'
    case 'EISDIR':
      return 'is a folder'
    default:
      return (error as Error).message
  }
}

/**
 * The output file under construction: a hidden temporary file in the output's folder, renamed
 * over the output by commit(), and removed by discard() (on failure or when interrupted).
 */
class PendingOutput {
  readonly path: string
  readonly temp: string
  readonly fd: number
  #done = false

  constructor(path: string) {
    this.path = path
    const folder = dirname(resolve(path))
    if (!existsSync(folder)) throw new RunError(`output ${path}: the folder ${folder} does not exist`)
    this.temp = join(folder, `.${basename(path)}.${process.pid}.tmp`)
    try {
      this.fd = openSync(this.temp, 'wx')
    } catch (error) {
      throw new RunError(`output ${path}: cannot create ${this.temp}: ${fsReason(error)}`)
    }
  }

  commit(): void {
    fsyncSync(this.fd)
    closeSync(this.fd)
    renameSync(this.temp, this.path)
    this.#done = true
  }

  discard(): void {
    if (this.#done) return
    this.#done = true
    try {
      closeSync(this.fd)
    } catch {}
    try {
      unlinkSync(this.temp)
    } catch {}
  }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

interface ModelOptions {
  prefix?: string
  nonlinearity?: 'tanh' | 'relu'
  backend?: 'auto' | 'native' | 'js'
  threads?: number
  simd?: 'auto' | 'avx512' | 'avx2' | 'generic'
}

async function loadModel(path: string, options: ModelOptions, batchFirst: boolean): Promise<Model> {
  requireFile(path, 'model')
  const loadOptions: LoadOptions = { batchFirst }
  if (options.prefix !== undefined) loadOptions.prefix = options.prefix
  if (options.nonlinearity !== undefined) loadOptions.nonlinearity = options.nonlinearity
  if (options.backend !== undefined) loadOptions.backend = options.backend
  if (options.threads !== undefined) loadOptions.threads = options.threads
  if (options.simd !== undefined) loadOptions.simd = options.simd
  try {
    return await load(path, loadOptions)
  } catch (error) {
    throw new RunError(`model ${path}: ${(error as Error).message}`)
  }
}

const directions = (config: ModelConfig) => (config.bidirectional ? 2 : 1)
const outputSize = (config: ModelConfig) => config.projSize || config.hiddenSize
const describeBackend = (model: Model) => (model.simd ? `${model.backend} (${model.simd})` : model.backend)

function describeModel(config: ModelConfig): string {
  const parts = [
    `${config.mode === 'RNN_TANH' || config.mode === 'RNN_RELU' ? `RNN (${config.mode === 'RNN_RELU' ? 'relu' : 'tanh'})` : config.mode}`,
    `inputSize ${config.inputSize}`,
    `hiddenSize ${config.hiddenSize}`,
    ...(config.projSize ? [`projSize ${config.projSize}`] : []),
    `numLayers ${config.numLayers}`,
    config.bidirectional ? 'bidirectional' : 'unidirectional',
    config.bias ? 'with bias' : 'no bias',
  ]
  return parts.join(', ')
}

// ---------------------------------------------------------------------------------------------
// birnn info
// ---------------------------------------------------------------------------------------------

const RNN_TENSOR = /^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l\d+(_reverse)?$/

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`
}

async function info(modelPath: string, options: ModelOptions & { json?: boolean }): Promise<void> {
  const model = await loadModel(modelPath, options, false)
  const { config } = model
  // The module's own tensors: those named like nn.RNN's parameters under the module's prefix
  // (which load() has found, so there is exactly one module, or options.prefix picked it).
  const { tensors } = parseSafetensors(readFileSync(modelPath))
  const candidates = [...tensors.keys()].flatMap((name) => /^(.*)weight_ih_l0$/.exec(name)?.[1] ?? [])
  const requested = options.prefix
  const wanted = requested === undefined ? candidates[0] : candidates.includes(requested) ? requested : `${requested}.`
  let parameters = 0
  const dtypes = new Set<string>()
  for (const [name, tensor] of tensors) {
    if (!name.startsWith(wanted) || !RNN_TENSOR.test(name.slice(wanted.length))) continue
    parameters += tensor.shape.reduce((a, b) => a * b, 1)
    dtypes.add(tensor.dtype)
  }
  const width = directions(config) * outputSize(config)
  const stepBytes = (config.inputSize + width) * 4
  const summary = {
    model: modelPath,
    prefix: wanted,
    config,
    parameters,
    storedDtype: [...dtypes].join(', '),
    weightBytes: parameters * 4,
    outputWidth: width,
    bytesPerSequenceStep: stepBytes,
    backend: model.backend,
    simd: model.simd ?? null,
    backendReason: model.backendReason,
  }
  model.dispose()
  if (options.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`)
    return
  }
  const rows: Array<[string, string]> = [
    ['model', `${modelPath}${wanted ? ` (module at prefix '${wanted}')` : ''}`],
    ['network', describeModel(config)],
    ['input', `(T, N, ${config.inputSize}), or (N, T, ${config.inputSize}) with --batch-first`],
    ['output', `(T, N, ${width}) for --output-kind full; (N, ${width}) for last and mean`],
    ['parameters', `${parameters.toLocaleString('en-US')}, stored as ${summary.storedDtype}`],
    [
      'memory',
      `${formatBytes(summary.weightBytes)} of float32 weights, plus ${stepBytes} bytes of input and output per sequence step (a batch of 128 sequences of 100 steps: ${formatBytes(128 * 100 * stepBytes)})`,
    ],
    ['backend', `${describeBackend(model)}: ${model.backendReason}`],
  ]
  for (const [key, value] of rows) process.stdout.write(`${key.padEnd(11)} ${value}\n`)
}

// ---------------------------------------------------------------------------------------------
// birnn score
// ---------------------------------------------------------------------------------------------

type OutputKind = 'full' | 'last' | 'mean'

interface ScoreOptions extends ModelOptions {
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
interface Batch {
  /** Index of its first sequence in the whole input (not the shard). */
  first: number
  count: number
  /** Steps of the batch tensor (the longest sequence, for JSONL). */
  T: number
  /** The layout of input and output: (B, T, features), else (T, B, features). */
  batchFirst: boolean
  input: Tensor
  lengths?: number[]
  h0?: Tensor
  c0?: Tensor
}

/** One kind of input file, read batch by batch, and its output, written batch by batch. */
interface Job {
  /** Sequences this run scores (the shard's). */
  count: number
  /** Output shape, for the summary. */
  outputShape: string
  next(): Batch | undefined
  write(batch: Batch, output: Tensor): void
  close(): void
}

/** Reduces a batch's output (layout given by batchFirst) to one row per sequence, or keeps it. */
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

/** Reads --h0/--c0: a float array (numLayers*D, N, size), sliced per batch along N. */
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

function openNpyJob(model: Model, options: ScoreOptions, pending: () => PendingOutput): Job {
  const { config } = model
  const reader = new NpyReader(options.input)
  const closers: Array<{ close(): void }> = [reader]
  const closeAll = () => {
    for (const c of closers) c.close()
  }
  try {
    const { shape } = reader
    const layout = options.batchFirst ? '(N, T, inputSize)' : '(T, N, inputSize)'
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
    const batchFirst = options.batchFirst === true
    const nAxis = batchFirst ? 0 : 1
    const N = shape[nAxis]
    const T = shape[1 - nAxis]
    if (T === 0) throw new RunError(`input ${options.input}: shape ${formatNpyShape(shape)} has no time steps`)
    const [start, end] = shardRange(N, options.shard)
    const LD = config.numLayers * directions(config)

    let lengths: NpyReader | undefined
    if (options.lengths) {
      requireFile(options.lengths, '--lengths')
      lengths = new NpyReader(options.lengths)
      closers.push(lengths)
      if (lengths.shape.length !== 1 || lengths.shape[0] !== N) {
        throw new RunError(
          `--lengths ${options.lengths}: expected shape (${N},), one length per sequence, received ${formatNpyShape(lengths.shape)}`,
        )
      }
      if (lengths.dtype !== '<i4' && lengths.dtype !== '<i8') {
        throw new RunError(
          `--lengths ${options.lengths}: expected int32 or int64, received ${npyDtypeName(lengths.dtype)}`,
        )
      }
    }
    const h0 = options.h0 ? openState(options.h0, '--h0', [LD, N, outputSize(config)]) : undefined
    if (h0) closers.push(h0)
    if (options.c0 && config.mode !== 'LSTM')
      throw new RunError(`--c0: only an LSTM has a cell state, but the model is ${config.mode}`)
    const c0 = options.c0 ? openState(options.c0, '--c0', [LD, N, config.hiddenSize]) : undefined
    if (c0) closers.push(c0)

    const W = directions(config) * outputSize(config)
    const count = end - start
    const outShape = options.outputKind === 'full' ? (batchFirst ? [count, T, W] : [T, count, W]) : [count, W]
    const out = pending()
    const writer = new NpyWriter(out.fd, outShape)
    let cursor = start
    return {
      count,
      outputShape: `float32 ${formatNpyShape(outShape)}`,
      next() {
        if (cursor >= end) return undefined
        const first = cursor
        const B = Math.min(options.batchSize, end - cursor)
        cursor += B
        const data = reader.readFloat32(nAxis, first, B)
        const batch: Batch = {
          first,
          count: B,
          T,
          batchFirst,
          input: { data, shape: batchFirst ? [B, T, config.inputSize] : [T, B, config.inputSize] },
        }
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
        if (h0) batch.h0 = { data: h0.readFloat32(1, first, B), shape: [LD, B, outputSize(config)] }
        if (c0) batch.c0 = { data: c0.readFloat32(1, first, B), shape: [LD, B, config.hiddenSize] }
        return batch
      },
      write(batch, output) {
        const at = batch.first - start
        if (options.outputKind === 'full') writer.write(nAxis, at, output.data)
        else {
          const dims = { B: batch.count, T, W, D: directions(config), batchFirst }
          writer.write(0, at, reduceOutput(output.data, options.outputKind, dims, batch.lengths))
        }
      },
      close: closeAll,
    }
  } catch (error) {
    closeAll()
    throw error
  }
}

function openJsonlJob(model: Model, options: ScoreOptions, pending: () => PendingOutput): Job {
  const { config } = model
  if (options.lengths) throw new UsageError('--lengths applies to .npy input; in JSONL each line has its own length')
  if (options.batchFirst)
    throw new UsageError('--batch-first applies to .npy input; a JSONL line is always one sequence')
  const N = countLines(options.input)
  const [start, end] = shardRange(N, options.shard)
  const LD = config.numLayers * directions(config)
  const h0 = options.h0 ? openState(options.h0, '--h0', [LD, N, outputSize(config)]) : undefined
  if (options.c0 && config.mode !== 'LSTM') {
    h0?.close()
    throw new RunError(`--c0: only an LSTM has a cell state, but the model is ${config.mode}`)
  }
  const c0 = options.c0 ? openState(options.c0, '--c0', [LD, N, config.hiddenSize]) : undefined
  const reader = new LineReader(options.input)
  reader.skip(start)
  const W = directions(config) * outputSize(config)
  const I = config.inputSize
  const out = pending()
  let cursor = start
  return {
    count: end - start,
    outputShape: `${end - start} lines of ${options.outputKind === 'full' ? `steps × ${W}` : W} numbers`,
    next() {
      if (cursor >= end) return undefined
      const first = cursor
      const B = Math.min(options.batchSize, end - cursor)
      cursor += B
      const sequences: Float32Array[] = []
      for (let b = 0; b < B; b++) {
        const line = reader.next()
        if (line === undefined)
          throw new JsonlError(
            `input ${options.input}: ended at line ${reader.lineNumber}, expected ${N} lines (was it changed while being read?)`,
          )
        sequences.push(parseSequence(line, `input ${options.input} line ${reader.lineNumber}`, I))
      }
      const lengths = sequences.map((s) => s.length / I)
      const T = Math.max(...lengths)
      // Batch-first, padded with zeros past each sequence's length (the model never reads them).
      const data = new Float32Array(B * T * I)
      for (const [b, s] of sequences.entries()) data.set(s, b * T * I)
      const batch: Batch = { first, count: B, T, batchFirst: true, input: { data, shape: [B, T, I] }, lengths }
      if (h0) batch.h0 = { data: h0.readFloat32(1, first, B), shape: [LD, B, outputSize(config)] }
      if (c0) batch.c0 = { data: c0.readFloat32(1, first, B), shape: [LD, B, config.hiddenSize] }
      return batch
    },
    write(batch, output) {
      const { T } = batch
      const lengths = batch.lengths!
      let text = ''
      if (options.outputKind === 'full') {
        for (let b = 0; b < batch.count; b++) {
          const rows: string[] = []
          for (let t = 0; t < lengths[b]; t++)
            rows.push(formatRow(output.data.subarray((b * T + t) * W, (b * T + t + 1) * W)))
          text += `[${rows.join(',')}]\n`
        }
      } else {
        const dims = { B: batch.count, T, W, D: directions(config), batchFirst: true }
        const rows = reduceOutput(output.data, options.outputKind, dims, lengths)
        for (let b = 0; b < batch.count; b++) text += `${formatRow(rows.subarray(b * W, (b + 1) * W))}\n`
      }
      writeAll(out.fd, Buffer.from(text), null)
    },
    close() {
      reader.close()
      h0?.close()
      c0?.close()
    },
  }
}

/** A progress bar on a TTY; nothing otherwise (the summary line comes at the end either way). */
function progressBar(total: number, enabled: boolean) {
  if (!enabled) return { update: (_done: number) => {}, stop: () => {} }
  const bar = new cliProgress.SingleBar(
    {
      format: 'scoring {bar} {percentage}% | {value}/{total} sequences | {rate} seq/s | ETA {eta_formatted}',
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  )
  const started = performance.now()
  bar.start(total, 0, { rate: '-' })
  return {
    update(done: number) {
      const seconds = (performance.now() - started) / 1000
      bar.update(done, { rate: seconds > 0 ? Math.round(done / seconds).toLocaleString('en-US') : '-' })
    },
    stop: () => bar.stop(),
  }
}

const EXTENSION_KIND: Record<string, 'npy' | 'jsonl'> = {
  '.npy': 'npy',
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.json': 'jsonl',
}

async function score(modelPath: string, options: ScoreOptions): Promise<void> {
  if (options.lengths && options.lengths === options.input)
    throw new UsageError('--lengths and --input name the same file')
  if (resolve(options.input) === resolve(options.output)) throw new UsageError('--output must not be the --input file')
  requireFile(options.input, 'input')
  const folder = dirname(resolve(options.output))
  if (!existsSync(folder)) throw new RunError(`--output ${options.output}: the folder ${folder} does not exist`)
  const head = Buffer.alloc(6)
  const fd = openSync(options.input, 'r')
  const got = readSync(fd, head, 0, 6, 0)
  closeSync(fd)
  const kind = isNpy(head.subarray(0, got)) ? 'npy' : 'jsonl'
  const outputExt = /\.[^./\\]+$/.exec(options.output)?.[0]?.toLowerCase() ?? ''
  if (EXTENSION_KIND[outputExt] && EXTENSION_KIND[outputExt] !== kind) {
    throw new UsageError(
      `--output ${options.output}: the input is ${kind === 'npy' ? '.npy' : 'JSONL'}, so the output is too; name it with ${kind === 'npy' ? '.npy' : '.jsonl'}`,
    )
  }

  const started = performance.now()
  const model = await loadModel(modelPath, options, kind === 'jsonl' || options.batchFirst === true)
  let output: PendingOutput | undefined
  const pending = () => {
    output = new PendingOutput(options.output)
    return output
  }
  let bar = progressBar(0, false)
  // Interrupted: remove the partial output, then exit as a shell expects (128 + signal number).
  const signals: Array<[NodeJS.Signals, number]> = [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ]
  const onSignal = (signal: NodeJS.Signals) => {
    bar.stop()
    output?.discard()
    process.stderr.write(`birnn: ${signal}: stopped; no output written\n`)
    process.exit(signals.find(([s]) => s === signal)![1])
  }
  for (const [signal] of signals) process.on(signal, onSignal)

  let job: Job | undefined
  let firstValues: { label: string; values: Float32Array } | undefined
  try {
    job = kind === 'npy' ? openNpyJob(model, options, pending) : openJsonlJob(model, options, pending)
    bar = progressBar(job.count, process.stderr.isTTY === true && !options.quiet && !options.json)
    const forward = (batch: Batch) => {
      const forwardOptions: ForwardOptions = {}
      if (batch.lengths) forwardOptions.lengths = batch.lengths
      if (batch.h0) forwardOptions.h0 = batch.h0
      if (batch.c0) forwardOptions.c0 = batch.c0
      return model.forward(batch.input, forwardOptions)
    }
    // A pipeline of depth two: read batch k+1 while the model computes batch k, write batch k
    // while it computes batch k+1.
    let done = 0
    let current = job.next()
    let running = current ? forward(current) : undefined
    running?.catch(() => {})
    while (current) {
      const next = job.next()
      const result = await running!
      running = next ? forward(next) : undefined
      // Should reading or writing fail while it computes, its outcome no longer matters.
      running?.catch(() => {})
      job.write(current, result.output)
      if (options.preview && !firstValues)
        firstValues = preview(current, result.output, model.config, options.outputKind)
      done += current.count
      bar.update(done)
      current = next
    }
    output!.commit()
  } catch (error) {
    output?.discard()
    throw error
  } finally {
    job?.close()
    bar.stop()
    model.dispose()
    for (const [signal] of signals) process.off(signal, onSignal)
  }

  const seconds = (performance.now() - started) / 1000
  const summary = {
    command: 'score',
    input: options.input,
    output: options.output,
    sequences: job.count,
    shard: options.shard ? `${options.shard.index}/${options.shard.count}` : null,
    outputKind: options.outputKind,
    outputShape: job.outputShape,
    seconds: Number(seconds.toFixed(3)),
    sequencesPerSecond: Math.round(job.count / seconds),
    backend: model.backend,
    simd: model.simd ?? null,
    backendReason: model.backendReason,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  }
  if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`)
  else if (!options.quiet) {
    const shard = summary.shard ? ` (shard ${summary.shard})` : ''
    process.stdout.write(
      `birnn: scored ${summary.sequences.toLocaleString('en-US')} sequences${shard} from ${options.input} into ${options.output}: ` +
        `${options.outputKind} output, ${summary.outputShape}; ${seconds.toFixed(2)} s, ` +
        `${summary.sequencesPerSecond.toLocaleString('en-US')} seq/s on ${describeBackend(model)}\n`,
    )
  }
  if (firstValues && !options.json) {
    const shown = [...firstValues.values].map((v) => v.toFixed(4)).join(', ')
    process.stdout.write(`birnn: ${firstValues.label}: [${shown}${firstValues.values.length < 6 ? '' : ', …'}]\n`)
  }
}

/** The first few output values of a batch, for --preview. */
function preview(batch: Batch, output: Tensor, config: ModelConfig, kind: OutputKind) {
  const W = directions(config) * outputSize(config)
  const count = Math.min(6, W)
  if (kind === 'full') {
    // In both layouts the array starts with step 0 of the batch's first sequence.
    return {
      label: `sequence ${batch.first}, step 0, first ${count} of ${W} values`,
      values: output.data.slice(0, count),
    }
  }
  const dims = { B: batch.count, T: batch.T, W, D: directions(config), batchFirst: batch.batchFirst }
  const rows = reduceOutput(output.data, kind, dims, batch.lengths)
  return { label: `sequence ${batch.first}, ${kind}, first ${count} of ${W} values`, values: rows.slice(0, count) }
}

// ---------------------------------------------------------------------------------------------
// birnn bench
// ---------------------------------------------------------------------------------------------

interface BenchOptions extends ModelOptions {
  batchSizes: number[]
  seqLen: number
  seconds: number
  json?: boolean
}

async function bench(modelPath: string, options: BenchOptions): Promise<void> {
  const backends: Array<'native' | 'js'> =
    options.backend === 'native' ? ['native'] : options.backend === 'js' ? ['js'] : ['native', 'js']
  const models: Model[] = []
  const skipped: string[] = []
  for (const backend of backends) {
    try {
      models.push(await loadModel(modelPath, { ...options, backend }, false))
    } catch (error) {
      // Without --backend native, a missing native kernel is reported, and JS runs alone.
      if (backend === 'native' && options.backend !== 'native') skipped.push((error as Error).message)
      else throw error
    }
  }
  const { config } = models[0]
  if (!options.json) {
    process.stdout.write(
      `birnn bench: ${describeModel(config)}; ${options.seqLen} steps per sequence, ~${options.seconds} s per measurement\n`,
    )
    for (const reason of skipped) process.stdout.write(`(native backend skipped: ${reason})\n`)
  }
  const random = mulberry32(1)
  const results: Array<{ backend: string; batchSize: number; sequencesPerSecond: number; msPerCall: number }> = []
  for (const batchSize of options.batchSizes) {
    const input = {
      data: new Float32Array(options.seqLen * batchSize * config.inputSize).map(() => random() * 2 - 1),
      shape: [options.seqLen, batchSize, config.inputSize],
    }
    const row: string[] = [String(batchSize).padStart(6)]
    for (const model of models) {
      model.forwardSync(input) // warm-up
      let calls = 0
      const began = performance.now()
      let elapsed = 0
      while (calls < 2 || elapsed < options.seconds * 1000) {
        model.forwardSync(input)
        calls++
        elapsed = performance.now() - began
      }
      const sequencesPerSecond = (calls * batchSize * 1000) / elapsed
      results.push({
        backend: describeBackend(model),
        batchSize,
        sequencesPerSecond: Math.round(sequencesPerSecond),
        msPerCall: Number((elapsed / calls).toFixed(3)),
      })
      row.push(`${Math.round(sequencesPerSecond).toLocaleString('en-US').padStart(14)}`)
    }
    if (models.length === 2) {
      const [a, b] = results.slice(-2)
      row.push(`${(a.sequencesPerSecond / b.sequencesPerSecond).toFixed(1).padStart(8)}×`)
    }
    if (!options.json) {
      if (batchSize === options.batchSizes[0]) {
        const head = [
          'batch'.padStart(6),
          ...models.map((m) => `${describeBackend(m)} seq/s`.padStart(14)),
          ...(models.length === 2 ? ['speed-up'.padStart(9)] : []),
        ]
        process.stdout.write(`${head.join('  ')}\n`)
      }
      process.stdout.write(`${row.join('  ')}\n`)
    }
  }
  for (const model of models) model.dispose()
  if (options.json)
    process.stdout.write(`${JSON.stringify({ command: 'bench', model: modelPath, seqLen: options.seqLen, results })}\n`)
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// ---------------------------------------------------------------------------------------------
// birnn join
// ---------------------------------------------------------------------------------------------

/** Concatenates the .npy parts of a sharded run along the batch axis, streaming. */
async function joinParts(output: string, parts: string[], options: { batchFirst?: boolean }): Promise<void> {
  const readers: NpyReader[] = []
  let pending: PendingOutput | undefined
  try {
    for (const part of parts) {
      requireFile(part, 'part')
      readers.push(new NpyReader(part))
    }
    const first = readers[0].shape
    // (T, N, W) joins along N, axis 1; (N, T, W) with --batch-first and (N, W) along axis 0.
    const axis: 0 | 1 = first.length === 3 && !options.batchFirst ? 1 : 0
    for (const reader of readers) {
      const { shape } = reader
      if (shape.length !== first.length || shape.some((d, i) => i !== axis && d !== first[i])) {
        throw new RunError(
          `part ${reader.path}: shape ${formatNpyShape(shape)} does not join with ${formatNpyShape(first)} along axis ${axis}`,
        )
      }
    }
    const total = readers.reduce((n, r) => n + r.shape[axis], 0)
    const shape = first.map((d, i) => (i === axis ? total : d))
    pending = new PendingOutput(output)
    const writer = new NpyWriter(pending.fd, shape)
    let at = 0
    for (const reader of readers) {
      // Slabs of at most ~64 MiB, so parts of any size join in bounded memory.
      const perIndex = (reader.shape.reduce((a, b) => a * b, 1) / Math.max(1, reader.shape[axis])) * 4
      const step = Math.max(1, Math.floor((64 << 20) / Math.max(1, perIndex)))
      for (let i = 0; i < reader.shape[axis]; i += step) {
        const count = Math.min(step, reader.shape[axis] - i)
        writer.write(axis, at + i, reader.readFloat32(axis, i, count))
      }
      at += reader.shape[axis]
    }
    pending.commit()
    process.stdout.write(`birnn: joined ${parts.length} parts into ${output}: float32 ${formatNpyShape(shape)}\n`)
  } catch (error) {
    pending?.discard()
    throw error
  } finally {
    for (const reader of readers) reader.close()
  }
}

// ---------------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------------

function packageVersion(): string {
  try {
    return JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version
  } catch {
    return 'unknown'
  }
}

function modelOptions(command: Command): Command {
  return command
    .option('--prefix <prefix>', "key prefix of the recurrent module in a larger state_dict, e.g. 'encoder.rnn.'")
    .addOption(
      new Option('--nonlinearity <name>', 'nn.RNN only: the nonlinearity, which the weights do not record').choices([
        'tanh',
        'relu',
      ]),
    )
    .addOption(
      new Option('--backend <name>', 'the engine: the native kernel where it loads (auto), or force one').choices([
        'auto',
        'native',
        'js',
      ]),
    )
    .option('--threads <n>', 'most threads one batch may use (default: all cores)', positiveInteger)
    .addOption(
      new Option('--simd <isa>', 'force the native kernel instruction set (default: the best the CPU has)').choices([
        'auto',
        'avx512',
        'avx2',
        'generic',
      ]),
    )
}

export function buildProgram(): Command {
  const program = new Command('birnn')
    .description('PyTorch-exact nn.RNN / nn.GRU / nn.LSTM inference from the command line')
    .version(packageVersion())
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`birnn: ${text.replace(/^error: /, '')}`) })
    .showHelpAfterError('(add --help for the usage)')
    .addHelpText(
      'after',
      '\nExit codes: 0 done, 1 the run failed, 2 bad command line, 130/143 interrupted.\nSee docs/cli.md for examples, sharding and joining.',
    )

  modelOptions(
    program
      .command('info')
      .description("the model's configuration, parameters, stored dtype, memory and backend")
      .argument('<model>', 'a safetensors state_dict'),
  )
    .option('--json', 'print the information as one JSON object')
    .action((model: string, options) => info(model, options))

  modelOptions(
    program
      .command('score')
      .description('run the model over every sequence of an .npy or JSONL file, streaming')
      .argument('<model>', 'a safetensors state_dict')
      .requiredOption(
        '-i, --input <file>',
        '.npy (T, N, inputSize) float32/float64/float16, or JSONL: one sequence per line, [[x, ...], ...]',
      )
      .requiredOption('-o, --output <file>', 'where to write the output, of the input kind (.npy float32, or JSONL)')
      .addOption(
        new Option(
          '-k, --output-kind <kind>',
          'full: every step; last: the last valid step (forward) and step 0 (backward); mean: over valid steps',
        )
          .choices(['full', 'last', 'mean'])
          .default('full'),
      )
      .option(
        '--batch-first',
        '.npy input (and full output) is (N, T, inputSize): reads are contiguous, the fastest layout',
      )
      .option('-b, --batch-size <n>', 'sequences per model call; memory grows with it', positiveInteger, 128)
      .option('--lengths <file>', '.npy int32/int64 (N,): valid steps of each sequence (.npy input)')
      .option('--h0 <file>', '.npy (numLayers*D, N, Hout): initial hidden state')
      .option('--c0 <file>', '.npy (numLayers*D, N, hiddenSize): LSTM initial cell state')
      .option('--shard <i/n>', 'score only part i of n equal parts (0-based), e.g. 0/4 … 3/4', parseShard)
      .option('--json', 'print the summary as one JSON object')
      .option('--preview', 'also print the first few output values')
      .option('-q, --quiet', 'no progress bar and no summary'),
  ).action((model: string, options: ScoreOptions) => score(model, options))

  modelOptions(
    program
      .command('bench')
      .description('time the model on synthetic input at a few batch sizes, native vs JS')
      .argument('<model>', 'a safetensors state_dict'),
  )
    .option('--batch-sizes <list>', 'batch sizes to time', integerList, [1, 16, 128])
    .option('--seq-len <n>', 'steps per sequence', positiveInteger, 50)
    .option('--seconds <s>', 'time per measurement', positiveNumber, 0.5)
    .option('--json', 'print the results as one JSON object')
    .action((model: string, options: BenchOptions) => bench(model, options))

  program
    .command('join')
    .description('concatenate the .npy outputs of a sharded run along the batch axis (JSONL parts: cat them)')
    .argument('<output>', 'the joined .npy file')
    .argument('<parts...>', 'the parts, in shard order')
    .option('--batch-first', 'the parts are (N, T, W) full outputs of a --batch-first run')
    .action((output: string, parts: string[], options) => joinParts(output, parts, options))

  return program
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' })
    return 0
  } catch (error) {
    if (isCommanderError(error)) return error.exitCode === 0 ? 0 : EXIT_USAGE // commander printed it
    const message = error instanceof Error ? error.message : String(error)
    process.stderr.write(`birnn: ${message}\n`)
    if (error instanceof UsageError) return EXIT_USAGE
    // Anything not expected (a bug) keeps its stack for the report, on request.
    if (process.env.BIRNN_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`)
    return EXIT_FAILED
  }
}

function isCommanderError(error: unknown): error is CommanderError {
  return (
    error instanceof Error &&
    typeof (error as CommanderError).code === 'string' &&
    (error as CommanderError).code.startsWith('commander.')
  )
}

// Run when executed (node dist/cli.js, or the `birnn` bin link), not when imported.
function invokedDirectly(): boolean {
  try {
    return (
      process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
    )
  } catch {
    return false
  }
}
if (invokedDirectly()) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code
  })
}
