#!/usr/bin/env node
// onnxruntime-node behind node:http, with `birnn serve`'s handler shape, for bench/serve.mjs:
//
//   node bench/contenders/ort-server.mjs MODEL.onnx [--port N]     (an export of bench/export-onnx.py)
//
// POST /v1/forward?output=last, an .npy body (one sequence (T, I), float32) → an .npy of the D*H
// floats birnn's 'last' gives: the forward direction at step T-1 and the backward direction at
// step 0 (both final states; PyTorch's output[-1] would give a backward half that saw one step).
// One InferenceSession with onnxruntime's default options, one session.run() per request, no batching.
// onnxruntime-node's run() is synchronous on the main thread (after a setImmediate): one request
// computes at a time, on one core, and the event loop waits for it. GET /healthz; SIGTERM exits 0.

import { createServer } from 'node:http'
import { loadOrt, ortMissing } from './onnxruntime.mjs'

const [model, ...rest] = process.argv.slice(2)
const port = rest.includes('--port') ? Number(rest[rest.indexOf('--port') + 1]) : 8080
const ort = loadOrt()
if (!model || !ort) {
  process.stderr.write(`ort-server: ${model ? ortMissing() : 'usage: ort-server.mjs MODEL.onnx [--port N]'}\n`)
  process.exit(2)
}
// onnxruntime's defaults (its intra-op threads: one per core), as `birnn serve` runs with its own.
const session = await ort.InferenceSession.create(model)
const shape = (list, name) => list.find((m) => m.name === name).shape
const I = shape(session.inputMetadata, 'input')[2]
const W = shape(session.outputMetadata, 'output')[2] // D*H
const H = shape(session.outputMetadata, 'hN')[2]

/** The .npy header of every answer (shape (W,)), as lib/cli/npy.ts writes it. */
function npyHeader() {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${W},), }`
  const text = `${dict}${' '.repeat((64 - ((10 + dict.length + 1) % 64)) % 64)}\n`
  const head = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0, 0])
  head.writeUInt16LE(text.length, 8)
  return Buffer.concat([head, Buffer.from(text, 'latin1')])
}
const HEADER = npyHeader()

/** One sequence (T, I) of float32 from an .npy body, or an Error saying why not (a 400). */
function parse(body) {
  if (body.length < 10 || body.readUInt32BE(0) !== 0x934e554d || body[4] !== 0x50 || body[5] !== 0x59)
    return new Error('body: not an .npy array')
  const n = body.readUInt16LE(8)
  const dict = body.toString('latin1', 10, 10 + n)
  const dims = /'shape': \((\d+), (\d+)\)/.exec(dict)
  if (body[6] !== 1 || !dict.includes("'descr': '<f4'") || !dict.includes("'fortran_order': False") || !dims)
    return new Error(`body: expected a version 1.0 .npy of float32 (T, ${I}), received ${dict.trim()}`)
  const T = Number(dims[1])
  const raw = body.subarray(10 + n)
  if (T === 0 || Number(dims[2]) !== I || raw.length !== T * I * 4)
    return new Error(
      `body: expected shape (T, ${I}) and its T*${I}*4 bytes, received (${dims[1]}, ${dims[2]}) in ${raw.length} bytes`,
    )
  // A view when aligned, else a copy (as birnn's parseNpyBody); finite, as birnn's handler checks.
  const data = raw.byteOffset % 4 === 0 ? new Float32Array(raw.buffer, raw.byteOffset, T * I) : new Float32Array(T * I)
  if (data.buffer !== raw.buffer) new Uint8Array(data.buffer).set(raw)
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return new Error(`input: ${data[i]} at ${i}`)
  return { data, T }
}

async function forward(body) {
  const x = parse(body)
  if (x instanceof Error) return [400, 'application/json', JSON.stringify({ error: { message: x.message } })]
  const { output } = await session.run({ input: new ort.Tensor('float32', x.data, [x.T, 1, I]) }, ['output'])
  const last = new Float32Array(W)
  last.set(output.data.subarray((x.T - 1) * W, (x.T - 1) * W + H))
  if (W > H) last.set(output.data.subarray(H, W), H) // bidirectional: the backward half of step 0
  return [200, 'application/x-npy', Buffer.concat([HEADER, Buffer.from(last.buffer)])]
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost')
  const answer = ([status, type, body]) =>
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) }).end(body)
  if (req.method === 'GET' && url.pathname === '/healthz') return answer([200, 'application/json', '{"status":"ok"}'])
  if (req.method !== 'POST' || url.pathname !== '/v1/forward' || url.searchParams.get('output') !== 'last') {
    req.resume()
    return answer([404, 'application/json', '{"error":{"message":"POST /v1/forward?output=last only"}}'])
  }
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () =>
    forward(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)).then(answer, (e) =>
      answer([500, 'application/json', JSON.stringify({ error: { message: e.message } })]),
    ),
  )
})
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(
    `ort-server: ${model} (onnxruntime-node ${ort.env.versions.node}, default session options, one session.run per request), listening on http://127.0.0.1:${server.address().port}\n`,
  )
})
process.once('SIGTERM', () => {
  server.close(() => session.release().then(() => process.exit(0)))
  server.closeIdleConnections()
})
