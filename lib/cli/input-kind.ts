// What kind of input `score` was given, from the file's first bytes rather than its name: .npy, or
// JSONL (text whose first line starts with '['). Anything else is refused, saying what it is.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { RunError } from './errors.js'
import { isNpy } from './npy.js'

type InputKind = 'npy' | 'jsonl'

const HEAD = 4096
const isWhitespace = (byte: number) => byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d
const isText = (head: Buffer) => head.every((byte) => byte >= 0x20 || isWhitespace(byte))

/** A safetensors file: an 8-byte little-endian header length, then a JSON header '{…}'. */
function isSafetensors(head: Buffer, fileSize: number): boolean {
  if (head.length < 9 || head[8] !== 0x7b) return false
  const headerLength = head.readBigUInt64LE(0)
  return headerLength >= 2n && headerLength <= BigInt(fileSize - 8)
}

function describeHead(head: Buffer): string {
  if (isText(head)) {
    const text = head.toString('utf8').trimStart()
    return `text starting ${JSON.stringify(text.length > 24 ? `${text.slice(0, 24)}…` : text)}`
  }
  const bytes = [...head.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ')
  return `binary data starting with the bytes ${bytes}`
}

export function inputKind(path: string): InputKind {
  // (score checked that it is a regular file: requireFile)
  const fd = openSync(path, 'r')
  const buffer = Buffer.alloc(HEAD)
  let head: Buffer
  let fileSize: number
  try {
    head = buffer.subarray(0, readSync(fd, buffer, 0, HEAD, 0))
    fileSize = fstatSync(fd).size
  } finally {
    closeSync(fd)
  }
  if (isNpy(head)) return 'npy'
  // JSONL may start with a UTF-8 byte-order mark (some editors write one); the line reader drops it.
  const text = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? head.subarray(3) : head
  const first = text.findIndex((byte) => !isWhitespace(byte))
  // An empty file (or only blank lines) is JSONL without sequences.
  if (first === -1 || (text[first] === 0x5b && isText(text))) return 'jsonl'
  if (isSafetensors(head, fileSize)) {
    throw new RunError(`input ${path}: is a safetensors file (a model?), not sequences; expected .npy or JSONL`)
  }
  throw new RunError(
    `input ${path}: expected .npy (starting with "\\x93NUMPY") or JSONL (lines like [[0.1, …], …]), received ${describeHead(head)}`,
  )
}
