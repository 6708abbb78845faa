// birnn: PyTorch-exact nn.RNN / nn.GRU / nn.LSTM inference for Node.js.

import { readFile } from 'node:fs/promises'
import { typeError } from './errors.js'
import { checkLoadOptions, createModel, type Model } from './model.js'
import { parseSafetensors, toFloat32 } from './safetensors.js'
import { readStateDict, recordReader } from './state-dict.js'
import type { LoadOptions, Tensor } from './types.js'

export type { Model } from './model.js'
export type * from './types.js'

/** Loads a PyTorch state_dict saved as safetensors, from a file path or the file's bytes. */
export async function load(source: string | Uint8Array, options?: LoadOptions): Promise<Model> {
  const checked = checkLoadOptions(options)
  let bytes: Uint8Array
  if (typeof source === 'string') bytes = await readFile(source)
  else if (source instanceof Uint8Array) bytes = source
  else throw typeError('source', 'a file path or the safetensors bytes (Uint8Array or Buffer)', source)
  const { tensors } = parseSafetensors(bytes)
  const weights = readStateDict([...tensors.keys()], (name) => toFloat32(name, tensors.get(name)!), checked)
  return createModel(weights, checked)
}

/** Builds a model from a state_dict already in memory: tensor name -> { data, shape }. The data is copied. */
export function fromStateDict(tensors: Record<string, Tensor>, options?: LoadOptions): Model {
  const checked = checkLoadOptions(options)
  if (typeof tensors !== 'object' || tensors === null || Array.isArray(tensors)) {
    throw typeError('tensors', 'a record of tensor name to { data: Float32Array, shape: number[] }', tensors)
  }
  return createModel(readStateDict(Object.keys(tensors), recordReader(tensors), checked), checked)
}
