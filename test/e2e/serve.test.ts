// `birnn serve`, run as users run it: the CLI built into a temporary package (harness.ts), started
// on a free loopback port (--port 0, the address read from its one startup line), sent good and bad
// requests over real HTTP, flooded beyond --max-queue, and stopped with SIGTERM while requests wait.
import { type ChildProcess, spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { load } from '../../lib/index.js'
import type { Model } from '../../lib/model/model.js'
import { defaultConcurrency, defaultMaxBatch } from '../../lib/serving/batcher.js'
import type { Tensor } from '../../lib/types.js'
import { pooledFromFull, rng } from '../helpers.js'
import { buildPackage, npyBytes, root } from './harness.js'

const modelFile = join(root, 'examples', 'model.safetensors') // LSTM, I 16, H 32, 2 layers, bidirectional
const I = 16
const W = 64
let built: string
let model: Model
let jsModel: Model

interface Server {
  child: ChildProcess
  url: string
  line: string
  stderr: () => string
  exit: Promise<number | null>
}

/** Starts `birnn serve` on a free port; resolves once its startup line is out. */
function start(args: string[]): Promise<Server> {
  const child = spawn(
    process.execPath,
    [join(built, 'dist', 'cli', 'main.js'), 'serve', modelFile, '--port', '0', ...args],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let out = ''
  let err = ''
  child.stderr!.on('data', (chunk) => {
    err += chunk
  })
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk) => {
      out += chunk
      const match = /listening on (http:\/\/[^\s]+)/.exec(out)
      if (match) resolve({ child, url: match[1], line: out.trim(), stderr: () => err, exit })
    })
    exit.then((code) => reject(new Error(`birnn serve exited ${code}: ${err}`)))
  })
}

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** One request on its own connection. */
function send(
  url: string,
  method: string,
  body?: Buffer | string,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * Raw bytes on a connection of their own; resolves with all the server sent once it closes the
 * connection, or after `ms` (`closed` says which).
 */
function raw(url: string, bytes: string, ms = 5000): Promise<{ text: string; closed: boolean }> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(bytes))
    let text = ''
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ text, closed: false })
    }, ms)
    socket.on('data', (chunk) => {
      text += chunk
    })
    socket.on('error', reject)
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ text, closed: true })
    })
  })
}

const postJson = (url: string, value: unknown, query = '') =>
  send(`${url}/v1/forward${query}`, 'POST', JSON.stringify(value), { 'Content-Type': 'application/json' })
const postNpy = (url: string, bytes: Buffer, query = '') =>
  send(`${url}/v1/forward${query}`, 'POST', bytes, { 'Content-Type': 'application/x-npy' })

const json = (reply: Reply) => JSON.parse(reply.body.toString('utf8'))
const nested = (t: Tensor): unknown => {
  const build = (depth: number, offset: number): unknown => {
    const stride = t.shape.slice(depth + 1).reduce((a, b) => a * b, 1)
    return Array.from({ length: t.shape[depth] }, (_, i) =>
      depth === t.shape.length - 1 ? t.data[offset + i] : build(depth + 1, offset + i * stride),
    )
  }
  return build(0, 0)
}
const flat = (value: unknown): Float32Array => Float32Array.from((value as unknown[]).flat(4) as number[])
const npyOf = (t: Tensor) => npyBytes(t.shape, '<f4', Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))
/** The float32 array of an .npy response. */
function fromNpy(bytes: Buffer): Tensor {
  const headerLength = bytes.readUInt16LE(8)
  const header = bytes.subarray(10, 10 + headerLength).toString('latin1')
  const shape = /'shape': \(([^)]*)\)/
    .exec(header)![1]
    .split(',')
    .filter((d) => d.trim())
    .map(Number)
  const body = bytes.subarray(10 + headerLength)
  const data = new Float32Array(body.length / 4)
  new Uint8Array(data.buffer).set(body)
  return { data, shape }
}

const r = rng(2024)
const sequence = (T: number): Tensor => ({ data: r.floats(T * I), shape: [T, I] })

beforeAll(async () => {
  built = buildPackage()
  model = await load(modelFile)
  jsModel = await load(modelFile, { backend: 'js' })
}, 120_000)

afterAll(() => {
  model?.dispose()
  jsModel?.dispose()
  if (built) rmSync(built, { recursive: true, force: true })
})

describe('birnn serve', () => {
  let server: Server
  beforeAll(async () => {
    server = await start(['--max-body', '64k'])
  }, 30_000)
  afterAll(async () => {
    server?.child.kill('SIGTERM')
    await server?.exit
  })

  it('says in one line what it serves, on which backend, and where', () => {
    expect(server.line.split('\n')).toHaveLength(1)
    expect(server.line).toMatch(
      /^birnn serve: .*model\.safetensors \(LSTM, inputSize 16, hiddenSize 32, numLayers 2, bidirectional/,
    )
    // 64 sequences, or 16 on a machine whose default runs more than 8 batches at once
    const maxBatch = defaultMaxBatch(defaultConcurrency(model.parallelism))
    expect(server.line).toContain(
      ` on ${model.simd ? `native (${model.simd})` : 'js'}, batching up to ${maxBatch} sequences`,
    )
    expect(server.line).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+$/)
  })

  it('answers JSON with exactly what forwardSync gives: unbatched, batched with lengths and h0', async () => {
    const x = sequence(7)
    const reply = await postJson(server.url, { input: nested(x) })
    expect(reply.status).toBe(200)
    expect(reply.headers['content-type']).toBe('application/json')
    const want = model.forwardSync(x)
    const got = json(reply)
    expect(flat(got.output)).toEqual(want.output.data)
    expect(flat(got.hN)).toEqual(want.hN.data)
    expect(flat(got.cN)).toEqual(want.cN!.data)

    const xb: Tensor = { data: r.floats(9 * 3 * I), shape: [9, 3, I] }
    const h0: Tensor = { data: r.floats(4 * 3 * 32), shape: [4, 3, 32] }
    const lengths = [9, 2, 5]
    const batched = json(await postJson(server.url, { input: nested(xb), h0: nested(h0), lengths }, '?output=last'))
    const full = model.forwardSync(xb, { h0, lengths })
    expect(flat(batched.output)).toEqual(
      pooledFromFull(full.output.data, 'last', { B: 3, T: 9, W, D: 2, batchFirst: false }, lengths),
    )
    expect(flat(batched.hN)).toEqual(full.hN.data)
  })

  it('answers .npy with .npy, ?lengths and ?output=mean included', async () => {
    const xb: Tensor = { data: r.floats(6 * 2 * I), shape: [6, 2, I] }
    const reply = await postNpy(server.url, npyOf(xb), '?output=mean&lengths=6,3')
    expect(reply.status).toBe(200)
    expect(reply.headers['content-type']).toBe('application/x-npy')
    const got = fromNpy(reply.body)
    const full = model.forwardSync(xb, { lengths: [6, 3] })
    expect(got.shape).toEqual([2, W])
    expect(got.data).toEqual(
      pooledFromFull(full.output.data, 'mean', { B: 2, T: 6, W, D: 2, batchFirst: false }, [6, 3]),
    )
    const one = fromNpy((await postNpy(server.url, npyOf(sequence(4)))).body)
    expect(one.shape).toEqual([4, W])
  })

  it('answers concurrent requests of different lengths each with its own result', async () => {
    const inputs = Array.from({ length: 24 }, (_, i) => sequence(1 + ((i * 7) % 30)))
    const replies = await Promise.all(inputs.map((x) => postJson(server.url, { input: nested(x) }, '?output=last')))
    replies.forEach((reply, i) => {
      const want = model.forwardSync(inputs[i])
      const T = inputs[i].shape[0]
      expect(flat(json(reply).output)).toEqual(
        pooledFromFull(want.output.data, 'last', { B: 1, T, W, D: 2, batchFirst: true }),
      )
    })
  })

  it('refuses bad requests with 400 and the reason, and keeps serving', async () => {
    const cases: Array<[Promise<Reply>, string, RegExp]> = [
      [
        send(`${server.url}/v1/forward`, 'POST', '{"input": [[1, 2]', { 'Content-Type': 'application/json' }),
        'ERR_BIRNN_BAD_REQUEST',
        /not valid JSON/,
      ],
      [
        postJson(server.url, { input: [[1, 2]] }),
        'ERR_BIRNN_SHAPE',
        /^input: expected shape \[T, 16\] with T ≥ 1, received \[1, 2\]$/,
      ],
      [
        postJson(server.url, { input: [[...new Array(16).fill(1)], [1]] }),
        'ERR_BIRNN_BAD_REQUEST',
        /^input\[1\]: expected an array of 16/,
      ],
      [
        postJson(server.url, { input: [new Array(16).fill('a')] }),
        'ERR_BIRNN_BAD_REQUEST',
        /^input\[0\]\[0\]: expected a number/,
      ],
      [
        postJson(server.url, { input: nested(sequence(3)), h0: [[1]] }),
        'ERR_BIRNN_SHAPE',
        /^h0: expected shape \[4, 32\]/,
      ],
      [
        postJson(server.url, { input: nested(sequence(3)), lengths: [4] }),
        'ERR_BIRNN_OUT_OF_RANGE',
        /^lengths\[0\]: expected a length in \[1, 3\], received 4$/,
      ],
      [postJson(server.url, { inputs: [] }), 'ERR_BIRNN_BAD_REQUEST', /unknown field 'inputs'/],
      [
        postJson(server.url, { input: nested(sequence(3)) }, '?output=max'),
        'ERR_BIRNN_BAD_REQUEST',
        /^output: expected 'full', 'last' or 'mean'/,
      ],
      [postNpy(server.url, Buffer.from('not npy at all')), 'ERR_BIRNN_BAD_REQUEST', /not a readable \.npy array/],
      [postNpy(server.url, npyOf(sequence(3)).subarray(0, 150)), 'ERR_BIRNN_BAD_REQUEST', /needs 192 bytes of data/],
      [
        postNpy(server.url, npyOf({ data: Float32Array.from([Number.NaN, ...new Array(15).fill(0)]), shape: [1, 16] })),
        'ERR_BIRNN_BAD_REQUEST',
        /^input: expected finite numbers, received NaN/,
      ],
      [
        send(`${server.url}/v1/forward`, 'POST', '{}', { 'Content-Type': 'text/plain' }),
        'ERR_BIRNN_BAD_REQUEST',
        /^Content-Type: expected application\/json/,
      ],
      // Nested too deep to print (or to stringify): named by kind and depth, in a short message.
      [
        send(`${server.url}/v1/forward`, 'POST', `{"input": ${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`, {
          'Content-Type': 'application/json',
        }),
        'ERR_BIRNN_BAD_REQUEST',
        /^input: expected a non-empty 2-D or 3-D array of numbers, received an object$/,
      ],
      [
        send(`${server.url}/v1/forward`, 'POST', `{"input": [[${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}]]}`, {
          'Content-Type': 'application/json',
        }),
        'ERR_BIRNN_BAD_REQUEST',
        /^input\[0\]\[0\]: expected a number, received an object$/,
      ],
      [
        send(`${server.url}/v1/forward`, 'POST', `{"input": ${'['.repeat(20000)}${']'.repeat(20000)}}`, {
          'Content-Type': 'application/json',
        }),
        'ERR_BIRNN_BAD_REQUEST',
        /^input: expected a non-empty 2-D or 3-D array of numbers, received arrays nested more than 3 deep$/,
      ],
      // ?lengths: decimal integers, given once, and for JSON not also in the body; ?output once.
      [
        postNpy(server.url, npyOf(sequence(3)), '?lengths=0x2'),
        'ERR_BIRNN_BAD_REQUEST',
        /^\?lengths: expected decimal/,
      ],
      [postNpy(server.url, npyOf(sequence(3)), '?lengths='), 'ERR_BIRNN_BAD_REQUEST', /received ""$/],
      [
        postNpy(server.url, npyOf(sequence(3)), '?lengths=2&lengths=3'),
        'ERR_BIRNN_BAD_REQUEST',
        /^\?lengths: expected it once, received it 2 times$/,
      ],
      [
        postJson(server.url, { input: nested(sequence(3)), lengths: [2] }, '?lengths=1'),
        'ERR_BIRNN_BAD_REQUEST',
        /^lengths: given both in the body and as \?lengths/,
      ],
      [
        postJson(server.url, { input: nested(sequence(3)) }, '?output=last&output=full'),
        'ERR_BIRNN_BAD_REQUEST',
        /^\?output: expected it once/,
      ],
      [
        postNpy(server.url, npyBytes([3, I], '>f4', Buffer.alloc(3 * I * 4))),
        'ERR_BIRNN_BAD_REQUEST',
        /float16 '<f2'\)$/, // the body's dtypes, not the CLI's (which also reads integer lengths)
      ],
    ]
    for (const [pending, code, message] of cases) {
      const reply = await pending
      expect(reply.status, reply.body.toString()).toBe(400)
      const { error } = json(reply)
      expect(error.code).toBe(code)
      expect(error.message).toMatch(message)
    }
    expect((await postJson(server.url, { input: nested(sequence(2)) })).status).toBe(200)
  })

  it('refuses a body over --max-body with 413 without reading it', async () => {
    const big = npyOf(sequence(2000)) // 128 kB
    const reply = await postNpy(server.url, big)
    expect(reply.status).toBe(413)
    expect(json(reply).error.code).toBe('ERR_BIRNN_BODY_TOO_LARGE')
    // Declared larger than the limit, body never sent: answered at once.
    const declared = await send(`${server.url}/v1/forward`, 'POST', undefined, {
      'Content-Type': 'application/x-npy',
      'Content-Length': String(1 << 30),
    }).catch((error: Error) => error)
    if (!(declared instanceof Error)) expect(declared.status).toBe(413)
    expect((await send(`${server.url}/healthz`, 'GET')).status).toBe(200)
  })

  it('404 and 405 for other routes and methods', async () => {
    expect((await send(`${server.url}/v2/forward`, 'POST', '{}')).status).toBe(404)
    const wrong = await send(`${server.url}/v1/forward`, 'GET')
    expect(wrong.status).toBe(405)
    expect(wrong.headers.allow).toBe('POST')
  })

  it('400 for a request target that is no path, and keeps serving', async () => {
    for (const target of ['http://a:99999/healthz', '//[']) {
      const { text } = await raw(server.url, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
      expect(text).toMatch(/^HTTP\/1\.1 400 /)
      expect(text).toContain('"code":"ERR_BIRNN_BAD_REQUEST"')
    }
    expect((await send(`${server.url}/healthz`, 'GET')).status).toBe(200)
  })

  it('a request refused before its body is read: a body over --max-body is not read, the connection closes', async () => {
    const huge = 'Content-Type: application/x-npy\r\nContent-Length: 1000000000\r\n\r\n'
    for (const [line, status] of [
      ['POST /v1/forward?output=bogus', 400],
      ['POST /v2/forward', 404],
      ['PUT /v1/forward', 405],
    ] as const) {
      // The body is never sent: the server must answer, and close, without waiting for it.
      const { text, closed } = await raw(server.url, `${line} HTTP/1.1\r\nHost: x\r\n${huge}`)
      expect(text).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `))
      expect(text).toMatch(/\r\nConnection: close\r\n/i)
      expect(closed).toBe(true)
    }
    // Within --max-body, the body is read and dropped and the connection serves the next request.
    const small = 'Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'
    const { text } = await raw(
      server.url,
      `POST /v2/forward HTTP/1.1\r\nHost: x\r\n${small}GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    )
    expect(text).toMatch(/^HTTP\/1\.1 404 [\s\S]*HTTP\/1\.1 200 /)
  })

  it('GET /healthz and /metrics (Prometheus text: counts by status, latency, batch sizes, queue depth)', async () => {
    const health = await send(`${server.url}/healthz`, 'GET')
    expect(health.status).toBe(200)
    expect(json(health)).toEqual({ status: 'ok' })
    const metrics = await send(`${server.url}/metrics`, 'GET')
    expect(metrics.status).toBe(200)
    expect(metrics.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = metrics.body.toString()
    expect(text).toMatch(/^birnn_http_requests_total\{route="\/v1\/forward",status="200"\} \d+$/m)
    expect(text).toMatch(/^birnn_http_requests_total\{route="\/v1\/forward",status="400"\} 22$/m) // 21 bad bodies and queries, one ?output=bogus with no body
    expect(text).toMatch(/^birnn_http_requests_total\{route="\/v1\/forward",status="413"\} [12]$/m)
    expect(text).toMatch(/^birnn_http_request_duration_seconds_bucket\{le="0\.1",status="200"\} \d+$/m)
    expect(text).toMatch(/^birnn_batch_size_sequences_bucket\{le="64"\} \d+$/m)
    expect(text).toMatch(/^birnn_batch_size_sequences_count \d+$/m)
    expect(text).toMatch(/^birnn_queue_depth 0$/m)
    expect(text).toMatch(/^process_cpu_seconds_total /m)
  })
})

describe('birnn serve under load and at shutdown', () => {
  it('a flood beyond --max-queue gets 503 with Retry-After; the accepted requests are answered', async () => {
    // Long requests on one thread: the queue fills while the first ones compute.
    const server = await start(['--threads', '1', '--max-queue', '2', '--max-batch', '1', '--concurrency', '1'])
    try {
      const body = npyOf({ data: r.floats(300 * 16 * I), shape: [300, 16, I] })
      const replies = await Promise.all(Array.from({ length: 30 }, () => postNpy(server.url, body, '?output=last')))
      const statuses = replies.map((reply) => reply.status)
      expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0)
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0)
      expect(statuses.every((s) => s === 200 || s === 503)).toBe(true)
      for (const reply of replies.filter((x) => x.status === 503)) {
        expect(reply.headers['retry-after']).toBe('1')
        expect(json(reply).error.code).toBe('ERR_BIRNN_QUEUE_FULL')
      }
    } finally {
      server.child.kill('SIGTERM')
      expect(await server.exit).toBe(0)
    }
  }, 60_000)

  it('a client that leaves while its request waits takes it out of the queue', async () => {
    // One model call at a time (the default runs more on many cores), so that six are ahead of it,
    // each long enough (T = 2000: 10+ ms on a fast core) that the client leaves well before its turn.
    const server = await start(['--threads', '1', '--max-batch', '1', '--concurrency', '1'])
    try {
      const body = npyOf({ data: r.floats(2000 * 16 * I), shape: [2000, 16, I] })
      const ahead = Array.from({ length: 6 }, () => postNpy(server.url, body, '?output=last'))
      await new Promise((resolve) => setTimeout(resolve, 30))
      // The leaving client: its body is sent, then it hangs up while six model calls are ahead of it.
      const leaving = httpRequest(`${server.url}/v1/forward?output=last`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-npy' },
        agent: false,
      })
      leaving.on('error', () => {})
      leaving.end(npyOf({ data: r.floats(20 * 16 * I), shape: [20, 16, I] }), () =>
        setTimeout(() => leaving.destroy(), 30),
      )
      expect((await Promise.all(ahead)).map((reply) => reply.status)).toEqual(new Array(6).fill(200))
      const text = (await send(`${server.url}/metrics`, 'GET')).body.toString()
      expect(text).toMatch(/^birnn_http_requests_total\{route="\/v1\/forward",status="499"\} 1$/m)
      expect(text).toMatch(/^birnn_batch_size_sequences_count 6$/m) // six model calls: the seventh never ran
    } finally {
      server.child.kill('SIGTERM')
      expect(await server.exit).toBe(0)
    }
  }, 60_000)

  it('a second signal of either kind stops a draining server at once', async () => {
    for (const [first, second] of [
      ['SIGTERM', 'SIGINT'],
      ['SIGINT', 'SIGTERM'],
    ] as const) {
      const server = await start([])
      // Half a body holds the drain open: the server waits for the rest.
      const { hostname, port } = new URL(server.url)
      const holder = connect(Number(port), hostname)
      holder.on('error', () => {})
      holder.write(
        'POST /v1/forward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"in',
      )
      // Until the server holds it (its handler counts it in flight).
      for (let tries = 0; tries < 250; tries++) {
        const text = (await send(`${server.url}/metrics`, 'GET')).body.toString()
        if (/^birnn_http_requests_in_flight 1$/m.test(text)) break
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      server.child.kill(first)
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect(server.child.exitCode).toBe(null) // still draining
      server.child.kill(second)
      const stopped = await Promise.race([
        server.exit.then(() => true),
        new Promise((resolve) => setTimeout(() => resolve(false), 5000)),
      ])
      holder.destroy()
      if (!stopped) server.child.kill('SIGKILL')
      expect(stopped).toBe(true)
      expect(server.child.signalCode).toBe(second)
    }
  }, 60_000)

  it('SIGTERM: stops taking connections, answers every request it received, exits 0', async () => {
    const server = await start(['--backend', 'js', '--max-batch', '1'])
    const count = 30
    // Long enough that the server still computes when it holds them all (at 400 steps, a loaded
    // machine once answered all 30 before the poll saw the last arrive).
    const inputs = Array.from({ length: count }, (_, i) => sequence(800 + i))
    const pending = inputs.map((x) => postJson(server.url, { input: nested(x) }, '?output=mean'))
    try {
      // Wait until the server holds every request (received: answered or in flight), then stop it.
      for (;;) {
        const text = (await send(`${server.url}/metrics`, 'GET')).body.toString()
        const answered = [...text.matchAll(/^birnn_http_requests_total\{route="\/v1\/forward",status="\d+"\} (\d+)$/gm)]
          .map((m) => Number(m[1]))
          .reduce((a, b) => a + b, 0)
        const inFlight = Number(/^birnn_http_requests_in_flight (\d+)$/m.exec(text)?.[1] ?? 0)
        if (answered + inFlight >= count) {
          expect(answered).toBeLessThan(count) // some still wait: the drain has work to do
          break
        }
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    } catch (error) {
      server.child.kill('SIGKILL') // an assertion failed before SIGTERM: leave no server behind
      throw error
    }
    server.child.kill('SIGTERM')
    const replies = await Promise.all(pending)
    expect(replies.map((reply) => reply.status)).toEqual(new Array(count).fill(200))
    replies.forEach((reply, i) => {
      const want = jsModel.forwardSync(inputs[i])
      const T = inputs[i].shape[0]
      expect(flat(json(reply).output)).toEqual(
        pooledFromFull(want.output.data, 'mean', { B: 1, T, W, D: 2, batchFirst: true }),
      )
    })
    expect(await server.exit).toBe(0)
    expect(server.stderr()).toMatch(/SIGTERM: draining \d+ open request\(s\)\nbirnn serve: stopped\n$/)
    // Nothing listens any more.
    await expect(send(`${server.url}/healthz`, 'GET')).rejects.toThrow(/ECONNREFUSED/)
  }, 60_000)
})
