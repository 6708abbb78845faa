// lib/cli/npy.ts: .npy headers of every format version, the errors for files it cannot read,
// slabs along both axes, dtype conversion, and what NpyWriter writes read back.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { RunError } from '../../lib/cli/errors.js'
import { formatNpyShape, isNpy, NpyReader, NpyWriter } from '../../lib/cli/npy.js'

const dir = mkdtempSync(join(tmpdir(), 'birnn-npy-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let count = 0

/** An .npy file with the given header dict text and body, in format `version`. */
function npyFile(dict: string, body: Uint8Array, version = 1): string {
  const lengthBytes = version === 1 ? 2 : 4
  const text = Buffer.from(`${dict}${' '.repeat((64 - ((8 + lengthBytes + dict.length + 1) % 64)) % 64)}\n`)
  const head = Buffer.alloc(8 + lengthBytes)
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]).copy(head)
  if (version === 1) head.writeUInt16LE(text.length, 8)
  else head.writeUInt32LE(text.length, 8)
  const path = join(dir, `f${count++}.npy`)
  writeFileSync(path, Buffer.concat([head, text, body]))
  return path
}

const dict = (descr: string, shape: number[], fortran = false) =>
  `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': ${formatNpyShape(shape)}, }`
const bytes = (array: ArrayBufferView) => new Uint8Array(array.buffer, array.byteOffset, array.byteLength)
/** Element i holds the value i. */
const iota = (n: number) => Float32Array.from({ length: n }, (_, i) => i)

function open(path: string): NpyReader {
  return new NpyReader(path)
}

function readError(path: string): string {
  try {
    open(path).close()
  } catch (error) {
    expect(error).toBeInstanceOf(RunError)
    return (error as Error).message
  }
  throw new Error('expected the header to be refused')
}

describe('header', () => {
  it.each([1, 2, 3])('format version %i', (version) => {
    const reader = open(npyFile(dict('<f4', [2, 3, 4]), bytes(iota(24)), version))
    expect(reader.shape).toEqual([2, 3, 4])
    expect(reader.dtype).toBe('<f4')
    expect(reader.header.dataOffset % 64).toBe(0)
    expect(reader.readFloat32(0, 0, 2)).toEqual(iota(24))
    reader.close()
  })

  it('reads a 1-D shape "(5,)", a 0-size shape, and the native-order alias "=f4"', () => {
    expect(open(npyFile(dict('<i4', [5]), bytes(new Int32Array(5)))).shape).toEqual([5])
    expect(open(npyFile(dict('<f4', [0, 3]), new Uint8Array(0))).shape).toEqual([0, 3])
    expect(open(npyFile(dict('=f4', [1]), bytes(Float32Array.of(1.5)))).dtype).toBe('<f4')
  })

  it('refuses what it cannot read, saying why', () => {
    const notNpy = join(dir, 'not.npy')
    writeFileSync(notNpy, 'PK\x03\x04 a zip file')
    expect(readError(notNpy)).toBe(
      `${notNpy}: not a readable .npy file: it does not start with the .npy magic "\\x93NUMPY"`,
    )
    expect(readError(npyFile(dict('<f4', [1]), bytes(Float32Array.of(1)), 4))).toMatch(/format version 4\.0 is unknown/)
    expect(readError(npyFile(dict('<f4', [2, 2], true), bytes(iota(4))))).toMatch(/it is in Fortran order/)
    expect(readError(npyFile(dict('>f4', [1]), bytes(iota(1))))).toMatch(/its dtype '>f4' is not supported/)
    expect(readError(npyFile(dict('|u1', [1]), new Uint8Array(1)))).toMatch(/its dtype '\|u1' is not supported/)
    expect(readError(npyFile("{'descr': '<f4', 'shape': (1,), }", bytes(iota(1))))).toMatch(
      /lacks 'descr', 'fortran_order' or 'shape'/,
    )
    expect(readError(npyFile(dict('<f4', [2, 3]), bytes(iota(5))))).toMatch(
      /shape \(2, 3\) of float32 needs 24 bytes of data, but the file holds 20$/,
    )
    const cut = npyFile(dict('<f4', [1]), bytes(iota(1)))
    truncateSync(cut, 40)
    expect(readError(cut)).toMatch(/the header claims 118 bytes but the file has 40$/)
  })

  it('isNpy looks at the magic only', () => {
    expect(isNpy(readFileSync(npyFile(dict('<f4', [1]), bytes(iota(1)))))).toBe(true)
    expect(isNpy(Buffer.from('\x93NUMP'))).toBe(false)
    expect(isNpy(Buffer.from('[[1, 2]]'))).toBe(false)
  })
})

describe('slabs', () => {
  // (3, 4, 2): element [i, j, k] holds 8i + 2j + k.
  const path = () => npyFile(dict('<f4', [3, 4, 2]), bytes(iota(24)))
  const expected = (is: number[], js: number[]) =>
    Float32Array.from(is.flatMap((i) => js.flatMap((j) => [8 * i + 2 * j, 8 * i + 2 * j + 1])))

  it('along axis 0: consecutive indices of the first axis', () => {
    const reader = open(path())
    expect(reader.readFloat32(0, 1, 2)).toEqual(expected([1, 2], [0, 1, 2, 3]))
    expect(reader.readFloat32(0, 2, 1)).toEqual(expected([2], [0, 1, 2, 3]))
    reader.close()
  })

  it('along axis 1: the same indices of the second axis under every index of the first', () => {
    const reader = open(path())
    expect(reader.readFloat32(1, 1, 2)).toEqual(expected([0, 1, 2], [1, 2]))
    expect(reader.readFloat32(1, 3, 1)).toEqual(expected([0, 1, 2], [3]))
    expect(reader.readFloat32(1, 0, 4)).toEqual(iota(24)) // the whole axis: one read
    reader.close()
  })

  it('a file cut short after its header was read is an error, not zeros', () => {
    const file = path()
    const reader = open(file)
    truncateSync(file, reader.header.dataOffset + 8)
    expect(() => reader.readFloat32(0, 0, 3)).toThrow(/the file ended early/)
    reader.close()
  })
})

describe('dtypes', () => {
  it('float64 and float16 become float32', () => {
    const f8 = open(npyFile(dict('<f8', [3]), bytes(Float64Array.of(0.1, -2.5, 1e10))))
    expect(f8.readFloat32(0, 0, 3)).toEqual(Float32Array.of(0.1, -2.5, 1e10))
    // 1, -2, 1/3 rounded, +infinity, the smallest subnormal.
    const f2 = open(npyFile(dict('<f2', [5]), bytes(Uint16Array.of(0x3c00, 0xc000, 0x3555, 0x7c00, 0x0001))))
    expect(f2.readFloat32(0, 0, 5)).toEqual(Float32Array.of(1, -2, 0.333251953125, Number.POSITIVE_INFINITY, 2 ** -24))
  })

  it('int32 and int64 become numbers, read along either axis', () => {
    const i8 = open(npyFile(dict('<i8', [2, 2]), bytes(BigInt64Array.of(-3n, 2n ** 40n, 7n, 0n))))
    expect(i8.readIntegers(0, 0, 2)).toEqual([-3, 2 ** 40, 7, 0])
    expect(i8.readIntegers(1, 1, 1)).toEqual([2 ** 40, 0])
    const i4 = open(npyFile(dict('<i4', [3]), bytes(Int32Array.of(5, -1, 9))))
    expect(i4.readIntegers(0, 1, 2)).toEqual([-1, 9])
  })

  it('refuses floats where integers are expected, and the reverse', () => {
    const i4 = open(npyFile(dict('<i4', [1]), bytes(Int32Array.of(1))))
    expect(() => i4.readFloat32(0, 0, 1)).toThrow(/: expected a float array, received int32$/)
    const f4 = open(npyFile(dict('<f4', [1]), bytes(iota(1))))
    expect(() => f4.readIntegers(0, 0, 1)).toThrow(/: expected an int32 or int64 array, received float32$/)
  })
})

describe('NpyWriter', () => {
  it('writes slabs in any order along either axis; NpyReader reads the same array back', () => {
    for (const axis of [0, 1] as const) {
      const path = join(dir, `w${axis}.npy`)
      const fd = openSync(path, 'w')
      const writer = new NpyWriter(fd, [3, 4, 2])
      const whole = iota(24)
      // Slabs [2, 4) then [0, 2) of the axis, cut from the whole array as NpyReader would read them.
      const reader = open(npyFile(dict('<f4', [3, 4, 2]), bytes(whole)))
      const size = axis === 0 ? 3 : 4
      writer.write(axis, 2, reader.readFloat32(axis, 2, size - 2))
      writer.write(axis, 0, reader.readFloat32(axis, 0, 2))
      closeSync(fd)
      const back = open(path)
      expect(back.header.dataOffset % 64).toBe(0)
      expect(back.shape).toEqual([3, 4, 2])
      expect(back.readFloat32(0, 0, 3)).toEqual(whole)
      expect(readFileSync(path).subarray(10, back.header.dataOffset).toString('latin1')).toMatch(
        /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(3, 4, 2\), \} *\n$/,
      )
    }
  })

  it('writes the 1-D shape as NumPy does', () => {
    const path = join(dir, 'w1d.npy')
    const fd = openSync(path, 'w')
    new NpyWriter(fd, [2]).write(0, 0, Float32Array.of(1, 2))
    closeSync(fd)
    expect(readFileSync(path, 'latin1')).toContain("'shape': (2,)")
    expect(open(path).readFloat32(0, 0, 2)).toEqual(Float32Array.of(1, 2))
  })
})
