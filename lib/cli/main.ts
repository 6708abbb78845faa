#!/usr/bin/env node
// The `birnn` command (docs/cli.md): the command line, and how each way of ending becomes an exit
// code. The commands themselves live one per file next to this one.

import { readFileSync, realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Command, type CommanderError, Option } from 'commander'
import { OUTPUT_KINDS } from '../model/pooling.js'
import { bench } from './bench.js'
import { convert } from './convert.js'
import { EXIT_FAILED, EXIT_PIPE, EXIT_USAGE, exitFor, fsReason } from './errors.js'
import { info } from './info.js'
import type { ScoreOptions } from './job.js'
import { join } from './join.js'
import { addModelOptions, integerList, parseShard, positiveInteger, positiveNumber } from './options.js'
import { score } from './score.js'
import { byteSize, nonNegativeNumber, port, type ServeOptions, serve } from './serve.js'

const EXIT_CODES = `
Exit codes:
  0              done
  1              the run failed: a file is missing or invalid, the input does not fit the model,
                 an I/O error
  2              the command line is wrong: an unknown command or option, a bad option value,
                 a bad output path
  70             internal error, a bug in birnn: the message comes with a stack trace; please report it
  129, 130, 143  stopped by SIGHUP, SIGINT (Ctrl-C) or SIGTERM; no output is written
  141            stdout was closed by its reader (birnn info m.pt | head -1)
See docs/cli.md for examples, sharding and joining.`

function packageVersion(): string {
  try {
    return JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version
  } catch {
    return 'unknown'
  }
}

function buildProgram(): Command {
  const program = new Command('birnn')
    .description('PyTorch-exact nn.RNN / nn.GRU / nn.LSTM inference from the command line')
    .version(packageVersion())
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`birnn: ${text.replace(/^error: /, '')}`) })
    .showHelpAfterError('(add --help for the usage)')
    .addHelpText('after', EXIT_CODES)

  addModelOptions(
    program
      .command('info')
      .description("the model's configuration, parameters, stored dtype, memory and backend")
      .argument('<model>', 'a model file: safetensors, a torch.save checkpoint or an ONNX export'),
  )
    .option('--json', 'print the information as one JSON object')
    .action((model: string, options) => info(model, options))

  addModelOptions(
    program
      .command('score')
      .description('run the model over every sequence of an .npy or JSONL file, streaming')
      .argument('<model>', 'a model file: safetensors, a torch.save checkpoint or an ONNX export')
      .requiredOption(
        '-i, --input <file>',
        '.npy (T, N, inputSize) float32/float64/float16, or JSONL: one sequence per line, [[x, ...], ...]',
      )
      .requiredOption(
        '-o, --output <file>',
        'where to write the output, of the input kind (.npy float32, or JSONL); replaced if it exists',
      )
      .addOption(
        new Option(
          '-k, --output-kind <kind>',
          'full: every step; last: the last valid step (forward) and step 0 (backward); mean: over valid steps',
        )
          .choices(OUTPUT_KINDS)
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

  addModelOptions(
    program
      .command('bench')
      .description('time the model on synthetic input at a few batch sizes, native vs JS')
      .argument('<model>', 'a model file: safetensors, a torch.save checkpoint or an ONNX export'),
  )
    .option('--batch-sizes <list>', 'batch sizes to time', integerList, [1, 16, 128])
    .option('--seq-len <n>', 'steps per sequence', positiveInteger, 50)
    .option('--seconds <s>', 'time per measurement (at least one call)', positiveNumber, 0.5)
    .option('--json', 'print the results as one JSON object')
    .action((model: string, options) => bench(model, options))

  addModelOptions(
    program
      .command('serve')
      .description('serve the model over HTTP: POST /v1/forward (JSON or .npy), GET /healthz, GET /metrics')
      .argument('<model>', 'a model file: safetensors, a torch.save checkpoint or an ONNX export'),
  )
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port, printed at startup)', port, 8080)
    .option('--batch-first', '3-D request inputs are (N, T, inputSize) instead of (T, N, inputSize)')
    .option(
      '--max-batch <n>',
      'most sequences one model call gathers (default: 64, or 16 with more than 8 batches at once)',
      positiveInteger,
    )
    .option(
      '--max-batch-tokens <n>',
      'most padded steps (longest T × sequences) one model call gathers',
      positiveInteger,
      65536,
    )
    .option(
      '--max-delay-ms <ms>',
      'how long an idle server waits for more requests to batch (0: never)',
      nonNegativeNumber,
      0,
    )
    .option(
      '--concurrency <n>',
      'model calls (batches) computing at once (default: 1 up to 8 cores, else the cores but one)',
      positiveInteger,
    )
    .option('--max-queue <n>', 'most requests waiting; beyond, 503 with Retry-After', positiveInteger, 1024)
    .option('--max-body <bytes>', 'largest request body (e.g. 8m); beyond, 413', byteSize, 8 * 1024 * 1024)
    .option('--no-batching', 'one model call per request (for comparison)')
    .action((model: string, options: ServeOptions) => serve(model, options))

  program
    .command('join')
    .description('concatenate the .npy outputs of a sharded run along the batch axis (JSONL parts: cat them)')
    .argument('<output>', 'the joined .npy file (never one of the parts)')
    .argument('<parts...>', 'the parts, in shard order')
    .option('--batch-first', 'the parts are (N, T, W) full outputs of a --batch-first run')
    .option('--force', 'replace the output if it exists')
    .option('-q, --quiet', 'no summary')
    .action((output: string, parts: string[], options) => join(output, parts, options))

  program
    .command('convert')
    .description(
      'write the recurrent module of a .pt checkpoint, an ONNX export or a safetensors file as float32 safetensors',
    )
    .argument('<input>', 'a model file: safetensors, torch.save checkpoint (.pt, .pth) or ONNX export')
    .argument('<output>', 'the safetensors file to write (never the input)')
    .option('--prefix <prefix>', "key prefix of the recurrent module when the file holds several, e.g. 'model.rnn.'")
    .addOption(
      new Option('--nonlinearity <name>', 'nn.RNN only: tanh or relu, when the file says neither').choices([
        'tanh',
        'relu',
      ]),
    )
    .option('--force', 'replace the output if it exists')
    .option('-q, --quiet', 'no summary')
    .action((input: string, output: string, options) => convert(input, output, options))

  return program
}

async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' })
    return 0
  } catch (error) {
    if (isCommanderError(error)) return error.exitCode === 0 ? 0 : EXIT_USAGE // commander printed it
    const { code, message, internal } = exitFor(error)
    process.stderr.write(`birnn: ${message}\n`)
    if ((internal || process.env.BIRNN_DEBUG) && error instanceof Error) process.stderr.write(`${error.stack}\n`)
    return code
  }
}

function isCommanderError(error: unknown): error is CommanderError {
  return error instanceof Error && String((error as CommanderError).code).startsWith('commander.')
}

// Run when executed (node dist/cli/main.js, or the `birnn` bin link), not when imported.
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
  // A reader that stops early (`birnn info m.pt | head -1`) closes stdout: stop at once, as Unix
  // tools do (a shell reports 141 for them, killed by SIGPIPE), not with an unhandled error.
  // Every output file is committed before anything is written to stdout.
  // Any other failure to write it (stdout sent to a full disk, or /dev/full) is an I/O error.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(EXIT_PIPE)
    process.stderr.write(`birnn: stdout: ${fsReason(error)}\n`, () => process.exit(EXIT_FAILED))
  })
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code
  })
}
