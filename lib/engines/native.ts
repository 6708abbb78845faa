// The native engine: hands the weights to the C++ kernel once (it packs them into its own layout)
// and maps each checked Plan onto the addon's call. Loading the addon is addon.ts's job.
// Arguments were checked in TypeScript with the messages users see; what the addon still throws
// is internal (a bug, or out of memory) and surfaces as ERR_BIRNN_NATIVE.

import { availableParallelism } from 'node:os'
import { BirnnError } from '../errors.js'
import type { Weights } from '../loading/state-dict.js'
import { checkPoolThreadsEnvironment } from '../model/options.js'
import { MODES } from '../spec.js'
import type { Simd } from '../types.js'
import { loadAddon, type NativeCall, type NativeResult } from './addon.js'
import { type Engine, kernelError, needsOutput, type Plan, type RawResult, rawResult } from './engine.js'

/** How long a model may sit idle before the kernel's work buffers are freed. */
export const IDLE_TRIM_MS = 2000

export type NativeChoice = { engine: Engine; reason: string; simd: Simd } | { reason: string }

function guarded<T>(fn: () => T): T {
  try {
    return fn()
  } catch (error) {
    throw kernelError('native', error)
  }
}

export function nativeEngine(weights: Weights, options: { threads: number; simd: 'auto' | Simd }): NativeChoice {
  const loaded = loadAddon()
  if (!loaded.addon) return { reason: `the native addon did not load: ${loaded.reason}` }
  const { addon } = loaded
  const cpu = addon.isa()
  let simd: string = options.simd
  checkPoolThreadsEnvironment()
  if (simd === 'auto') simd = cpu.best
  if (!cpu.supported.includes(simd as Simd)) {
    throw new BirnnError(
      'ERR_BIRNN_BACKEND',
      `simd '${simd}' is not supported by this CPU (supported: ${cpu.supported.join(', ')})`,
    )
  }
  const { config } = weights
  const tensors = weights.layers.flatMap((w) => [
    w.wIh,
    w.wHh,
    ...(w.bIh && w.bHh ? [w.bIh, w.bHh] : []),
    ...(w.wHr ? [w.wHr] : []),
  ])
  const network = guarded(
    () =>
      new addon.Network(
        {
          mode: MODES.indexOf(config.mode),
          inputSize: config.inputSize,
          hiddenSize: config.hiddenSize,
          projSize: config.projSize,
          numLayers: config.numLayers,
          bidirectional: config.bidirectional,
          bias: config.bias,
        },
        tensors,
        simd,
      ),
  )
  const call = (plan: Plan): NativeCall => ({
    seqLen: plan.T,
    batch: plan.N,
    batchFirst: plan.batchFirst,
    input: plan.input,
    h0: plan.h0,
    c0: plan.c0,
    lengths: plan.lengths,
    returnLayers: plan.returnLayers,
    returnOutput: needsOutput(plan),
    threads: options.threads,
  })
  const raw = (result: NativeResult): RawResult => rawResult(config.numLayers, result)
  // The kernel keeps the work buffers of recent calls for the next ones (bounded in C++); a model
  // idle for IDLE_TRIM_MS gives them back.
  let idle: NodeJS.Timeout | undefined
  const done = <T>(result: T): T => {
    if (idle) idle.refresh()
    else idle = setTimeout(() => network.trim(), IDLE_TRIM_MS).unref()
    return result
  }
  const engine: Engine = {
    runSync: (plan) => done(raw(guarded(() => network.forwardSync(call(plan))))),
    // Awaited, so that an async failure's stack is its callers' (V8's async stack traces, which
    // cost nothing until an error is made: capturing the stack of every call cost 2-9 µs).
    run: async (plan) => {
      const pending = guarded(() => network.forward(call(plan)))
      let result: NativeResult
      try {
        result = await pending
      } catch (error) {
        throw kernelError('native', error)
      }
      return done(raw(result))
    },
    trim: () => network.trim(),
    // The pool's own count, which honours a cgroup CPU quota and BIRNN_POOL_THREADS.
    parallelism: addon.computeThreads?.() ?? availableParallelism(),
    dispose: () => {
      clearTimeout(idle)
      network.dispose()
    },
  }
  return { engine, reason: `the native kernel (${simd}) from ${loaded.path}`, simd: simd as Simd }
}
