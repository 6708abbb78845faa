// Forward arguments: checks every shape against the model and normalises the call into the Plan
// every engine takes (layouts in lib/engines/engine.ts; unbatched input is 2-D here, and so are
// its states); then turns an engine's flat results back into shaped tensors.

import type { Plan, RawResult } from '../engines/engine.js'
import {
  BirnnTypeError,
  checkKeys,
  checkTensor,
  formatShape,
  isDetached,
  rangeError,
  shapeError,
  typeError,
} from '../errors.js'
import { directions, outputSize } from '../spec.js'
import type { ForwardOptions, ForwardResult, ModelConfig } from '../types.js'
import { choices } from './options.js'
import { lastOutput, meanOutput, OUTPUT_KINDS } from './pooling.js'

function checkState(name: string, value: unknown, expected: number[]): Float32Array {
  const tensor = checkTensor(name, value)
  if (tensor.shape.length !== expected.length || tensor.shape.some((d, i) => d !== expected[i])) {
    throw shapeError(name, expected, tensor.shape)
  }
  return tensor.data
}

const FORWARD_OPTIONS = ['h0', 'c0', 'lengths', 'returnLayers', 'output']

export function planForward(config: ModelConfig, input: unknown, options: unknown = {}): Plan {
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw typeError('options', 'an object', options)
  checkKeys('forward options', options, FORWARD_OPTIONS)
  const { h0, c0, lengths, returnLayers, output } = options as ForwardOptions
  const x = checkTensor('input', input)
  const rank = x.shape.length
  if (rank !== 2 && rank !== 3) {
    throw rangeError(
      'input',
      `a 3-D tensor ${config.batchFirst ? '(N, T, inputSize)' : '(T, N, inputSize)'} or a 2-D unbatched (T, inputSize) with inputSize ${config.inputSize}`,
      `shape ${formatShape(x.shape)}`,
      'ERR_BIRNN_SHAPE',
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
      'ERR_BIRNN_SHAPE',
    )
  }
  const LD = config.numLayers * directions(config)
  const stateShape = (size: number) => (unbatched ? [LD, size] : [LD, N, size])
  const plan: Plan = { T, N, batchFirst, unbatched, input: x.data, returnLayers: false, output: 'full' }
  if (h0 !== undefined) plan.h0 = checkState('h0', h0, stateShape(outputSize(config)))
  if (c0 !== undefined) {
    if (config.mode !== 'LSTM')
      throw new BirnnTypeError(
        'ERR_BIRNN_INVALID_ARG',
        `c0: only an LSTM has a cell state, but this model is ${config.mode}`,
      )
    plan.c0 = checkState('c0', c0, stateShape(config.hiddenSize))
  }
  if (lengths !== undefined) {
    if (!Array.isArray(lengths) && !(lengths instanceof Int32Array && !isDetached(lengths.buffer))) {
      throw typeError('lengths', 'an array of integers or an Int32Array', lengths)
    }
    if (lengths.length !== N)
      throw rangeError('lengths', `${N} entries (one per sequence)`, `${lengths.length}`, 'ERR_BIRNN_SHAPE')
    // Each entry read once, into the plan: what was checked is what runs.
    plan.lengths = new Int32Array(N)
    for (let n = 0; n < N; n++) {
      const len = lengths[n]
      if (typeof len !== 'number' || !Number.isInteger(len)) throw typeError(`lengths[${n}]`, 'an integer', len)
      if (len < 1 || len > T) throw rangeError(`lengths[${n}]`, `a length in [1, ${T}]`, String(len))
      plan.lengths[n] = len
    }
  }
  if (returnLayers !== undefined) {
    if (typeof returnLayers !== 'boolean') throw typeError('returnLayers', 'a boolean', returnLayers)
    plan.returnLayers = returnLayers
  }
  if (output !== undefined) {
    if (!OUTPUT_KINDS.includes(output)) throw typeError('output', choices(OUTPUT_KINDS), output)
    plan.output = output
  }
  // The checks above read the caller's getters, which could detach or shrink (a resizable
  // ArrayBuffer) an array checked before them: the arrays must still be what was checked.
  const sizes: Array<[string, Float32Array | undefined, number]> = [
    ['input', plan.input, x.shape.reduce((a, b) => a * b, 1)],
    ['h0', plan.h0, LD * N * outputSize(config)],
    ['c0', plan.c0, LD * N * config.hiddenSize],
  ]
  for (const [name, data, size] of sizes) {
    if (data && (isDetached(data.buffer) || data.length !== size))
      throw typeError(`${name}.data`, `a Float32Array of length ${size}, as checked`, data)
  }
  return plan
}

/**
 * An engine's results as the caller's tensors; `output` as plan.output asks: the full output, or
 * its rows per sequence (`pooled`, when the caller already has them: the batcher's, from its batch).
 */
export function shapeResult(config: ModelConfig, plan: Plan, raw: RawResult, pooled?: Float32Array): ForwardResult {
  const { T, N, unbatched, batchFirst } = plan
  const D = directions(config)
  const Hout = outputSize(config)
  const width = D * Hout
  const LD = config.numLayers * D
  const sequence = unbatched ? [T, width] : batchFirst ? [N, T, width] : [T, N, width]
  const state = (size: number) => (unbatched ? [LD, size] : [LD, N, size])
  const rows = (): Float32Array => {
    if (pooled) return pooled
    if (plan.output === 'last') return lastOutput(raw.hN, { L: config.numLayers, D, N, Hout })
    return meanOutput(raw.output!, { B: N, T, W: width, batchFirst: batchFirst || unbatched }, plan.lengths)
  }
  const result: ForwardResult = {
    output:
      plan.output === 'full'
        ? { data: raw.output!, shape: sequence }
        : { data: rows(), shape: unbatched ? [width] : [N, width] },
    hN: { data: raw.hN, shape: state(Hout) },
  }
  if (raw.cN) result.cN = { data: raw.cN, shape: state(config.hiddenSize) }
  if (raw.layers) result.layers = raw.layers.map((data) => ({ data, shape: [...sequence] }))
  return result
}
