// Forward arguments: checks every shape against the model and normalises the call into a Plan
// that both engines share; then turns an engine's flat results back into shaped tensors.
// The layouts, as in PyTorch (D = 2 if bidirectional, Hout = projSize || hiddenSize):
//   input  (T, N, inputSize) | (N, T, inputSize) with batchFirst | (T, inputSize) unbatched
//   output (T, N, D*Hout)    | (N, T, D*Hout)                    | (T, D*Hout)
//   h0/hN  (numLayers*D, N, Hout), c0/cN (numLayers*D, N, hiddenSize), 2-D when unbatched,
//          ordered layer-major, direction-minor: l0 fwd, l0 bwd, l1 fwd, ...

import { checkKeys, formatShape, rangeError, shapeError, typeError } from './errors.js'
import type { ForwardOptions, ForwardResult, ModelConfig, Tensor } from './types.js'

/** A checked forward call. Unbatched input is run as a batch of one (same memory layout). */
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
}

/** An engine's flat results, in the layouts above. */
export interface RawResult {
  output: Float32Array
  hN: Float32Array
  cN?: Float32Array
  layers?: Float32Array[]
}

export const directions = (config: ModelConfig): number => (config.bidirectional ? 2 : 1)
export const outputSize = (config: ModelConfig): number => config.projSize || config.hiddenSize

/** Checks a { data: Float32Array, shape } value, naming it `name` in the errors. */
export function checkTensor(name: string, value: unknown): Tensor {
  if (typeof value !== 'object' || value === null || !('data' in value) || !('shape' in value)) {
    throw typeError(name, 'a tensor { data: Float32Array, shape: number[] }', value)
  }
  const { data, shape } = value as Tensor
  if (!(data instanceof Float32Array)) throw typeError(`${name}.data`, 'a Float32Array', data)
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw typeError(`${name}.shape`, 'an array of non-negative integers', shape)
  }
  const size = shape.reduce((a, b) => a * b, 1)
  if (size !== data.length) {
    throw rangeError(
      `${name}.data`,
      `length ${size} (the product of shape ${formatShape(shape)})`,
      `length ${data.length}`,
    )
  }
  return { data, shape }
}

function checkState(name: string, value: unknown, expected: number[]): Float32Array {
  const tensor = checkTensor(name, value)
  if (tensor.shape.length !== expected.length || tensor.shape.some((d, i) => d !== expected[i])) {
    throw shapeError(name, expected, tensor.shape)
  }
  return tensor.data
}

const FORWARD_OPTIONS = ['h0', 'c0', 'lengths', 'returnLayers']

export function planForward(config: ModelConfig, input: unknown, options: unknown = {}): Plan {
  if (typeof options !== 'object' || options === null) throw typeError('options', 'an object', options)
  checkKeys('forward options', options, FORWARD_OPTIONS)
  const { h0, c0, lengths, returnLayers } = options as ForwardOptions
  const x = checkTensor('input', input)
  const rank = x.shape.length
  if (rank !== 2 && rank !== 3) {
    throw rangeError(
      'input',
      `a 3-D tensor ${config.batchFirst ? '(N, T, inputSize)' : '(T, N, inputSize)'} or a 2-D unbatched (T, inputSize) with inputSize ${config.inputSize}`,
      `shape ${formatShape(x.shape)}`,
    )
  }
  const unbatched = rank === 2
  const batchFirst = config.batchFirst && !unbatched
  const T = unbatched ? x.shape[0] : x.shape[batchFirst ? 1 : 0]
  const N = unbatched ? 1 : x.shape[batchFirst ? 0 : 1]
  if (x.shape[rank - 1] !== config.inputSize || T === 0 || N === 0) {
    const want = unbatched ? '[T, ' : batchFirst ? '[N, T, ' : '[T, N, '
    throw rangeError(
      'input',
      `shape ${want}${config.inputSize}] with T ≥ 1${unbatched ? '' : ' and N ≥ 1'}`,
      formatShape(x.shape),
    )
  }
  const LD = config.numLayers * directions(config)
  const stateShape = (size: number) => (unbatched ? [LD, size] : [LD, N, size])
  const plan: Plan = { T, N, batchFirst, unbatched, input: x.data, returnLayers: false }
  if (h0 !== undefined) plan.h0 = checkState('h0', h0, stateShape(outputSize(config)))
  if (c0 !== undefined) {
    if (config.mode !== 'LSTM')
      throw new TypeError(`c0: only an LSTM has a cell state, but this model is ${config.mode}`)
    plan.c0 = checkState('c0', c0, stateShape(config.hiddenSize))
  }
  if (lengths !== undefined) {
    if (!Array.isArray(lengths) && !(lengths instanceof Int32Array)) {
      throw typeError('lengths', 'an array of integers or an Int32Array', lengths)
    }
    if (lengths.length !== N) throw rangeError('lengths', `${N} entries (one per sequence)`, `${lengths.length}`)
    for (let n = 0; n < N; n++) {
      const len = lengths[n]
      if (typeof len !== 'number' || !Number.isInteger(len)) throw typeError(`lengths[${n}]`, 'an integer', len)
      if (len < 1 || len > T) throw rangeError(`lengths[${n}]`, `a length in [1, ${T}]`, String(len))
    }
    plan.lengths = Int32Array.from(lengths)
  }
  if (returnLayers !== undefined) {
    if (typeof returnLayers !== 'boolean') throw typeError('returnLayers', 'a boolean', returnLayers)
    plan.returnLayers = returnLayers
  }
  return plan
}

export function shapeResult(config: ModelConfig, plan: Plan, raw: RawResult): ForwardResult {
  const { T, N, unbatched, batchFirst } = plan
  const width = directions(config) * outputSize(config)
  const LD = config.numLayers * directions(config)
  const sequence = unbatched ? [T, width] : batchFirst ? [N, T, width] : [T, N, width]
  const state = (size: number) => (unbatched ? [LD, size] : [LD, N, size])
  const result: ForwardResult = {
    output: { data: raw.output, shape: sequence },
    hN: { data: raw.hN, shape: state(outputSize(config)) },
  }
  if (raw.cN) result.cN = { data: raw.cN, shape: state(config.hiddenSize) }
  if (raw.layers) result.layers = raw.layers.map((data) => ({ data, shape: [...sequence] }))
  return result
}
