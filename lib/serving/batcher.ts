// The batcher: gathers concurrent forward requests into one model call, as serving systems do
// (Triton's dynamic batcher), and hands each request back exactly what model.forward() of that
// request alone returns.
//
// Why the bits are the same: a batch is the requests concatenated along N, padded to the longest
// T, with every sequence's own length in `lengths`. Every engine computes each sequence's
// recurrence on its own (no arithmetic mixes rows), in the same order whatever the batch size, and
// never reads a step past a sequence's length, so neither the other rows nor the padding change a
// row's result. test/parity/batcher.test.ts checks it on every engine and SIMD path.
//
// Policy: no waiting when a slot is free (a lone request starts in the next microtask); while
// `concurrency` batches run (by default from the model's compute threads: defaultConcurrency),
// requests queue, and the next batch takes the queue's head in order, up to `maxBatch` sequences
// and `maxBatchTokens` padded steps; when several slots are free at once, the queue is shared
// evenly among them, shortest sequences together. `maxDelayMs` > 0 makes an idle batcher wait
// that long for more. The queue holds at most `maxQueue` requests.

import type { Plan } from '../engines/engine.js'
import { BirnnError, checkKeys, isPositiveInteger, rangeError, typeError } from '../errors.js'
import { planForward } from '../model/forward-args.js'
import { directions, outputSize } from '../spec.js'
import type {
  BatcherOptions,
  BatcherStats,
  BatchRequestOptions,
  DurationSummary,
  ForwardOptions,
  ForwardResult,
  ModelConfig,
  Tensor,
} from '../types.js'
import { join, split } from './batch-tensors.js'

/** What a batcher needs of a model (a Model is one): its configuration and forward(). */
export interface BatchTarget {
  readonly config: Readonly<ModelConfig>
  /** Threads its calls compute on, all calls together; absent: one call at a time (JS engine). */
  readonly parallelism?: number
  /** A lone request runs as it came. */
  forward(input: Tensor, options?: ForwardOptions): Promise<ForwardResult>
  /**
   * A batch is (N, T, inputSize) whatever the model's layout (Model.forwardBatchFirst). Both calls
   * take their inputs when called (the batcher then reuses the batch's input array).
   */
  forwardBatchFirst(input: Tensor, options?: ForwardOptions): Promise<ForwardResult>
}

const BATCHER_OPTIONS = ['maxBatch', 'maxBatchTokens', 'maxDelayMs', 'maxQueue', 'concurrency']
/** Floats of a block of queued inputs (64 KiB): one alive per waiting or running request at most. */
const INPUT_BLOCK_FLOATS = 16384
const REQUEST_OPTIONS = ['h0', 'c0', 'lengths', 'returnLayers', 'output', 'signal']

/**
 * Batches computing at once when `concurrency` is not given, from the threads the model's calls
 * compute on: 1 up to 8, beyond that all of them but one (the event loop's). On 16 cores, 15 or
 * 16 batches at a time served the standard LSTM 1.2-1.3x as fast as 3, each batch then small
 * enough that its phases need few threads; on 2 cores two batches did better in process but
 * worse over HTTP, where the event loop is the limit, and between the two nothing was measured
 * (bench/RESULTS.md). Each batch in flight holds its own call's memory (up to maxBatchTokens
 * padded steps). Where calls run one at a time on the main thread (the JS engine), 1.
 */
export function defaultConcurrency(parallelism: number | undefined): number {
  if (parallelism === undefined || parallelism <= 8) return 1
  return parallelism - 1
}

/**
 * `maxBatch` when not given: 64, or 16 where more than 8 batches compute at once. Each of those
 * computes mostly on one thread (the others hold the rest), so a slot that took 64 sequences
 * would run them alone for a hundred milliseconds while the slots freed meanwhile found the queue
 * empty. On 16 cores with 15 batches (standard LSTM, 64 callers in process), 16 served as much as
 * 64 or up to 1.07x more (three hosts), and over HTTP its p99 at 256 connections was 129 ms
 * against 268; the small LSTM over HTTP read +2% at 64 connections, -9% at 256 (bench/RESULTS.md).
 */
export function defaultMaxBatch(concurrency: number): number {
  return concurrency > 8 ? 16 : 64
}

const BATCHER_DEFAULTS: Omit<Required<BatcherOptions>, 'concurrency' | 'maxBatch'> = {
  maxBatchTokens: 65536,
  maxDelayMs: 0,
  maxQueue: 1024,
}

function checkBatcherOptions(options: unknown, concurrency: number): Required<BatcherOptions> {
  const defaults = (c: number) => ({ ...BATCHER_DEFAULTS, concurrency: c, maxBatch: defaultMaxBatch(c) })
  if (options === undefined) return defaults(concurrency)
  if (typeof options !== 'object' || options === null) throw typeError('batcher options', 'an object', options)
  checkKeys('batcher options', options, BATCHER_OPTIONS)
  // Each read once, as model.forward() reads its options: a getter cannot pass the check with one
  // value and leave another.
  const { maxBatch, maxBatchTokens, maxQueue, concurrency: given, maxDelayMs } = options as BatcherOptions
  const counts = { maxBatch, maxBatchTokens, maxQueue, concurrency: given }
  for (const [key, value] of Object.entries(counts)) {
    if (value !== undefined && !isPositiveInteger(value))
      throw typeError(`batcher options.${key}`, 'a positive integer', value)
  }
  const checked = defaults(given ?? concurrency)
  if (maxBatch !== undefined) checked.maxBatch = maxBatch
  if (maxBatchTokens !== undefined) checked.maxBatchTokens = maxBatchTokens
  if (maxQueue !== undefined) checked.maxQueue = maxQueue
  if (maxDelayMs !== undefined) {
    if (typeof maxDelayMs !== 'number' || Number.isNaN(maxDelayMs))
      throw typeError('batcher options.maxDelayMs', 'a number of milliseconds', maxDelayMs)
    if (!(maxDelayMs >= 0 && maxDelayMs <= 60_000))
      throw rangeError('batcher options.maxDelayMs', 'a number in [0, 60000]', String(maxDelayMs))
    checked.maxDelayMs = maxDelayMs
  }
  return checked
}

/** A request: its checked plan (with its own copies of the arrays), and its promise. */
interface Entry {
  plan: Plan
  /** The request as model.forward() takes it, over the copies. */
  input: Tensor
  options: ForwardOptions
  arrived: number
  resolve: (result: ForwardResult) => void
  reject: (error: unknown) => void
  signal?: AbortSignal
}

/** The queued requests of one signal, and the one listener the batcher keeps on it. */
interface Watch {
  entries: Set<Entry>
  onAbort: () => void
}

/** The most recent durations, for percentiles; counts and sums cover all of them. */
class Durations {
  readonly #recent = new Float64Array(1024)
  #count = 0
  #sum = 0
  #max = 0
  add(ms: number): void {
    this.#recent[this.#count % this.#recent.length] = ms
    this.#count++
    this.#sum += ms
    if (ms > this.#max) this.#max = ms
  }
  summary(): DurationSummary {
    const n = Math.min(this.#count, this.#recent.length)
    const sorted = this.#recent.slice(0, n).sort()
    const at = (q: number) => (n === 0 ? 0 : sorted[Math.min(n - 1, Math.ceil(q * n) - 1)])
    return {
      count: this.#count,
      mean: this.#count === 0 ? 0 : this.#sum / this.#count,
      p50: at(0.5),
      p90: at(0.9),
      p99: at(0.99),
      max: this.#max,
    }
  }
}

/** An AbortError as fetch() rejects with; the signal's reason is its cause. */
function abortError(signal: AbortSignal): DOMException {
  const error = new DOMException('the request was aborted before its batch started', 'AbortError')
  Object.defineProperty(error, 'cause', { value: signal.reason, configurable: true, writable: true })
  return error
}

export class Batcher {
  readonly #target: BatchTarget
  readonly #options: Required<BatcherOptions>
  #queue: Entry[] = []
  // One listener a signal, however many queued requests share it (a server's shutdown signal):
  // Node warns past 10 listeners on one target, and an abort then clears its requests in one pass.
  readonly #watches = new Map<AbortSignal, Watch>()
  #inFlight = 0
  /** A microtask or a maxDelayMs timer is due to dispatch. */
  #scheduled: 'microtask' | 'timer' | undefined
  #timer: ReturnType<typeof setTimeout> | undefined
  #closed = false
  #drained: Array<() => void> = []
  /**
   * The batches' input, reused until the batcher is closed and done: a fresh one was megabytes of
   * external memory per batch, for V8's collector to chase.
   */
  #input = new Float32Array(0)
  /** Where the next queued request's input copy goes: a block that several share (#copyInput). */
  #block = new Float32Array(0)
  #blockUsed = 0
  readonly #counts = { requests: 0, completed: 0, failed: 0, aborted: 0, refused: 0, batches: 0, sequences: 0 }
  readonly #wait = new Durations()
  readonly #service = new Durations()

  /** Use model.batcher(options). */
  constructor(target: BatchTarget, options?: BatcherOptions) {
    this.#target = target
    this.#options = checkBatcherOptions(options, defaultConcurrency(target.parallelism))
  }

  /** The options in effect, defaults filled in. */
  get options(): Readonly<Required<BatcherOptions>> {
    return { ...this.#options }
  }

  /** Requests waiting now. */
  get queued(): number {
    return this.#queue.length
  }

  /** Batches computing now. */
  get inFlight(): number {
    return this.#inFlight
  }

  get closed(): boolean {
    return this.#closed
  }

  get stats(): BatcherStats {
    const c = this.#counts
    const ran = c.completed + c.failed
    return {
      ...c,
      meanBatchRequests: c.batches === 0 ? 0 : ran / c.batches,
      meanBatchSequences: c.batches === 0 ? 0 : c.sequences / c.batches,
      queued: this.#queue.length,
      inFlight: this.#inFlight,
      queueWaitMs: this.#wait.summary(),
      serviceMs: this.#service.summary(),
    }
  }

  /**
   * The result model.forward(input, options) would give, bit for bit, computed in a batch with the
   * requests that wait alongside. The inputs are taken at call time. Rejects at once with
   * ERR_BIRNN_QUEUE_FULL when `maxQueue` requests wait, ERR_BIRNN_CLOSED after close(), the
   * library's error for a bad argument, or an AbortError when `signal` aborts before the batch starts.
   */
  async forward(input: Tensor, options: BatchRequestOptions = {}): Promise<ForwardResult> {
    if (this.#closed) throw new BirnnError('ERR_BIRNN_CLOSED', 'batcher is closed: it takes no more requests')
    if (typeof options !== 'object' || options === null) throw typeError('options', 'an object', options)
    checkKeys('batcher.forward options', options, REQUEST_OPTIONS)
    // By name, as model.forward() reads them: inherited ones too, each once.
    const { signal, h0, c0, lengths, returnLayers, output } = options
    if (signal !== undefined) {
      let aborted: unknown
      try {
        aborted = signal instanceof AbortSignal ? signal.aborted : undefined
      } catch {} // an object made from AbortSignal.prototype, not by AbortSignal
      if (typeof aborted !== 'boolean') throw typeError('options.signal', 'an AbortSignal', signal)
    }
    const { config } = this.#target
    const plan = planForward(config, input, { h0, c0, lengths, returnLayers, output })
    // (Read after the checks, whose getters may have aborted it.)
    if (signal?.aborted) throw abortError(signal)
    // (The getters above may have closed the batcher.)
    if (this.#closed) throw new BirnnError('ERR_BIRNN_CLOSED', 'batcher is closed: it takes no more requests')
    if (this.#queue.length >= this.#options.maxQueue) {
      this.#counts.refused++
      throw new BirnnError(
        'ERR_BIRNN_QUEUE_FULL',
        `batcher queue is full: ${this.#options.maxQueue} requests wait (maxQueue); try again later`,
      )
    }
    // Our own copies: the request may wait, and the caller may change its arrays meanwhile.
    plan.input = this.#copyInput(plan.input)
    // Shapes from the plan, which checked them: the caller's arrays are not read again.
    const { T, N, unbatched } = plan
    const LD = config.numLayers * directions(config)
    const state = (size: number) => (unbatched ? [LD, size] : [LD, N, size])
    const copied: ForwardOptions = {}
    if (plan.h0) {
      plan.h0 = plan.h0.slice()
      copied.h0 = { data: plan.h0, shape: state(outputSize(config)) }
    }
    if (plan.c0) {
      plan.c0 = plan.c0.slice()
      copied.c0 = { data: plan.c0, shape: state(config.hiddenSize) }
    }
    if (plan.lengths) copied.lengths = plan.lengths
    if (plan.returnLayers) copied.returnLayers = true
    if (plan.output !== 'full') copied.output = plan.output
    return new Promise<ForwardResult>((resolve, reject) => {
      const entry: Entry = {
        plan,
        input: {
          data: plan.input,
          shape: unbatched
            ? [T, config.inputSize]
            : plan.batchFirst
              ? [N, T, config.inputSize]
              : [T, N, config.inputSize],
        },
        options: copied,
        arrived: performance.now(),
        resolve,
        reject,
      }
      if (signal) this.#watch(entry, signal) // (a throw rejects this request)
      this.#counts.requests++
      this.#queue.push(entry)
      this.#schedule()
    })
  }

  /**
   * A queued request's copy of its input, in a block shared with the requests queued next to it
   * (a view costs a tenth of a fresh array: 0.4 against 2.5-6 µs on the 2-core VM, more than the
   * copy). A block lives while any request in it waits; a large input gets an array of its own.
   */
  #copyInput(data: Float32Array): Float32Array {
    if (data.length > INPUT_BLOCK_FLOATS / 4) return data.slice() // (a plain array: checkTensor's view)
    if (this.#blockUsed + data.length > this.#block.length) {
      this.#block = new Float32Array(INPUT_BLOCK_FLOATS)
      this.#blockUsed = 0
    }
    const copy = this.#block.subarray(this.#blockUsed, this.#blockUsed + data.length)
    copy.set(data)
    this.#blockUsed += data.length
    return copy
  }

  /** Takes no more requests; resolves once every queued and running request has finished. */
  close(): Promise<void> {
    this.#closed = true
    if (this.#scheduled === 'timer') {
      clearTimeout(this.#timer)
      this.#scheduled = undefined
      this.#schedule()
    }
    return new Promise((resolve) => {
      this.#drained.push(resolve)
      this.#checkDrained()
    })
  }

  #watch(entry: Entry, signal: AbortSignal): void {
    let watch = this.#watches.get(signal)
    if (!watch) {
      const entries = new Set<Entry>()
      const onAbort = () => this.#abort(signal, entries)
      signal.addEventListener('abort', onAbort, { once: true })
      watch = { entries, onAbort }
      this.#watches.set(signal, watch)
    }
    watch.entries.add(entry)
    entry.signal = signal
  }

  /** A request leaves the queue for a batch: the abort no longer concerns it. */
  #unwatch(entry: Entry): void {
    const signal = entry.signal
    const watch = signal && this.#watches.get(signal)
    if (!watch) return
    watch.entries.delete(entry)
    if (watch.entries.size > 0) return
    this.#watches.delete(signal)
    try {
      signal.removeEventListener('abort', watch.onAbort)
    } catch {} // the caller's signal: the listener, if it stays, finds no request of its own
  }

  #abort(signal: AbortSignal, entries: Set<Entry>): void {
    if (this.#watches.get(signal)?.entries !== entries) return // all of them started
    this.#watches.delete(signal)
    if (entries.size === 1) {
      const [entry] = entries
      this.#queue.splice(this.#queue.indexOf(entry), 1)
    } else {
      this.#queue = this.#queue.filter((entry) => !entries.has(entry))
    }
    for (const entry of entries) {
      this.#counts.aborted++
      entry.reject(abortError(signal))
    }
    this.#checkDrained()
  }

  #checkDrained(): void {
    if (this.#closed && this.#queue.length === 0 && this.#inFlight === 0) {
      this.#input = new Float32Array(0) // nothing left to join
      for (const resolve of this.#drained.splice(0)) resolve()
    }
  }

  #queuedSequences(): number {
    let n = 0
    for (const entry of this.#queue) n += entry.plan.N
    return n
  }

  #schedule(): void {
    if (this.#inFlight >= this.#options.concurrency || this.#queue.length === 0) return
    const { maxDelayMs, maxBatch } = this.#options
    const wait = maxDelayMs > 0 && !this.#closed && this.#queuedSequences() < maxBatch
    if (this.#scheduled === 'microtask' || (this.#scheduled === 'timer' && wait)) return
    if (this.#scheduled === 'timer') clearTimeout(this.#timer) // the batch is full: go now
    if (wait) {
      this.#scheduled = 'timer'
      const due = Math.max(0, this.#queue[0].arrived + maxDelayMs - performance.now())
      this.#timer = setTimeout(() => {
        this.#scheduled = undefined
        this.#dispatch()
      }, due)
    } else {
      this.#scheduled = 'microtask'
      queueMicrotask(() => {
        this.#scheduled = undefined
        this.#dispatch()
      })
    }
  }

  #dispatch(): void {
    const free = this.#options.concurrency - this.#inFlight
    if (free > 1) this.#sortWindow(free)
    while (this.#inFlight < this.#options.concurrency && this.#queue.length > 0) {
      // With several free slots, the queue is shared among them so that each gets work.
      const free = this.#options.concurrency - this.#inFlight
      const share = Math.ceil(this.#queuedSequences() / free)
      const batch = this.#take(Math.max(1, Math.min(this.#options.maxBatch, share)))
      const started = performance.now()
      for (const entry of batch) {
        this.#unwatch(entry)
        this.#wait.add(started - entry.arrived)
      }
      this.#inFlight++
      this.#counts.batches++
      this.#run(batch).finally(() => {
        this.#service.add(performance.now() - started)
        this.#inFlight--
        this.#schedule()
        this.#checkDrained()
      })
    }
  }

  /**
   * Several slots free at once: the requests that they will take (the queue's head, up to a full
   * share for each) go shortest first, so that each batch holds sequences of similar lengths and
   * pads less. Which requests start now does not change, only which batch holds them.
   */
  #sortWindow(free: number): void {
    const cap = Math.min(this.#options.maxBatch, Math.ceil(this.#queuedSequences() / free)) * free
    let sequences = 0
    let end = 0
    while (end < this.#queue.length && sequences + this.#queue[end].plan.N <= cap)
      sequences += this.#queue[end++].plan.N
    const window = this.#queue.slice(0, end).sort((a, b) => a.plan.T - b.plan.T)
    this.#queue.splice(0, end, ...window)
  }

  /** The queue's head, in order, up to `maxBatch` sequences and maxBatchTokens padded steps (at least one request). */
  #take(maxBatch: number): Entry[] {
    const { maxBatchTokens } = this.#options
    let sequences = this.#queue[0].plan.N
    let T = this.#queue[0].plan.T
    let count = 1
    for (; count < this.#queue.length; count++) {
      const { plan } = this.#queue[count]
      const nextSequences = sequences + plan.N
      const nextT = Math.max(T, plan.T)
      if (nextSequences > maxBatch || nextSequences * nextT > maxBatchTokens) break
      sequences = nextSequences
      T = nextT
    }
    this.#counts.sequences += sequences
    return this.#queue.splice(0, count)
  }

  async #run(batch: Entry[]): Promise<void> {
    try {
      if (batch.length === 1) {
        const [entry] = batch
        const result = await this.#target.forward(entry.input, entry.options)
        this.#counts.completed++
        entry.resolve(result)
        return
      }
      const plans = batch.map((entry) => entry.plan)
      const joined = join(this.#target.config, plans, (floats) => {
        // Grown by doubling, to the largest batch maxBatchTokens allows at most.
        const most = this.#options.maxBatchTokens * this.#target.config.inputSize
        if (this.#input.length < floats)
          this.#input = new Float32Array(Math.max(floats, Math.min(2 * this.#input.length, most)))
        return this.#input.subarray(0, floats)
      })
      const result = await this.#target.forwardBatchFirst(joined.input, joined.options)
      const results = split(this.#target.config, plans, result)
      this.#counts.completed += batch.length
      for (let i = 0; i < batch.length; i++) batch[i].resolve(results[i])
    } catch (error) {
      // Only this batch's requests fail, each with the error itself.
      this.#counts.failed += batch.length
      for (const entry of batch) entry.reject(error)
    }
  }
}
