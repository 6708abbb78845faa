// The WebAssembly engine: the C++ kernel compiled to wasm32 with 128-bit SIMD (wasm/birnn.wasm,
// built by scripts/build-wasm.mjs), for where the native addon does not load. It needs no
// install step and no WASI: the module imports nothing.
//   forwardSync()  on the calling thread, in one instance of the module shared by the models;
//   forward()      on the worker pool (wasm-pool.ts), so the event loop stays free.
// What the module throws is internal (TypeScript checked the arguments) and surfaces as
// ERR_BIRNN_NATIVE, as for the addon.

import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Weights } from '../loading/state-dict.js'
import { MODES } from '../spec.js'
import { type Engine, kernelError, type Plan, type RawResult, rawResult } from './engine.js'
import { type WasmCall, type WasmConfig, type WasmKernel, type WasmResult, wasmKernel } from './wasm-kernel.js'
import { type PoolModel, poolFree, poolRun } from './wasm-pool.js'

export type WasmChoice = { engine: Engine; reason: string } | { reason: string }

/** The package root: this file is lib/engines/wasm.ts in the repo, dist/engines/wasm.js when published. */
const packageRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)))

type WasmLoad = { module: WebAssembly.Module; path: string } | { module: undefined; reason: string }
let loaded: WasmLoad | undefined

/**
 * Compiles the module once per module instance: BIRNN_WASM_PATH when set (exactly that file),
 * else wasm/birnn.wasm in the package. `reason` says why it did not (a clause, no prefix).
 */
export function loadWasm(): WasmLoad {
  loaded ??= compile()
  return loaded
}

function compile(): WasmLoad {
  const override = process.env.BIRNN_WASM_PATH
  const path = override ? resolve(override) : resolve(packageRoot, 'wasm', 'birnn.wasm')
  const where = override ? `BIRNN_WASM_PATH: ${path}` : path
  if (typeof WebAssembly !== 'object') return { module: undefined, reason: 'this runtime has no WebAssembly' }
  if (!existsSync(path)) return { module: undefined, reason: `${where} does not exist (npm run build:wasm)` }
  try {
    return { module: new WebAssembly.Module(readFileSync(path)), path }
  } catch (error) {
    // A runtime without WebAssembly SIMD (Node < 16.4) cannot compile it.
    return { module: undefined, reason: `${where} did not compile (${error instanceof Error ? error.message : error})` }
  }
}

/** The main thread's instance, for forwardSync() of every wasm-engine model. */
let syncKernel: WasmKernel | undefined
let nextModel = 0

export function wasmEngine(weights: Weights): WasmChoice {
  const wasm = loadWasm()
  if (!wasm.module) return { reason: `the WebAssembly module did not load: ${wasm.reason}` }
  const { module } = wasm
  const { config } = weights
  const wasmConfig: WasmConfig = {
    mode: MODES.indexOf(config.mode),
    inputSize: config.inputSize,
    hiddenSize: config.hiddenSize,
    projSize: config.projSize,
    numLayers: config.numLayers,
    bidirectional: config.bidirectional,
    bias: config.bias,
  }
  const model: PoolModel = {
    id: nextModel++,
    config: wasmConfig,
    tensors: weights.layers.flatMap((w) => [
      w.wIh,
      w.wHh,
      ...(w.bIh && w.bHh ? [w.bIh, w.bHh] : []),
      ...(w.wHr ? [w.wHr] : []),
    ]),
  }
  // This model's network in syncKernel, made by its first forwardSync() (and again after a trap).
  let sync: { handle: number; generation: number } | undefined
  const syncHandle = (kernel: WasmKernel): number => {
    if (!sync || sync.generation !== kernel.generation()) {
      sync = { handle: kernel.create(wasmConfig, model.tensors), generation: kernel.generation() }
    }
    return sync.handle
  }
  const call = (plan: Plan): WasmCall => ({
    T: plan.T,
    N: plan.N,
    batchFirst: plan.batchFirst,
    input: plan.input,
    h0: plan.h0,
    c0: plan.c0,
    lengths: plan.lengths,
    returnLayers: plan.returnLayers,
  })
  const raw = (result: WasmResult): RawResult => rawResult(config.numLayers, result)
  const engine: Engine = {
    runSync: (plan) => {
      try {
        syncKernel ??= wasmKernel(module)
        return raw(syncKernel.forward(syncHandle(syncKernel), call(plan)))
      } catch (error) {
        throw kernelError('wasm', error)
      }
    },
    run: (plan) => {
      // Captured here so an async failure points at the caller, not at the worker's message.
      const site = new Error()
      // Taken now (copies, transferred to the worker): the caller may reuse its arrays at once.
      const own = call(plan)
      own.input = plan.input.slice()
      if (plan.h0) own.h0 = plan.h0.slice()
      if (plan.c0) own.c0 = plan.c0.slice()
      if (plan.lengths) own.lengths = plan.lengths.slice()
      return poolRun(module, model, own).then(raw, (error: unknown) => {
        throw kernelError('wasm', error, site)
      })
    },
    dispose: () => {
      if (sync && syncKernel && sync.generation === syncKernel.generation()) syncKernel.free(sync.handle)
      sync = undefined
      poolFree(model.id)
    },
  }
  return { engine, reason: `the WebAssembly kernel (128-bit SIMD) from ${wasm.path}` }
}
