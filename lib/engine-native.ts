// The native backend: hands the weights to the C++ kernel once (it packs them into its own
// layout) and maps each checked Plan onto the addon's call. Loading the addon is native.ts's job.

import type { Engine } from './model.js'
import { loadNative, type NativeCall, type NativeResult } from './native.js'
import type { Plan, RawResult } from './shapes.js'
import type { Weights } from './state-dict.js'
import type { Simd } from './types.js'

const MODES = { RNN_TANH: 0, RNN_RELU: 1, GRU: 2, LSTM: 3 } as const
const SIMD = ['avx512', 'avx2', 'generic']

export type NativeChoice = { engine: Engine; reason: string; simd: Simd } | { reason: string }

export function nativeEngine(weights: Weights, options: { threads: number; simd: 'auto' | Simd }): NativeChoice {
  const loaded = loadNative()
  if (!loaded.addon) return { reason: `the native addon did not load: ${loaded.reason}` }
  const { addon } = loaded
  const cpu = addon.isa()
  let simd: string = options.simd
  if (simd === 'auto' && process.env.BIRNN_SIMD) {
    simd = process.env.BIRNN_SIMD
    if (simd !== 'auto' && !SIMD.includes(simd)) {
      throw new TypeError(`BIRNN_SIMD: expected 'auto', 'avx512', 'avx2' or 'generic', received '${simd}'`)
    }
  }
  if (simd === 'auto') simd = cpu.best
  if (!cpu.supported.includes(simd)) {
    throw new Error(`simd '${simd}' is not supported by this CPU (supported: ${cpu.supported.join(', ')})`)
  }
  const { config } = weights
  const tensors = weights.layers.flatMap((w) => [
    w.wIh,
    w.wHh,
    ...(w.bIh && w.bHh ? [w.bIh, w.bHh] : []),
    ...(w.wHr ? [w.wHr] : []),
  ])
  const network = new addon.Network(
    {
      mode: MODES[config.mode],
      inputSize: config.inputSize,
      hiddenSize: config.hiddenSize,
      projSize: config.projSize,
      numLayers: config.numLayers,
      bidirectional: config.bidirectional,
      bias: config.bias,
    },
    tensors,
    simd,
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
    threads: options.threads,
  })
  const raw = (result: NativeResult): RawResult => {
    const out: RawResult = { output: result.output, hN: result.hN }
    if (result.cN) out.cN = result.cN
    if (result.layers) {
      const size = result.output.length
      out.layers = Array.from({ length: config.numLayers }, (_, l) => result.layers!.subarray(l * size, (l + 1) * size))
    }
    return out
  }
  const engine: Engine = {
    runSync: (plan) => raw(network.forwardSync(call(plan))),
    run: (plan) => {
      // Captured here so an async failure points at the caller, not at the libuv callback.
      const site = new Error()
      return network.forward(call(plan)).then(
        (result) => raw(result),
        (error: Error) => {
          site.message = error.message
          site.name = error.name
          throw Object.setPrototypeOf(site, Object.getPrototypeOf(error))
        },
      )
    },
    dispose: () => network.dispose(),
  }
  return { engine, reason: `the native kernel (${simd}) from ${loaded.path}`, simd: simd as Simd }
}
