// .npy request and response bodies, in memory: the server reads one array from a request body and
// answers with one. The header's grammar and checks are lib/cli/npy.ts's (which reads files piece
// by piece through a file descriptor); this reads the framing of a whole Buffer.

import { formatNpyShape, isNpy, npyDtypeInfo, npyHeader, parseNpyDict } from '../cli/npy.js'
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
  const { dtype, shape } = parseNpyDict(text, fail, true)
  const count = shape.reduce((a, b) => a * b, 1)
  const stored = npyDtypeInfo(dtype)
  const bytes = count * stored.bytes
  if (dataOffset + bytes !== body.length) {
    fail(`shape ${formatNpyShape(shape)} needs ${bytes} bytes of data, but the body holds ${body.length - dataOffset}`)
  }
  const raw = body.subarray(dataOffset)
  if (dtype === '<f4' && (raw.byteOffset & 3) === 0) {
    return { data: new Float32Array(raw.buffer, raw.byteOffset, count), shape }
  }
  return { data: toFloat32('body', { dtype: stored.stored, shape, bytes: raw }).data, shape }
}

/** An .npy version 1.0 float32 array, as the pieces of a response: the header, then the data's bytes. */
export function npyBody(data: Float32Array, shape: readonly number[]): Buffer[] {
  return [npyHeader(shape), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]
}
