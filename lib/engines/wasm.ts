// The WebAssembly engine: the C++ kernel compiled to wasm32 (scripts/build-wasm.mjs), for where
// the native addon does not load. It needs no install step and no WASI: a module imports nothing.
// Two builds of it, the best one this runtime compiles is used:
//   wasm/birnn-relaxed.wasm  relaxed SIMD: fused multiply-adds (Node 21 on, Deno, Chrome 114 on)
//   wasm/birnn.wasm          128-bit SIMD: every runtime with WebAssembly SIMD (Node 16.4 on)
//   forwardSync()  on the calling thread, in one instance of the module shared by the models;
//   forward()      on the worker pool (wasm-pool.ts), so the event loop stays free.
// What the module throws is internal (TypeScript checked the arguments) and surfaces as
// ERR_BIRNN_NATIVE, as for the addon.

import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Weights } from '../loading/state-dict.js'
import { MODES } from '../spec.js'
import type { WasmSimd } from '../types.js'
import { type Engine, kernelError, needsOutput, type Plan, type RawResult, rawResult } from './engine.js'
import { type WasmCall, type WasmConfig, type WasmKernel, type WasmResult, wasmKernel } from './wasm-kernel.js'
import { type PoolModel, poolFree, poolRun, poolSize } from './wasm-pool.js'

export type WasmChoice = { engine: Engine; reason: string; simd: WasmSimd } | { reason: string }

/** The package root: this file is lib/engines/wasm.ts in the repo, dist/engines/wasm.js when published. */
const packageRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)))

const BUILDS: Readonly<Record<WasmSimd, { file: string; label: string }>> = {
  'wasm-relaxed-simd': { file: 'birnn-relaxed.wasm', label: 'relaxed SIMD' },
  'wasm-simd128': { file: 'birnn.wasm', label: '128-bit SIMD' },
}

/**
 * Whether this runtime has relaxed SIMD: validates a function of one f32x4.relaxed_madd (on by
 * default from V8 11.4, Node 21; Node 20 needs --experimental-wasm-relaxed-simd).
 */
export function relaxedSimdSupported(): boolean {
  const v128 = [0xfd, 0x0c, ...new Array<number>(16).fill(0)] // v128.const 0
  const bytes = new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
    ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b], // types: () -> v128
    ...[0x03, 0x02, 0x01, 0x00], // one function of that type
    ...[0x0a, 0x3d, 0x01, 0x3b, 0x00, ...v128, ...v128, ...v128], // its body: three operands,
    ...[0xfd, 0x85, 0x02, 0x0b], // f32x4.relaxed_madd, end
  ])
  return typeof WebAssembly === 'object' && WebAssembly.validate(bytes)
}

/** A compiled module, with why the better build was not (`instead`), or why none loaded. */
export type WasmLoad =
  | { module: WebAssembly.Module; path: string; simd: WasmSimd; instead?: string }
  | { module: undefined; reason: string }
const loaded = new Map<WasmSimd, WasmLoad>()

/**
 * The module of a build of the kernel, compiled once: `simd`'s, or for 'auto' the best this
 * runtime compiles. `reason` says why it did not load (a clause, no prefix).
 */
export function loadWasm(simd: 'auto' | WasmSimd = 'auto'): WasmLoad {
  if (simd !== 'auto') {
    const build = loaded.get(simd) ?? compile(simd)
    loaded.set(simd, build)
    return build
  }
  const relaxed = loadWasm('wasm-relaxed-simd')
  if (relaxed.module) return relaxed
  const plain = loadWasm('wasm-simd128')
  if (!plain.module) {
    const reason = relaxed.reason === plain.reason ? plain.reason : `${relaxed.reason}; and ${plain.reason}`
    return { module: undefined, reason }
  }
  return { ...plain, instead: relaxed.reason }
}

function compile(simd: WasmSimd): WasmLoad {
  const path = resolve(packageRoot, 'wasm', BUILDS[simd].file)
  if (typeof WebAssembly !== 'object') return { module: undefined, reason: 'this runtime has no WebAssembly' }
  if (simd === 'wasm-relaxed-simd' && !relaxedSimdSupported()) {
    return { module: undefined, reason: 'this runtime has no relaxed SIMD' }
  }
  if (!existsSync(path)) return { module: undefined, reason: `${path} does not exist (npm run build:wasm)` }
  try {
    return { module: new WebAssembly.Module(readFileSync(path)), path, simd }
  } catch (error) {
    // A runtime without WebAssembly SIMD (Node < 16.4) cannot compile it.
    return { module: undefined, reason: `${path} did not compile (${error instanceof Error ? error.message : error})` }
  }
}

/** The main thread's instances, one per module, for forwardSync() of every wasm-engine model. */
const syncKernels = new Map<WebAssembly.Module, WasmKernel>()
let nextModel = 0

export function wasmEngine(weights: Weights, simd: 'auto' | WasmSimd = 'auto'): WasmChoice {
  const wasm = loadWasm(simd)
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
  // This model's network in its module's sync kernel, made by its first forwardSync() (and again after a trap).
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
    returnOutput: needsOutput(plan),
  })
  const raw = (result: WasmResult): RawResult => rawResult(config.numLayers, result)
  const engine: Engine = {
    runSync: (plan) => {
      try {
        const kernel = syncKernels.get(module) ?? wasmKernel(module)
        syncKernels.set(module, kernel)
        return raw(kernel.forward(syncHandle(kernel), call(plan)))
      } catch (error) {
        throw kernelError('wasm', error)
      }
    },
    // Awaited, so that an async failure's stack is its callers', not the worker's message's.
    run: async (plan) => {
      // Taken now (copies, transferred to the worker): the caller may reuse its arrays at once.
      const own = call(plan)
      own.input = plan.input.slice()
      if (plan.h0) own.h0 = plan.h0.slice()
      if (plan.c0) own.c0 = plan.c0.slice()
      if (plan.lengths) own.lengths = plan.lengths.slice()
      const pending = poolRun(module, model, own)
      try {
        return raw(await pending)
      } catch (error) {
        throw kernelError('wasm', error)
      }
    },
    dispose: () => {
      const kernel = syncKernels.get(module)
      if (sync && kernel && sync.generation === kernel.generation()) kernel.free(sync.handle)
      sync = undefined
      poolFree(model.id)
    },
    parallelism: poolSize(),
  }
  const build = BUILDS[wasm.simd].label + (wasm.instead ? `, since ${wasm.instead}` : '')
  return { engine, reason: `the WebAssembly kernel (${build}) from ${wasm.path}`, simd: wasm.simd }
}
