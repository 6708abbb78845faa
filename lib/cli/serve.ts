// birnn serve: the model behind HTTP (docs/serving.md). node:http, the batcher in front of the
// model, prom-client metrics; SIGTERM or SIGINT stops taking connections, answers every request
// already accepted, and exits 0.

import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { InvalidArgumentError } from 'commander'
import { Batcher } from '../serving/batcher.js'
import { batchingForwarder, createHandler, directForwarder, type Forwarder, Metrics } from '../serving/http.js'
import { describeBackend, describeModel, openModel } from './model.js'
import type { ModelOptions } from './options.js'

export interface ServeOptions extends ModelOptions {
  host: string
  port: number
  batchFirst?: boolean
  maxBatch?: number
  maxBatchTokens: number
  maxDelayMs: number
  maxQueue: number
  /** Undefined: the batcher's default (defaultConcurrency). */
  concurrency?: number
  maxBody: number
  /** commander's --no-batching. */
  batching: boolean
}

/** 1048576, 512k, 16m, 16MiB, 1g: a size in bytes. */
export function byteSize(value: string): number {
  const match = /^(\d+)\s*(k|m|g)?(?:i?b)?$/i.exec(value.trim())
  const n = match ? Number(match[1]) * 1024 ** ' kmg'.indexOf((match[2] ?? ' ').toLowerCase()) : Number.NaN
  if (!match || !Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError('expected a size in bytes, e.g. 8388608, 512k or 16m.')
  return n
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value)
  if (value.trim() === '' || !(n >= 0) || n > 60_000)
    throw new InvalidArgumentError('expected milliseconds in [0, 60000].')
  return n
}

export function port(value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || n > 65535)
    throw new InvalidArgumentError('expected a port in [0, 65535] (0: any free port).')
  return n
}

export async function serve(modelPath: string, options: ServeOptions): Promise<void> {
  const { model } = await openModel(modelPath, options, options.batchFirst ? true : undefined)
  let forwarder: Forwarder
  let batching = ''
  let metrics: Metrics
  if (options.batching) {
    let batcher: Batcher | undefined
    metrics = new Metrics(() => batcher?.queued ?? 0)
    batcher = new Batcher(metrics.observe(model), {
      maxBatch: options.maxBatch,
      maxBatchTokens: options.maxBatchTokens,
      maxDelayMs: options.maxDelayMs,
      maxQueue: options.maxQueue,
      concurrency: options.concurrency,
    })
    const { concurrency, maxBatch } = batcher.options
    forwarder = batchingForwarder(batcher)
    batching = `batching up to ${maxBatch} sequences${concurrency > 1 ? `, ${concurrency} batches at once` : ''}${options.maxDelayMs ? `, waiting up to ${options.maxDelayMs} ms` : ''}`
  } else {
    let direct: Forwarder | undefined
    metrics = new Metrics(() => direct?.depth() ?? 0)
    direct = directForwarder(metrics.observe(model), options.maxQueue)
    forwarder = direct
    batching = 'no batching'
  }

  let draining = false
  const server = createServer(
    {
      requestTimeout: 30_000, // the whole request must arrive within 30 s
      headersTimeout: 10_000,
      keepAliveTimeout: 5_000,
    },
    createHandler({ forwarder, metrics, maxBody: options.maxBody, draining: () => draining }),
  )
  // Requests that arrived and are not answered yet: a drain waits for every one of them.
  let open = 0
  let idle: (() => void) | undefined
  server.on('request', (_req, res) => {
    open++
    res.on('close', () => {
      open--
      if (open === 0) idle?.()
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  process.stdout.write(
    `birnn serve: ${modelPath} (${describeModel(model.config)}) on ${describeBackend(model)}, ${batching}, listening on http://${host}:${address.port}\n`,
  )

  // The first signal of either kind drains. Both listeners go then, so that a second one of either
  // kind (Ctrl-C after a SIGTERM) gets Node's default and stops the process at once.
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const first = (received: NodeJS.Signals) => {
      process.off('SIGTERM', first)
      process.off('SIGINT', first)
      resolve(received)
    }
    process.on('SIGTERM', first)
    process.on('SIGINT', first)
  })
  // Drain: no new connections, idle keep-alive connections closed, every request already
  // received answered (their answers say Connection: close), then the queue is empty.
  draining = true
  process.stderr.write(`birnn serve: ${signal}: draining ${open} open request(s)\n`)
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  server.closeIdleConnections()
  if (open > 0) await new Promise<void>((resolve) => (idle = resolve))
  await forwarder.close()
  server.closeAllConnections()
  await closed
  model.dispose()
  process.stderr.write('birnn serve: stopped\n')
}
