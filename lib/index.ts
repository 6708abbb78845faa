// birnn: PyTorch-exact nn.RNN / nn.GRU / nn.LSTM inference for Node.js.

import { openFile, openRecord } from './loading/source.js'
import { readStateDict } from './loading/state-dict.js'
import { createModel, type Model } from './model/model.js'
import { checkLoadOptions } from './model/options.js'
import type { LoadOptions, Tensor } from './types.js'

export { BirnnError, BirnnRangeError, BirnnTypeError, type ErrorCode } from './errors.js'
export type { Model } from './model/model.js'
export type { Batcher } from './serving/batcher.js'
export type * from './types.js'

/** Loads a PyTorch state_dict saved as safetensors, from a file path or the file's bytes. */
export async function load(source: string | Uint8Array, options?: LoadOptions): Promise<Model> {
  const checked = checkLoadOptions(options)
  return createModel(readStateDict(await openFile(source), checked), checked)
}

/** Builds a model from a state_dict already in memory: tensor name -> { data, shape }. The data is copied. */
export function fromStateDict(tensors: Record<string, Tensor>, options?: LoadOptions): Model {
  const checked = checkLoadOptions(options)
  return createModel(readStateDict(openRecord(tensors), checked), checked)
}
