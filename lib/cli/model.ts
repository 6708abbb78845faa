// The model as the commands open and describe it. Opened step by step, as load() does, so that
// `info` can report what the loader found (prefix, tensors, stored dtypes) without reading the
// file twice.

import { openFile } from '../loading/source.js'
import { readStateDict, type StateDictSource, type Weights } from '../loading/state-dict.js'
import { createModel, type Model } from '../model/model.js'
import { checkLoadOptions, simdConflict } from '../model/options.js'
import type { ModelConfig } from '../types.js'
import { isUserError, RunError, requireFile, UsageError } from './errors.js'
import { loadOptions, type ModelOptions } from './options.js'

interface OpenedModel {
  model: Model
  weights: Weights
  source: StateDictSource
}

/** `batchFirst` undefined: the layout the file records (an ONNX graph's), else time-major. */
export async function openModel(
  path: string,
  options: ModelOptions,
  batchFirst: boolean | undefined,
): Promise<OpenedModel> {
  const engine = simdConflict(options.simd, options.backend)
  if (engine) {
    // checkLoadOptions() would refuse it too, in the library's words: these are the CLI's.
    throw new UsageError(`--simd ${options.simd} is the ${engine} kernel's, but --backend is ${options.backend}`)
  }
  requireFile(path, 'model')
  try {
    const checked = checkLoadOptions(loadOptions(options, batchFirst))
    const source = await openFile(path)
    const weights = readStateDict(source, checked)
    return { model: createModel(weights, checked), weights, source }
  } catch (error) {
    if (isUserError(error)) throw new RunError(`model ${path}: ${error.message}`)
    throw error
  }
}

export const describeBackend = (model: Model): string =>
  model.simd ? `${model.backend} (${model.simd})` : model.backend

export function describeModel(config: ModelConfig): string {
  const mode = config.mode === 'RNN_TANH' ? 'RNN (tanh)' : config.mode === 'RNN_RELU' ? 'RNN (relu)' : config.mode
  return [
    mode,
    `inputSize ${config.inputSize}`,
    `hiddenSize ${config.hiddenSize}`,
    ...(config.projSize ? [`projSize ${config.projSize}`] : []),
    `numLayers ${config.numLayers}`,
    config.bidirectional ? 'bidirectional' : 'unidirectional',
    config.bias ? 'with bias' : 'no bias',
  ].join(', ')
}
