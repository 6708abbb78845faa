// The only module that loads the native addon (native/binding.cc). Its raw surface is described
// here as private types; the native engine (native.ts) wraps it and nothing else sees it.
//
// Loader chain, first that works wins:
//   1. BIRNN_NATIVE_PATH, when set: exactly that .node file and nothing else (the sanitizer tests
//      point it at build-asan/Release/birnn.node, and must not silently get another build).
//   2. node-gyp-build rooted at the package: build/Release, build/Debug, then
//      prebuilds/<platform>-<arch>/ (a prebuild is named birnn.glibc.node, birnn.musl.node, ...).
// When nothing loads, `reason` says every attempt that failed, in one sentence without a prefix, e.g.
//   there is no build/Release and no prebuild in prebuilds/linux-x64 under /app/node_modules/birnn/
//   (No native build was found for platform=linux arch=x64 ... libc=glibc node=20.20.2, loaded from: ...)

import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Simd } from '../types.js'

const require = createRequire(import.meta.url)

/** The package root: this file is lib/engines/addon.ts in the repo, dist/engines/addon.js when published. */
const packageRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)))

export interface NativeConfig {
  /** The mode's index in MODES (lib/spec.ts). */
  mode: number
  inputSize: number
  hiddenSize: number
  /** 0 for no projection (LSTM only). */
  projSize: number
  numLayers: number
  bidirectional: boolean
  bias: boolean
}

/**
 * One forward call. All arrays are read in place (zero-copy) and must not be changed or
 * transferred until the call has returned or its promise has settled.
 */
export interface NativeCall {
  seqLen: number
  batch: number
  batchFirst: boolean
  /** [seqLen, batch, inputSize], or [batch, seqLen, inputSize] when batchFirst. */
  input: Float32Array
  /** [numLayers*D, batch, Hout]; zeros when absent. */
  h0?: Float32Array | undefined
  /** [numLayers*D, batch, hiddenSize], LSTM only; zeros when absent. */
  c0?: Float32Array | undefined
  /** [batch], each in [1, seqLen]; all seqLen when absent. */
  lengths?: Int32Array | undefined
  returnLayers: boolean
  /** False: no output array (the kernel skips writing it), only the final states; default true. */
  returnOutput?: boolean
  /** Upper bound on threads; results do not depend on it. */
  threads: number
}

/** Fresh arrays for every call. */
export interface NativeResult {
  /** [seqLen, batch, D*Hout], or [batch, seqLen, D*Hout] when batchFirst; absent without returnOutput. */
  output?: Float32Array
  /** [numLayers*D, batch, Hout]. */
  hN: Float32Array
  /** [numLayers*D, batch, hiddenSize]; LSTM only. */
  cN?: Float32Array
  /** [numLayers, ...output layout]; only when returnLayers. */
  layers?: Float32Array
}

export interface NativeNetwork {
  /** Throws TypeError/RangeError for bad arguments, an Error after dispose() (all 'birnn internal: ...'). */
  forwardSync(call: NativeCall): NativeResult
  /**
   * Runs on the kernel's worker pool, and settles on the calling thread. Argument errors and a
   * disposed network throw synchronously; kernel failures reject.
   */
  forward(call: NativeCall): Promise<NativeResult>
  /** Frees the work buffers kept between calls; calls in flight keep theirs. */
  trim(): void
  /** Releases the network; calls already in flight still complete. Idempotent. */
  dispose(): void
}

export interface NativeIsaInfo {
  best: Simd
  /** Best first; always ends with 'generic'. */
  supported: Simd[]
}

/** native/spec.h as data: must equal lib/spec.ts (test/native/spec.test.ts). */
export interface NativeSpec {
  modes: Array<{ name: string; id: number; gates: number }>
  isas: Array<{ name: string; id: number }>
  maxThreads: number
}

export interface NativeAddon {
  isa(): NativeIsaInfo
  spec(): NativeSpec
  /** The worker pool's threads (absent from addons built before it was exported). */
  computeThreads?(): number
  /**
   * weights: numLayers*D*k arrays, layer-major, direction-minor; per (layer, direction) the k
   * tensors weight_ih, weight_hh, [bias_ih, bias_hh when bias], [weight_hr when projSize > 0].
   * Read only during construction. `isa` is an ISAS name, checked in C++: RangeError for any
   * other string, Error when the CPU lacks it.
   */
  Network: new (
    config: NativeConfig,
    weights: readonly Float32Array[],
    isa: string,
  ) => NativeNetwork
}

/** `path` is the .node file that loaded; `reason` says why none did (a clause, no prefix). */
export type NativeLoad = { addon: NativeAddon; path: string } | { addon: undefined; reason: string }

let loaded: NativeLoad | undefined

/** Loads the addon once per module instance; later calls return the same outcome. */
export function loadAddon(): NativeLoad {
  loaded ??= load()
  return loaded
}

function load(): NativeLoad {
  const override = process.env.BIRNN_NATIVE_PATH
  if (override) {
    const attempt = tryLoad(resolve(override))
    return 'addon' in attempt ? attempt : { addon: undefined, reason: `BIRNN_NATIVE_PATH: ${attempt.failure}` }
  }

  const failures: string[] = []
  let candidate: string | undefined
  let nodeGypBuild: { path(dir: string): string } | undefined
  try {
    nodeGypBuild = require('node-gyp-build') as { path(dir: string): string }
  } catch (error) {
    failures.push(`node-gyp-build is not installed (${oneLine(error)})`)
  }
  if (nodeGypBuild) {
    try {
      candidate = nodeGypBuild.path(packageRoot)
    } catch (error) {
      const where = `prebuilds/${process.platform}-${process.arch}`
      failures.push(`there is no build/Release and no prebuild in ${where} under ${packageRoot} (${oneLine(error)})`)
    }
  }
  if (candidate !== undefined) {
    const attempt = tryLoad(candidate)
    if ('addon' in attempt) return attempt
    failures.push(attempt.failure)
  }
  return { addon: undefined, reason: failures.join('; ') }
}

function tryLoad(file: string): { addon: NativeAddon; path: string } | { failure: string } {
  if (!existsSync(file)) return { failure: `${file} does not exist` }
  let exports: unknown
  try {
    exports = require(file)
  } catch (error) {
    return { failure: `${file} failed to load (${oneLine(error)})` }
  }
  if (!isNativeAddon(exports)) return { failure: `${file} is not the birnn addon (no isa(), spec() and Network)` }
  return { addon: exports, path: file }
}

function isNativeAddon(value: unknown): value is NativeAddon {
  if (typeof value !== 'object' || value === null) return false
  const exports = value as Record<string, unknown>
  return (
    typeof exports.isa === 'function' && typeof exports.spec === 'function' && typeof exports.Network === 'function'
  )
}

function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  return message.trim().replace(/\s*\n\s*/g, ', ')
}
