// The public types of birnn. Shapes follow PyTorch: row-major, like a contiguous torch tensor.

/** A dense float32 tensor: `data.length` equals the product of `shape`. */
export interface Tensor {
  data: Float32Array
  shape: number[]
}

export type Mode = 'RNN_TANH' | 'RNN_RELU' | 'GRU' | 'LSTM'
export type Backend = 'js' | 'wasm' | 'native'
export type Simd = 'avx512' | 'avx2' | 'neon' | 'generic'
/** The WebAssembly kernel's builds: relaxed SIMD (with a fused multiply-add), and 128-bit SIMD. */
export type WasmSimd = 'wasm-relaxed-simd' | 'wasm-simd128'

/** The module's hyper-parameters, as nn.RNN / nn.GRU / nn.LSTM would be constructed. */
export interface ModelConfig {
  mode: Mode
  inputSize: number
  hiddenSize: number
  numLayers: number
  bidirectional: boolean
  bias: boolean
  batchFirst: boolean
  /** LSTM projection size (`proj_size`); 0 when the model has none. */
  projSize: number
}

export interface LoadOptions {
  /** nn.RNN only (it cannot be inferred from the weights); default 'tanh'. */
  nonlinearity?: 'tanh' | 'relu'
  /** Input and output are (N, T, features) instead of (T, N, features); default false, as in PyTorch. */
  batchFirst?: boolean
  /** Key prefix of the recurrent module inside a larger state_dict, e.g. 'encoder.rnn.'. */
  prefix?: string
  /**
   * 'auto' (default) runs the native kernel where it loads, else the WebAssembly kernel, else the
   * JS engine; 'native', 'wasm' and 'js' demand that engine (ERR_BIRNN_BACKEND where it is absent).
   */
  backend?: 'auto' | Backend
  /** Most threads one forward call may use; default: the machine's available parallelism. */
  threads?: number
  /**
   * Forces the kernel's instruction set (also BIRNN_SIMD); default: the best the CPU (or, for
   * the WebAssembly kernel, the runtime) has. A WebAssembly one runs the wasm engine.
   */
  simd?: 'auto' | Simd | WasmSimd
}

/**
 * What a forward call returns as `output`: 'full', every step; 'last', one row per sequence, the
 * forward direction at its last valid step and the backward one at step 0 (PyTorch's
 * `torch.cat([h_n[-2], h_n[-1]], 1)` for a bidirectional model); 'mean', one row per sequence, the
 * mean over its valid steps.
 */
export type OutputKind = 'full' | 'last' | 'mean'

export interface ForwardOptions {
  /** Initial hidden state (numLayers*D, N, Hout), or (numLayers*D, Hout) for unbatched input; zeros when absent. */
  h0?: Tensor
  /** LSTM initial cell state (numLayers*D, N, hiddenSize), or 2-D for unbatched input; zeros when absent. */
  c0?: Tensor
  /** Valid steps of each sequence, each in [1, T]; steps past it are never read and output 0. */
  lengths?: number[] | Int32Array
  /** Also return every layer's full output sequence. */
  returnLayers?: boolean
  /**
   * 'full' (default), 'last' or 'mean' (OutputKind): the last two make `output` one row per
   * sequence, (N, D*Hout) or (D*Hout) for unbatched input. 'last' rows are the full output's
   * values, bit for bit, and the kernels then write no full output at all; 'mean' is computed from
   * the full output (in a batcher's batch, from the batch's, with no copy per request).
   */
  output?: OutputKind
}

export interface ForwardResult {
  /**
   * (T, N, D*Hout), or (N, T, D*Hout) with batchFirst, or (T, D*Hout) for unbatched input; with
   * `output` 'last' or 'mean', (N, D*Hout), or (D*Hout) for unbatched input.
   */
  output: Tensor
  /** Final hidden state of every layer and direction, layer-major, direction-minor. */
  hN: Tensor
  /** LSTM only: final cell state of every layer and direction. */
  cN?: Tensor
  /** With returnLayers: each layer's output, in the layout of `output`; the last equals `output`. */
  layers?: Tensor[]
}

/** `model.batcher(options)`: how concurrent requests are gathered into one forward call. */
export interface BatcherOptions {
  /**
   * Most sequences one batch holds (a request of more sequences runs alone); default 64, or 16
   * where `concurrency` is above 8.
   */
  maxBatch?: number
  /** Most padded steps one batch holds, the longest T times the sequences (bounds memory); default 65536. */
  maxBatchTokens?: number
  /** How long an idle batcher waits for more requests before it starts a batch; default 0: never waits. */
  maxDelayMs?: number
  /** Most requests that may wait; one more is refused with ERR_BIRNN_QUEUE_FULL; default 1024. */
  maxQueue?: number
  /**
   * Batches computing at the same time; default 1 up to 8 threads that the model's calls compute
   * on, beyond that all of them but one (15 on 16 cores); 1 on the JS engine. Each batch in flight
   * holds its own call's memory.
   */
  concurrency?: number
}

/** The options of `batcher.forward()`: those of `model.forward()`, and an AbortSignal. */
export interface BatchRequestOptions extends ForwardOptions {
  /** Aborting it removes the request while it waits (it then rejects with an AbortError); a started request completes. */
  signal?: AbortSignal
}

/** Percentiles of the most recent durations (up to 1024), in milliseconds; 0 when there are none. */
export interface DurationSummary {
  count: number
  mean: number
  p50: number
  p90: number
  p99: number
  max: number
}

/** What a batcher has done since it was made. */
export interface BatcherStats {
  /** Requests accepted (queued or started). */
  requests: number
  /** Requests that resolved. */
  completed: number
  /** Requests rejected because their batch failed. */
  failed: number
  /** Requests aborted while they waited. */
  aborted: number
  /** Requests refused because the queue was full. */
  refused: number
  /** Batches run (model.forward calls). */
  batches: number
  /** Sequences run, over all batches. */
  sequences: number
  /** Requests per batch, on average. */
  meanBatchRequests: number
  /** Sequences per batch, on average. */
  meanBatchSequences: number
  /** Requests waiting now. */
  queued: number
  /** Batches computing now. */
  inFlight: number
  /** From a request's arrival to the start of its batch. */
  queueWaitMs: DurationSummary
  /** From a batch's start to its result: each batch once. */
  serviceMs: DurationSummary
}
