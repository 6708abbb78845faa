// The benchmark's workloads, as made by make-models.py (bench/out/models.json), plus the sweep
// points (birnn native vs onnxruntime-node over hidden size, sequence length and batch).

import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { BENCH, OUT, randn, readSafetensors } from './common.mjs'

const SCRIPT = join(BENCH, 'make-models.py')
const MANIFEST = join(OUT, 'models.json')

/** Runs make-models.py unless bench/out already holds what this version of it makes. */
export function ensureModels(env) {
  const hash = createHash('sha256').update(readFileSync(SCRIPT)).digest('hex').slice(0, 16)
  if (existsSync(MANIFEST) && JSON.parse(readFileSync(MANIFEST, 'utf8')).script === hash) return { made: false }
  const r = spawnSync('/usr/bin/python3', [SCRIPT], { stdio: 'inherit', env })
  if (r.status !== 0) throw new Error(`make-models.py failed (exit ${r.status}); it needs Debian's python3-torch`)
  return { made: true }
}

export function manifest() {
  return JSON.parse(readFileSync(MANIFEST, 'utf8'))
}

function paths(m, model) {
  const e = m.models[model]
  return { safetensors: join(OUT, e.safetensors), onnx: join(OUT, e.onnx) }
}

function config(e) {
  return {
    mode: e.mode,
    inputSize: e.inputSize,
    hiddenSize: e.hiddenSize,
    numLayers: e.numLayers,
    bidirectional: e.bidirectional,
    bias: true,
    projSize: 0,
  }
}

/** A fixed workload: model files, config, and its input ([T, N, I]) from the io file. */
export function workload(m, name) {
  const w = m.workloads[name]
  const io = join(OUT, w.io)
  return {
    name,
    model: w.model,
    cfg: config(m.models[w.model]),
    paths: { ...paths(m, w.model), io },
    T: w.T,
    N: w.N,
    input: readSafetensors(io).input.data,
  }
}

export const FIXED = ['W-seed', 'W-b1-rnn', 'W-b1-gru', 'W-b1-lstm', 'W-b64-rnn', 'W-b64-gru', 'W-b64-lstm']

/** Sweep: one bidirectional LSTM layer, input 128; base hidden 256, seq 100, batch 16. */
export const SWEEP_BASE = { hidden: 256, seq: 100, batch: 16 }
export function sweepAxes(quick) {
  return quick
    ? { hidden: [64, 256, 512], seq: [10, 100, 1000], batch: [1, 16, 64] }
    : { hidden: [64, 128, 256, 512, 1024], seq: [10, 30, 100, 300, 1000], batch: [1, 4, 16, 64, 256] }
}

export function sweepWorkload(m, { hidden, seq, batch }) {
  const model = `sweep-lstm-h${hidden}`
  const cfg = config(m.models[model])
  return {
    name: `sweep H=${hidden} T=${seq} N=${batch}`,
    model,
    cfg,
    paths: paths(m, model),
    T: seq,
    N: batch,
    input: randn(seq * batch * cfg.inputSize, hidden * 7919 + seq * 31 + batch),
  }
}
