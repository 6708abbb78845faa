// PyTorch CPU (Debian's python3-torch, /usr/bin/python3) in a child process, one per thread count.
// Debian's torch calls whatever libblas.so.3 the loader finds (by default the slow reference BLAS),
// so we unpack Debian's libopenblas0-pthread into bench/out/openblas (apt-get download + dpkg -x,
// the system's alternatives untouched) and put it first on LD_LIBRARY_PATH. The runner reports
// which BLAS it actually mapped.

import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { BENCH, OUT } from '../lib/common.mjs'

const PYTHON = '/usr/bin/python3'
const RUNNER = join(BENCH, 'contenders', 'torch-runner.py')
const OPENBLAS_ROOT = join(OUT, 'openblas')
const OPENBLAS_DIR = join(OPENBLAS_ROOT, 'usr', 'lib', 'x86_64-linux-gnu', 'openblas-pthread')

let missing
export function torchMissing() {
  if (missing !== undefined) return missing
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' })
  missing =
    r.status === 0
      ? null
      : `PyTorch is not available (${PYTHON} -c 'import torch, numpy' failed; apt-get install python3-torch)`
  return missing
}

/** Unpacks OpenBLAS once; returns its folder, or null (and a note) when it could not be had. */
export function ensureOpenblas() {
  if (existsSync(join(OPENBLAS_DIR, 'libblas.so.3'))) return { dir: OPENBLAS_DIR }
  mkdirSync(OPENBLAS_ROOT, { recursive: true })
  const dl = spawnSync('apt-get', ['download', 'libopenblas0-pthread'], { cwd: OPENBLAS_ROOT, encoding: 'utf8' })
  const deb = readdirSync(OPENBLAS_ROOT).find((f) => f.startsWith('libopenblas0-pthread') && f.endsWith('.deb'))
  if (!deb)
    return {
      dir: null,
      note: `apt-get download libopenblas0-pthread failed: ${(dl.stderr || dl.error?.message || '').trim().split('\n').pop()}`,
    }
  const x = spawnSync('dpkg', ['-x', deb, '.'], { cwd: OPENBLAS_ROOT, encoding: 'utf8' })
  if (x.status !== 0 || !existsSync(join(OPENBLAS_DIR, 'libblas.so.3')))
    return { dir: null, note: `dpkg -x ${deb} failed: ${x.stderr}` }
  return { dir: OPENBLAS_DIR }
}

export function torchEnv(threads, blasDir) {
  const env = {
    ...process.env,
    BENCH_TORCH_THREADS: String(threads),
    OMP_NUM_THREADS: String(threads),
    OPENBLAS_NUM_THREADS: String(threads),
    OMP_WAIT_POLICY: 'passive',
  }
  if (blasDir) env.LD_LIBRARY_PATH = [blasDir, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':')
  return env
}

/** A long-lived runner process speaking JSON lines. */
class Runner {
  constructor(threads, blasDir) {
    this.child = spawn(PYTHON, [RUNNER], { env: torchEnv(threads, blasDir), stdio: ['pipe', 'pipe', 'inherit'] })
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]()
  }
  async request(msg) {
    this.child.stdin.write(`${JSON.stringify(msg)}\n`)
    const { value, done } = await this.lines.next()
    if (done) throw new Error('the PyTorch runner exited')
    const res = JSON.parse(value)
    if (res.error) throw new Error(res.error)
    return res
  }
  close() {
    this.child.stdin.end()
  }
}

const runners = new Map()
let blas
function runner(threads) {
  blas ??= ensureOpenblas()
  if (!runners.has(threads)) runners.set(threads, new Runner(threads, blas.dir))
  return runners.get(threads)
}

/** Torch version, thread count and the BLAS library the runner actually mapped. */
export async function torchInfo(threads) {
  const info = await runner(threads).request({ cmd: 'info' })
  return { ...info, openblasNote: blas.note ?? null }
}

export function closeTorch() {
  for (const r of runners.values()) r.close()
  runners.clear()
}

function variant(threads) {
  return {
    id: `torch-${threads}t`,
    label: `PyTorch ${threads}t`,
    family: 'pytorch',
    threads,
    missing: torchMissing,
    async open(w) {
      const r = runner(threads)
      const out = join(OUT, `torch-output-${threads}t.bin`)
      const req = { cmd: 'run', model: w.paths.safetensors, config: w.cfg, input: w.paths.io, out }
      return {
        info: {},
        async output() {
          await r.request(req)
          const b = readFileSync(out)
          return new Float32Array(b.buffer, b.byteOffset, b.length / 4)
        },
        time: async (plan, firstMs) => (await r.request({ ...req, out: null, plan, firstMs })).times,
        close() {},
      }
    },
  }
}

export const torchVariants = () => [variant(1), variant(2)]
