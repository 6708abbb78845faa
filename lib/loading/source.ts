// Where a state_dict comes from: a file (a path or its bytes) or tensors already in memory. Each
// kind is opened into the same StateDictSource, which readStateDict() then interprets; tensors
// are converted to float32 only when read, and never shared with the file or the caller. A file's
// format is told by its content, never its name: safetensors, a torch.save checkpoint (a zip
// archive; the legacy bare pickle is refused with the line that re-saves it), or an ONNX model.

import { readFile } from 'node:fs/promises'
import { BirnnError, checkTensor, typeError } from '../errors.js'
import { isOnnx, openOnnx } from './onnx.js'
import { checkpointError } from './pickle.js'
import { openSafetensors } from './safetensors.js'
import type { StateDictSource } from './state-dict.js'
import { isPickle, isZip, LEGACY_MESSAGE, openCheckpoint } from './torch.js'

/** safetensors starts with its header length, then the JSON header's '{'. */
const isSafetensors = (bytes: Uint8Array): boolean => bytes.length > 8 && bytes[8] === 0x7b
const FORMATS = 'expected a safetensors file, a PyTorch checkpoint (torch.save) or an ONNX export'

/**
 * Files often given by mistake for a model (an input array, a text file), named for what they
 * are: read as safetensors, their first bytes would make a header length of petabytes.
 */
function notAModel(bytes: Uint8Array): BirnnError | undefined {
  const head = bytes.subarray(0, 64)
  if (head.length >= 6 && head[0] === 0x93 && Buffer.from(head.subarray(1, 6)).toString('latin1') === 'NUMPY')
    return new BirnnError('ERR_BIRNN_SAFETENSORS', `a NumPy .npy array, not a model: ${FORMATS}`)
  // Text: a safetensors header length is far below 2^56, so its 8th byte is 0, not printable.
  if (head.length >= 8 && head.every((b) => b >= 0x20 || b === 0x09 || b === 0x0a || b === 0x0d)) {
    const text = new TextDecoder().decode(head).trimStart().slice(0, 24)
    return new BirnnError('ERR_BIRNN_SAFETENSORS', `text starting ${JSON.stringify(text)}, not a model: ${FORMATS}`)
  }
  return undefined
}

/** A state_dict file: a path, or the file's bytes. */
export async function openFile(source: unknown): Promise<StateDictSource> {
  let bytes: Uint8Array
  if (typeof source === 'string') bytes = await readFile(source)
  else if (source instanceof Uint8Array) bytes = source
  else throw typeError('source', 'a file path or the safetensors bytes (Uint8Array or Buffer)', source)
  if (!isSafetensors(bytes)) {
    if (isZip(bytes)) return openCheckpoint(bytes)
    if (isPickle(bytes)) throw checkpointError(LEGACY_MESSAGE)
    if (isOnnx(bytes)) return openOnnx(bytes)
    const error = notAModel(bytes)
    if (error) throw error
  }
  return openSafetensors(bytes)
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
