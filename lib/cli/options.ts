// Option values as commander parses them (a bad value is a command-line error, exit 2), and the
// model options every command shares.

import { type Command, InvalidArgumentError, Option } from 'commander'
import { BACKENDS, NONLINEARITIES, SIMD_CHOICES } from '../model/options.js'
import { MAX_THREADS } from '../spec.js'
import type { LoadOptions } from '../types.js'

export function positiveInteger(value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError('expected a positive integer.')
  return n
}

/** --threads: the library's own bound, checked here so that a bad value is a command-line error. */
function threadCount(value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_THREADS)
    throw new InvalidArgumentError(`expected an integer in [1, ${MAX_THREADS}].`)
  return n
}

export function positiveNumber(value: string): number {
  const n = Number(value)
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError('expected a positive number.')
  return n
}

export function integerList(value: string): number[] {
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

/** The load() options a command line can set; batchFirst comes from the input, not from here. */
const MODEL_OPTIONS = ['prefix', 'nonlinearity', 'backend', 'threads', 'simd'] as const
export type ModelOptions = Pick<LoadOptions, (typeof MODEL_OPTIONS)[number]>

/**
 * The LoadOptions of a command's parsed options: the model options it was given, and batchFirst
 * where the command sets it (undefined: the file's, which an ONNX graph records, else false).
 */
export function loadOptions(parsed: ModelOptions, batchFirst: boolean | undefined): LoadOptions {
  const given = MODEL_OPTIONS.filter((key) => parsed[key] !== undefined).map((key) => [key, parsed[key]])
  return { ...Object.fromEntries(given), ...(batchFirst === undefined ? {} : { batchFirst }) }
}

export function addModelOptions(command: Command): Command {
  return command
    .option('--prefix <prefix>', "key prefix of the recurrent module in a larger state_dict, e.g. 'encoder.rnn.'")
    .addOption(
      new Option('--nonlinearity <name>', 'nn.RNN only: the nonlinearity, which the weights do not record').choices(
        NONLINEARITIES,
      ),
    )
    .addOption(
      new Option('--backend <name>', 'the engine: the native kernel where it loads (auto), or force one').choices(
        BACKENDS,
      ),
    )
    .option('--threads <n>', `most threads one batch may use, 1 to ${MAX_THREADS} (default: all cores)`, threadCount)
    .addOption(
      new Option(
        '--simd <isa>',
        'force the kernel instruction set, native or WebAssembly (default: the best the CPU and runtime have)',
      ).choices(SIMD_CHOICES),
    )
}
