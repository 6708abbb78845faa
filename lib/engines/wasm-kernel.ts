// The only module that talks to wasm/birnn.wasm (native/wasm_api.cc): an instance of the module
// as a private typed interface, as addon.ts is for the native addon. The wasm engine (wasm.ts)
// uses one on the main thread for forwardSync(), and each worker of the pool (wasm-pool.ts) one
// of its own.
//
// `wasmKernel` must stay self-contained (no imports, no outside names, no classes): the pool
// sends its source text to the workers, which run it as it is.

/** What wasm_api.cc's birnn_network_create takes (config's order there). */
export interface WasmConfig {
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

/** One forward call, as native/birnn.h's Call; the arrays are copied into the module. */
export interface WasmCall {
  T: number
  N: number
  batchFirst: boolean
  input: Float32Array
  h0?: Float32Array | undefined
  c0?: Float32Array | undefined
  lengths?: Int32Array | undefined
  returnLayers: boolean
  /** False: no output (the kernel skips writing it); only the final states. */
  returnOutput: boolean
}

/** Fresh arrays, outside the module's memory. */
export interface WasmResult {
  output?: Float32Array
  hN: Float32Array
  cN?: Float32Array
  /** [numLayers, ...output layout]; only with returnLayers. */
  layers?: Float32Array
}

export interface WasmKernel {
  /**
   * Builds a network (the module packs its own copy of the weights). `tensors` as for the addon:
   * per (layer, direction) weight_ih, weight_hh, [bias_ih, bias_hh], [weight_hr].
   * Returns its handle.
   */
  create(config: WasmConfig, tensors: readonly Float32Array[]): number
  forward(handle: number, call: WasmCall): WasmResult
  /** Idempotent; a handle of an instance that was replaced is ignored. */
  free(handle: number): void
  /**
   * Counts the instances this kernel has had: after a trap (a kernel bug, or the 4 GiB of
   * wasm32 memory running out) the instance is replaced by a fresh one, and every handle of the
   * old one is gone: create() again. The error thrown says what trapped.
   */
  generation(): number
}

/** One instance of the module; see WasmKernel. Self-contained (its source runs in the workers). */
export function wasmKernel(module: WebAssembly.Module): WasmKernel {
  interface Exports {
    memory: WebAssembly.Memory
    _initialize(): void
    birnn_malloc(size: number): number
    birnn_free(pointer: number): void
    birnn_last_error(): number
    birnn_network_create(config: number, tensors: number): number
    birnn_network_free(network: number): void
    birnn_network_forward(
      network: number,
      sizes: number,
      input: number,
      h0: number,
      c0: number,
      lengths: number,
      output: number,
      hN: number,
      cN: number,
      layers: number,
    ): void
  }
  let ex: Exports
  let gen = 0
  const configs = new Map<number, WasmConfig>()
  const start = () => {
    ex = new WebAssembly.Instance(module, {}).exports as unknown as Exports
    ex._initialize()
    gen++
    configs.clear()
  }
  start()

  /** Runs fn with the module memory it allocates freed afterwards; a trap replaces the instance. */
  const guarded = <T>(fn: (alloc: (bytes: number) => number) => T): T => {
    const owned: number[] = []
    const alloc = (bytes: number) => {
      // Past 32 bits the argument would wrap (to a small size) on its way in.
      if (!(bytes < 2 ** 32)) throw new Error('out of memory (a WebAssembly instance has at most 4 GiB)')
      const p = ex.birnn_malloc(bytes)
      if (p === 0) throw new Error('out of memory (a WebAssembly instance has at most 4 GiB)')
      owned.push(p)
      return p
    }
    try {
      return fn(alloc)
    } catch (error) {
      if (error instanceof WebAssembly.RuntimeError) {
        const at = ex.birnn_last_error()
        const bytes = new Uint8Array(ex.memory.buffer, at, 512)
        const message = new TextDecoder().decode(bytes.subarray(0, Math.max(0, bytes.indexOf(0))))
        owned.length = 0 // the instance is dropped with its memory
        start()
        throw new Error(message || error.message)
      }
      throw error
    } finally {
      for (const p of owned) ex.birnn_free(p)
    }
  }
  const copyIn = (alloc: (bytes: number) => number, data: Float32Array | Int32Array): number => {
    const p = alloc(data.byteLength)
    new Uint8Array(ex.memory.buffer, p, data.byteLength).set(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    )
    return p
  }

  return {
    create(config, tensors) {
      return guarded((alloc) => {
        const c = new Int32Array([
          config.mode,
          config.inputSize,
          config.hiddenSize,
          config.projSize,
          config.numLayers,
          config.bidirectional ? 1 : 0,
          config.bias ? 1 : 0,
        ])
        const cp = copyIn(alloc, c)
        const pointers = new Int32Array(tensors.map((t) => copyIn(alloc, t)))
        const handle = ex.birnn_network_create(cp, copyIn(alloc, pointers))
        configs.set(handle, config)
        return handle
      })
    },
    forward(handle, call) {
      const config = configs.get(handle)
      if (!config) throw new Error('the network is not loaded in this instance')
      return guarded((alloc) => {
        const D = config.bidirectional ? 2 : 1
        const H = config.hiddenSize
        const Hout = config.projSize || H
        const L = config.numLayers
        const outSize = call.T * call.N * D * Hout
        const stateSize = L * D * call.N
        const lstm = config.mode === 3
        const sizes = copyIn(alloc, new Int32Array([call.T, call.N, call.batchFirst ? 1 : 0]))
        const input = copyIn(alloc, call.input)
        const h0 = call.h0 ? copyIn(alloc, call.h0) : 0
        const c0 = call.c0 ? copyIn(alloc, call.c0) : 0
        const lengths = call.lengths ? copyIn(alloc, call.lengths) : 0
        // As the addon: no output only when asked (returnOutput false) and no layers.
        const output = call.returnOutput !== false || call.returnLayers ? alloc(4 * outSize) : 0
        const hN = alloc(4 * stateSize * Hout)
        const cN = lstm ? alloc(4 * stateSize * H) : 0
        const layers = call.returnLayers ? alloc(4 * L * outSize) : 0
        ex.birnn_network_forward(handle, sizes, input, h0, c0, lengths, output, hN, cN, layers)
        // The memory may have grown during the call: views are made after it.
        const read = (p: number, n: number) => new Float32Array(ex.memory.buffer, p, n).slice()
        const result: WasmResult = { hN: read(hN, stateSize * Hout) }
        if (output) result.output = read(output, outSize)
        if (lstm) result.cN = read(cN, stateSize * H)
        if (layers) result.layers = read(layers, L * outSize)
        return result
      })
    },
    free(handle) {
      if (!configs.delete(handle)) return
      ex.birnn_network_free(handle)
    },
    generation: () => gen,
  }
}
