// The public model: picks the engine, then runs each forward call through it, checking the
// arguments on the way in and shaping the results on the way out.

import { availableParallelism } from 'node:os'
import type { Engine } from '../engines/engine.js'
import { jsEngine } from '../engines/js.js'
import { nativeEngine } from '../engines/native.js'
import { wasmEngine } from '../engines/wasm.js'
import { BirnnError } from '../errors.js'
import type { Weights } from '../loading/state-dict.js'
import { Batcher } from '../serving/batcher.js'
import type {
  Backend,
  BatcherOptions,
  ForwardOptions,
  ForwardResult,
  LoadOptions,
  ModelConfig,
  Simd,
  Tensor,
  WasmSimd,
} from '../types.js'
import { planForward, shapeResult } from './forward-args.js'
import { isWasmSimd, simdFromEnvironment } from './options.js'

/**
 * Resolves when a result may go on to its caller. The engines' results arrive from callbacks that
 * Node drains in a loop (a thread-safe function's queue, a worker's messages): a caller whose
 * work between calls outlasts the kernel's (parsing and formatting batches, say) would find the
 * next result already queued and run again from the same loop, for as long as that holds, and
 * signals, timers and sockets would wait (a JSONL `birnn score` ignored Ctrl-C to its end). So
 * the second result of one turn of the event loop, and any after it, go on from the loop's
 * check phase (setImmediate): the loop polls between such bursts, and a burst is at most the
 * calls in flight.
 */
let resultsThisTurn = 0
function yourTurn(): Promise<void> | undefined {
  if (resultsThisTurn++ === 0) {
    setImmediate(() => {
      resultsThisTurn = 0
    })
    return undefined
  }
  return new Promise((resolve) => setImmediate(resolve))
}

export class Model {
  /** The module's configuration, inferred from the weights. */
  readonly config: Readonly<ModelConfig>
  /** Which engine runs forward calls. */
  readonly backend: Backend
  /** Why that engine: the native kernel's instruction set, or why each engine before it did not load. */
  readonly backendReason: string
  /** The kernel's instruction set (native or WebAssembly); undefined on the JS engine. */
  readonly simd: Simd | WasmSimd | undefined
  #engine: Engine | undefined

  /** @internal Use load() or fromStateDict(). */
  constructor(config: ModelConfig, engine: Engine, backend: Backend, backendReason: string, simd?: Simd | WasmSimd) {
    this.config = Object.freeze({ ...config })
    this.#engine = engine
    this.backend = backend
    this.backendReason = backendReason
    this.simd = simd
  }

  #live(): Engine {
    if (!this.#engine) throw new BirnnError('ERR_BIRNN_DISPOSED', 'model is disposed: load it again to run it')
    return this.#engine
  }

  /** Runs the network off the event loop where the engine can; the inputs are taken at call time. */
  async forward(input: Tensor, options?: ForwardOptions): Promise<ForwardResult> {
    const plan = planForward(this.config, input, options)
    const raw = await this.#live().run(plan)
    await yourTurn()
    return shapeResult(this.config, plan, raw)
  }

  /** Same result as forward(), computed on the calling thread. */
  forwardSync(input: Tensor, options?: ForwardOptions): ForwardResult {
    const plan = planForward(this.config, input, options)
    return shapeResult(this.config, plan, this.#live().runSync(plan))
  }

  /**
   * @internal The batcher's call: forward() of a batch in batch-first layout (N, T, inputSize)
   * whatever `config.batchFirst` says, so that each request's sequence is one block of it. Every
   * engine gives each sequence the same bits in either layout.
   */
  async forwardBatchFirst(input: Tensor, options?: ForwardOptions): Promise<ForwardResult> {
    const config = this.config.batchFirst ? this.config : { ...this.config, batchFirst: true }
    const plan = planForward(config, input, options)
    const raw = await this.#live().run(plan)
    await yourTurn()
    return shapeResult(config, plan, raw)
  }

  /** @internal The engine's compute threads, all calls together (Engine.parallelism). */
  get parallelism(): number | undefined {
    return this.#engine?.parallelism
  }

  /**
   * A batcher over this model: concurrent `batcher.forward()` requests are run together in one
   * forward call, each getting the bits `forward()` of it alone gives (docs/serving.md).
   */
  batcher(options?: BatcherOptions): Batcher {
    return new Batcher(this, options)
  }

  /**
   * Frees the memory an engine keeps between calls for speed (the native kernel's work buffers,
   * also freed after 2 s without calls); the next call allocates again. The model stays usable.
   */
  trim(): void {
    this.#live().trim?.()
  }

  /** Frees the weights (and native memory). Calls already running complete; later ones throw. */
  dispose(): void {
    this.#engine?.dispose()
    this.#engine = undefined
  }
}

/**
 * Picks the engine, first that loads: the native kernel (a prebuild, then a local build), the
 * WebAssembly kernel, the JS engine; or exactly the one `backend` names ('native', 'wasm', 'js'),
 * or whose instruction set `simd` (or BIRNN_SIMD) names. checkLoadOptions() has refused a
 * `simd` option of another engine than `backend`; BIRNN_SIMD only applies to the engine it names.
 */
export function createModel(weights: Weights, options: LoadOptions): Model {
  const { config } = weights
  if (options.backend === 'js') return new Model(config, jsEngine(weights), 'js', 'the JS engine was requested')
  const simd = simdFromEnvironment(options.simd ?? 'auto')
  const wasmSimd = isWasmSimd(simd) ? simd : 'auto'
  const requested =
    options.backend === 'native' || options.backend === 'wasm' ? options.backend : wasmSimd === 'auto' ? 'auto' : 'wasm'
  if (requested !== 'wasm') {
    const threads = options.threads ?? availableParallelism()
    const native = nativeEngine(weights, { threads, simd: isWasmSimd(simd) ? 'auto' : simd })
    if ('engine' in native) return new Model(config, native.engine, 'native', native.reason, native.simd)
    if (requested === 'native') {
      throw new BirnnError('ERR_BIRNN_BACKEND', `backend 'native' is not available: ${native.reason}`)
    }
    const wasm = wasmEngine(weights, wasmSimd)
    if ('engine' in wasm) {
      return new Model(config, wasm.engine, 'wasm', `${wasm.reason}, since ${native.reason}`, wasm.simd)
    }
    return new Model(config, jsEngine(weights), 'js', `the JS engine, since ${native.reason}; and ${wasm.reason}`)
  }
  const wasm = wasmEngine(weights, wasmSimd)
  if ('engine' in wasm) return new Model(config, wasm.engine, 'wasm', `${wasm.reason} was requested`, wasm.simd)
  // As for a native path the CPU lacks: the build asked for is named, by whoever asked.
  if (wasmSimd !== 'auto' && options.backend !== 'wasm') {
    const by = options.simd === wasmSimd ? 'simd' : 'BIRNN_SIMD'
    throw new BirnnError('ERR_BIRNN_BACKEND', `${by} '${wasmSimd}' is not available: ${wasm.reason}`)
  }
  throw new BirnnError('ERR_BIRNN_BACKEND', `backend 'wasm' is not available: ${wasm.reason}`)
}
