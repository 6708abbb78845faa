// Where a state_dict comes from: a file (a path or its bytes) or tensors already in memory. Each
// kind is opened into the same StateDictSource, which readStateDict() then interprets; tensors
// are converted to float32 only when read, and never shared with the file or the caller.

import { readFile } from 'node:fs/promises'
import { checkTensor, typeError } from '../errors.js'
import type { Tensor } from '../types.js'
import { parseSafetensors, toFloat32 } from './safetensors.js'

export interface StateDictSource {
  /** Every tensor's name, in the order the source lists them. */
  names: readonly string[]
  /** A tensor's shape, without reading its data. */
  shape(name: string): readonly number[]
  /** A tensor as float32 in a fresh buffer; throws if it cannot be converted. */
  read(name: string): Tensor
  /** How the tensor is stored, e.g. 'F32', 'BF16'. */
  dtype(name: string): string
}

/** A state_dict file: a path, or the file's bytes. */
export async function openFile(source: unknown): Promise<StateDictSource> {
  let bytes: Uint8Array
  if (typeof source === 'string') bytes = await readFile(source)
  else if (source instanceof Uint8Array) bytes = source
  else throw typeError('source', 'a file path or the safetensors bytes (Uint8Array or Buffer)', source)
  const tensors = parseSafetensors(bytes)
  const stored = (name: string) => tensors.get(name)!
  return {
    names: [...tensors.keys()],
    shape: (name) => stored(name).shape,
    read: (name) => toFloat32(name, stored(name)),
    dtype: (name) => stored(name).dtype,
  }
}

/** A user's Record<string, Tensor> (fromStateDict): each tensor is checked when read, then copied. */
export function openRecord(tensors: unknown): StateDictSource {
  if (typeof tensors !== 'object' || tensors === null || Array.isArray(tensors)) {
    throw typeError('tensors', 'a record of tensor name to { data: Float32Array, shape: number[] }', tensors)
  }
  const record = tensors as Record<string, unknown>
  const checked = (name: string) => checkTensor(`tensors['${name}']`, record[name])
  return {
    names: Object.keys(record),
    shape: (name) => checked(name).shape,
    read: (name) => {
      const { data, shape } = checked(name)
      return { data: data.slice(), shape: [...shape] }
    },
    dtype: () => 'F32',
  }
}
