// The HTTP face of `birnn serve` (docs/serving.md), on node:http: a handler for
//   POST /v1/forward   a JSON or .npy body in, the same format out (?output=full|last|mean)
//   GET  /healthz      200 while serving, 503 while draining
//   GET  /metrics      Prometheus text (prom-client)
// Every request is checked before it reaches the model, so a bad one costs only its own 4xx; the
// body is read up to --max-body and no further; a client that goes away aborts its request while
// it still waits in the batcher's queue.

import type { IncomingMessage, ServerResponse } from 'node:http'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { JsonRows } from '../cli/jsonl.js'
import { describe } from '../errors.js'
import type { Model } from '../model/model.js'
import { choices } from '../model/options.js'
import { OUTPUT_KINDS } from '../model/pooling.js'
import type { BatchRequestOptions, ForwardOptions, ForwardResult, OutputKind, Tensor } from '../types.js'
import type { Batcher, BatchTarget } from './batcher.js'
import { BadRequest, npyBody, parseNpyBody } from './npy-body.js'

const BODY_KEYS = ['input', 'h0', 'c0', 'lengths']
const NPY = 'application/x-npy'

/** How the model is called: through the batcher, or one model.forward() per request (--no-batching). */
export interface Forwarder {
  forward(input: Tensor, options: BatchRequestOptions): Promise<ForwardResult>
  /** Requests waiting (the batcher's queue), or in flight (without batching). */
  depth(): number
  /** Finishes what was accepted. */
  close(): Promise<void>
}

export function batchingForwarder(batcher: Batcher): Forwarder {
  return {
    forward: (input, options) => batcher.forward(input, options),
    depth: () => batcher.queued,
    close: () => batcher.close(),
  }
}

/** One model.forward() per request; at most `maxQueue` at once (beyond: ERR_BIRNN_QUEUE_FULL, 503). */
export function directForwarder(model: Pick<BatchTarget, 'forward'>, maxQueue: number): Forwarder {
  let inFlight = 0
  let drained: (() => void) | undefined
  return {
    async forward(input, { signal, ...options }) {
      if (inFlight >= maxQueue) {
        const error = new Error(`${maxQueue} requests are in flight (--max-queue); try again later`)
        throw Object.assign(error, { code: 'ERR_BIRNN_QUEUE_FULL' })
      }
      signal?.throwIfAborted()
      inFlight++
      try {
        return await model.forward(input, options)
      } finally {
        inFlight--
        if (inFlight === 0) drained?.()
      }
    },
    depth: () => inFlight,
    close: () => (inFlight === 0 ? Promise.resolve() : new Promise((resolve) => (drained = resolve))),
  }
}

/** The server's metrics, in their own registry. */
export class Metrics {
  readonly registry = new Registry()
  readonly requests = new Counter({
    name: 'birnn_http_requests_total',
    help: 'HTTP requests answered, by route and status code',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  })
  readonly latency = new Histogram({
    name: 'birnn_http_request_duration_seconds',
    help: 'Time from a request to the end of its answer, POST /v1/forward only',
    labelNames: ['status'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  })
  readonly inFlight = new Gauge({
    name: 'birnn_http_requests_in_flight',
    help: 'POST /v1/forward requests received and not yet answered',
    registers: [this.registry],
  })
  readonly batchSize = new Histogram({
    name: 'birnn_batch_size_sequences',
    help: 'Sequences per model call',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [this.registry],
  })
  readonly batchSeconds = new Histogram({
    name: 'birnn_batch_duration_seconds',
    help: 'Time of one model call',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  })

  constructor(depth: () => number) {
    new Gauge({
      name: 'birnn_queue_depth',
      help: 'Requests waiting for the model (with --no-batching: requests in flight)',
      registers: [this.registry],
      collect() {
        this.set(depth())
      },
    })
    collectDefaultMetrics({ register: this.registry })
  }

  /** Wraps a model so that each call it makes (a batch) is counted and timed. */
  observe(target: Model): BatchTarget {
    const timed = async (batchFirst: boolean, run: () => Promise<ForwardResult>, shape: readonly number[]) => {
      this.batchSize.observe(shape.length === 2 ? 1 : shape[batchFirst ? 0 : 1])
      const end = this.batchSeconds.startTimer()
      try {
        return await run()
      } finally {
        end()
      }
    }
    return {
      config: target.config,
      parallelism: target.parallelism,
      forward: (input, options) => timed(target.config.batchFirst, () => target.forward(input, options), input.shape),
      forwardBatchFirst: (input, options) => timed(true, () => target.forwardBatchFirst(input, options), input.shape),
    }
  }
}

export interface HandlerOptions {
  forwarder: Forwarder
  metrics: Metrics
  /** Largest body read, in bytes (413 beyond). */
  maxBody: number
  /** True once the server drains: /healthz says so, answers close their connection. */
  draining: () => boolean
}

interface HttpError {
  status: number
  code: string
  message: string
  headers?: Record<string, string>
}

/** The status and body of a failure: the library's own errors keep their code and message. */
function classify(error: unknown): HttpError {
  const code = String((error as { code?: unknown })?.code ?? '')
  const message = error instanceof Error ? error.message : String(error)
  if (error instanceof BadRequest) return { status: 400, code: error.code, message }
  if (code === 'ERR_BIRNN_QUEUE_FULL') return { status: 503, code, message, headers: { 'Retry-After': '1' } }
  if (code === 'ERR_BIRNN_CLOSED') return { status: 503, code, message, headers: { 'Retry-After': '1' } }
  if (['ERR_BIRNN_SHAPE', 'ERR_BIRNN_INVALID_ARG', 'ERR_BIRNN_OUT_OF_RANGE', 'ERR_BIRNN_UNKNOWN_OPTION'].includes(code))
    return { status: 400, code, message }
  return { status: 500, code: code.startsWith('ERR_BIRNN_') ? code : 'ERR_BIRNN_INTERNAL', message }
}

/** Nested JSON arrays of numbers → a float32 tensor; refuses ragged arrays, non-numbers and non-finite values. */
function jsonTensor(name: string, value: unknown, ranks: readonly number[]): Tensor {
  const deepest = Math.max(...ranks)
  const shape: number[] = []
  for (let v = value; Array.isArray(v) && shape.length <= deepest; v = v[0]) {
    shape.push(v.length)
    if (v.length === 0) break
  }
  if (!ranks.includes(shape.length) || shape.includes(0)) {
    const received =
      shape.length === 0
        ? describe(value)
        : shape.length > deepest
          ? `arrays nested more than ${deepest} deep`
          : `shape [${shape.join(', ')}]`
    throw new BadRequest(
      `${name}: expected a non-empty ${ranks.join('-D or ')}-D array of numbers, received ${received}`,
    )
  }
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1))
  let k = 0
  const walk = (v: unknown, depth: number, path: string): void => {
    if (!Array.isArray(v) || v.length !== shape[depth]) {
      throw new BadRequest(
        `${name}${path}: expected an array of ${shape[depth]} (the array is not rectangular), received ${Array.isArray(v) ? `${v.length} entries` : describe(v)}`,
      )
    }
    if (depth === shape.length - 1) {
      for (let i = 0; i < v.length; i++) {
        const x = v[i]
        if (typeof x !== 'number')
          throw new BadRequest(`${name}${path}[${i}]: expected a number, received ${describe(x)}`)
        const f = Math.fround(x)
        if (!Number.isFinite(f)) throw new BadRequest(`${name}${path}[${i}]: expected a finite float32, received ${x}`)
        data[k++] = f
      }
    } else for (let i = 0; i < v.length; i++) walk(v[i], depth + 1, `${path}[${i}]`)
  }
  walk(value, 0, '')
  return { data, shape }
}

function checkFinite(name: string, data: Float32Array): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]))
      throw new BadRequest(`${name}: expected finite numbers, received ${data[i]} at flat index ${i}`)
  }
}

interface ParsedRequest {
  input: Tensor
  options: ForwardOptions
  format: 'json' | 'npy'
}

/** A query parameter given at most once (`?output=last&output=full` is refused, not guessed). */
function queryParam(query: URLSearchParams, name: string): string | null {
  const values = query.getAll(name)
  if (values.length > 1) throw new BadRequest(`?${name}: expected it once, received it ${values.length} times`)
  return values.length === 1 ? values[0] : null
}

/** ?lengths=5,3,9: decimal integers only (Number() would take '', '0x2' and '2e0'). */
function parseLengths(text: string): number[] {
  const parts = text.split(',').map((part) => part.trim())
  if (!parts.every((part) => /^\d{1,15}$/.test(part))) {
    throw new BadRequest(
      `?lengths: expected decimal integers separated by commas, received ${JSON.stringify(text.slice(0, 40))}`,
    )
  }
  return parts.map(Number)
}

function parseBody(body: Buffer, contentType: string, query: URLSearchParams): ParsedRequest {
  const type = contentType.split(';')[0].trim().toLowerCase()
  if (type === NPY) {
    const input = parseNpyBody(body)
    checkFinite('input', input.data)
    const options: ForwardOptions = {}
    const lengths = queryParam(query, 'lengths')
    if (lengths !== null) options.lengths = parseLengths(lengths)
    return { input, options, format: 'npy' }
  }
  if (type !== 'application/json' && type !== '') {
    throw new BadRequest(`Content-Type: expected application/json or ${NPY}, received ${type.slice(0, 60)}`)
  }
  let value: unknown
  try {
    value = JSON.parse(body.toString('utf8'))
  } catch (error) {
    throw new BadRequest(`body: not valid JSON: ${(error as Error).message}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadRequest('body: expected a JSON object {"input": [[...], ...], "h0"?, "c0"?, "lengths"?}')
  }
  const fields = value as Record<string, unknown>
  for (const key of Object.keys(fields)) {
    if (!BODY_KEYS.includes(key))
      throw new BadRequest(`body: unknown field '${key}' (known fields: ${BODY_KEYS.join(', ')})`)
  }
  if (fields.input === undefined) throw new BadRequest('body: the field "input" is missing')
  const options: ForwardOptions = {}
  if (fields.h0 !== undefined && fields.h0 !== null) options.h0 = jsonTensor('h0', fields.h0, [2, 3])
  if (fields.c0 !== undefined && fields.c0 !== null) options.c0 = jsonTensor('c0', fields.c0, [2, 3])
  if (fields.lengths !== undefined && fields.lengths !== null) {
    if (!Array.isArray(fields.lengths)) throw new BadRequest(`lengths: expected an array of integers`)
    options.lengths = fields.lengths as number[]
  }
  const lengths = queryParam(query, 'lengths')
  if (lengths !== null) {
    if (options.lengths !== undefined)
      throw new BadRequest("lengths: given both in the body and as ?lengths; give one (the body's, for JSON)")
    options.lengths = parseLengths(lengths)
  }
  return { input: jsonTensor('input', fields.input, [2, 3]), options, format: 'json' }
}

function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string | Buffer[],
  headers: Record<string, string> = {},
): void {
  const chunks = typeof body === 'string' ? [Buffer.from(body)] : body
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': String(chunks.reduce((n, c) => n + c.length, 0)),
    ...headers,
  })
  for (const chunk of chunks.slice(0, -1)) res.write(chunk)
  res.end(chunks[chunks.length - 1])
}

function sendError(res: ServerResponse, error: HttpError): void {
  if (res.headersSent || res.destroyed) return
  send(
    res,
    error.status,
    'application/json',
    JSON.stringify({ error: { code: error.code, message: error.message } }),
    error.headers,
  )
}

/**
 * Answers a refused request. What is left of its body (refused before or while it was read) is
 * read and dropped when its Content-Length is within `maxBody`, so that the connection serves the
 * next request; a larger or chunked one is not read at all, and the connection closes after the
 * answer.
 */
function refuse(req: IncomingMessage, res: ServerResponse, error: HttpError, maxBody: number): void {
  const length = req.headers['content-length']
  const hasBody = length !== undefined ? Number(length) > 0 : req.headers['transfer-encoding'] !== undefined
  if (!hasBody || req.complete) {
    sendError(res, error)
  } else if (Number(length) <= maxBody) {
    req.resume()
    sendError(res, error)
  } else {
    sendError(res, { ...error, headers: { ...error.headers, Connection: 'close' } })
    res.on('finish', () => req.destroy())
  }
}

/** Reads the body up to `limit` bytes; beyond, rejects with a 413 and stops reading. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tooLarge = (): HttpError => ({
      status: 413,
      code: 'ERR_BIRNN_BODY_TOO_LARGE',
      message: `body: expected at most ${limit} bytes (--max-body)`,
      headers: { Connection: 'close' },
    })
    const declared = Number(req.headers['content-length'])
    if (declared > limit) {
      reject(tooLarge())
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        req.removeAllListeners('data')
        req.pause()
        reject(tooLarge())
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)))
    req.on('error', reject)
    req.on('close', () => {
      if (!req.complete) reject(new DOMException('the client closed the connection', 'AbortError'))
    })
  })
}

/** The request handler of `birnn serve`. */
export function createHandler(options: HandlerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { forwarder, metrics, maxBody, draining } = options
  async function forward(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): Promise<number> {
    const kind = queryParam(query, 'output') ?? 'full'
    if (!(OUTPUT_KINDS as readonly string[]).includes(kind)) {
      throw new BadRequest(`output: expected ${choices(OUTPUT_KINDS)}, received ${JSON.stringify(kind.slice(0, 40))}`)
    }
    const body = await readBody(req, maxBody)
    const request = parseBody(body, req.headers['content-type'] ?? '', query)
    // A client that leaves takes its request out of the queue (a started batch completes regardless).
    const gone = new AbortController()
    const onClose = () => {
      if (!res.writableFinished) gone.abort()
    }
    res.on('close', onClose)
    const result = await forwarder.forward(request.input, {
      ...request.options,
      output: kind as OutputKind,
      signal: gone.signal,
    })
    if (res.destroyed) return 499
    const { output } = result
    const headers: Record<string, string> = draining() ? { Connection: 'close' } : {}
    if (request.format === 'npy') {
      send(res, 200, NPY, npyBody(output.data, output.shape), headers)
    } else {
      // Each float32 in the fewest digits that read back as it, as `birnn score` writes JSONL.
      const values = output.data.length + result.hN.data.length + (result.cN?.data.length ?? 0)
      const json = new JsonRows(64 + values * 12)
      json.text('{"output":')
      json.tensor(output.data, output.shape)
      json.text(',"hN":')
      json.tensor(result.hN.data, result.hN.shape)
      if (result.cN) {
        json.text(',"cN":')
        json.tensor(result.cN.data, result.cN.shape)
      }
      json.text('}')
      const bytes = json.take()
      send(res, 200, 'application/json', [Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)], headers)
    }
    return 200
  }

  return (req, res) => {
    const started = process.hrtime.bigint()
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://localhost')
    } catch {
      // llhttp takes request targets that the URL parser does not ('http://a:99999/', '//[').
      const target = JSON.stringify((req.url ?? '').slice(0, 60))
      refuse(
        req,
        res,
        { status: 400, code: 'ERR_BIRNN_BAD_REQUEST', message: `request target: not a valid path, received ${target}` },
        maxBody,
      )
      metrics.requests.inc({ route: 'other', status: '400' })
      return
    }
    const route =
      url.pathname === '/v1/forward' || url.pathname === '/healthz' || url.pathname === '/metrics'
        ? url.pathname
        : 'other'
    const done = (status: number) => {
      metrics.requests.inc({ route, status: String(status) })
      if (route === '/v1/forward')
        metrics.latency.observe({ status: String(status) }, Number(process.hrtime.bigint() - started) / 1e9)
    }
    const methodFor: Record<string, string> = { '/v1/forward': 'POST', '/healthz': 'GET', '/metrics': 'GET' }
    if (route === 'other') {
      const message = `no route ${url.pathname.slice(0, 60)} (POST /v1/forward, GET /healthz, GET /metrics)`
      refuse(req, res, { status: 404, code: 'ERR_BIRNN_NOT_FOUND', message }, maxBody)
      done(404)
      return
    }
    if (req.method !== methodFor[route] && !(req.method === 'HEAD' && methodFor[route] === 'GET')) {
      const allow = methodFor[route]
      refuse(
        req,
        res,
        { status: 405, code: 'ERR_BIRNN_METHOD', message: `${route} takes ${allow}`, headers: { Allow: allow } },
        maxBody,
      )
      done(405)
      return
    }
    if (route === '/healthz') {
      const status = draining() ? 503 : 200
      send(res, status, 'application/json', JSON.stringify({ status: status === 200 ? 'ok' : 'draining' }))
      done(status)
      return
    }
    if (route === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          send(res, 200, metrics.registry.contentType, text)
          done(200)
        },
        (error) => {
          sendError(res, classify(error))
          done(500)
        },
      )
      return
    }
    metrics.inFlight.inc()
    res.on('close', () => metrics.inFlight.dec())
    forward(req, res, url.searchParams).then(done, (error: unknown) => {
      if ((error as { name?: string })?.name === 'AbortError' || res.destroyed) {
        done(499) // the client went away: nobody to answer
        return
      }
      const failure = (error as HttpError)?.status ? (error as HttpError) : classify(error)
      refuse(req, res, failure, maxBody)
      done(failure.status)
    })
  }
}
