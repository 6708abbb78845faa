#!/usr/bin/env node
// Serving benchmark (issue #10): many small concurrent requests, each one sequence of its own
// length (20..100 steps), on three models.
//
//   node bench/serve.mjs            (or: npm run bench -- --serve)
//   options: --quick (shorter runs)  --seconds=S (per measurement)  --rounds=R (in process)  --only=small,seed,standard
//            --no-inproc  --no-http  --connections=1,16,64,256  --write (adds the figures to bench/out/serve.json)
//            --output=full|last|mean (in process: the forward option every call passes; default full)
//            --dist=DIR (a library already built, such as dist/, where TypeScript is absent: the lent machine)
//            '--serve-args=--max-batch 16' (more options for every `birnn serve` contender; one that
//            names --concurrency also overrides the '--concurrency 2' contender's)
//
// In process: 64 concurrent callers of batcher.forward() against 64 of model.forward(), the same
// inputs in the same order, with the same `output` option. Over HTTP: autocannon (npm, bench/'s devDependency) against
// `birnn serve` on loopback with .npy bodies of random lengths, ?output=last, at 1, 16, 64 and 256
// connections, batching vs --no-batching vs onnxruntime-node per request (contenders/ort-server.mjs,
// the same handler shape on the ONNX export of the same weights, made by export-onnx.py with
// PyTorch); a spot check first that the answers equal forwardSync (ORT's within 1e-4).
// The load generator runs in this process, on the same cores as the server: its own cost is in
// the figures (a /healthz run shows the ceiling node:http plus autocannon reach here).

import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { ortMissing } from './contenders/onnxruntime.mjs'
import { BENCH, GATES, mulberry32, ROOT, safetensorsBytes } from './lib/common.mjs'

const args = process.argv.slice(2)
const flag = (name) => args.includes(`--${name}`)
const opt = (name) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const QUICK = flag('quick')
const SECONDS = Number(opt('seconds') ?? (QUICK ? 1.5 : 4))
const ONLY = opt('only')?.split(',')
const OUTPUT = { output: opt('output') ?? 'full' }
const ROUNDS = Number(opt('rounds') ?? (QUICK ? 1 : 3))
const CONNECTIONS = (opt('connections') ?? '1,16,64,256').split(',').map(Number)
const OUT = join(BENCH, 'out')
const say = (...a) => console.log(...a)

// ------------------------------------------------------------------------------------------------
// Setup: the library built into bench/out/serve-dist (the tree's dist/ is left alone), one snapshot
// of the addon, the models written as safetensors with seeded random weights.
// ------------------------------------------------------------------------------------------------
mkdirSync(OUT, { recursive: true })
const DIST = opt('dist') ? resolve(opt('dist')) : join(OUT, 'serve-dist')
if (!opt('dist')) {
  const tsc = spawnSync(
    process.execPath,
    [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', DIST],
    { cwd: ROOT, encoding: 'utf8' },
  )
  if (!existsSync(join(DIST, 'cli', 'main.js'))) throw new Error(`could not build lib/: ${tsc.stdout}${tsc.stderr}`)
} else if (!existsSync(join(DIST, 'cli', 'main.js'))) throw new Error(`--dist=${opt('dist')}: no cli/main.js there`)
// The addon BIRNN_NATIVE_PATH names (A/B runs of two builds), else build/Release's.
const addon = process.env.BIRNN_NATIVE_PATH ?? join(ROOT, 'build', 'Release', 'birnn.node')
if (process.env.BIRNN_NATIVE_PATH && !existsSync(addon)) throw new Error(`BIRNN_NATIVE_PATH: no file ${addon}`)
let addonInfo = `no ${addon}`
if (existsSync(addon)) {
  // One snapshot of the addon for the whole run (the kernel may be rebuilt meanwhile).
  const snapshot = join(OUT, 'birnn-serve-snapshot.node')
  copyFileSync(addon, snapshot)
  process.env.BIRNN_NATIVE_PATH = snapshot
  const sha = createHash('sha256').update(readFileSync(snapshot)).digest('hex').slice(0, 16)
  addonInfo = `${addon} built ${statSync(addon).mtime.toISOString()}, sha256 ${sha}`
}
const { load } = await import(join(DIST, 'index.js'))
// (No git, or no repository: the lent machine gets the tree without either.)
const git = (...a) => (spawnSync('git', a, { cwd: ROOT, encoding: 'utf8' }).stdout ?? '').trim()
const commit = git('log', '-1', '--format=%h %s').slice(0, 90)

const MODELS = {
  small: { mode: 'LSTM', I: 32, H: 64, L: 1, D: 2, label: 'small LSTM (bi, 1 layer, I32 H64)' },
  seed: { mode: 'RNN_TANH', I: 25, H: 50, L: 4, D: 2, label: "seed's RNN(25, 50, 4, bidirectional)" },
  standard: { mode: 'LSTM', I: 128, H: 256, L: 2, D: 2, label: 'standard LSTM (bi, 2 layers, I128 H256)' },
}

/** A PyTorch-initialised state_dict (uniform ±1/√H), seeded by the model's name. */
function stateDict(name, { mode, I, H, L, D }) {
  const u = mulberry32(name.length * 7919 + I * 31 + H)
  const k = 1 / Math.sqrt(H)
  const tensors = {}
  const add = (key, shape) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1))
    for (let i = 0; i < data.length; i++) data[i] = (u() * 2 - 1) * k
    tensors[key] = { data, shape }
  }
  for (let l = 0; l < L; l++) {
    for (let d = 0; d < D; d++) {
      const s = `_l${l}${d ? '_reverse' : ''}`
      add(`weight_ih${s}`, [GATES[mode] * H, l ? D * H : I])
      add(`weight_hh${s}`, [GATES[mode] * H, H])
      add(`bias_ih${s}`, [GATES[mode] * H])
      add(`bias_hh${s}`, [GATES[mode] * H])
    }
  }
  return tensors
}

function modelFile(name) {
  const path = join(OUT, `serve-${name}.safetensors`)
  if (!existsSync(path)) writeFileSync(path, safetensorsBytes(stateDict(name, MODELS[name])))
  return path
}

/** The ONNX export of a model file's weights ({ onnx }), remade when stale, or why there is none ({ skip }). */
function onnxFile(path) {
  const skip = ortMissing()
  if (skip) return { skip }
  const onnx = path.replace(/\.safetensors$/, '.onnx')
  if (!existsSync(onnx) || statSync(onnx).mtimeMs < statSync(path).mtimeMs) {
    const r = spawnSync('/usr/bin/python3', [join(BENCH, 'export-onnx.py'), path], { encoding: 'utf8' })
    if (r.status !== 0) {
      const why = r.error?.message ?? r.stderr.trim().split('\n').pop()
      return { skip: `the ONNX export needs PyTorch for /usr/bin/python3 (bench/export-onnx.py): ${why}` }
    }
  }
  return { onnx }
}

/** Random-length unbatched sequences (T in 20..100), the same for every contender. */
function inputs(I, count, seed) {
  const u = mulberry32(seed)
  return Array.from({ length: count }, () => {
    const T = 20 + Math.floor(u() * 81)
    const data = new Float32Array(T * I)
    for (let i = 0; i < data.length; i++) data[i] = u() * 2 - 1
    return { data, shape: [T, I] }
  })
}

const percentile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]

// ------------------------------------------------------------------------------------------------
// In process: `callers` loops, each awaiting forward() of the next input, for SECONDS.
// ------------------------------------------------------------------------------------------------
async function closedLoop(forward, xs, callers, seconds) {
  let next = 0
  let done = 0
  const latencies = []
  const end = performance.now() + seconds * 1000
  const caller = async () => {
    while (performance.now() < end) {
      const x = xs[next++ % xs.length]
      const t0 = performance.now()
      await forward(x)
      latencies.push(performance.now() - t0)
      done++
    }
  }
  const t0 = performance.now()
  await Promise.all(Array.from({ length: callers }, caller))
  const elapsed = (performance.now() - t0) / 1000
  latencies.sort((a, b) => a - b)
  return { perSecond: done / elapsed, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), n: done }
}

async function inProcess(name, model, xs) {
  // Warm-up: the work buffers grow to their size once.
  await Promise.all(xs.slice(0, 64).map((x) => model.forward(x)))
  if (OUTPUT.output !== 'full') say(`  (every call with { output: '${OUTPUT.output}' })`)
  const contenders = [
    ['model.forward() per request', null],
    ['batcher.forward(), concurrency 1', { concurrency: 1 }],
    ['batcher.forward(), concurrency 2', { concurrency: 2 }],
    ['batcher.forward(), maxBatch 16, conc. 2', { concurrency: 2, maxBatch: 16 }],
  ]
  // Rounds, each contender once per round, interleaved: the machine is shared, so the load of
  // others falls on every contender alike; the best and the median round are reported.
  const runs = contenders.map(() => [])
  for (let round = 0; round < ROUNDS; round++) {
    for (const [k, [, options]] of contenders.entries()) {
      const batcher = options ? model.batcher(options) : null
      const forward = batcher ? (x) => batcher.forward(x, OUTPUT) : (x) => model.forward(x, OUTPUT)
      await closedLoop(forward, xs, 64, 0.3) // warm-up at this concurrency
      const r = await closedLoop(forward, xs, 64, SECONDS / ROUNDS)
      await batcher?.close()
      runs[k].push({ ...r, meanBatch: batcher?.stats.meanBatchSequences })
    }
  }
  const rows = contenders.map(([label], k) => {
    const sorted = [...runs[k]].sort((a, b) => b.perSecond - a.perSecond)
    const best = sorted[0]
    const median = sorted[Math.floor(sorted.length / 2)]
    const row = {
      model: name,
      contender: label,
      best: best.perSecond,
      median: median.perSecond,
      p50: median.p50,
      p99: median.p99,
      meanBatch: median.meanBatch,
    }
    say(
      `  ${label.padEnd(40)} best ${best.perSecond.toFixed(0).padStart(6)} seq/s, median ${median.perSecond.toFixed(0).padStart(6)}  (median round: p50 ${median.p50.toFixed(2)} ms, p99 ${median.p99.toFixed(2)} ms${median.meanBatch ? `, ${median.meanBatch.toFixed(1)} seq/batch` : ''})`,
    )
    return row
  })
  const base = rows[0]
  for (const row of rows.slice(1))
    say(
      `  ${row.contender}: ×${(row.best / base.best).toFixed(2)} best, ×${(row.median / base.median).toFixed(2)} median vs per request`,
    )
  // The batcher's answers are model.forward()'s, bit for bit.
  const b = model.batcher()
  const batched = await Promise.all(xs.slice(0, 32).map((x) => b.forward(x, OUTPUT)))
  for (let i = 0; i < 32; i++) {
    const alone = model.forwardSync(xs[i], OUTPUT).output.data
    if (!Buffer.from(alone.buffer).equals(Buffer.from(batched[i].output.data.buffer)))
      throw new Error(`${name}: batcher result ${i} differs from forwardSync`)
  }
  await b.close()
  return rows
}

// ------------------------------------------------------------------------------------------------
// HTTP: autocannon against `birnn serve`.
// ------------------------------------------------------------------------------------------------
function npy(t) {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${t.shape.join(', ')}), }`
  const pad = (64 - ((10 + dict.length + 1) % 64)) % 64
  const text = `${dict}${' '.repeat(pad)}\n`
  const head = Buffer.alloc(10)
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(head)
  head.writeUInt16LE(text.length, 8)
  return Buffer.concat([
    head,
    Buffer.from(text, 'latin1'),
    Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  ])
}

function fromNpy(bytes) {
  const n = bytes.readUInt16LE(8)
  const body = bytes.subarray(10 + n)
  const data = new Float32Array(body.length / 4)
  new Uint8Array(data.buffer).set(body)
  return data
}

const CLI = join(DIST, 'cli', 'main.js')
const ORT_SERVER = join(BENCH, 'contenders', 'ort-server.mjs')

/** Starts a server script (`birnn serve`, or ort-server.mjs) on a free loopback port. */
function startServer(argv) {
  const child = spawn(process.execPath, [...argv, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: process.env,
  })
  let out = ''
  let err = ''
  child.stderr.on('data', (c) => {
    err += c
  })
  const exit = new Promise((resolve) => child.on('exit', resolve))
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (c) => {
      out += c
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (m) resolve({ child, url: m[1], line: out.trim(), exit })
    })
    exit.then((code) => reject(new Error(`${argv.slice(0, 2).join(' ')} exited ${code}: ${err}`)))
  })
}

/** CPU seconds (user + system) of a process so far, from /proc. */
function cpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return Number.NaN
  }
}

async function autocannonRun(autocannon, url, bodies, connections, seconds, path = '/v1/forward?output=last') {
  let i = 0
  const result = await autocannon({
    url: `${url}${path}`,
    connections,
    duration: seconds,
    timeout: 30,
    requests: [
      path.startsWith('/v1')
        ? {
            method: 'POST',
            headers: { 'content-type': 'application/x-npy' },
            setupRequest: (req) => ({ ...req, body: bodies[i++ % bodies.length] }),
          }
        : { method: 'GET' },
    ],
  })
  return {
    connections,
    rps: result.requests.average,
    total: result.requests.total,
    p50: result.latency.p50,
    p99: result.latency.p99,
    max: result.latency.max,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  }
}

async function http(name, path, model, xs, autocannon) {
  const rows = []
  const bodies = xs.map(npy)
  // [label, server argv, largest |difference| from forwardSync allowed: birnn's answers are bit-identical]
  const more = opt('serve-args')?.split(' ').filter(Boolean) ?? []
  if (more.length) say(`  (every birnn serve with ${more.join(' ')})`)
  const contenders = [
    ['birnn serve (batching)', [CLI, 'serve', path, ...more], 0],
    ['birnn serve --concurrency 2', [CLI, 'serve', path, '--concurrency', '2', ...more], 0],
    ['birnn serve --no-batching', [CLI, 'serve', path, '--no-batching', ...more], 0],
  ]
  const { onnx, skip } = onnxFile(path)
  if (onnx) contenders.push(['onnxruntime-node per request', [ORT_SERVER, onnx], 1e-4])
  for (const [label, argv, tolerance] of contenders) {
    const server = await startServer(argv)
    // Spot check: the answers are forwardSync's for those inputs.
    let worst = 0
    for (let k = 0; k < 4; k++) {
      const res = await fetch(`${server.url}/v1/forward?output=last`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-npy' },
        body: bodies[k],
      })
      const got = fromNpy(Buffer.from(await res.arrayBuffer()))
      const want = model.forwardSync(xs[k], { output: 'last' }).output.data
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i])) // NaN if short
      const same = tolerance
        ? got.length === want.length && worst <= tolerance
        : Buffer.from(got.buffer).equals(Buffer.from(want.buffer))
      if (!same) throw new Error(`${label}: answer ${k} differs from forwardSync`)
    }
    if (tolerance) say(`  ${label}: spot check max |difference| from forwardSync ${worst.toExponential(1)}`)
    await autocannonRun(autocannon, server.url, bodies, 16, Math.min(1, SECONDS / 2)) // warm-up
    for (const connections of CONNECTIONS) {
      const cpu0 = cpuSeconds(server.child.pid)
      const r = await autocannonRun(autocannon, server.url, bodies, connections, SECONDS)
      r.serverCpuPerRequestMs = ((cpuSeconds(server.child.pid) - cpu0) / Math.max(1, r.total)) * 1000
      rows.push({ model: name, contender: label, ...r })
      say(
        `  ${label.padEnd(28)} ${String(connections).padStart(3)} conn  ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50} ms  p99 ${r.p99} ms  max ${r.max} ms  errors ${r.errors}  non-2xx ${r.non2xx}  server CPU ${r.serverCpuPerRequestMs.toFixed(2)} ms/req`,
      )
    }
    server.child.kill('SIGTERM')
    const code = await server.exit
    if (code !== 0) throw new Error(`${label}: exit ${code} after SIGTERM`)
  }
  if (skip) say(`  onnxruntime-node per request: skipped (${skip})`)
  return rows
}

// ------------------------------------------------------------------------------------------------
const started = new Date().toISOString()
say(
  `bench/serve.mjs: HEAD ${commit}; addon ${addonInfo}; load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
)
const results = {
  started,
  commit,
  addon: addonInfo,
  loadAverage: loadavg(),
  machine: `${availableParallelism()} cores`,
  seconds: SECONDS,
  serveArgs: opt('serve-args') ?? '',
  inProcess: [],
  http: [],
  ceiling: null,
}
const names = Object.keys(MODELS).filter((n) => !ONLY || ONLY.includes(n))
let autocannon = null
if (!flag('no-http')) {
  try {
    autocannon = (await import(join(BENCH, 'node_modules', 'autocannon', 'autocannon.js'))).default
  } catch (e) {
    say(
      `bench: autocannon is not installed (npm --prefix bench install): ${e.message.split('\n')[0]}; HTTP part skipped`,
    )
  }
}
for (const name of names) {
  const path = modelFile(name)
  const model = await load(path)
  say(`\n${MODELS[name].label}: ${model.backend}${model.simd ? ` (${model.simd})` : ''}, ${statSync(path).size} bytes`)
  const xs = inputs(MODELS[name].I, 512, 42)
  if (!flag('no-inproc')) results.inProcess.push(...(await inProcess(name, model, xs)))
  if (autocannon) results.http.push(...(await http(name, path, model, xs, autocannon)))
  model.dispose()
}
if (autocannon) {
  // The ceiling of node:http plus the load generator on this machine: an endpoint that does nothing.
  const server = await startServer([CLI, 'serve', modelFile(names[0])])
  results.ceiling = await autocannonRun(autocannon, server.url, [], 64, SECONDS, '/healthz')
  say(
    `\nGET /healthz at 64 connections (no model work): ${results.ceiling.rps.toFixed(0)} req/s, p50 ${results.ceiling.p50} ms`,
  )
  server.child.kill('SIGTERM')
  await server.exit
}
if (flag('write')) writeFileSync(join(OUT, 'serve.json'), `${JSON.stringify(results, null, 2)}\n`)
