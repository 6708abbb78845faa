// NumPy .npy files (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html), read
// and written piece by piece so that a file never has to fit in memory: the CLI reads a batch of
// sequences at a time and writes each batch's output where it belongs.
//
// Format: the magic "\x93NUMPY", a major and minor version byte, the header length (uint16 in
// version 1, uint32 in versions 2 and 3), a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (50, 64, 16), }
// padded with spaces and a newline, then the raw elements in C (row-major) order.
// We read little-endian float32/float64/float16 and int32/int64 in C order, and write float32.

import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs'
import { toFloat32 } from '../loading/safetensors.js'
import { RunError } from './errors.js'

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]) // \x93NUMPY

/** The element types we read: the .npy descr and its size. Everything is little-endian. */
const DTYPES = {
  '<f4': { bytes: 4, stored: 'F32', name: 'float32' },
  '<f8': { bytes: 8, stored: 'F64', name: 'float64' },
  '<f2': { bytes: 2, stored: 'F16', name: 'float16' },
  '<i4': { bytes: 4, stored: 'I32', name: 'int32' },
  '<i8': { bytes: 8, stored: 'I64', name: 'int64' },
} as const
export type NpyDtype = keyof typeof DTYPES
export const FLOAT_DTYPES: readonly NpyDtype[] = ['<f4', '<f8', '<f2']
const INT_DTYPES: readonly NpyDtype[] = ['<i4', '<i8']

interface NpyHeader {
  dtype: NpyDtype
  shape: number[]
  /** Byte offset of the first element. */
  dataOffset: number
}

/** True when the bytes start like a .npy file. */
export const isNpy = (head: Uint8Array): boolean => head.length >= 6 && MAGIC.equals(Buffer.from(head.subarray(0, 6)))

export const npyDtypeName = (dtype: NpyDtype): string => DTYPES[dtype].name
/** Bytes per element, and the safetensors dtype of the same encoding (for toFloat32). */
export const npyDtypeInfo = (dtype: NpyDtype) => DTYPES[dtype]

/** "(50, 64, 16)", as NumPy prints shapes. */
export const formatNpyShape = (shape: readonly number[]): string =>
  `(${shape.join(', ')}${shape.length === 1 ? ',' : ''})`

/**
 * The dtype and shape of a header's dict literal, checked: C order, a dtype we read (`floatsOnly`:
 * a float one), a tuple of sizes. `fail` throws the caller's error (the CLI's for a file, the
 * server's for a body).
 */
export function parseNpyDict(
  text: string,
  fail: (why: string) => never,
  floatsOnly = false,
): { dtype: NpyDtype; shape: number[] } {
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text)?.[1]
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text)?.[1]
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text)?.[1]
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    fail(`its header ${JSON.stringify(text.trim().slice(0, 200))} lacks 'descr', 'fortran_order' or 'shape'`)
  }
  if (fortran === 'True') {
    fail(
      'it is in Fortran order (fortran_order: True); save a C-order array, e.g. np.save(path, np.ascontiguousarray(x))',
    )
  }
  const alias: Record<string, string> = {
    '<f4': '<f4',
    '=f4': '<f4',
    '<f8': '<f8',
    '=f8': '<f8',
    '<f2': '<f2',
    '=f2': '<f2',
  }
  const dtype = (alias[descr!] ?? descr) as NpyDtype
  if (floatsOnly ? !FLOAT_DTYPES.includes(dtype) : !(dtype in DTYPES)) {
    fail(
      `its dtype '${descr}' is not supported (little-endian float32 '<f4', float64 '<f8'${floatsOnly ? ' or' : ','} float16 '<f2'${floatsOnly ? '' : ', or int32/int64 for lengths'})`,
    )
  }
  const dims = shapeText!
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '')
  const shape = dims.map((d) => (/^\d+L?$/.test(d) ? Number.parseInt(d, 10) : Number.NaN))
  if (shape.some((d) => !Number.isSafeInteger(d))) fail(`its shape (${shapeText}) is not a tuple of sizes`)
  return { dtype, shape }
}

/** Reads and checks the header of the open file `fd`, of `fileSize` bytes; `path` names it in errors. */
function parseNpyHeader(path: string, fd: number, fileSize: number): NpyHeader {
  const fail = (why: string): never => {
    throw new RunError(`${path}: not a readable .npy file: ${why}`)
  }
  const pre = Buffer.alloc(12)
  const got = readSync(fd, pre, 0, 12, 0)
  if (got < 10 || !isNpy(pre)) fail('it does not start with the .npy magic "\\x93NUMPY"')
  const major = pre[6]
  if (major !== 1 && major !== 2 && major !== 3) fail(`format version ${major}.${pre[7]} is unknown (1, 2 and 3 are)`)
  const lengthBytes = major === 1 ? 2 : 4
  const headerLength = major === 1 ? pre.readUInt16LE(8) : pre.readUInt32LE(8)
  const dataOffset = 8 + lengthBytes + headerLength
  if (dataOffset > fileSize) fail(`the header claims ${headerLength} bytes but the file has ${fileSize}`)
  const raw = Buffer.alloc(headerLength)
  readSync(fd, raw, 0, headerLength, 8 + lengthBytes)
  const text = raw.toString(major === 3 ? 'utf8' : 'latin1')

  const { dtype, shape } = parseNpyDict(text, fail)
  const bytes = shape.reduce((a, b) => a * b, 1) * DTYPES[dtype].bytes
  if (dataOffset + bytes > fileSize) {
    fail(
      `shape ${formatNpyShape(shape)} of ${DTYPES[dtype].name} needs ${bytes} bytes of data, but the file holds ${fileSize - dataOffset}`,
    )
  }
  return { dtype, shape, dataOffset }
}

/**
 * Reads slabs of an .npy array: `count` indices starting at `start` along one axis, with every
 * index of the other axes, converted to float32 (or to integers for an int array).
 * Along axis 0 a slab is one contiguous read; along axis 1 it is one read per index of axis 0
 * (merged into one when the slab spans the whole axis).
 */
export class NpyReader {
  readonly path: string
  readonly header: NpyHeader
  readonly #fd: number

  constructor(path: string) {
    this.path = path
    this.#fd = openSync(path, 'r')
    try {
      this.header = parseNpyHeader(path, this.#fd, fstatSync(this.#fd).size)
    } catch (error) {
      closeSync(this.#fd)
      throw error
    }
  }

  get shape(): readonly number[] {
    return this.header.shape
  }

  get dtype(): NpyDtype {
    return this.header.dtype
  }

  /** Bytes per index of `axis`, and how many such slabs one read along it covers. */
  #slab(axis: 0 | 1, count: number): { inner: number; outer: number; bytes: number } {
    const { shape, dtype } = this.header
    const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1) * DTYPES[dtype].bytes
    const outer = axis === 0 ? 1 : shape[0]
    return { inner, outer, bytes: outer * count * inner }
  }

  /** The raw bytes of the slab in C order, with `count` in place of shape[axis], into `out`. */
  #readBytes(
    axis: 0 | 1,
    start: number,
    count: number,
    out: Buffer = Buffer.allocUnsafe(this.#slab(axis, count).bytes),
  ): Buffer {
    const { shape, dataOffset } = this.header
    const { inner, outer } = this.#slab(axis, count)
    const rowBytes = axis === 0 ? 0 : shape[1] * inner // bytes per index of axis 0
    if (axis === 0 || (start === 0 && count === shape[1])) {
      this.#readFully(out, 0, out.length, dataOffset + start * inner)
    } else {
      for (let o = 0; o < outer; o++) {
        this.#readFully(out, o * count * inner, count * inner, dataOffset + o * rowBytes + start * inner)
      }
    }
    return out
  }

  #readFully(buffer: Buffer, offset: number, length: number, position: number): void {
    let done = 0
    while (done < length) {
      const got = readSync(this.#fd, buffer, offset + done, length - done, position + done)
      if (got === 0) throw new RunError(`${this.path}: the file ended early (was it truncated while being read?)`)
      done += got
    }
  }

  /** A float slab as float32. */
  readFloat32(axis: 0 | 1, start: number, count: number): Float32Array {
    const { dtype } = this.header
    if (!FLOAT_DTYPES.includes(dtype))
      throw new RunError(`${this.path}: expected a float array, received ${npyDtypeName(dtype)}`)
    if (dtype === '<f4') {
      // Straight into the array that is returned: no conversion, no copy.
      const data = new Float32Array(this.#slab(axis, count).bytes / 4)
      this.#readBytes(axis, start, count, Buffer.from(data.buffer))
      return data
    }
    const bytes = this.#readBytes(axis, start, count)
    return toFloat32(this.path, { dtype: DTYPES[dtype].stored, shape: [bytes.length / DTYPES[dtype].bytes], bytes })
      .data
  }

  /** An integer slab as numbers (int64 values beyond 2^53 become inexact and fail later checks). */
  readIntegers(axis: 0 | 1, start: number, count: number): number[] {
    const { dtype } = this.header
    if (!INT_DTYPES.includes(dtype))
      throw new RunError(`${this.path}: expected an int32 or int64 array, received ${npyDtypeName(dtype)}`)
    const bytes = this.#readBytes(axis, start, count)
    const out: number[] = []
    for (let i = 0; i < bytes.length; i += DTYPES[dtype].bytes) {
      out.push(dtype === '<i4' ? bytes.readInt32LE(i) : Number(bytes.readBigInt64LE(i)))
    }
    return out
  }

  close(): void {
    closeSync(this.#fd)
  }
}

/** The bytes of a version 1.0 header for a C-order float32 array, padded to 64 bytes as NumPy does. */
export function npyHeader(shape: readonly number[]): Buffer {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${formatNpyShape(shape)}, }`
  const unpadded = MAGIC.length + 2 + 2 + dict.length + 1
  const padding = (64 - (unpadded % 64)) % 64
  const text = `${dict}${' '.repeat(padding)}\n`
  if (text.length > 0xffff) throw new RangeError(`npy: a header of ${text.length} bytes does not fit version 1.0`)
  const head = Buffer.alloc(10)
  MAGIC.copy(head)
  head[6] = 1
  head[7] = 0
  head.writeUInt16LE(text.length, 8)
  return Buffer.concat([head, Buffer.from(text, 'latin1')])
}

/**
 * Writes a float32 .npy array of a shape known up front, slab by slab in any order (the mirror
 * of NpyReader: along axis 0 one write, along axis 1 one write per index of axis 0).
 */
export class NpyWriter {
  readonly shape: readonly number[]
  readonly #fd: number
  readonly #dataOffset: number

  /** `fd` is an open, writable file; the writer does not close it. */
  constructor(fd: number, shape: readonly number[]) {
    this.shape = shape
    this.#fd = fd
    const header = npyHeader(shape)
    writeAll(fd, header, 0)
    this.#dataOffset = header.length
  }

  write(axis: 0 | 1, start: number, data: Float32Array): void {
    const inner = this.shape.slice(axis + 1).reduce((a, b) => a * b, 1) * 4
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    if (axis === 0) {
      writeAll(this.#fd, bytes, this.#dataOffset + start * inner)
      return
    }
    const count = data.length / (this.shape[0] === 0 ? 1 : this.shape[0]) / (inner / 4)
    const rowBytes = this.shape[1] * inner
    for (let o = 0; o < this.shape[0]; o++) {
      writeAll(
        this.#fd,
        bytes.subarray(o * count * inner, (o + 1) * count * inner),
        this.#dataOffset + o * rowBytes + start * inner,
      )
    }
  }
}

export function writeAll(fd: number, bytes: Uint8Array, position: number | null): void {
  let done = 0
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, bytes.length - done, position === null ? null : position + done)
  }
}
