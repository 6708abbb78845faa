// The public model: checks options, picks the backend, and runs forward calls through it.

import { availableParallelism } from 'node:os'
import { forwardJs } from './engine-js.js'
import { nativeEngine } from './engine-native.js'
import { checkKeys, isPositiveInteger, rangeError, typeError } from './errors.js'
import { type Plan, planForward, type RawResult, shapeResult } from './shapes.js'
import type { Weights } from './state-dict.js'
import type { Backend, ForwardOptions, ForwardResult, LoadOptions, ModelConfig, Simd, Tensor } from './types.js'

/** What a backend must do; the JS engine and the native kernel both implement it. */
export interface Engine {
  runSync(plan: Plan): RawResult
  run(plan: Plan): Promise<RawResult>
  dispose(): void
}

const LOAD_OPTIONS = ['nonlinearity', 'batchFirst', 'prefix', 'backend', 'threads', 'simd']

/** Checks load options before any file is read, so a typo fails fast. */
export function checkLoadOptions(options: unknown): LoadOptions {
  if (options === undefined) return {}
  if (typeof options !== 'object' || options === null) throw typeError('options', 'an object', options)
  checkKeys('options', options, LOAD_OPTIONS)
  const o = options as LoadOptions
  if (o.nonlinearity !== undefined && o.nonlinearity !== 'tanh' && o.nonlinearity !== 'relu') {
    throw typeError('options.nonlinearity', "'tanh' or 'relu'", o.nonlinearity)
  }
  if (o.batchFirst !== undefined && typeof o.batchFirst !== 'boolean')
    throw typeError('options.batchFirst', 'a boolean', o.batchFirst)
  if (o.prefix !== undefined && typeof o.prefix !== 'string') throw typeError('options.prefix', 'a string', o.prefix)
  if (o.backend !== undefined && !['auto', 'native', 'js'].includes(o.backend)) {
    throw typeError('options.backend', "'auto', 'native' or 'js'", o.backend)
  }
  if (o.threads !== undefined && !isPositiveInteger(o.threads))
    throw typeError('options.threads', 'a positive integer', o.threads)
  if (o.threads !== undefined && o.threads > 4096)
    throw rangeError('options.threads', 'at most 4096', String(o.threads))
  if (o.simd !== undefined && !['auto', 'avx512', 'avx2', 'generic'].includes(o.simd)) {
    throw typeError('options.simd', "'auto', 'avx512', 'avx2' or 'generic'", o.simd)
  }
  return o
}

export class Model {
  /** The module's configuration, inferred from the weights. */
  readonly config: Readonly<ModelConfig>
  /** Which engine runs forward calls. */
  readonly backend: Backend
  /** Why that engine: the native kernel's instruction set, or why the addon did not load. */
  readonly backendReason: string
  /** The native kernel's instruction set; undefined on the JS engine. */
  readonly simd: Simd | undefined
  #engine: Engine | undefined

  /** @internal Use load() or fromStateDict(). */
  constructor(weights: Weights, engine: Engine, backend: Backend, backendReason: string, simd?: Simd) {
    this.config = Object.freeze({ ...weights.config })
    this.#engine = engine
    this.backend = backend
    this.backendReason = backendReason
    this.simd = simd
  }

  #live(): Engine {
    if (!this.#engine) throw new Error('model is disposed')
    return this.#engine
  }

  /** Runs the network; the event loop keeps running while the native kernel computes. */
  async forward(input: Tensor, options?: ForwardOptions): Promise<ForwardResult> {
    const plan = planForward(this.config, input, options)
    return shapeResult(this.config, plan, await this.#live().run(plan))
  }

  /** Same result as forward(), computed on the calling thread. */
  forwardSync(input: Tensor, options?: ForwardOptions): ForwardResult {
    const plan = planForward(this.config, input, options)
    return shapeResult(this.config, plan, this.#live().runSync(plan))
  }

  /** Frees the weights (and native memory). Calls already running complete; later ones throw. */
  dispose(): void {
    this.#engine?.dispose()
    this.#engine = undefined
  }
}

export function jsEngine(weights: Weights): Engine {
  return {
    runSync: (plan) => forwardJs(weights, plan),
    // The JS engine computes on the calling thread: forward() returns at once like the native
    // path does, but the computation itself then holds the event loop.
    run: (plan) =>
      new Promise((resolve, reject) =>
        setImmediate(() => {
          try {
            resolve(forwardJs(weights, plan))
          } catch (error) {
            reject(error)
          }
        }),
      ),
    dispose: () => {},
  }
}

export const defaultThreads = (): number => availableParallelism()

/** Picks the engine: the native kernel where it loads ('auto', 'native'), else the JS engine. */
export function createModel(weights: Weights, options: LoadOptions): Model {
  const requested = options.backend ?? 'auto'
  const threads = options.threads ?? defaultThreads()
  if (requested === 'js') return new Model(weights, jsEngine(weights), 'js', 'the JS engine was requested')
  const native = nativeEngine(weights, { threads, simd: options.simd ?? 'auto' })
  if ('engine' in native) return new Model(weights, native.engine, 'native', native.reason, native.simd)
  if (requested === 'native') throw new Error(`backend 'native' is not available: ${native.reason}`)
  return new Model(weights, jsEngine(weights), 'js', `the JS engine, since ${native.reason}`)
}
