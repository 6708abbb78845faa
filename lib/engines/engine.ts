// What every engine implements, and the checked, flat form of a forward call they all take.
// The layouts, as in PyTorch (D = 2 if bidirectional, Hout = projSize || hiddenSize):
//   input  (T, N, inputSize) | (N, T, inputSize) with batchFirst   (unbatched input is N = 1)
//   output (T, N, D*Hout)    | (N, T, D*Hout)
//   h0/hN  (numLayers*D, N, Hout), c0/cN (numLayers*D, N, hiddenSize),
//          ordered layer-major, direction-minor: l0 fwd, l0 bwd, l1 fwd, ...

import { BirnnError } from '../errors.js'
import type { OutputKind } from '../types.js'

/** A checked forward call (lib/model/forward-args.ts makes it). The engine owns its arrays. */
export interface Plan {
  T: number
  N: number
  batchFirst: boolean
  unbatched: boolean
  input: Float32Array
  h0?: Float32Array
  c0?: Float32Array
  lengths?: Int32Array
  returnLayers: boolean
  /** What the caller gets as `output` (forward option `output`); the engines read it through needsOutput. */
  output: OutputKind
}

/**
 * Whether the engine must return the full output: not for 'last' (rows of the final states,
 * lib/model/pooling.ts), where the kernels skip writing it.
 */
export function needsOutput(plan: Plan): boolean {
  return plan.output !== 'last' || plan.returnLayers
}

/** An engine's flat results, in the layouts above. */
export interface RawResult {
  /** Present whenever needsOutput(plan). */
  output?: Float32Array
  hN: Float32Array
  cN?: Float32Array
  layers?: Float32Array[]
}

export interface Engine {
  /** Computes on the calling thread. */
  runSync(plan: Plan): RawResult
  /** Computes off the event loop where the engine can. */
  run(plan: Plan): Promise<RawResult>
  /** Frees memory kept between calls for speed (work buffers), where the engine keeps any. */
  trim?(): void
  /**
   * Threads that its calls compute on, all calls together (the native worker pool, the
   * WebAssembly workers); absent where calls run one at a time on the main thread (the JS engine).
   */
  readonly parallelism?: number
  dispose(): void
}

/** A kernel's results (every layer's output in one array) as a RawResult (one array per layer). */
export function rawResult(
  numLayers: number,
  result: { output?: Float32Array; hN: Float32Array; cN?: Float32Array; layers?: Float32Array },
): RawResult {
  const out: RawResult = { hN: result.hN }
  if (result.output) out.output = result.output
  if (result.cN) out.cN = result.cN
  if (result.layers) {
    const size = result.layers.length / numLayers
    const all = result.layers
    out.layers = Array.from({ length: numLayers }, (_, l) => all.subarray(l * size, (l + 1) * size))
  }
  return out
}

/**
 * A failure inside the C++ kernel (the addon's or the WebAssembly module's) as a library error,
 * `which` naming the kernel.
 */
export function kernelError(which: 'native' | 'wasm', error: unknown): BirnnError {
  return new BirnnError(
    'ERR_BIRNN_NATIVE',
    `${which} kernel: ${error instanceof Error ? error.message : String(error)}`,
  )
}
