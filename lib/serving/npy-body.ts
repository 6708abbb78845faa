// .npy request and response bodies, in memory: the server reads one array from a request body and
// answers with one. The format and its checks are those of lib/cli/npy.ts (which reads files piece
// by piece through a file descriptor); this is the same header grammar over a Buffer.

import { formatNpyShape, isNpy } from '../cli/npy.js'
import { toFloat32 } from '../loading/safetensors.js'

/** A request body the server refuses (400), with what was wrong. */
export class BadRequest extends Error {
  override name = 'BadRequest'
  readonly code: string
  constructor(message: string, code = 'ERR_BIRNN_BAD_REQUEST') {
    super(message)
    this.code = code
  }
}

const FLOATS = {
  '<f4': { bytes: 4, stored: 'F32' },
  '<f8': { bytes: 8, stored: 'F64' },
  '<f2': { bytes: 2, stored: 'F16' },
} as const

/** The float array of an .npy body, as float32 (a view when it is float32 and aligned, else a copy). */
export function parseNpyBody(body: Buffer): { data: Float32Array; shape: number[] } {
  const fail = (why: string): never => {
    throw new BadRequest(`body: not a readable .npy array: ${why}`)
  }
  if (body.length < 10 || !isNpy(body)) fail('it does not start with the .npy magic "\\x93NUMPY"')
  const major = body[6]
  if (major !== 1 && major !== 2 && major !== 3) fail(`format version ${major}.${body[7]} is unknown (1, 2 and 3 are)`)
  const lengthBytes = major === 1 ? 2 : 4
  if (body.length < 8 + lengthBytes) fail('it ends inside its header')
  const headerLength = major === 1 ? body.readUInt16LE(8) : body.readUInt32LE(8)
  const dataOffset = 8 + lengthBytes + headerLength
  if (dataOffset > body.length) fail(`the header claims ${headerLength} bytes but the body has ${body.length}`)
  const text = body.subarray(8 + lengthBytes, dataOffset).toString(major === 3 ? 'utf8' : 'latin1')
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text)?.[1]
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text)?.[1]
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text)?.[1]
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    fail(`its header ${JSON.stringify(text.trim().slice(0, 200))} lacks 'descr', 'fortran_order' or 'shape'`)
  }
  if (fortran === 'True') fail('it is in Fortran order; send a C-order array (np.ascontiguousarray)')
  const dtype = descr!.replace(/^[=|]/, '<') as keyof typeof FLOATS
  if (!(dtype in FLOATS)) {
    fail(`its dtype '${descr}' is not supported (little-endian float32 '<f4', float64 '<f8' or float16 '<f2')`)
  }
  const shape = shapeText!
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '')
    .map((d) => (/^\d+L?$/.test(d) ? Number.parseInt(d, 10) : Number.NaN))
  if (shape.some((d) => !Number.isSafeInteger(d))) fail(`its shape (${shapeText}) is not a tuple of sizes`)
  const count = shape.reduce((a, b) => a * b, 1)
  const bytes = count * FLOATS[dtype].bytes
  if (dataOffset + bytes !== body.length) {
    fail(`shape ${formatNpyShape(shape)} needs ${bytes} bytes of data, but the body holds ${body.length - dataOffset}`)
  }
  const raw = body.subarray(dataOffset)
  if (dtype === '<f4' && (raw.byteOffset & 3) === 0) {
    return { data: new Float32Array(raw.buffer, raw.byteOffset, count), shape }
  }
  return { data: toFloat32('body', { dtype: FLOATS[dtype].stored, shape, bytes: raw }).data, shape }
}

/** An .npy version 1.0 float32 array, as the pieces of a response: the header, then the data's bytes. */
export function npyBody(data: Float32Array, shape: readonly number[]): Buffer[] {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${formatNpyShape(shape)}, }`
  const padding = (64 - ((10 + dict.length + 1) % 64)) % 64
  const text = `${dict}${' '.repeat(padding)}\n`
  const head = Buffer.alloc(10 + text.length)
  head.write('\x93NUMPY', 0, 'latin1')
  head[6] = 1
  head[7] = 0
  head.writeUInt16LE(text.length, 8)
  head.write(text, 10, 'latin1')
  return [head, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]
}
