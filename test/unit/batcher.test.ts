// The batcher's policy, on a gated model: each forward call it makes waits until the test releases
// it, so what queues, what goes together and what fails can be watched step by step. The results
// are a real JS-engine model's (bit-identity on every engine is test/parity/batcher.test.ts).
import { describe, expect, it } from 'vitest'
import { BirnnError } from '../../lib/errors.js'
import { fromStateDict } from '../../lib/index.js'
import { Batcher, type BatchTarget, defaultConcurrency, defaultMaxBatch } from '../../lib/serving/batcher.js'
import type { BatcherOptions, ForwardOptions, ForwardResult, Tensor } from '../../lib/types.js'
import { expectError, randomStateDict, rejection, rng } from '../helpers.js'

const I = 3
const model = fromStateDict(randomStateDict(rng(7), { mode: 'LSTM', I, H: 4, L: 1, D: 2, bias: true }), {
  backend: 'js',
})

interface Call {
  input: Tensor
  options: ForwardOptions
  /** A batch: (N, T, I) whatever the model's layout; a lone request comes as it was sent. */
  batchFirst: boolean
  release(error?: unknown): void
}

/**
 * A target whose forward calls wait for release(); `fail` makes the call reject with that error.
 * Like a model, it takes the input when called (the batcher reuses the array of a batch's input).
 */
function gated() {
  const calls: Call[] = []
  const call =
    (batchFirst: boolean, run: typeof model.forward) =>
    (given: Tensor, options: ForwardOptions = {}) =>
      new Promise<ForwardResult>((resolve, reject) => {
        const input = { data: given.data.slice(), shape: given.shape }
        calls.push({
          input,
          options,
          batchFirst,
          release: (error) => (error ? reject(error) : resolve(run.call(model, input, options))),
        })
      })
  const target: BatchTarget = {
    config: model.config,
    forward: call(false, model.forward),
    forwardBatchFirst: call(true, model.forwardBatchFirst),
  }
  // One batch at a time unless a test asks for more: the default follows the machine's cores.
  const make = (options?: BatcherOptions) => new Batcher(target, { concurrency: 1, ...options })
  return { calls, target, make }
}

/** One sequence of T steps, unbatched (T, I), filled with `value`. */
const seq = (T: number, value = 0.5): Tensor => ({ data: new Float32Array(T * I).fill(value), shape: [T, I] })
/** N sequences of T steps, time-major (T, N, I). */
const batch = (T: number, N: number): Tensor => ({ data: new Float32Array(T * N * I).fill(0.25), shape: [T, N, I] })

/** Lets microtasks and immediate callbacks run. */
const tick = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
/** Sequences in a batch's forward call. */
const sequencesOf = (call: Call) => call.input.shape[0]

describe('batching policy', () => {
  it('sends a lone request straight through, as it came', async () => {
    const { calls, make } = gated()
    const b = make()
    const done = b.forward(seq(5))
    await tick()
    expect(calls).toHaveLength(1)
    expect(calls[0].input.shape).toEqual([5, I])
    calls[0].release()
    expect((await done).output.shape).toEqual([5, 8])
    expect(b.stats).toMatchObject({ requests: 1, completed: 1, batches: 1, sequences: 1, queued: 0, inFlight: 0 })
  })

  it('queues while a batch runs, then takes everything queued up to maxBatch sequences, in order', async () => {
    const { calls, make } = gated()
    const b = make({ maxBatch: 4 })
    const first = b.forward(seq(3))
    await tick()
    const rest = [b.forward(seq(2)), b.forward(batch(4, 2)), b.forward(seq(6)), b.forward(seq(1)), b.forward(seq(2))]
    await tick()
    expect(calls).toHaveLength(1)
    expect(b.queued).toBe(5)
    expect(b.inFlight).toBe(1)
    calls[0].release()
    await first
    await tick()
    // 1 + 2 + 1 = 4 sequences; the next request (1 sequence) would make 5.
    expect(calls).toHaveLength(2)
    expect(calls[1].batchFirst).toBe(true)
    expect(calls[1].input.shape).toEqual([4, 6, I])
    expect(calls[1].options.lengths).toEqual(Int32Array.from([2, 4, 4, 6]))
    calls[1].release()
    await tick()
    expect(calls).toHaveLength(3)
    expect(calls[2].input.shape).toEqual([2, 2, I])
    calls[2].release()
    const results = await Promise.all(rest)
    expect(results.map((r) => r.output.shape)).toEqual([
      [2, 8],
      [4, 2, 8],
      [6, 8],
      [1, 8],
      [2, 8],
    ])
    expect(b.stats).toMatchObject({ requests: 6, completed: 6, batches: 3, sequences: 7 })
    expect(b.stats.meanBatchRequests).toBe(2)
  })

  it('bounds a batch by maxBatchTokens: the longest T times the sequences', async () => {
    const { calls, make } = gated()
    const b = make({ maxBatchTokens: 25 })
    const all = [b.forward(seq(10)), b.forward(seq(10)), b.forward(seq(10)), b.forward(seq(12)), b.forward(seq(40))]
    for (let i = 0; i < 3; i++) {
      await tick()
      calls[i].release()
    }
    await Promise.all(all)
    // 10 and 10 (2 × 10 = 20; a third would make 30); then 10 and 12 (2 × 12 = 24; with 40, 3 × 40);
    // then 40 alone, which exceeds the bound but still runs.
    expect(calls.map((c) => c.input.shape)).toEqual([
      [2, 10, I],
      [2, 12, I],
      [40, I],
    ])
  })

  it('waits up to maxDelayMs for more when asked to, and no longer', async () => {
    const { calls, make } = gated()
    const b = make({ maxDelayMs: 60 })
    const a = b.forward(seq(2))
    await sleep(15)
    const c = b.forward(seq(3))
    await tick()
    expect(calls).toHaveLength(0)
    await sleep(80)
    expect(calls).toHaveLength(1)
    expect(sequencesOf(calls[0])).toBe(2)
    calls[0].release()
    await Promise.all([a, c])
    expect(b.stats.queueWaitMs.max).toBeGreaterThanOrEqual(50)
  })

  it('goes before maxDelayMs once a batch is full', async () => {
    const { calls, make } = gated()
    const b = make({ maxDelayMs: 10_000, maxBatch: 2 })
    const all = [b.forward(seq(2)), b.forward(seq(2))]
    await tick()
    expect(calls).toHaveLength(1)
    calls[0].release()
    await Promise.all(all)
  })

  it('runs up to `concurrency` batches at once', async () => {
    const { calls, make } = gated()
    const b = make({ concurrency: 2 })
    const first = b.forward(seq(2))
    await tick()
    const second = b.forward(seq(2))
    await tick()
    const third = b.forward(seq(2))
    await tick()
    expect(calls).toHaveLength(2)
    expect(b.inFlight).toBe(2)
    expect(b.queued).toBe(1)
    calls[1].release()
    await second
    await tick()
    expect(calls).toHaveLength(3)
    calls[0].release()
    calls[2].release()
    await Promise.all([first, third])
  })

  it('shares the queue evenly among the free slots', async () => {
    const { calls, make } = gated()
    const b = make({ concurrency: 2 })
    const all = Array.from({ length: 6 }, () => b.forward(seq(2)))
    await tick()
    expect(calls.map((c) => c.input.shape)).toEqual([
      [3, 2, I],
      [3, 2, I],
    ])
    for (const call of calls) call.release()
    await Promise.all(all)
  })

  it('with several slots free, puts the short requests together and the long ones together', async () => {
    const { calls, make } = gated()
    const b = make({ concurrency: 2 })
    const all = [9, 1, 8, 2].map((T) => b.forward(seq(T)))
    await tick()
    expect(calls.map((c) => c.input.shape)).toEqual([
      [2, 2, I],
      [2, 9, I],
    ])
    expect(calls.map((c) => c.options.lengths)).toEqual([Int32Array.from([1, 2]), Int32Array.from([8, 9])])
    for (const call of calls) call.release()
    const results = await Promise.all(all)
    expect(results.map((r) => r.output.shape[0])).toEqual([9, 1, 8, 2])
  })

  it('zeroes the padding of a batch whose input array held an earlier batch', async () => {
    const { calls, make } = gated()
    const b = make()
    const first = [b.forward(seq(4, 0.5)), b.forward(seq(4, 0.5)), b.forward(seq(4, 0.5))]
    await tick()
    calls[0].release()
    await Promise.all(first)
    // One sequence of 4 steps, and a time-major request of two sequences of 1 step.
    const second = [b.forward(seq(4, 0.25)), b.forward(batch(1, 2))]
    await tick()
    expect(calls.map((c) => c.input.shape)).toEqual([
      [3, 4, I],
      [3, 4, I],
    ])
    expect(Array.from(calls[0].input.data)).toEqual(Array(12 * I).fill(0.5))
    const oneStep = [...Array(I).fill(0.25), ...Array(3 * I).fill(0)]
    expect(Array.from(calls[1].input.data)).toEqual([...Array(4 * I).fill(0.25), ...oneStep, ...oneStep])
    calls[1].release()
    await Promise.all(second)
  })

  it('takes the inputs at call time: changing them afterwards changes nothing', async () => {
    const { calls, make } = gated()
    const b = make()
    const x = seq(4, 0.5)
    const h0 = { data: new Float32Array(2 * 4).fill(0.1), shape: [2, 4] }
    const done = b.forward(x, { h0 })
    x.data.fill(9)
    h0.data.fill(9)
    x.shape[0] = 99
    await tick()
    calls[0].release()
    const want = model.forwardSync(seq(4, 0.5), { h0: { data: new Float32Array(8).fill(0.1), shape: [2, 4] } })
    expect((await done).output).toEqual(want.output)
  })

  it('keeps each queued input whole, however many share a block of copies', async () => {
    const { calls, make } = gated()
    const b = make()
    const first = b.forward(seq(2))
    await tick()
    // Queued behind the first: 4,000 floats each, four to a block; and one that gets its own.
    const xs = [1, 2, 3, 4, 5, 6].map((value) => seq(1333, value)).concat(seq(2000, 7))
    const queued = xs.map((x) => b.forward(x))
    for (const x of xs) x.data.fill(-1)
    calls[0].release()
    await first
    await tick()
    const [N, T] = calls[1].input.shape
    expect([N, T]).toEqual([7, 2000])
    for (let n = 0; n < N; n++) {
      const row = calls[1].input.data.subarray(n * T * I, (n + 1) * T * I)
      const steps = n < 6 ? 1333 : 2000
      expect(row.subarray(0, steps * I).every((v) => v === n + 1)).toBe(true)
      expect(row.subarray(steps * I).every((v) => v === 0)).toBe(true)
    }
    calls[1].release()
    await Promise.all(queued)
  })
})

describe('backpressure, abort, errors, close', () => {
  it('refuses a request beyond maxQueue at once with ERR_BIRNN_QUEUE_FULL', async () => {
    const { calls, make } = gated()
    const b = make({ maxQueue: 2 })
    const running = b.forward(seq(2))
    await tick()
    const queued = [b.forward(seq(2)), b.forward(seq(2))]
    const error = await rejection(b.forward(seq(2)))
    expectError(error, Error, 'ERR_BIRNN_QUEUE_FULL', /queue is full: 2 requests wait \(maxQueue\)/)
    expect(b.stats).toMatchObject({ refused: 1, requests: 3, queued: 2 })
    calls[0].release()
    await running
    await tick()
    calls[1].release()
    await Promise.all(queued)
    // Room again.
    const after = b.forward(seq(1))
    await tick()
    calls[2].release()
    await after
  })

  it('removes a waiting request whose signal aborts, rejecting it with an AbortError', async () => {
    const { calls, make } = gated()
    const b = make()
    const running = b.forward(seq(2))
    await tick()
    const controller = new AbortController()
    const aborted = b.forward(seq(5), { signal: controller.signal })
    const kept = b.forward(seq(3))
    controller.abort()
    const error = await rejection(aborted)
    expect(error).toBeInstanceOf(DOMException)
    expect((error as DOMException).name).toBe('AbortError')
    expect(b.queued).toBe(1)
    calls[0].release()
    await running
    await tick()
    expect(calls[1].input.shape).toEqual([3, I]) // the aborted request is not in the batch
    calls[1].release()
    await kept
    expect(b.stats).toMatchObject({ aborted: 1, completed: 2, requests: 3 })
  })

  it('shares one listener among the requests of one signal: no warning past 10, one abort clears them', async () => {
    const warnings: Error[] = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on('warning', onWarning)
    try {
      const { calls, make } = gated()
      const b = make({ maxBatch: 2 })
      const shutdown = new AbortController()
      const all = Array.from({ length: 30 }, (_, i) => b.forward(seq(2 + (i % 3)), { signal: shutdown.signal }))
      const other = b.forward(seq(4))
      await tick()
      expect(calls.map((c) => c.input.shape[0])).toEqual([2]) // a batch of the first two
      calls[0].release()
      await tick()
      expect(calls.map((c) => c.input.shape[0])).toEqual([2, 2]) // the next two
      shutdown.abort(new Error('shutting down'))
      for (const outcome of await Promise.allSettled(all.slice(4))) {
        expect(outcome.status).toBe('rejected') // all but the four that started
        expect((outcome as PromiseRejectedResult).reason.cause.message).toBe('shutting down')
      }
      expect(b.queued).toBe(1) // the request of no signal stays
      calls[1].release()
      await tick()
      calls[2].release()
      await other
      await Promise.all(all.slice(0, 4))
      expect(b.stats).toMatchObject({ aborted: 26, completed: 5, requests: 31 })
      await tick()
      expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning')
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('rejects at once for a signal aborted already; ignores an abort once the batch started', async () => {
    const { calls, make } = gated()
    const b = make()
    const error = await rejection(b.forward(seq(2), { signal: AbortSignal.abort() }))
    expect((error as DOMException).name).toBe('AbortError')
    const controller = new AbortController()
    const started = b.forward(seq(2), { signal: controller.signal })
    await tick()
    controller.abort()
    calls[0].release()
    expect((await started).output.shape).toEqual([2, 8])
  })

  it("fails only the failing batch's requests, each with the error itself", async () => {
    const { calls, make } = gated()
    const b = make()
    const first = b.forward(seq(2))
    await tick()
    const doomed = [b.forward(seq(3)), b.forward(batch(2, 2))]
    calls[0].release()
    await first
    await tick()
    const later = b.forward(seq(4))
    const failure = new BirnnError('ERR_BIRNN_NATIVE', 'native kernel: out of memory')
    calls[1].release(failure)
    for (const request of doomed) expect(await rejection(request)).toBe(failure)
    await tick()
    calls[2].release()
    expect((await later).output.shape).toEqual([4, 8])
    expect(b.stats).toMatchObject({ completed: 2, failed: 2, batches: 3 })
  })

  it('a failure inside a real model (a disposed one) rejects that batch with the real error', async () => {
    const own = fromStateDict(randomStateDict(rng(3), { mode: 'GRU', I, H: 2, L: 1, D: 1, bias: true }), {
      backend: 'js',
    })
    const b = own.batcher()
    own.dispose()
    const errors = await Promise.all([rejection(b.forward(seq(2))), rejection(b.forward(seq(3)))])
    for (const error of errors) expectError(error, Error, 'ERR_BIRNN_DISPOSED', /model is disposed/)
  })

  it('checks each request when it comes: a bad one is refused alone and never queued', async () => {
    const { calls, make } = gated()
    const b = make()
    const good = b.forward(seq(2))
    expectError(
      await rejection(b.forward({ data: new Float32Array(8), shape: [2, 4] })),
      RangeError,
      'ERR_BIRNN_SHAPE',
      'input: expected shape [T, 3] with T ≥ 1, received [2, 4]',
    )
    expectError(
      await rejection(b.forward(seq(2), { lengths: [3] } as never)),
      RangeError,
      'ERR_BIRNN_OUT_OF_RANGE',
      'lengths[0]: expected a length in [1, 2], received 3',
    )
    expectError(
      await rejection(b.forward(seq(2), { signl: 1 } as never)),
      TypeError,
      'ERR_BIRNN_UNKNOWN_OPTION',
      "batcher.forward options: unknown option 'signl' (known options: h0, c0, lengths, returnLayers, output, signal)",
    )
    expectError(
      await rejection(b.forward(seq(2), { signal: {} as AbortSignal })),
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'options.signal: expected an AbortSignal, received an object',
    )
    expectError(
      await rejection(b.forward(seq(2), [] as never)),
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'batcher.forward options: expected an object, received an array of length 0',
    )
    await tick()
    expect(b.stats.requests).toBe(1)
    calls[0].release()
    await good
  })

  it('reads the options as model.forward() does: inherited ones too', async () => {
    const own = fromStateDict(randomStateDict(rng(4), { mode: 'LSTM', I, H: 2, L: 1, D: 2, bias: true }), {
      backend: 'js',
    })
    const options = Object.create({ output: 'last' })
    const alone = await own.forward(seq(3), options)
    const batched = await own.batcher().forward(seq(3), options)
    expect(batched.output.shape).toEqual([4])
    expect(batched.output).toEqual(alone.output)
    own.dispose()
  })

  it("survives the caller's objects misbehaving: getters, subclasses, lying lengths, odd signals", async () => {
    // A getter read twice could pass the check with 1 and leave 0 (no slot: requests never ran).
    let reads = 0
    const flaky = {
      get concurrency() {
        return reads++ === 0 ? 1 : 0
      },
    }
    const { calls, make } = gated()
    const b = make(flaky)
    expect(b.options.concurrency).toBe(1)
    const first = b.forward(seq(2))
    await tick()
    calls[0].release()
    await first

    // A subclass's Symbol.species cannot hand the batcher's copy back to the caller.
    const kept: Float32Array[] = []
    class Keeping extends Float32Array {
      static get [Symbol.species]() {
        return function (this: unknown, n: number) {
          const array = new Float32Array(n)
          kept.push(array)
          return array
        }
      }
    }
    const long = 2000 // past the shared block: an array of its own
    const data = new Keeping(long * I).fill(0.5)
    const own = fromStateDict(randomStateDict(rng(4), { mode: 'LSTM', I, H: 2, L: 1, D: 2, bias: true }), {
      backend: 'js',
    })
    const expected = await own.forward({ data: new Float32Array(long * I).fill(0.5), shape: [long, I] })
    const pending = own.batcher().forward({ data, shape: [long, I] })
    for (const array of kept) array.fill(9)
    expect((await pending).output).toEqual(expected.output)
    expect((await own.forward({ data, shape: [long, I] })).output).toEqual(expected.output)

    // An own `length` that lies is not believed: the array's real size is checked.
    const liar = new Float32Array(3).fill(0.5)
    Object.defineProperty(liar, 'length', { value: 6 })
    const message = 'input.data: expected length 6 (the product of shape [2, 3]), received length 3'
    expectError(
      await rejection(own.batcher().forward({ data: liar, shape: [2, I] })),
      RangeError,
      'ERR_BIRNN_SHAPE',
      message,
    )
    expectError(await rejection(own.forward({ data: liar, shape: [2, I] })), RangeError, 'ERR_BIRNN_SHAPE', message)

    // A signal whose removeEventListener throws: the batch still runs (it used to be an uncaught exception).
    const signal = new AbortController().signal
    signal.removeEventListener = () => {
      throw new Error('no')
    }
    expect((await own.batcher().forward(seq(2), { signal })).output.shape).toEqual([2, 4])
    // An object made from AbortSignal.prototype is not an AbortSignal.
    expectError(
      await rejection(own.batcher().forward(seq(2), { signal: Object.create(AbortSignal.prototype) })),
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      /options.signal: expected an AbortSignal/,
    )
    own.dispose()
  })

  it('refuses a request whose own getters aborted its signal', async () => {
    const { calls, make } = gated()
    const b = make()
    const controller = new AbortController()
    const { data, shape } = seq(2)
    const input = {
      shape,
      get data() {
        controller.abort() // read while the input is checked, after the options
        return data
      },
    }
    const error = await rejection(b.forward(input, { signal: controller.signal }))
    expect((error as DOMException).name).toBe('AbortError')
    expect(calls).toHaveLength(0)
  })

  it('refuses a request whose own option getters closed the batcher', async () => {
    const { calls, make } = gated()
    const b = make()
    const options = {
      get lengths() {
        void b.close()
        return undefined
      },
    }
    expectError(await rejection(b.forward(seq(2), options)), Error, 'ERR_BIRNN_CLOSED', /batcher is closed/)
    expect(calls).toHaveLength(0)
    expect(b.stats.queued).toBe(0)
  })

  it('close(): finishes what was queued, then takes nothing more (ERR_BIRNN_CLOSED)', async () => {
    const { calls, make } = gated()
    const b = make({ maxDelayMs: 10_000 })
    const queued = [b.forward(seq(2)), b.forward(seq(3))]
    let closed = false
    const closing = b.close().then(() => {
      closed = true
    })
    await tick()
    expect(calls).toHaveLength(1) // close() does not wait out maxDelayMs
    expectError(await rejection(b.forward(seq(2))), Error, 'ERR_BIRNN_CLOSED', /batcher is closed/)
    expect(closed).toBe(false)
    calls[0].release()
    await Promise.all(queued)
    await closing
    expect(b.closed).toBe(true)
    await b.close() // again: resolves at once
  })

  it('checks its options', () => {
    const { make } = gated()
    expect(() => make({ maxBatch: 0 })).toThrow(
      'batcher options.maxBatch: expected a positive integer, received number 0',
    )
    expect(() => make({ maxDelayMs: -1 })).toThrow(
      'batcher options.maxDelayMs: expected a number in [0, 60000], received -1',
    )
    expect(() => make({ maxQueue: 1.5 })).toThrow(TypeError)
    expect(() => make({ maxbatch: 3 } as never)).toThrow(/unknown option 'maxbatch'/)
    expect(new Batcher(gated().target).options).toEqual({
      maxBatch: 64,
      maxBatchTokens: 65536,
      maxDelayMs: 0,
      maxQueue: 1024,
      concurrency: 1,
    })
  })

  it('by default runs one batch up to 8 compute threads, beyond that one per thread but one, of 16 sequences at most; one on the main thread', () => {
    expect([1, 2, 4, 8, 9, 16, 128].map((threads) => defaultConcurrency(threads))).toEqual([1, 1, 1, 1, 8, 15, 127])
    expect(defaultConcurrency(undefined)).toBe(1)
    const target = (parallelism?: number) => ({ ...gated().target, parallelism })
    expect(new Batcher(target(16)).options.concurrency).toBe(15)
    expect(new Batcher(target(16), { maxBatch: 8 }).options.concurrency).toBe(15)
    expect(new Batcher(target(16), { concurrency: 1 }).options.concurrency).toBe(1)
    expect(new Batcher(target()).options.concurrency).toBe(1)
    // With more than 8 batches at once, each holds at most 16 sequences unless told otherwise.
    expect([1, 2, 8, 9, 15].map((c) => defaultMaxBatch(c))).toEqual([64, 64, 64, 16, 16])
    expect(new Batcher(target(16)).options.maxBatch).toBe(16)
    expect(new Batcher(target(16), { maxBatch: 64 }).options.maxBatch).toBe(64)
    expect(new Batcher(target(16), { concurrency: 2 }).options.maxBatch).toBe(64)
    expect(new Batcher(target(2), { concurrency: 12 }).options.maxBatch).toBe(16)
    // A model passes its engine's: the JS engine computes on the main thread.
    expect(model.parallelism).toBeUndefined()
    expect(model.batcher().options.concurrency).toBe(1)
  })
})

describe('stats and the JS engine', () => {
  it('counts requests and batches, and summarises waits and service times', async () => {
    const b = model.batcher({ concurrency: 1 })
    const inputs = Array.from({ length: 10 }, (_, i) => seq(1 + i))
    const results = await Promise.all(inputs.map((x) => b.forward(x)))
    for (let i = 0; i < inputs.length; i++) expect(results[i]).toEqual(await model.forward(inputs[i]))
    const s = b.stats
    expect(s).toMatchObject({ requests: 10, completed: 10, failed: 0, batches: 1, sequences: 10 })
    expect(s.meanBatchSequences).toBe(10)
    expect(s.queueWaitMs.count).toBe(10)
    expect(s.serviceMs.count).toBe(1)
    expect(s.serviceMs.p50).toBeGreaterThan(0)
    expect(s.serviceMs.p99).toBe(s.serviceMs.max)
  })
})
