// birnn info: what the model is, what it needs, and which backend runs it.

import { directions, outputSize } from '../spec.js'
import { describeBackend, describeModel, openModel } from './model.js'
import type { ModelOptions } from './options.js'

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`
}

export async function info(modelPath: string, options: ModelOptions & { json?: boolean }): Promise<void> {
  const { model, weights, source } = await openModel(modelPath, options, undefined)
  model.dispose()
  const { config } = model
  const { prefix, tensorNames } = weights
  const parameters = tensorNames.reduce((n, name) => n + source.shape(name).reduce((a, b) => a * b, 1), 0)
  const storedDtype = [...new Set(tensorNames.map((name) => source.dtype(name)))].join(', ')
  const width = directions(config) * outputSize(config)
  const stepBytes = (config.inputSize + width) * 4
  const summary = {
    model: modelPath,
    prefix,
    config,
    parameters,
    storedDtype,
    weightBytes: parameters * 4,
    outputWidth: width,
    bytesPerSequenceStep: stepBytes,
    backend: model.backend,
    simd: model.simd ?? null,
    backendReason: model.backendReason,
  }
  if (options.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`)
    return
  }
  const rows: Array<[string, string]> = [
    ['model', `${modelPath}${prefix ? ` (module at prefix '${prefix}')` : ''}`],
    ['network', describeModel(config)],
    [
      'input',
      config.batchFirst
        ? `(N, T, ${config.inputSize}): the file records a batch-first module`
        : `(T, N, ${config.inputSize}), or (N, T, ${config.inputSize}) with --batch-first`,
    ],
    [
      'output',
      `${config.batchFirst ? '(N, T' : '(T, N'}, ${width}) for --output-kind full; (N, ${width}) for last and mean`,
    ],
    ['parameters', `${parameters.toLocaleString('en-US')}, stored as ${storedDtype}`],
    [
      'memory',
      `${formatBytes(summary.weightBytes)} of float32 weights, plus ${stepBytes} bytes of input and output per sequence step (a batch of 128 sequences of 100 steps: ${formatBytes(128 * 100 * stepBytes)})`,
    ],
    ['backend', `${describeBackend(model)}: ${model.backendReason}`],
  ]
  for (const [key, value] of rows) process.stdout.write(`${key.padEnd(11)} ${value}\n`)
}
