// birnn score: every sequence of an .npy or JSONL file through the model, streaming. It reads one
// batch, hands it to the model and, while the model computes, reads the next batch and writes the
// previous result, so memory is bounded by the batch size whatever the file size.

import type { ForwardOptions, OutputKind, Tensor } from '../types.js'
import { requireFile, UsageError } from './errors.js'
import { inputKind } from './input-kind.js'
import type { Batch, Job, ScoreOptions } from './job.js'
import { describeBackend, openModel } from './model.js'
import { checkOutput, onInterrupt, PendingOutput, sameFile } from './output-file.js'
import { progressBar, showProgress } from './progress.js'
import { openJsonlJob } from './score-jsonl.js'
import { openNpyJob } from './score-npy.js'
import { plural } from './text.js'

const EXTENSION_KIND: Record<string, 'npy' | 'jsonl'> = {
  '.npy': 'npy',
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.json': 'jsonl',
}

const PREVIEW_VALUES = 6

/** The first few output values of a batch, for --preview. */
function preview(batch: Batch, output: Tensor, kind: OutputKind) {
  const W = output.shape[output.shape.length - 1]
  const count = Math.min(PREVIEW_VALUES, W)
  // In both layouts a full output starts with step 0 of the batch's first sequence, and rows with
  // its row.
  const where = kind === 'full' ? 'step 0' : kind
  return {
    label: `sequence ${batch.first}, ${where}, first ${count} of ${W} values`,
    values: output.data.slice(0, count),
  }
}

export async function score(modelPath: string, options: ScoreOptions): Promise<void> {
  if (options.lengths && sameFile(options.lengths, options.input))
    throw new UsageError('--lengths and --input name the same file')
  const inputs = [
    { label: 'the model', path: modelPath },
    ...(['input', 'lengths', 'h0', 'c0'] as const).flatMap((key) => {
      const path = options[key]
      return path ? [{ label: `the --${key} file`, path }] : []
    }),
  ]
  checkOutput('--output', options.output, inputs, { replace: true })
  requireFile(options.input, 'input')
  const kind = inputKind(options.input)
  const outputExt = /\.[^./\\]+$/.exec(options.output)?.[0]?.toLowerCase() ?? ''
  if (EXTENSION_KIND[outputExt] && EXTENSION_KIND[outputExt] !== kind) {
    throw new UsageError(
      `--output ${options.output}: the input is ${kind === 'npy' ? '.npy' : 'JSONL'}, so the output is too; name it with ${kind === 'npy' ? '.npy' : '.jsonl'}`,
    )
  }
  if (kind === 'jsonl' && options.lengths)
    throw new UsageError('--lengths applies to .npy input; in JSONL each line has its own length')
  if (kind === 'jsonl' && options.batchFirst)
    throw new UsageError('--batch-first applies to .npy input; a JSONL line is always one sequence')

  const started = performance.now()
  // JSONL batches are made batch-first here; an .npy input is in the model's layout: --batch-first,
  // or the one its file records (an ONNX export of a batch_first module).
  const { model } = await openModel(modelPath, options, kind === 'jsonl' || options.batchFirst ? true : undefined)
  let output: PendingOutput | undefined
  const pending = () => {
    output = new PendingOutput(options.output)
    return output
  }
  let bar = await progressBar(0, false)
  const stopSignals = onInterrupt(() => {
    bar.stop()
    output?.discard()
  })

  let job: Job | undefined
  let firstValues: ReturnType<typeof preview> | undefined
  try {
    job = kind === 'npy' ? openNpyJob(model, options, pending) : openJsonlJob(model, options, pending)
    bar = await progressBar(job.count, showProgress(options.quiet || options.json))
    const forward = ({ lengths, h0, c0, input }: Batch) => {
      const forwardOptions: ForwardOptions = { output: options.outputKind }
      if (lengths) forwardOptions.lengths = lengths
      if (h0) forwardOptions.h0 = h0
      if (c0) forwardOptions.c0 = c0
      return model.forward(input, forwardOptions)
    }
    // A pipeline of depth two: read batch k+1 while the model computes batch k, write batch k
    // while it computes batch k+1.
    let done = 0
    let current = await job.next()
    let running = current ? forward(current) : undefined
    running?.catch(() => {})
    while (current) {
      const next = await job.next()
      const result = await running!
      running = next ? forward(next) : undefined
      // Should reading or writing fail while it computes, its outcome no longer matters.
      running?.catch(() => {})
      await job.write(current, result.output)
      if (options.preview && !firstValues) firstValues = preview(current, result.output, options.outputKind)
      done += current.count
      bar.update(done)
      current = next
    }
    output!.commit()
  } catch (error) {
    throw output ? output.abandon(error) : error
  } finally {
    job?.close()
    bar.stop()
    model.dispose()
    stopSignals()
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
      `birnn: scored ${plural(job.count, 'sequence')}${shard} from ${options.input} into ${options.output}: ` +
        `${options.outputKind} output, ${summary.outputShape}; ${seconds.toFixed(2)} s, ` +
        `${summary.sequencesPerSecond.toLocaleString('en-US')} seq/s on ${describeBackend(model)}\n`,
    )
  }
  if (firstValues && !options.json) {
    const shown = [...firstValues.values].map((v) => v.toFixed(4)).join(', ')
    const more = firstValues.values.length < PREVIEW_VALUES ? '' : ', …'
    process.stdout.write(`birnn: ${firstValues.label}: [${shown}${more}]\n`)
  }
}
