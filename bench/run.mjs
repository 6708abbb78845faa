#!/usr/bin/env node
// birnn's benchmark: birnn (native kernel and JS engine) against onnxruntime-node, PyTorch and
// TensorFlow.js on identical weights and inputs, checked for agreement before anything is timed.
//
//   npm run bench                 full run (writes bench/out/results.json, bench/RESULTS.md, bench/sweep.svg)
//   npm run bench -- --quick      the same in under 2 minutes (fewer runs, smaller sweep, slow cells skipped)
//   options: --only=W-b1,W-seed (workload name prefixes)  --no-sweep  --no-rss  --no-stall  --no-write
//
// Setup it does itself: installs bench/'s own dependencies when missing, compiles dist/ (npm run
// build), compiles the addon only when build/Release/birnn.node is missing, makes the models with
// PyTorch when bench/out is stale, and builds the peak-FMA probe.

import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import {
  BENCH,
  fmtMs,
  forwardFlops,
  maxAbsDiff,
  OUT,
  ROOT,
  stats,
  TOLERANCE,
  timed,
  timingPlan,
} from './lib/common.mjs'
import { machineInfo } from './lib/machine.mjs'
import { evaluateTargets, printTable, writeResultsMd } from './lib/report.mjs'
import { sweepSvg } from './lib/svg.mjs'
import { ensureModels, FIXED, manifest, SWEEP_BASE, sweepAxes, sweepWorkload, workload } from './lib/workloads.mjs'

const args = process.argv.slice(2)
// npm run bench -- --serve: the serving benchmark (bench/serve.mjs) instead of this one.
if (args.includes('--serve')) {
  await import('./serve.mjs')
  process.exit(process.exitCode ?? 0)
}
const flag = (name) => args.includes(`--${name}`)
const opt = (name) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]
const QUICK = flag('quick')
const ONLY = opt('only')?.split(',')
const plan = timingPlan(QUICK)
const t0 = Date.now()
const say = (...a) => console.log(...a)
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(0)}s`

// ------------------------------------------------------------------------------------------------
// Setup
// ------------------------------------------------------------------------------------------------
function sh(cmd, argv, options = {}) {
  const r = spawnSync(cmd, argv, { stdio: 'inherit', ...options })
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (exit ${r.status})`)
}

let addonInfo = null

function setup() {
  if (!existsSync(join(BENCH, 'node_modules'))) {
    say('bench: installing bench/ dependencies (onnxruntime-node, @tensorflow/tfjs, tfjs-backend-wasm)')
    const r = spawnSync('npm', ['--prefix', BENCH, 'ci', '--no-audit', '--no-fund'], {
      stdio: 'inherit',
      env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' },
    })
    if (r.status !== 0) say('bench: could not install the peers; they will be skipped')
  }
  sh('npm', ['run', '--silent', 'build'], { cwd: ROOT })
  if (!existsSync(join(ROOT, 'build', 'Release', 'birnn.node'))) {
    say('bench: build/Release/birnn.node is missing: npx cmake-js compile')
    sh('npx', ['cmake-js', 'compile'], { cwd: ROOT })
  }
  mkdirSync(OUT, { recursive: true })
  // The addon may be rebuilt while a run goes on: measure one snapshot of it, in this process and
  // in every child (BIRNN_NATIVE_PATH makes birnn load exactly that file).
  const addon = join(ROOT, 'build', 'Release', 'birnn.node')
  const snapshot = join(OUT, 'birnn-snapshot.node')
  copyFileSync(addon, snapshot)
  process.env.BIRNN_NATIVE_PATH = snapshot
  addonInfo = {
    path: 'build/Release/birnn.node',
    built: statSync(addon).mtime.toISOString(),
    sha256: createHash('sha256').update(readFileSync(snapshot)).digest('hex').slice(0, 16),
    commit: spawnSync('git', ['log', '-1', '--format=%h %s'], { cwd: ROOT, encoding: 'utf8' })
      .stdout.trim()
      .slice(0, 100),
    dirty: spawnSync('git', ['status', '--porcelain', 'native', 'lib'], { cwd: ROOT, encoding: 'utf8' })
      .stdout.trim()
      .split('\n')
      .filter(Boolean),
  }
  say(
    `bench: measuring ${addonInfo.path} built ${addonInfo.built} (sha256 ${addonInfo.sha256}; HEAD ${addonInfo.commit}${addonInfo.dirty.length ? `; uncommitted: ${addonInfo.dirty.join(', ')}` : ''})`,
  )
  const made = ensureModels(process.env)
  say(`bench: models ${made.made ? 'made' : 'up to date'} in bench/out`)
}

// ------------------------------------------------------------------------------------------------
// One workload: correctness first, then timing
// ------------------------------------------------------------------------------------------------
const SLOW_IN_QUICK = { 'birnn-js': /^W-b64/, 'tfjs-cpu': /^W-b64/, 'tfjs-wasm': /^W-b64/ }

async function measureWorkload(variants, w) {
  const flops = forwardFlops(w.cfg, w.T, w.N)
  const result = { name: w.name, config: w.cfg, T: w.T, N: w.N, flops, contenders: {} }
  say(
    `\n${w.name}: ${w.cfg.mode} I=${w.cfg.inputSize} H=${w.cfg.hiddenSize} L=${w.cfg.numLayers} ` +
      `${w.cfg.bidirectional ? 'bi' : 'uni'} T=${w.T} N=${w.N}, ${(flops / 1e9).toFixed(3)} GFLOP per forward`,
  )
  let reference
  for (const v of variants) {
    const row = { label: v.label, family: v.family, threads: v.threads }
    result.contenders[v.id] = row
    const missing = v.missing?.()
    const notExpressible = v.notExpressible?.(w.cfg)
    if (missing) row.skipped = missing
    else if (notExpressible) row.skipped = notExpressible
    else if (QUICK && SLOW_IN_QUICK[v.id]?.test(w.name)) row.skipped = 'skipped in quick mode (too slow at this size)'
    if (row.skipped) {
      say(`  ${v.label.padEnd(32)} skipped: ${row.skipped}`)
      continue
    }
    let s
    try {
      s = await v.open(w)
      row.info = s.info
      const [out, firstMs] = await timed(() => s.output())
      if (!reference) {
        reference = { id: v.id, out: Float32Array.from(out) }
        row.reference = true
        row.maxAbsDiff = 0
      } else {
        row.maxAbsDiff = maxAbsDiff(out, reference.out)
      }
      if (!(row.maxAbsDiff <= TOLERANCE)) {
        row.disagrees = `max abs diff ${row.maxAbsDiff} vs ${reference.id} exceeds ${TOLERANCE}: not timed`
        say(`  ${v.label.padEnd(32)} DISAGREES: ${row.disagrees}`)
        continue
      }
      Object.assign(row, stats(await s.time(plan, firstMs)))
      row.gflops = flops / (row.median * 1e6)
      say(
        `  ${v.label.padEnd(32)} ${fmtMs(row.median).padStart(9)}  [${fmtMs(row.min)} – ${fmtMs(row.max)}]  ` +
          `n=${row.runs}  ${row.gflops.toFixed(2)} GFLOP/s  maxdiff ${row.maxAbsDiff.toExponential(1)}`,
      )
    } catch (e) {
      row.error = e.message
      say(`  ${v.label.padEnd(32)} ERROR: ${e.message}`)
    } finally {
      s?.close()
    }
  }
  return result
}

// ------------------------------------------------------------------------------------------------
// Event-loop stall during one W-b64 forward: birnn forward() vs onnxruntime-node run()
// ------------------------------------------------------------------------------------------------
const nowMs = () => Number(process.hrtime.bigint()) / 1e6

async function stallDuring(fn) {
  const h = monitorEventLoopDelay({ resolution: 1 })
  let last = nowMs()
  let maxGap = 0
  let ticks = 0
  const tick = setInterval(() => {
    const t = nowMs()
    maxGap = Math.max(maxGap, t - last)
    last = t
    ticks++
  }, 1)
  await sleep(30)
  h.enable()
  maxGap = 0
  ticks = 0
  last = nowMs()
  const start = nowMs()
  await fn()
  const durationMs = nowMs() - start
  maxGap = Math.max(maxGap, nowMs() - last)
  h.disable()
  clearInterval(tick)
  return { durationMs, longestGapMs: maxGap, ticks, eldMaxMs: h.max / 1e6 }
}

async function measureStalls(variants, m) {
  const out = {}
  const ids = ['birnn-native-2t', 'birnn-native-2t-sync', 'ort-2t']
  say('\nevent-loop stall during one W-b64 forward (1 ms ticker; longest gap between ticks):')
  // Quick mode: LSTM only.
  for (const name of FIXED.filter((n) => (QUICK ? n === 'W-b64-lstm' : n.startsWith('W-b64')))) {
    if (ONLY && !ONLY.some((p) => name.startsWith(p))) continue
    const w = workload(m, name)
    out[name] = {}
    for (const id of ids) {
      const v = variants.find((x) => x.id === id)
      if (v.missing?.()) continue
      const s = await v.open(w)
      await s.output() // warm
      const call = id.endsWith('-sync') ? () => s.output() : () => s.forwardOnce()
      const r = await stallDuring(call)
      s.close()
      out[name][id] = { label: v.label, ...r }
      say(
        `  ${name.padEnd(11)} ${v.label.padEnd(32)} forward ${fmtMs(r.durationMs).padStart(9)}  longest stall ${fmtMs(r.longestGapMs).padStart(9)}  (${r.ticks} ticks)`,
      )
    }
  }
  return out
}

// ------------------------------------------------------------------------------------------------
// Peak RSS for W-b64-lstm, each contender in its own process
// ------------------------------------------------------------------------------------------------
async function measureRss(variants, m) {
  const name = 'W-b64-lstm'
  const out = { workload: name, contenders: {} }
  say(`\npeak RSS, ${name}, one forward per process:`)
  const { torchEnv, ensureOpenblas } = await import('./contenders/pytorch.mjs')
  for (const v of variants) {
    if (v.id.endsWith('-sync')) continue // same memory as its async twin
    if (QUICK && v.threads !== 2 && v.family !== 'tfjs') continue
    const w = m.workloads[name]
    const cfgModel = m.models[w.model]
    if (v.missing?.() || v.notExpressible?.(cfgModel)) continue
    if (QUICK && SLOW_IN_QUICK[v.id]?.test(name)) {
      out.contenders[v.id] = { label: v.label, skipped: 'quick mode' }
      continue
    }
    let r
    if (v.family === 'pytorch') {
      const blas = ensureOpenblas()
      r = spawnSync(
        '/usr/bin/python3',
        [
          join(BENCH, 'contenders', 'torch-runner.py'),
          '--rss',
          join(OUT, cfgModel.safetensors),
          JSON.stringify({ ...cfgModel }),
          join(OUT, w.io),
        ],
        { encoding: 'utf8', env: torchEnv(v.threads, blas.dir) },
      )
    } else {
      r = spawnSync(process.execPath, [join(BENCH, 'lib', 'rss-child.mjs'), v.id, name], { encoding: 'utf8' })
    }
    if (r.status !== 0) {
      out.contenders[v.id] = { label: v.label, error: (r.stderr || '').trim().split('\n').pop() }
      say(`  ${v.label.padEnd(32)} ERROR ${out.contenders[v.id].error}`)
      continue
    }
    const res = JSON.parse(r.stdout.trim().split('\n').pop())
    out.contenders[v.id] = { label: v.label, ...res }
    say(
      `  ${v.label.padEnd(32)} peak RSS ${(res.peakRss / 2 ** 20).toFixed(0).padStart(5)} MiB` +
        (res.baselineRss ? `  (process baseline ${(res.baselineRss / 2 ** 20).toFixed(0)} MiB)` : ''),
    )
  }
  return out
}

// ------------------------------------------------------------------------------------------------
// Scaling sweep: birnn native vs onnxruntime-node, one axis at a time around a base point
// ------------------------------------------------------------------------------------------------
async function sweep(variants, m) {
  const threads = 2
  const ids = [`birnn-native-${threads}t`, `ort-${threads}t`]
  const axes = sweepAxes(QUICK)
  const sweepPlan = QUICK
    ? { warmup: 0, warmupMs: 0, minReps: 1, maxReps: 5, budgetMs: 150, slowMs: 300, minSlowReps: 1, verySlowMs: 300 }
    : {
        warmup: 1,
        warmupMs: 0,
        minReps: 3,
        maxReps: 30,
        budgetMs: 800,
        slowMs: 2000,
        minSlowReps: 3,
        verySlowMs: 20000,
      }
  const out = { threads, base: SWEEP_BASE, mode: 'LSTM', layers: 1, bidirectional: true, inputSize: 128, axes: {} }
  say(
    `\nsweep (LSTM, 1 layer, bidirectional, input 128; base H=${SWEEP_BASE.hidden} T=${SWEEP_BASE.seq} N=${SWEEP_BASE.batch}; ${threads} threads):`,
  )
  for (const [axis, values] of Object.entries(axes)) {
    out.axes[axis] = []
    for (const value of values) {
      const p = { ...SWEEP_BASE, [axis]: value }
      const w = sweepWorkload(m, p)
      const point = { ...p, flops: forwardFlops(w.cfg, w.T, w.N), contenders: {} }
      let ref
      for (const id of ids) {
        const v = variants.find((x) => x.id === id)
        if (v.missing?.()) continue
        const s = await v.open(w)
        try {
          const [o, firstMs] = await timed(() => s.output())
          const diff = ref ? maxAbsDiff(o, ref) : 0
          ref ??= Float32Array.from(o)
          if (diff > TOLERANCE) {
            point.contenders[id] = { disagrees: diff }
            continue
          }
          const st = stats(await s.time(sweepPlan, firstMs))
          point.contenders[id] = { median: st.median, min: st.min, max: st.max, runs: st.runs, maxAbsDiff: diff }
        } finally {
          s.close()
        }
      }
      out.axes[axis].push(point)
      const [a, b] = ids.map((id) => point.contenders[id]?.median)
      say(
        `  ${axis.padEnd(6)} ${String(value).padStart(5)}  birnn ${a ? fmtMs(a) : '-'}  ort ${b ? fmtMs(b) : '-'}` +
          (a && b ? `  ort/birnn ${(b / a).toFixed(2)}` : ''),
      )
    }
  }
  return out
}

// ------------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------------
async function main() {
  say(`birnn benchmark${QUICK ? ' (quick mode)' : ''}`)
  setup()
  const { allVariants } = await import('./contenders/index.mjs')
  const { torchInfo, closeTorch } = await import('./contenders/pytorch.mjs')
  const { measurePeak } = await import('./peak-fma/peak.mjs')
  const variants = allVariants()
  const m = manifest()

  const machine = machineInfo()
  say(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.simdFlags.join(' ')}; node ${process.version}`)
  // The peak of the vectors birnn's kernel runs on (the snapshot of the addon, as measured below).
  const { load } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href)
  const simd = (await load(join(ROOT, 'examples', 'model.safetensors')).catch(() => null))?.simd
  const peakTrials = { isa: simd === 'avx512' ? 'avx512' : 'avx2', trials: QUICK ? 4 : 10, seconds: QUICK ? 0.25 : 0.3 }
  let peak = measurePeak(peakTrials)
  if (peak.error) say(`peak FMA probe: ${peak.error}`)
  else
    say(
      `measured fp32 FMA peak (${peak.isa}): ${peak[1].toFixed(1)} GFLOP/s on 1 thread, ${peak[2].toFixed(1)} GFLOP/s on 2 threads (best of ${peak.trials[1].length} × ${peak.seconds} s)`,
    )

  const peers = {}
  for (const v of variants) {
    const why = v.missing?.()
    if (why && !peers[v.family]) {
      peers[v.family] = why
      say(`${v.family}: skipped: ${why}`)
    }
  }
  let torch = null
  if (!variants.find((v) => v.family === 'pytorch').missing()) {
    torch = { 1: await torchInfo(1), 2: await torchInfo(2) }
    say(
      `PyTorch ${torch[1].torch}: BLAS mapped = ${torch[1].blas.join(', ') || 'none found'}${torch[1].openblasNote ? ` (${torch[1].openblasNote})` : ''}`,
    )
  }

  const workloads = {}
  for (const name of FIXED) {
    if (ONLY && !ONLY.some((p) => name.startsWith(p))) continue
    workloads[name] = await measureWorkload(variants, workload(m, name))
  }
  const stalls = flag('no-stall') ? null : await measureStalls(variants, m)
  const rss =
    flag('no-rss') || (ONLY && !ONLY.some((p) => 'W-b64-lstm'.startsWith(p))) ? null : await measureRss(variants, m)
  const sweepResult = flag('no-sweep') ? null : await sweep(variants, m)
  closeTorch()
  if (!QUICK && !peak.error) {
    peak = measurePeak({ ...peakTrials, previous: peak })
    say(
      `\nFMA peak measured again: ${peak[1].toFixed(1)} GFLOP/s on 1 thread, ${peak[2].toFixed(1)} GFLOP/s on 2 threads (best of ${peak.trials[1].length} trials)`,
    )
  }

  const birnnInfo = Object.values(workloads)[0]?.contenders['birnn-native-1t']?.info
  const results = {
    date: new Date().toISOString(),
    command: `npm run bench${QUICK ? ' -- --quick' : ''}${args
      .filter((a) => a !== '--quick')
      .map((a) => ` ${a}`)
      .join('')}`,
    quick: QUICK,
    timing: plan,
    tolerance: TOLERANCE,
    flopCount:
      '2 flops per multiply-add of the input projection and the recurrent GEMM (plus the LSTM projection when present); activations and biases not counted',
    ratio:
      'contender median / birnn native forward() median at the same thread count (1 thread for single-threaded contenders); > 1 means birnn is faster',
    machine,
    peak,
    birnn: birnnInfo ? { ...birnnInfo, addon: addonInfo } : null,
    peers,
    torch,
    workloads,
    stalls,
    rss,
    sweep: sweepResult,
  }
  results.targets = evaluateTargets(results)
  printTable(results, say)
  if (!flag('no-write')) {
    writeFileSync(join(OUT, 'results.json'), `${JSON.stringify(results, null, 1)}\n`)
    if (sweepResult) writeFileSync(join(BENCH, 'sweep.svg'), sweepSvg(sweepResult))
    writeResultsMd(results, join(BENCH, 'RESULTS.md'))
    say(`\nwrote bench/out/results.json, bench/RESULTS.md${sweepResult ? ', bench/sweep.svg' : ''} (${elapsed()})`)
  } else {
    say(`\n(--no-write: nothing written; ${elapsed()})`)
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e)
    process.exit(1)
  },
)
