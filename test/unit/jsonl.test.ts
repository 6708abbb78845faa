// lib/cli/jsonl.ts: lines read across the 1 MiB chunks, CRLF, blank lines at the end, the errors
// of parseSequence, and float32 values written in as few digits as read back the same.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { RunError } from '../../lib/cli/errors.js'
import { countSequences, JsonRows, LineReader, parseSequence } from '../../lib/cli/jsonl.js'
import { rng } from '../helpers.js'

const CHUNK = 1 << 20 // the reader's chunk size
const dir = mkdtempSync(join(tmpdir(), 'birnn-jsonl-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let count = 0

function file(content: string | Buffer): string {
  const path = join(dir, `f${count++}.jsonl`)
  writeFileSync(path, content)
  return path
}

function readAll(path: string): string[] {
  const reader = new LineReader(path)
  const lines: string[] = []
  for (let line = reader.next(); line !== undefined; line = reader.next()) {
    lines.push(line)
    expect(reader.lineNumber).toBe(lines.length)
  }
  reader.close()
  return lines
}

describe('LineReader', () => {
  it('returns lines that cross chunk boundaries whole, and lines longer than a chunk', () => {
    const lines = ['a'.repeat(CHUNK - 3), 'bcdefg', 'h'.repeat(2 * CHUNK + 5), '', 'é'.repeat(1000), 'last']
    expect(readAll(file(`${lines.join('\n')}\n`))).toEqual(lines)
  })

  it('drops the \\r of CRLF line ends and reads a last line without a newline', () => {
    expect(readAll(file('[1]\r\n[2]\r\n[3]'))).toEqual(['[1]', '[2]', '[3]'])
    expect(readAll(file(''))).toEqual([])
  })

  it('splits a UTF-8 character across chunks correctly, and refuses invalid UTF-8 with the line number', () => {
    const split = `${'x'.repeat(CHUNK - 1)}é\nz\n` // é's two bytes straddle the chunk boundary
    expect(readAll(file(split))).toEqual([`${'x'.repeat(CHUNK - 1)}é`, 'z'])
    const reader = new LineReader(file(Buffer.from([0x5b, 0x5d, 0x0a, 0xff, 0xfe, 0x0a])))
    expect(reader.next()).toBe('[]')
    expect(() => reader.next()).toThrow(new RunError(`${reader.path} line 2: not valid UTF-8`))
    reader.close()
  })

  it('skips lines without decoding them, across chunks', () => {
    const invalid = Buffer.from([0xff, 0x0a]) // not UTF-8: skipped, never decoded
    const reader = new LineReader(
      file(Buffer.concat([Buffer.from(`${'a'.repeat(CHUNK + 10)}\n`), invalid, Buffer.from('third\n')])),
    )
    expect(reader.skip(2)).toBe(2)
    expect(reader.next()).toBe('third')
    expect(reader.lineNumber).toBe(3)
    expect(reader.skip(5)).toBe(0)
    reader.close()
  })
})

describe('countSequences', () => {
  it.each([
    ['one line per sequence', '[1]\n[2]\n', 2],
    ['a last line without a newline', '[1]\n[2]', 2],
    ['blank lines at the end, with spaces, tabs and CRLF', '[1]\n[2]\n\n  \n\t\r\n\n', 2],
    ['a blank line in the middle (an error when read)', '[1]\n\n[2]\n', 3],
    ['an empty file', '', 0],
    ['blank lines only', '\n \n\n', 0],
    ['a byte-order mark and nothing else (the reader drops it)', '\ufeff\n', 0],
    ['a byte-order mark, then lines', '\ufeff[1]\n[2]\n', 2],
    ['a no-break space as the last line (content: an error when read)', '[1]\n\u00a0\n', 2],
  ])('%s', (_label, content, expected) => {
    expect(countSequences(file(content))).toBe(expected)
  })

  it('across chunk boundaries: a trailing blank stretch longer than a chunk, and content after one', () => {
    expect(countSequences(file(`[1]\n${' '.repeat(CHUNK + 7)}\n\n`))).toBe(1)
    expect(countSequences(file(`[1]\n${' '.repeat(CHUNK + 7)}[2]\n`))).toBe(2)
    expect(countSequences(file(`${'['.repeat(CHUNK - 1)}\n\n`))).toBe(1)
  })
})

describe('parseSequence', () => {
  const where = 'input x.jsonl line 7'

  it('reads T rows of inputSize numbers, row after row, as float32', () => {
    expect(parseSequence('[[0.1, 2], [3, -4.5]]', where, 2)).toEqual(Float32Array.of(0.1, 2, 3, -4.5))
  })

  it.each([
    [
      '  ',
      /^input x\.jsonl line 7: the line is blank \(blank lines are allowed only at the end\); expected a JSON array/,
    ],
    ['[[1, 2]', /^input x\.jsonl line 7: not valid JSON \(.*\); expected a JSON array of T ≥ 1 rows/],
    ['{"x": 1}', /^input x\.jsonl line 7: expected a JSON array of T ≥ 1 rows, .*, received an object$/],
    ['null', /: expected .*, received null$/],
    // Only JSON's spaces make a line blank: a no-break space is content, and not JSON.
    ['\u00a0', /^input x\.jsonl line 7: not valid JSON/],
    ['[]', /: expected .*, received an empty array$/],
    ['[[1, 2], null]', /: step 1 is null; expected an array of 2 numbers \(inputSize\)$/],
    ['[[1, 2, 3]]', /: step 0 has 3 numbers; expected 2 \(the model's inputSize\)$/],
    ['[[1, "2"]]', /: step 0, feature 1 is the string "2"; expected a number$/],
    // Named by kind: printing it would overflow the stack (an internal error, exit 70).
    [`[[1, ${'{"a":'.repeat(10000)}1${'}'.repeat(10000)}]]`, /: step 0, feature 1 is an object; expected a number$/],
  ])('refuses %j', (line, message) => {
    expect(() => parseSequence(line, where, 2)).toThrow(message)
    expect(() => parseSequence(line, where, 2)).toThrow(RunError)
  })
})

// One value, or one row, as JsonRows writes it.
const rows = new JsonRows()
const formatRow = (values: Float32Array) => {
  rows.row(values)
  return new TextDecoder().decode(rows.take())
}
const formatFloat32 = (value: number) => formatRow(Float32Array.of(value)).slice(1, -1)

describe('JsonRows', () => {
  it('writes the shortest decimal that reads back as the same float32', () => {
    expect(formatFloat32(Math.fround(0.1))).toBe('0.1')
    expect(formatFloat32(Math.fround(-1 / 3))).toBe('-0.33333334')
    expect(formatFloat32(0)).toBe('0')
    // The sign bit kept, as a float: Python's json reads '-0' as the integer 0.
    expect(formatFloat32(-0)).toBe('-0.0')
    expect(Object.is(JSON.parse(formatFloat32(-0)), -0)).toBe(true)
    const subnormal = Math.fround(1e-40)
    expect(formatFloat32(subnormal)).toBe('9.99995e-41')
    expect(Math.fround(9.99995e-41)).toBe(subnormal)
    const r = rng(9)
    for (let i = 0; i < 10_000; i++) {
      const x = Math.fround(r.normal() * 10 ** r.int(-30, 30))
      const text = formatFloat32(x)
      expect(Math.fround(Number(text))).toBe(x)
      // Significant digits: never more than float32 needs (9).
      expect(
        Number(text)
          .toExponential()
          .replace(/^-|e.*$|\./g, '').length,
      ).toBeLessThanOrEqual(9)
    }
  })

  it('gives the digits of the nearest-decimal search, for every kind of float32', () => {
    // The definition the fast path must match: the nearest decimal of 6, 7, 8 then 9 digits that
    // reads back as the same float32, as Number() reads it and String() writes it, but with an
    // exponent from 1e16 on, as Python writes floats.
    const written = (value: number) => {
      const text = String(value)
      return /^-?\d{17,}$/.test(text) ? value.toExponential() : text
    }
    const reference = (value: number) => {
      for (let digits = 6; digits < 9; digits++) {
        const text = value.toPrecision(digits)
        if (Math.fround(Number(text)) === value) return written(Number(text))
      }
      return written(Number(value.toPrecision(9)))
    }
    const bits = new Uint32Array(1)
    const float = new Float32Array(bits.buffer)
    const check = (pattern: number) => {
      bits[0] = pattern >>> 0
      const x = float[0]
      if (!Number.isFinite(x) || x === 0) return
      const text = formatFloat32(x)
      if (text !== reference(x)) expect(`${x}: ${text}`).toBe(`${x}: ${reference(x)}`)
    }
    const r = rng(31)
    for (let i = 0; i < 200_000; i++) check(r.int(0, 2 ** 32 - 1)) // every exponent, subnormals too
    for (let p = -45; p <= 38; p++) {
      // the float32s around each power of ten, where log10's floor may be one off
      float[0] = 10 ** p
      const at = bits[0]
      for (let d = -40; d <= 40; d++) {
        check(at + d)
        check((at + d) | 0x80000000)
      }
    }
    // Ties of the 8th digit round away from zero, as toPrecision does, on both signs.
    expect(formatFloat32(Math.fround(-471728.125))).toBe('-471728.13')
    expect(formatFloat32(Math.fround(471728.125))).toBe('471728.13')
    // String()'s notations below 1e16 (fixed, an exponent below 1e-6); from 1e16, an exponent, as
    // Python writes floats: its json reads 100000000000000000000 as an int, past NumPy's int64.
    expect(formatFloat32(Math.fround(123456789))).toBe('123456790')
    expect(formatFloat32(Math.fround(1e15))).toBe('1000000000000000')
    expect(formatFloat32(Math.fround(4e15))).toBe('4000000000000000')
    expect(formatFloat32(Math.fround(1e16))).toBe('1e+16')
    expect(formatFloat32(Math.fround(1.2345678e17))).toBe('1.2345678e+17')
    expect(formatFloat32(Math.fround(1e20))).toBe('1e+20')
    expect(formatFloat32(Math.fround(-3e21))).toBe('-3e+21')
    expect(formatFloat32(Math.fround(3.4028235e38))).toBe('3.4028235e+38')
    expect(formatFloat32(Math.fround(1.5e-7))).toBe('1.5e-7')
    expect(formatFloat32(Math.fround(0.0000015))).toBe('0.0000015')
  })

  it('writes NaN and infinities as null, which JSON has instead; rows and text follow one another', () => {
    expect(formatFloat32(Number.NaN)).toBe('null')
    expect(formatFloat32(Number.POSITIVE_INFINITY)).toBe('null')
    expect(formatRow(Float32Array.of(0.5, Number.NaN, -2))).toBe('[0.5,null,-2]')
    expect(JSON.parse(formatRow(Float32Array.of(Math.fround(0.1), 3)))).toEqual([0.1, 3])
    expect(formatRow(new Float32Array(0))).toBe('[]')
    // Past the first buffer's 64 KiB: rows that grow it keep what came before.
    const long = Float32Array.from({ length: 20_000 }, (_, i) => -i / 7)
    rows.text('x')
    rows.row(long)
    rows.text('\n')
    rows.row(Float32Array.of(1))
    const text = new TextDecoder().decode(rows.take())
    expect(text.endsWith(']\n[1]')).toBe(true)
    expect(Float32Array.from(JSON.parse(text.slice(1, text.indexOf('\n'))))).toEqual(long)
    expect(rows.take().length).toBe(0) // take() starts over
    // Tensors as nested arrays (birnn serve's answers), empty axes too.
    const tensor = (data: Float32Array, shape: number[]) => {
      rows.tensor(data, shape)
      return new TextDecoder().decode(rows.take())
    }
    const six = Float32Array.of(1, 2, 3, 4, 5, Math.fround(0.1))
    expect(tensor(six, [6])).toBe('[1,2,3,4,5,0.1]')
    expect(tensor(six, [2, 3])).toBe('[[1,2,3],[4,5,0.1]]')
    expect(tensor(six, [3, 1, 2])).toBe('[[[1,2]],[[3,4]],[[5,0.1]]]')
    expect(tensor(new Float32Array(0), [0, 4])).toBe('[]')
    expect(tensor(new Float32Array(0), [2, 0])).toBe('[[],[]]')
    const small = new JsonRows(1)
    small.tensor(six, [2, 3])
    expect(new TextDecoder().decode(small.take())).toBe('[[1,2,3],[4,5,0.1]]')
  })
})
