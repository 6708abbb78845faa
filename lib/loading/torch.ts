// torch.save checkpoints (.pt, .pth): the zip archive PyTorch has written by default since 1.6.
// The archive holds <name>/data.pkl, the pickled object, and <name>/data/<key>, one record per
// storage; the restricted unpickler (pickle.ts) turns data.pkl into containers of tensors, each a
// view (offset, size, stride) of a storage. Nested checkpoints ({"model": …, "optimizer": …,
// "epoch": 3}) are flattened to dotted names ("model.rnn.weight_ih_l0") so that readStateDict()
// finds the recurrent module's prefix as it does in a flat state_dict. The zip directory is read
// here; a record is read (inflated by fflate where deflated) only when used, and its CRC-32 is
// checked then, so a corrupted archive is refused rather than read as other weights.

import * as zlib from 'node:zlib'
import { inflateSync } from 'fflate'
import type { Tensor } from '../types.js'
import {
  checkpointError,
  ITEM_BYTES,
  isTensor,
  keyText,
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
/** The longest dotted name searched, and most characters of all the names kept (see flatten). */
const MAX_NAME = 1024
const MAX_NAMES_TEXT = 1 << 24

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

// --- The archive ---------------------------------------------------------------------------------

/** A record as the zip central directory lists it. */
interface Entry {
  readonly name: string
  /** 0 stored, 8 deflate. */
  readonly method: number
  readonly crc: number
  /** Bytes in the file, and once decompressed. */
  readonly size: number
  readonly originalSize: number
  /** Where its local header starts. */
  readonly offset: number
}

const NO_32_BIT_VALUE = 0xffffffff
const utf8 = new TextDecoder('utf-8')
const latin1 = new TextDecoder('latin1')

const corrupt = (detail: string) =>
  checkpointError(
    `expected a zip archive written by torch.save, received bytes that do not read as one (${detail}): the file is truncated or corrupted`,
  )

/**
 * The records the zip central directory lists (zip64 too), by name, in its order. Nothing is
 * decompressed here: a record is read only when asked for, so a record never used costs nothing
 * however large it claims to be. Every offset and length is checked against the file.
 */
function directory(bytes: Uint8Array): Map<string, Entry> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const u16 = (at: number) => view.getUint16(at, true)
  const u32 = (at: number) => view.getUint32(at, true)
  const u64 = (at: number) => Number(view.getBigUint64(at, true))
  // The end record is last but for a comment of at most 65535 bytes.
  let end = bytes.length - 22
  while (end >= 0 && end >= bytes.length - 22 - 0xffff && u32(end) !== 0x06054b50) end--
  if (end < 0 || u32(end) !== 0x06054b50) throw corrupt('no end of central directory record')
  let count = u16(end + 10)
  let at = u32(end + 16)
  if (end >= 20 && u32(end - 20) === 0x07064b50) {
    const zip64 = u64(end - 12)
    if (!(zip64 <= bytes.length - 56) || u32(zip64) !== 0x06064b50) {
      throw corrupt('no zip64 end of central directory record where its locator points')
    }
    count = u64(zip64 + 32)
    at = u64(zip64 + 48)
  }
  // Each entry takes at least 46 bytes: more entries than that is a lie.
  if (count > bytes.length / 46) throw checkpointError('the zip directory lists more records than the file holds')
  const entries = new Map<string, Entry>()
  for (let i = 0; i < count; i++) {
    if (!(at <= bytes.length - 46) || u32(at) !== 0x02014b50) {
      throw corrupt(`entry ${i} of the ${count} in the central directory is missing`)
    }
    const nameEnd = at + 46 + u16(at + 28)
    const extraEnd = nameEnd + u16(at + 30)
    const next = extraEnd + u16(at + 32)
    if (next > bytes.length) throw corrupt(`entry ${i} of the central directory extends past the end of the file`)
    const name = (u16(at + 8) & 0x800 ? utf8 : latin1).decode(bytes.subarray(at + 46, nameEnd))
    let size = u32(at + 20)
    let originalSize = u32(at + 24)
    let offset = u32(at + 42)
    // Values past 32 bits are in the zip64 extra field (id 1): in this order, each only where its
    // 32-bit field holds 0xffffffff.
    for (let field = nameEnd; field + 4 <= extraEnd; field += 4 + u16(field + 2)) {
      if (u16(field) !== 1) continue
      let value = field + 4
      const fieldEnd = Math.min(value + u16(field + 2), extraEnd)
      const next64 = () => {
        if (value + 8 > fieldEnd) throw corrupt(`record '${name}' has a zip64 extra field too short for its sizes`)
        value += 8
        return u64(value - 8)
      }
      if (originalSize === NO_32_BIT_VALUE) originalSize = next64()
      if (size === NO_32_BIT_VALUE) size = next64()
      if (offset === NO_32_BIT_VALUE) offset = next64()
      break
    }
    if (entries.has(name)) throw corrupt(`record '${name}' is listed twice`)
    entries.set(name, { name, method: u16(at + 10), crc: u32(at + 16), size, originalSize, offset })
    at = next
  }
  return entries
}

/**
 * A record's bytes, checked against its CRC-32: a stored record is a view of the file, a deflated
 * one is inflated into exactly the size the directory declares.
 */
function readRecord(bytes: Uint8Array, entry: Entry): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const { name, offset } = entry
  if (!(offset <= bytes.length - 30) || view.getUint32(offset, true) !== 0x04034b50) {
    throw corrupt(`record '${name}' has no local header at byte ${offset}`)
  }
  const start = offset + 30 + view.getUint16(offset + 26, true) + view.getUint16(offset + 28, true)
  if (!(start + entry.size <= bytes.length)) throw corrupt(`record '${name}' extends past the end of the file`)
  let data = bytes.subarray(start, start + entry.size)
  if (entry.method === 8) {
    try {
      data = inflateSync(data, { out: new Uint8Array(entry.originalSize) })
    } catch (error) {
      throw corrupt(`record '${name}': ${(error as Error).message}`)
    }
  }
  if (data.length !== entry.originalSize) {
    throw corrupt(`record '${name}': expected ${entry.originalSize} bytes, received ${data.length}`)
  }
  const actual = crc32(data)
  if (actual !== entry.crc) {
    throw checkpointError(
      `record '${name}': expected CRC-32 ${entry.crc.toString(16).padStart(8, '0')}, received ${actual.toString(16).padStart(8, '0')}: the file is corrupted`,
    )
  }
  return data
}

interface Archive {
  prefix: string
  /** The record <prefix><name>, if listed: checked to be one we can read, but not read. */
  entry(name: string): Entry | undefined
  read(entry: Entry): Uint8Array
}

function openArchive(bytes: Uint8Array): Archive {
  const entries = directory(bytes)
  let prefix: string | undefined
  for (const name of entries.keys()) {
    if (name === 'data.pkl' || /^[^/]*\/data\.pkl$/.test(name)) {
      prefix = name.slice(0, -'data.pkl'.length)
      break
    }
  }
  if (prefix === undefined) {
    throw checkpointError(
      `expected a torch.save archive with a data.pkl record, received a zip archive of ${entries.size} records without one`,
    )
  }
  const entry = (name: string): Entry | undefined => {
    const found = entries.get(prefix + name)
    if (found === undefined) return undefined
    const { method, size, originalSize } = found
    if (method !== 0 && method !== 8) {
      throw checkpointError(`record '${found.name}' uses zip compression method ${method}; expected stored or deflate`)
    }
    // Deflate expands at most ~1032 times: a larger claim would only make us allocate for nothing.
    if (method === 8 && originalSize > size * 1032 + 1024) {
      throw checkpointError(`record '${found.name}' claims ${originalSize} bytes from ${size} compressed bytes`)
    }
    return found
  }
  const read = (found: Entry) => readRecord(bytes, found)
  const order = entry('byteorder')
  if (order !== undefined) {
    const text = new TextDecoder().decode(read(order)).trim()
    if (text === 'big') {
      throw checkpointError(
        'byteorder: expected a little-endian archive, received one saved on a big-endian machine; load and re-save it with torch.save on a little-endian machine (x86, ARM)',
      )
    }
    if (text !== 'little')
      throw checkpointError(`byteorder: expected 'little' or 'big', received ${JSON.stringify(text.slice(0, 20))}`)
  }
  return { prefix, entry, read }
}

// --- Nested containers → dotted names -------------------------------------------------------------

/** One tensor reached twice (a memo reference), or two tensors with the same view of one storage. */
const sameTensor = (a: PickleTensor, b: PickleTensor): boolean =>
  a === b ||
  (a.storage === b.storage &&
    a.offset === b.offset &&
    a.size.length === b.size.length &&
    a.size.every((d, i) => d === b.size[i] && a.stride[i] === b.stride[i]))

/**
 * Every tensor reachable from the root, named by the keys (and list indices) that lead to it,
 * joined with dots. A tensor reachable under several names is listed under each; two different
 * tensors under one name ({'rnn.weight_ih_l0': a, 'rnn': {'weight_ih_l0': b}}, or the keys 0 and
 * '0') are refused as ambiguous. Names are bounded: a value whose name would be longer than
 * MAX_NAME characters is not searched (no state_dict's names come near that), and names of more
 * than MAX_NAMES_TEXT characters in all are refused, so that keys shared through the pickle's
 * memo cannot make names without limit.
 */
function flatten(root: PickleValue): Map<string, PickleTensor> {
  if (isTensor(root)) {
    throw checkpointError(`expected a state_dict (a dict of tensors), received a single tensor; ${SAVE_STATE_DICT}`)
  }
  const tensors = new Map<string, PickleTensor>()
  const path = new Set<PickleValue>()
  let visits = 0
  let nameChars = 0
  const walk = (value: PickleValue, name: string, depth: number) => {
    if (isTensor(value)) {
      const known = tensors.get(name)
      if (known === undefined) {
        nameChars += name.length
        if (nameChars > MAX_NAMES_TEXT) {
          throw checkpointError(
            `expected tensor names of at most ${MAX_NAMES_TEXT} characters in all, received more (${tensors.size} tensors so far)`,
          )
        }
        tensors.set(name, value)
      } else if (!sameTensor(known, value)) {
        throw checkpointError(
          `expected one tensor for each dotted name, received two different tensors named '${name}' (a key with dots in it, or the keys 0 and '0', can lead to the same name)`,
        )
      }
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
    for (const [key, child] of children) {
      if ((name ? name.length + 1 : 0) + key.length > MAX_NAME) continue
      walk(child, name ? `${name}.${key}` : key, depth + 1)
    }
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

/**
 * A torch.save zip archive as a StateDictSource: tensors by dotted name, converted when read. A
 * storage's record is read (inflated, CRC-checked) when one of its tensors is first read, so the
 * storages of an optimizer's state, say, cost nothing.
 */
export function openCheckpoint(bytes: Uint8Array): StateDictSource {
  const archive = openArchive(bytes)
  const pkl = archive.read(archive.entry('data.pkl')!)
  const storages = new Map<string, PickleStorage>()
  const records = new Map<PickleStorage, Entry>()
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
    const record = archive.entry(`data/${key}`)
    if (record === undefined)
      throw checkpointError(`expected a record '${archive.prefix}data/${key}' for a storage, received none`)
    const bytesNeeded = numel * ITEM_BYTES[dtype]
    if (record.originalSize !== bytesNeeded) {
      throw checkpointError(
        `storage '${key}' of ${numel} ${dtype} elements: expected ${bytesNeeded} bytes, received ${record.originalSize}`,
      )
    }
    const storage: PickleStorage = { kind: 'storage', key, dtype, numel }
    storages.set(key, storage)
    records.set(storage, record)
    return storage
  })
  const tensors = flatten(root)
  const stored = (name: string) => tensors.get(name)!
  const storageBytes = (storage: PickleStorage): Uint8Array => {
    let data = storageData.get(storage)
    if (data === undefined) {
      data = archive.read(records.get(storage)!)
      storageData.set(storage, data)
    }
    return data
  }
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
      const data = materialize(storageBytes(tensor.storage), tensor)
      return toFloat32(name, { dtype, shape: [...tensor.size], bytes: data })
    },
  }
}
