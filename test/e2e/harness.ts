// The CLI as users run it, built without touching the repository: lib/ is compiled into a fresh
// temporary package (its package.json, node_modules, native build/ and wasm/ linked from the repo), and
// `node <tmp>/dist/cli/main.js` runs in a subprocess. Also .npy files written and read here,
// independently of lib/cli/npy.ts.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'vitest'
import type { Tensor } from '../../lib/types.js'

export const root = join(import.meta.dirname, '..', '..')

/** Builds lib/ into a new temporary package; returns its folder (the caller removes it). */
export function buildPackage(): string {
  const dir = mkdtempSync(join(tmpdir(), 'birnn-built-'))
  for (const name of ['package.json', 'node_modules', 'build', 'wasm']) {
    if (existsSync(join(root, name))) symlinkSync(join(root, name), join(dir, name))
  }
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(dir, 'dist')], {
    cwd: root,
  })
  return dir
}

/** Runs `birnn args` from the package in `dir`, in `cwd`. */
export function runCli(dir: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd = dir) {
  const result = spawnSync(process.execPath, [join(dir, 'dist', 'cli', 'main.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    cwd,
  })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

export type Dtype = '<f4' | '<f8' | '<f2' | '<i4' | '<i8' | '>f4'

export function npyBytes(shape: number[], dtype: Dtype, body: Buffer, { version = 1, fortran = false } = {}): Buffer {
  const dict = `{'descr': '${dtype}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`
  const lengthBytes = version === 1 ? 2 : 4
  const pad = (64 - ((8 + lengthBytes + dict.length + 1) % 64)) % 64
  const text = Buffer.from(`${dict}${' '.repeat(pad)}\n`)
  const head = Buffer.alloc(8 + lengthBytes)
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]).copy(head)
  if (version === 1) head.writeUInt16LE(text.length, 8)
  else head.writeUInt32LE(text.length, 8)
  return Buffer.concat([head, text, body])
}

/** Exact for the values written here: zero and normal float16 numbers. */
function toHalf(x: number): number {
  if (x === 0) return 0
  const sign = x < 0 ? 0x8000 : 0
  const exponent = Math.floor(Math.log2(Math.abs(x)))
  const mantissa = Math.abs(x) / 2 ** exponent - 1
  return sign | ((exponent + 15) << 10) | Math.round(mantissa * 1024)
}

export function writeNpy(
  path: string,
  tensor: Tensor,
  dtype: Dtype = '<f4',
  options: { version?: number; fortran?: boolean } = {},
): string {
  const { data, shape } = tensor
  let body: Buffer
  if (dtype === '<f4') body = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  else if (dtype === '<f8') body = Buffer.from(Float64Array.from(data).buffer)
  else if (dtype === '<f2') body = Buffer.from(Uint16Array.from(data, toHalf).buffer)
  else if (dtype === '<i4') body = Buffer.from(Int32Array.from(data).buffer)
  else body = Buffer.from(BigInt64Array.from(data, (v) => BigInt(v)).buffer)
  writeFileSync(path, npyBytes(shape, dtype, body, options))
  return path
}

export function readNpy(path: string): Tensor {
  const bytes = readFileSync(path)
  const headerLength = bytes.readUInt16LE(8)
  const header = bytes.subarray(10, 10 + headerLength).toString('latin1')
  expect(header).toContain("'descr': '<f4'")
  const shape = /'shape': \(([^)]*)\)/
    .exec(header)![1]
    .split(',')
    .filter((d) => d.trim())
    .map(Number)
  const body = bytes.subarray(10 + headerLength)
  const data = new Float32Array(body.length / 4)
  new Uint8Array(data.buffer).set(body)
  expect(data.length).toBe(shape.reduce((a, b) => a * b, 1))
  return { data, shape }
}
