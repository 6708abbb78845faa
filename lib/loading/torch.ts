// torch.save checkpoints (.pt, .pth): the zip archive PyTorch has written by default since 1.6.
// The archive (read with fflate) holds <name>/data.pkl, the pickled object, and <name>/data/<key>,
// one record per storage; the restricted unpickler (pickle.ts) turns data.pkl into containers of
// tensors, each a view (offset, size, stride) of a storage. Nested checkpoints ({"model": …,
// "optimizer": …, "epoch": 3}) are flattened to dotted names ("model.rnn.weight_ih_l0") so that
// readStateDict() finds the recurrent module's prefix as it does in a flat state_dict. Every
// record's CRC-32 is checked, so a corrupted archive is refused rather than read as other weights.

import * as zlib from 'node:zlib'
import { unzipSync } from 'fflate'
import type { Tensor } from '../types.js'
import {
  checkpointError,
  ITEM_BYTES,
  PickleDict,
  type PickleStorage,
  type PickleTensor,
  PickleTuple,
  type PickleValue,
  SAVE_STATE_DICT,
  unpickle,
} from './pickle.js'
import { toFloat32 } from './safetensors.js'
import type { StateDictSource } from './state-dict.js'

const FLOAT_DTYPES = ['F32', 'F16', 'BF16', 'F64']
/** Deepest nesting of containers that is searched for tensors, and most containers visited. */
const MAX_DEPTH = 32
const MAX_VISITS = 1_000_000

/** A zip archive: a local file header, or the end record of an empty archive. */
export const isZip = (bytes: Uint8Array): boolean =>
  bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && (bytes[2] === 3 || bytes[2] === 5)

/** A bare pickle (PROTO opcode): torch.save's legacy format, before PyTorch 1.6. */
export const isPickle = (bytes: Uint8Array): boolean => bytes.length >= 2 && bytes[0] === 0x80 && bytes[1] <= 5

export const LEGACY_MESSAGE =
  "this is PyTorch's legacy (pre-1.6) torch.save format, which birnn does not read; re-save it with PyTorch 1.6 or later: " +
  `python3 -c "import torch; torch.save(torch.load('model.pt', map_location='cpu'), 'model-new.pt')"`

// --- CRC-32 (zlib.crc32 where Node has it: 20.15 and later) ------------------------------------

let table: Uint32Array | undefined
function crc32(data: Uint8Array): number {
  const native = (zlib as { crc32?: (data: Uint8Array) => number }).crc32
  if (native) return native(data) >>> 0
  if (!table) {
    table = new Uint32Array(256)
    for (let n = 0; n < 256; n++) {
      let c = n
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
      table[n] = c >>> 0
    }
  }
  let c = 0xffffffff
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/** Each record's CRC-32 from the central directory (names as fflate decodes them). */
function centralCrcs(bytes: Uint8Array): Map<string, number> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const crcs = new Map<string, number>()
  let end = bytes.length - 22
  while (end >= 0 && view.getUint32(end, true) !== 0x06054b50) {
    if (bytes.length - end > 65557) return crcs
    end--
  }
  if (end < 0) return crcs
  let count = view.getUint16(end + 10, true)
  let offset = view.getUint32(end + 16, true)
  if (end >= 20 && view.getUint32(end - 20, true) === 0x07064b50) {
    const zip64 = Number(view.getBigUint64(end - 12, true))
    if (zip64 + 56 <= bytes.length && view.getUint32(zip64, true) === 0x06064b50) {
      count = Number(view.getBigUint64(zip64 + 32, true))
      offset = Number(view.getBigUint64(zip64 + 48, true))
    }
  }
  const utf8 = new TextDecoder('utf-8')
  const latin1 = new TextDecoder('latin1')
  for (let i = 0; i < count && offset + 46 <= bytes.length; i++) {
    if (view.getUint32(offset, true) !== 0x02014b50) break
    const flags = view.getUint16(offset + 8, true)
    const nameLength = view.getUint16(offset + 28, true)
    const next = offset + 46 + nameLength + view.getUint16(offset + 30, true) + view.getUint16(offset + 32, true)
    const name = bytes.subarray(offset + 46, offset + 46 + nameLength)
    crcs.set((flags & 0x800 ? utf8 : latin1).decode(name), view.getUint32(offset + 16, true))
    offset = next
  }
  return crcs
}

// --- The archive ---------------------------------------------------------------------------------

function readArchive(bytes: Uint8Array): Record<string, Uint8Array> {
  let entries = 0
  try {
    return unzipSync(bytes, {
      filter: ({ name, size, originalSize, compression }) => {
        // Each central directory entry takes at least 46 bytes: more entries than that is a lie.
        if (++entries > bytes.length / 46)
          throw checkpointError('the zip directory lists more records than the file holds')
        if (compression !== 0 && compression !== 8) {
          throw checkpointError(
            `record '${name}' uses zip compression method ${compression}; expected stored or deflate`,
          )
        }
        // Deflate expands at most ~1032 times: a larger claim would only make us allocate for nothing.
        if (compression === 8 && originalSize > size * 1032 + 1024) {
          throw checkpointError(`record '${name}' claims ${originalSize} bytes from ${size} compressed bytes`)
        }
        return true
      },
    })
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ERR_BIRNN_CHECKPOINT') throw error
    throw checkpointError(
      `expected a zip archive written by torch.save, received bytes that do not read as one (${(error as Error).message}): the file is truncated or corrupted`,
    )
  }
}

interface Archive {
  prefix: string
  record(name: string): Uint8Array | undefined
}

function openArchive(bytes: Uint8Array): Archive {
  const records = readArchive(bytes)
  const crcs = centralCrcs(bytes)
  const dataPkl = Object.keys(records).find((name) => name === 'data.pkl' || /^[^/]*\/data\.pkl$/.test(name))
  if (dataPkl === undefined) {
    throw checkpointError(
      `expected a torch.save archive with a data.pkl record, received a zip archive of ${Object.keys(records).length} records without one`,
    )
  }
  const prefix = dataPkl.slice(0, -'data.pkl'.length)
  const checked = new Set<string>()
  const record = (name: string): Uint8Array | undefined => {
    const full = prefix + name
    const data = records[full]
    if (data === undefined || checked.has(full)) return data
    const expected = crcs.get(full)
    if (expected === undefined) throw checkpointError(`record '${full}' is missing from the zip central directory`)
    const actual = crc32(data)
    if (actual !== expected) {
      throw checkpointError(
        `record '${full}': expected CRC-32 ${expected.toString(16).padStart(8, '0')}, received ${actual.toString(16).padStart(8, '0')}: the file is corrupted`,
      )
    }
    checked.add(full)
    return data
  }
  const order = record('byteorder')
  if (order !== undefined) {
    const text = new TextDecoder().decode(order).trim()
    if (text === 'big') {
      throw checkpointError(
        'byteorder: expected a little-endian archive, received one saved on a big-endian machine; load and re-save it with torch.save on a little-endian machine (x86, ARM)',
      )
    }
    if (text !== 'little')
      throw checkpointError(`byteorder: expected 'little' or 'big', received ${JSON.stringify(text.slice(0, 20))}`)
  }
  return { prefix, record }
}

// --- Nested containers → dotted names -------------------------------------------------------------

const isTensor = (value: PickleValue): value is PickleTensor =>
  typeof value === 'object' && value !== null && 'kind' in value && value.kind === 'tensor'

function keyText(key: unknown): string {
  if (key === null) return 'None'
  if (typeof key === 'boolean') return key ? 'True' : 'False'
  return String(key)
}

/**
 * Every tensor reachable from the root, named by the keys (and list indices) that lead to it,
 * joined with dots. A tensor reachable twice keeps the first name; both names are listed.
 */
function flatten(root: PickleValue): Map<string, PickleTensor> {
  if (isTensor(root)) {
    throw checkpointError(`expected a state_dict (a dict of tensors), received a single tensor; ${SAVE_STATE_DICT}`)
  }
  const tensors = new Map<string, PickleTensor>()
  const path = new Set<PickleValue>()
  let visits = 0
  const walk = (value: PickleValue, name: string, depth: number) => {
    if (isTensor(value)) {
      if (!tensors.has(name)) tensors.set(name, value)
      return
    }
    const children: Array<[string, PickleValue]> =
      value instanceof PickleDict
        ? [...value.entries].map(([k, v]) => [keyText(k), v])
        : Array.isArray(value)
          ? value.map((v, i) => [String(i), v])
          : value instanceof PickleTuple
            ? value.items.map((v, i) => [String(i), v])
            : []
    if (children.length === 0 || path.has(value)) return // a leaf, or a container inside itself
    if (depth > MAX_DEPTH) throw checkpointError(`containers nest more than ${MAX_DEPTH} deep at '${name}'`)
    visits += children.length
    if (visits > MAX_VISITS) {
      throw checkpointError(`expected at most ${MAX_VISITS} values in nested containers, received more`)
    }
    path.add(value)
    for (const [key, child] of children) walk(child, name ? `${name}.${key}` : key, depth + 1)
    path.delete(value)
  }
  walk(root, '', 0)
  return tensors
}

// --- Tensors --------------------------------------------------------------------------------------

/** The tensor's elements in row-major order (a view of the storage when it is already so laid out). */
function materialize(storageBytes: Uint8Array, tensor: PickleTensor): Uint8Array {
  const { offset, size, stride } = tensor
  const item = ITEM_BYTES[tensor.storage.dtype]
  const numel = size.reduce((a, b) => a * b, 1)
  let contiguous = true
  for (let i = size.length - 1, expected = 1; i >= 0; expected *= size[i], i--) {
    if (size[i] !== 1 && stride[i] !== expected) contiguous = false
  }
  if (contiguous || numel === 0) return storageBytes.subarray(offset * item, (offset + numel) * item)
  const out = new Uint8Array(numel * item)
  const index = new Array<number>(size.length).fill(0)
  const last = size.length - 1
  let source = offset
  for (let n = 0; n < numel; n++) {
    out.set(storageBytes.subarray(source * item, source * item + item), n * item)
    // Advance the multi-index like an odometer, moving `source` by the strides.
    for (let d = last; d >= 0; d--) {
      if (++index[d] < size[d]) {
        source += stride[d]
        break
      }
      source -= (size[d] - 1) * stride[d]
      index[d] = 0
    }
  }
  return out
}

/** A torch.save zip archive as a StateDictSource: tensors by dotted name, converted when read. */
export function openCheckpoint(bytes: Uint8Array): StateDictSource {
  const archive = openArchive(bytes)
  const pkl = archive.record('data.pkl')!
  const storages = new Map<string, PickleStorage>()
  const storageData = new Map<PickleStorage, Uint8Array>()
  const root = unpickle(pkl, (key, dtype, numel) => {
    const known = storages.get(key)
    if (known) {
      if (known.dtype !== dtype || known.numel !== numel) {
        throw checkpointError(
          `storage '${key}' is declared twice, as ${known.dtype} × ${known.numel} and ${dtype} × ${numel}`,
        )
      }
      return known
    }
    const data = archive.record(`data/${key}`)
    if (data === undefined)
      throw checkpointError(`expected a record '${archive.prefix}data/${key}' for a storage, received none`)
    const bytesNeeded = numel * ITEM_BYTES[dtype]
    if (data.length !== bytesNeeded) {
      throw checkpointError(
        `storage '${key}' of ${numel} ${dtype} elements: expected ${bytesNeeded} bytes, received ${data.length}`,
      )
    }
    const storage: PickleStorage = { kind: 'storage', key, dtype, numel }
    storages.set(key, storage)
    storageData.set(storage, data)
    return storage
  })
  const tensors = flatten(root)
  const stored = (name: string) => tensors.get(name)!
  return {
    names: [...tensors.keys()],
    shape: (name) => stored(name).size,
    dtype: (name) => stored(name).storage.dtype,
    read: (name): Tensor => {
      const tensor = stored(name)
      const { dtype } = tensor.storage
      if (!FLOAT_DTYPES.includes(dtype)) {
        throw checkpointError(`tensor '${name}' has dtype ${dtype}; expected one of ${FLOAT_DTYPES.join(', ')}`)
      }
      const data = materialize(storageData.get(tensor.storage)!, tensor)
      return toFloat32(name, { dtype, shape: [...tensor.size], bytes: data })
    },
  }
}
