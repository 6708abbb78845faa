// Reads the safetensors format (https://huggingface.co/docs/safetensors) from untrusted bytes:
// an 8-byte little-endian header length, a JSON header, then the raw tensor bytes.
// Every offset, size and shape is checked before a byte is read, so no file can make us read
// out of bounds or allocate without limit. Tensors are converted to float32 only when used.

import { BirnnError, describe } from '../errors.js'
import type { Tensor } from '../types.js'
import type { StateDictSource } from './state-dict.js'

/** Bytes per element of every dtype the format defines; only the float ones convert to float32. */
const DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
}
const FLOAT_DTYPES = ['F32', 'F16', 'BF16', 'F64']

export interface StoredTensor {
  dtype: string
  shape: number[]
  /** The tensor's bytes, a view into the file. */
  bytes: Uint8Array
}

function fail(message: string): never {
  throw new BirnnError('ERR_BIRNN_SAFETENSORS', `safetensors: ${message}`)
}

/** A header value in a message: a short list of numbers as it is, anything else described. */
const shown = (value: unknown): string =>
  Array.isArray(value) && value.length <= 8 && value.every((v) => typeof v === 'number')
    ? `[${value.join(', ')}]`
    : describe(value)

/** The tensors of a safetensors file, by name (`__metadata__` is skipped). */
export function parseSafetensors(file: Uint8Array): Map<string, StoredTensor> {
  return parse(file).tensors
}

/**
 * A safetensors file as a StateDictSource. Of `__metadata__` (free text otherwise), only
 * `nonlinearity` is read, as `birnn convert` writes it for an nn.RNN: a state_dict cannot say it.
 */
export function openSafetensors(file: Uint8Array): StateDictSource {
  const { tensors, metadata } = parse(file)
  const stored = (name: string) => tensors.get(name)!
  const source: StateDictSource = {
    names: [...tensors.keys()],
    shape: (name) => stored(name).shape,
    read: (name) => toFloat32(name, stored(name)),
    dtype: (name) => stored(name).dtype,
  }
  // birnn convert writes `nonlinearity` ('tanh' or 'relu') and, for a batch_first module's ONNX
  // export, `batch_first` ('true'); other tools' free text there (an LSTM's 'sigmoid') is not ours
  // to judge, and is ignored.
  const entry = (key: string): unknown =>
    typeof metadata === 'object' && metadata !== null
      ? Object.getOwnPropertyDescriptor(metadata, key)?.value
      : undefined
  const nonlinearity = entry('nonlinearity')
  const batchFirst = entry('batch_first')
  const hints: NonNullable<StateDictSource['hints']> = {}
  if (nonlinearity === 'tanh' || nonlinearity === 'relu') hints.nonlinearity = nonlinearity
  if (batchFirst === 'true' || batchFirst === 'false') hints.batchFirst = batchFirst === 'true'
  if (Object.keys(hints).length > 0) source.hints = hints
  return source
}

function parse(file: Uint8Array): { tensors: Map<string, StoredTensor>; metadata: unknown } {
  if (file.length < 8) fail(`file is ${file.length} bytes, too short for the 8-byte header length`)
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength)
  const headerLength = view.getBigUint64(0, true)
  if (headerLength > BigInt(file.length - 8)) {
    fail(`header length ${headerLength} exceeds the ${file.length - 8} bytes that follow it`)
  }
  const headerEnd = 8 + Number(headerLength)
  let header: unknown
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(file.subarray(8, headerEnd)))
  } catch (error) {
    fail(`header is not valid UTF-8 JSON (${(error as Error).message})`)
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    fail('header is not a JSON object')
  }
  const dataLength = file.length - headerEnd
  const tensors = new Map<string, StoredTensor>()
  const ranges: Array<[number, number, string]> = []
  let metadata: unknown
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry
      continue
    }
    const { dtype, shape, data_offsets: offsets } = (entry ?? {}) as Record<string, unknown>
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) {
      fail(`tensor '${name}': expected a dtype of ${Object.keys(DTYPE_BYTES).join(', ')}, received ${describe(dtype)}`)
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor '${name}': expected a shape of non-negative integers, received ${shown(shape)}`)
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      fail(`tensor '${name}': expected data_offsets [begin, end] with 0 <= begin <= end, received ${shown(offsets)}`)
    }
    const [begin, end] = offsets as [number, number]
    if (end > dataLength) {
      fail(`tensor '${name}' data_offsets [${begin}, ${end}] extend past the ${dataLength} bytes of data`)
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1)
    if (elements * DTYPE_BYTES[dtype] !== end - begin) {
      fail(
        `tensor '${name}' of shape [${shape.join(', ')}] and dtype ${dtype} needs ${elements * DTYPE_BYTES[dtype]} bytes, but its data_offsets [${begin}, ${end}] hold ${end - begin}`,
      )
    }
    ranges.push([begin, end, name])
    tensors.set(name, { dtype, shape: shape as number[], bytes: file.subarray(headerEnd + begin, headerEnd + end) })
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  for (let i = 1; i < ranges.length; i++) {
    const [begin, , name] = ranges[i]
    const [, prevEnd, prevName] = ranges[i - 1]
    if (begin < prevEnd) fail(`tensors '${prevName}' and '${name}' overlap in the data section`)
  }
  return { tensors, metadata }
}

function halfToFloat(h: number): number {
  const exponent = (h >> 10) & 0x1f
  const mantissa = h & 0x3ff
  const sign = h & 0x8000 ? -1 : 1
  if (exponent === 0) return sign * mantissa * 2 ** -24
  if (exponent === 31) return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
}

/** Converts a stored float tensor to float32 in a fresh buffer (never a view into the file). */
export function toFloat32(name: string, tensor: StoredTensor): Tensor {
  const { dtype, bytes } = tensor
  if (!FLOAT_DTYPES.includes(dtype)) {
    fail(`tensor '${name}' has dtype ${dtype}; expected one of ${FLOAT_DTYPES.join(', ')}`)
  }
  const count = bytes.length / DTYPE_BYTES[dtype]
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const data = new Float32Array(count)
  if (dtype === 'F32') {
    // A copy into an aligned buffer; the platforms Node runs birnn on are little-endian.
    new Uint8Array(data.buffer).set(bytes)
  } else if (dtype === 'F64') {
    for (let i = 0; i < count; i++) data[i] = view.getFloat64(i * 8, true)
  } else if (dtype === 'F16') {
    for (let i = 0; i < count; i++) data[i] = halfToFloat(view.getUint16(i * 2, true))
  } else {
    const bits = new Uint32Array(data.buffer)
    for (let i = 0; i < count; i++) bits[i] = view.getUint16(i * 2, true) << 16
  }
  return { data, shape: [...tensor.shape] }
}
