// Builds bench/peak-fma/peak-fma.cc with g++ (no network) and measures the fp32 FMA peak on 1 and
// 2 threads, with the vectors of the SIMD path birnn runs (`isa`: avx2, or avx512 where the CPU has
// it and birnn's kernel uses it: the % of peak of an AVX-512 kernel against the AVX2 peak would
// read twice too high). The machine may be shared with other jobs, which lowers a trial (most of all the
// 2-thread one, when the other core is busy): each figure is the best of many short trials, and
// run.mjs measures again at the end of the run and keeps the best of both.

import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { BENCH, OUT } from '../lib/common.mjs'

const SRC = join(BENCH, 'peak-fma', 'peak-fma.cc')
const BIN = join(OUT, 'peak-fma')

function build() {
  if (existsSync(BIN) && statSync(BIN).mtimeMs > statSync(SRC).mtimeMs) return null
  mkdirSync(OUT, { recursive: true })
  // (-Wno-psabi: GCC notes that AVX-512 vectors pass differently where a function is not built for it.)
  const r = spawnSync('g++', ['-O2', '-mavx2', '-mfma', '-Wno-psabi', '-pthread', SRC, '-o', BIN], { encoding: 'utf8' })
  return r.status === 0 ? null : `g++ failed: ${r.error?.message ?? r.stderr}`
}

/** { isa, 1: GFLOP/s, 2: GFLOP/s, trials: {...} } or { error } when the probe cannot be built or run. */
export function measurePeak({ isa = 'avx2', threads = [1, 2], trials = 3, seconds = 0.5, previous } = {}) {
  const error = build()
  if (error) return { error }
  const result = { isa, seconds, trials: {} }
  for (const t of threads) result.trials[t] = [...(previous?.trials[t] ?? [])]
  for (const t of threads) {
    const runs = result.trials[t]
    for (let i = 0; i < trials; i++) {
      const r = spawnSync(BIN, [String(t), String(seconds), isa], { encoding: 'utf8' })
      if (r.status !== 0) return { error: `peak-fma failed: ${r.stderr}` }
      runs.push(JSON.parse(r.stdout).gflops)
    }
    result[t] = Math.max(...runs)
  }
  return result
}
