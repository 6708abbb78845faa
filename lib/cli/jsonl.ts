// JSON Lines (one JSON value per line) for the CLI: a line reader that holds one chunk of the file
// at a time, a line counter, and the conversions between a line and a sequence of float32 rows
// (JsonRows, which birnn serve's JSON answers use too).

import { closeSync, openSync, readSync } from 'node:fs'
import { describe } from '../errors.js'
import { RunError } from './errors.js'

const CHUNK = 1 << 20
const NEWLINE = 0x0a

const isBlank = (byte: number): boolean => byte === 0x20 || byte === 0x09 || byte === 0x0d

/**
 * The number of sequences in a JSONL file: its lines up to the last one that is not blank (blank
 * lines at the end are allowed, as editors and `echo >>` leave them; the reader stops before them).
 */
export function countSequences(path: string): number {
  const fd = openSync(path, 'r')
  try {
    const buffer = Buffer.allocUnsafe(CHUNK)
    let lines = 0 // lines ended so far
    let last = 0 // the number of the last line with content
    let content = false // the current line has a byte that is not blank
    let first = true
    for (;;) {
      const got = readSync(fd, buffer, 0, CHUNK, null)
      if (got === 0) break
      const chunk = buffer.subarray(0, got)
      // A UTF-8 byte-order mark opens some files; the reader drops it, so it is no content.
      let i = first && got >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf ? 3 : 0
      first = false
      while (i < got) {
        // Most lines start with '[': the scan for content stops at once.
        while (!content && i < got && chunk[i] !== NEWLINE) {
          if (!isBlank(chunk[i])) content = true
          else i++
        }
        const end = chunk.indexOf(NEWLINE, i)
        if (end === -1) break
        lines++
        if (content) last = lines
        content = false
        i = end + 1
      }
    }
    return content ? lines + 1 : last
  } finally {
    closeSync(fd)
  }
}

/** Reads a file line by line (1-based numbers), holding one chunk and the current partial line. */
export class LineReader {
  readonly path: string
  /** The number of the last line returned. */
  lineNumber = 0
  readonly #fd: number
  readonly #decoder = new TextDecoder('utf-8', { fatal: true })
  #chunk: Buffer = Buffer.alloc(0)
  #pos = 0
  #eof = false

  constructor(path: string) {
    this.path = path
    this.#fd = openSync(path, 'r')
  }

  /** The next line without its '\n' (or '\r\n'), or undefined at the end of the file. */
  next(): string | undefined {
    const parts: Buffer[] = []
    for (;;) {
      if (this.#pos >= this.#chunk.length) {
        if (this.#eof || !this.#fill()) {
          if (parts.length === 0) return undefined
          return this.#decode(Buffer.concat(parts))
        }
      }
      const end = this.#chunk.indexOf(NEWLINE, this.#pos)
      if (end !== -1) {
        parts.push(this.#chunk.subarray(this.#pos, end))
        this.#pos = end + 1
        return this.#decode(parts.length === 1 ? parts[0] : Buffer.concat(parts))
      }
      // The line goes on in the next chunk: keep a copy of its start, the chunk buffer is reused.
      parts.push(Buffer.from(this.#chunk.subarray(this.#pos)))
      this.#pos = this.#chunk.length
    }
  }

  /** Skips lines without decoding them; returns how many were skipped. */
  skip(count: number): number {
    let skipped = 0
    let partial = false // bytes of a line whose end has not been seen yet were consumed
    while (skipped < count) {
      if (this.#pos >= this.#chunk.length && (this.#eof || !this.#fill())) {
        if (partial) skipped++
        break
      }
      const end = this.#chunk.indexOf(NEWLINE, this.#pos)
      const stop = end === -1 ? this.#chunk.length : end + 1
      this.#pos = stop
      partial = end === -1
      if (!partial) skipped++
    }
    this.lineNumber += skipped
    return skipped
  }

  #fill(): boolean {
    const buffer = this.#chunk.length === CHUNK ? this.#chunk : Buffer.allocUnsafe(CHUNK)
    const got = readSync(this.#fd, buffer, 0, CHUNK, null)
    if (got === 0) {
      this.#eof = true
      this.#chunk = Buffer.alloc(0)
      this.#pos = 0
      return false
    }
    this.#chunk = got === CHUNK ? buffer : buffer.subarray(0, got)
    this.#pos = 0
    return true
  }

  #decode(bytes: Buffer): string {
    this.lineNumber++
    const end = bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.length - 1 : bytes.length
    try {
      return this.#decoder.decode(bytes.subarray(0, end))
    } catch {
      // V8's strings hold at most 2^29 - 24 UTF-16 units: a line that long fails as invalid text.
      if (end >= 2 ** 29 - 24) {
        throw new RunError(
          `${this.path} line ${this.lineNumber}: ${end} bytes, longer than the longest string JavaScript holds (2^29 - 24 characters); split the sequence, or use .npy input`,
        )
      }
      throw new RunError(`${this.path} line ${this.lineNumber}: not valid UTF-8`)
    }
  }

  close(): void {
    closeSync(this.#fd)
  }
}

/** Parses one line: an array of T ≥ 1 rows of `inputSize` numbers, as float32 values row after row. */
export function parseSequence(line: string, where: string, inputSize: number): Float32Array {
  const expected = `a JSON array of T ≥ 1 rows, each an array of ${inputSize} numbers (inputSize)`
  // Blank as countSequences counts it (JSON's own spaces): other spaces are content, and not JSON.
  if (/^[ \t\r]*$/.test(line))
    throw new RunError(`${where}: the line is blank (blank lines are allowed only at the end); expected ${expected}`)
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch (error) {
    throw new RunError(`${where}: not valid JSON (${(error as Error).message}); expected ${expected}`)
  }
  if (!Array.isArray(value) || value.length === 0) {
    throw new RunError(
      `${where}: expected ${expected}, received ${Array.isArray(value) ? 'an empty array' : describe(value)}`,
    )
  }
  const data = new Float32Array(value.length * inputSize)
  for (let t = 0; t < value.length; t++) {
    const row = value[t]
    if (!Array.isArray(row)) {
      throw new RunError(
        `${where}: step ${t} is ${row === null ? 'null' : typeof row}; expected an array of ${inputSize} numbers (inputSize)`,
      )
    }
    if (row.length !== inputSize) {
      throw new RunError(`${where}: step ${t} has ${row.length} numbers; expected ${inputSize} (the model's inputSize)`)
    }
    for (let i = 0; i < inputSize; i++) {
      const x = row[i]
      if (typeof x !== 'number') {
        throw new RunError(`${where}: step ${t}, feature ${i} is ${describe(x)}; expected a number`)
      }
      data[t * inputSize + i] = x
    }
  }
  return data
}

// 10^0..10^22: the powers of ten that are exact doubles, so that a product or quotient of one and
// an integer is the correctly rounded double of that decimal, as Number() would read it.
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i)
const [ZERO, DOT, MINUS, PLUS, COMMA, E] = [0x30, 0x2e, 0x2d, 0x2b, 0x2c, 0x65]
// The longest a value takes: 21 digits and a sign, where the general path (String()) writes a
// value below 1e21 in fixed notation; the fast path stops at 16 digits, or 1.2345678e-45 and a sign.
const MAX_VALUE_BYTES = 24

/**
 * JSON arrays of float32 values, written as ASCII straight into one growing buffer: a string per
 * value, joined and then encoded, took twice as long as the digits themselves.
 */
export class JsonRows {
  #bytes: Uint8Array
  #length = 0

  /** `capacity`: the bytes to start with (it grows as needed). */
  constructor(capacity = 1 << 16) {
    this.#bytes = new Uint8Array(capacity)
  }

  /** Appends a tensor as nested JSON arrays, its last axis as rows. */
  tensor(data: Float32Array, shape: readonly number[]): void {
    if (shape.length <= 1) {
      this.row(data)
      return
    }
    const stride = data.length / Math.max(1, shape[0])
    this.text('[')
    for (let i = 0; i < shape[0]; i++) {
      if (i > 0) this.text(',')
      this.tensor(data.subarray(i * stride, (i + 1) * stride), shape.slice(1))
    }
    this.text(']')
  }

  /** Appends `[v0,v1,...]`, each value the shortest decimal that reads back as the same float32. */
  row(values: Float32Array): void {
    this.#reserve(2 + values.length * (MAX_VALUE_BYTES + 1))
    const b = this.#bytes
    let at = this.#length
    b[at++] = 0x5b // [
    for (let i = 0; i < values.length; i++) {
      if (i > 0) b[at++] = COMMA
      at = putFloat32(b, at, values[i])
    }
    b[at++] = 0x5d // ]
    this.#length = at
  }

  /** Appends ASCII text. */
  text(ascii: string): void {
    this.#reserve(ascii.length)
    for (let i = 0; i < ascii.length; i++) this.#bytes[this.#length++] = ascii.charCodeAt(i)
  }

  /** The bytes written since the last take(): a view, valid until the next write. */
  take(): Uint8Array {
    const bytes = this.#bytes.subarray(0, this.#length)
    this.#length = 0
    return bytes
  }

  #reserve(more: number): void {
    if (this.#length + more <= this.#bytes.length) return
    const grown = new Uint8Array(Math.max(this.#bytes.length * 2, this.#length + more))
    grown.set(this.#bytes.subarray(0, this.#length))
    this.#bytes = grown
  }
}

/**
 * Writes at b[at...] the shortest decimal that reads back as the same float32 (0.1 rather than
 * 0.10000000149011612; -0 keeps its sign; null for NaN and infinities), returning the end.
 */
function putFloat32(b: Uint8Array, at: number, value: number): number {
  if (!Number.isFinite(value)) return putAscii(b, at, 'null') // JSON has no NaN or Infinity
  // The sign is a float32 bit too: '-0.0', which JSON readers that tell integers from floats (Python's
  // json) read as -0.0, where '-0' is their integer 0.
  if (value === 0) return putAscii(b, at, Object.is(value, -0) ? '-0.0' : '0')
  // The nearest decimal of the fewest significant digits from 6 to 9 that reads back as `value`, as
  // an integer n times 10^-e. If d digits read back, d + 1 do too (nearer), so it is found with 2 or
  // 3 tries (most values need 8 or 9). A log10 off by one near a power of ten costs a digit at most.
  const lead = Math.floor(Math.log10(Math.abs(value)))
  // 10^-e for each number of digits is then an exact double (10^22 at most), so n / 10^e is read as
  // Number() reads the decimal. Beyond (subnormals and the like): the general path below.
  if (lead >= -14 && lead <= 27) {
    let digits = 8
    let n = nearest(value, lead, 8)
    if (n === 0) {
      digits = 9
      n = nearest(value, lead, 9)
    } else {
      const n7 = nearest(value, lead, 7)
      if (n7 !== 0) {
        const n6 = nearest(value, lead, 6)
        digits = n6 !== 0 ? 6 : 7
        n = n6 !== 0 ? n6 : n7
      }
    }
    if (n !== 0) {
      if (value < 0) b[at++] = MINUS
      return putDecimal(b, at, n, digits - 1 - lead)
    }
  }
  for (let digits = 6; digits < 9; digits++) {
    const text = value.toPrecision(digits)
    if (Math.fround(Number(text)) === value) return putAscii(b, at, String(Number(text)))
  }
  return putAscii(b, at, String(Number(value.toPrecision(9))))
}

/**
 * |value| to `digits` significant digits (its leading one at 10^lead), as an integer n standing for
 * n × 10^-(digits - 1 - lead), if that decimal reads back as `value`; else 0. The power of ten must
 * be exact (|digits - 1 - lead| <= 22).
 */
function nearest(value: number, lead: number, digits: number): number {
  const e = digits - 1 - lead
  const a = Math.abs(value)
  const n = e >= 0 ? Math.round(a * POW10[e]) : Math.round(a / POW10[-e])
  const read = e >= 0 ? n / POW10[e] : n * POW10[-e]
  return Math.fround(value < 0 ? -read : read) === value ? n : 0
}

/**
 * n × 10^-e (n a positive integer below 2^53) as String() writes that number, except that from
 * 1e16 on it takes an exponent (1e+16), as Python writes floats: Python's json reads a number with
 * neither a point nor an exponent as an int, and NumPy cannot hold one past 2^63 as int64.
 */
function putDecimal(b: Uint8Array, at: number, n: number, e: number): number {
  while (n % 10 === 0) {
    n /= 10
    e--
  }
  let k = 1 // n's digits
  while (POW10[k] <= n) k++
  const point = k - e // digits before the decimal point
  if (k <= point && point <= 16) {
    putDigits(b, at, n, k, k)
    return putZeros(b, at + k, point - k)
  }
  if (0 < point && point < k) return putDigits(b, at, n, k, point)
  if (-6 < point && point <= 0) {
    b[at] = ZERO
    b[at + 1] = DOT
    const end = putZeros(b, at + 2, -point)
    return putDigits(b, end, n, k, k)
  }
  at = putDigits(b, at, n, k, 1) // (no point after a lone digit)
  b[at++] = E
  b[at++] = point - 1 < 0 ? MINUS : PLUS
  return putAscii(b, at, String(Math.abs(point - 1)))
}

/** The k digits of n, with a point after the first `point` of them when point < k; returns the end. */
function putDigits(b: Uint8Array, at: number, n: number, k: number, point: number): number {
  const end = at + k + (point < k ? 1 : 0)
  for (let i = k - 1; i >= 0; i--) {
    const q = Math.floor(n / 10)
    b[at + i + (i >= point ? 1 : 0)] = ZERO + (n - q * 10)
    n = q
  }
  if (point < k) b[at + point] = DOT
  return end
}

function putZeros(b: Uint8Array, at: number, count: number): number {
  b.fill(ZERO, at, at + count)
  return at + count
}

function putAscii(b: Uint8Array, at: number, ascii: string): number {
  for (let i = 0; i < ascii.length; i++) b[at + i] = ascii.charCodeAt(i)
  return at + ascii.length
}
