// From a PyTorch state_dict to a checked model description: finds the recurrent module's key
// prefix, infers the configuration from tensor names and shapes (as nn.RNN/GRU/LSTM name them:
// weight_ih_l{k}[_reverse], weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, weight_hr_l{k}) and
// checks every tensor it will use.

import { BirnnError, BirnnTypeError, formatShape, rangeError, shapeError } from '../errors.js'
import { GATES } from '../spec.js'
import type { LoadOptions, Mode, ModelConfig, Tensor } from '../types.js'

/** A state_dict as readStateDict() reads it, whatever it came from (lib/loading/source.ts opens each kind). */
export interface StateDictSource {
  /** Every tensor's name, in the order the source lists them. */
  names: readonly string[]
  /** A tensor's shape, without reading its data. */
  shape(name: string): readonly number[]
  /** A tensor as float32 in a fresh buffer; throws if it cannot be converted. */
  read(name: string): Tensor
  /** How the tensor is stored, e.g. 'F32', 'BF16'. */
  dtype(name: string): string
  /**
   * What the file itself says of the module, where a state_dict could not (an ONNX graph, or the
   * safetensors metadata birnn convert writes); a nonlinearity is for an nn.RNN only.
   */
  hints?: { nonlinearity?: 'tanh' | 'relu'; batchFirst?: boolean }
}

/** One (layer, direction)'s parameters, row-major float32, owned by the model. */
export interface LayerWeights {
  wIh: Float32Array // [G*H, in]
  wHh: Float32Array // [G*H, Hout]
  bIh?: Float32Array // [G*H]
  bHh?: Float32Array // [G*H]
  wHr?: Float32Array // [Hout, H]
}

export interface Weights {
  config: ModelConfig
  /** numLayers * D entries, layer-major, direction-minor (l0 fwd, l0 bwd, l1 fwd, ...). */
  layers: LayerWeights[]
  /** The module's key prefix in the state_dict ('' at the top level). */
  prefix: string
  /** The module's tensors, by their full names in the state_dict. */
  tensorNames: string[]
}

/** The parameter names of nn.RNN / nn.GRU / nn.LSTM, without the module's prefix. */
export const PARAMETER_NAME = /^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$/
const MODULE_KEY = /^(.*)weight_ih_l0$/

function stateDictError(message: string): BirnnError {
  return new BirnnError('ERR_BIRNN_STATE_DICT', message)
}

function findPrefix(names: readonly string[], requested: string | undefined): string {
  const candidates = names.flatMap((name) => MODULE_KEY.exec(name)?.[1] ?? [])
  const list = candidates.map((p) => `'${p}'`).join(', ')
  if (requested !== undefined) {
    // 'encoder.rnn' is taken to mean the module 'encoder.rnn.'.
    if (!candidates.includes(requested) && candidates.includes(`${requested}.`)) return `${requested}.`
    if (!candidates.includes(requested)) {
      throw stateDictError(
        `prefix '${requested}': no tensor '${requested}weight_ih_l0' in the state_dict` +
          (candidates.length ? `; recurrent modules found at prefixes ${list}` : '; it has no recurrent module'),
      )
    }
    return requested
  }
  if (candidates.length === 0) {
    throw stateDictError(
      `no recurrent module found: expected a tensor named like 'weight_ih_l0' or 'rnn.weight_ih_l0' among ${names.length} tensors`,
    )
  }
  if (candidates.length > 1) {
    throw stateDictError(
      `found ${candidates.length} recurrent modules (prefixes ${list}): choose one with the prefix option (birnn: --prefix)`,
    )
  }
  return candidates[0]
}

/**
 * The options, completed by what the file says where the caller said nothing (an ONNX graph knows
 * its RNN's nonlinearity and its input layout, birnn convert's metadata its RNN's nonlinearity); a
 * nonlinearity that contradicts the file is refused.
 */
function withHints(source: StateDictSource, options: LoadOptions): LoadOptions {
  const hints = source.hints
  if (!hints) return options
  if (hints.nonlinearity && options.nonlinearity && hints.nonlinearity !== options.nonlinearity) {
    throw new BirnnTypeError(
      'ERR_BIRNN_INVALID_ARG',
      `nonlinearity: expected '${hints.nonlinearity}' or nothing, as the file's RNN computes, received '${options.nonlinearity}'`,
    )
  }
  return {
    ...options,
    nonlinearity: options.nonlinearity ?? hints.nonlinearity,
    batchFirst: options.batchFirst ?? hints.batchFirst,
  }
}

/** Infers the module's configuration from its tensors' names and shapes, and reads every one of them. */
export function readStateDict(source: StateDictSource, given: LoadOptions): Weights {
  const options = withHints(source, given)
  const { names } = source
  const prefix = findPrefix(names, options.prefix)
  const tensorNames: string[] = []
  const present = new Set(names)
  const has = (key: string) => present.has(prefix + key)
  const shapeOf = (key: string): readonly number[] => source.shape(prefix + key)
  const get = (key: string, shape: number[]): Float32Array => {
    const name = prefix + key
    if (!present.has(name)) throw stateDictError(`missing tensor '${name}': expected shape ${formatShape(shape)}`)
    const stored = shapeOf(key)
    if (stored.length !== shape.length || stored.some((d, i) => d !== shape[i])) {
      throw shapeError(`tensor '${name}'`, shape, stored, 'ERR_BIRNN_STATE_DICT')
    }
    tensorNames.push(name)
    return source.read(name).data
  }
  const dims = (key: string): readonly number[] => {
    const shape = shapeOf(key)
    if (shape.length !== 2 || shape.some((d) => d === 0)) {
      const what = `a non-empty 2-D tensor`
      throw rangeError(`tensor '${prefix}${key}'`, what, `shape ${formatShape(shape)}`, 'ERR_BIRNN_STATE_DICT')
    }
    return shape
  }

  let numLayers = 0
  while (has(`weight_ih_l${numLayers}`)) numLayers++
  const bidirectional = has('weight_ih_l0_reverse')
  const bias = has('bias_ih_l0')
  const hasProjection = has('weight_hr_l0')
  if (!has('weight_hh_l0')) throw stateDictError(`missing tensor '${prefix}weight_hh_l0'`)
  const [gateRows, hh1] = dims('weight_hh_l0')
  const [inRows, inputSize] = dims('weight_ih_l0')
  let hiddenSize = hh1
  let projSize = 0
  if (hasProjection) {
    ;[projSize, hiddenSize] = dims('weight_hr_l0')
  }
  const gates = gateRows / hiddenSize
  const rnn = options.nonlinearity === 'relu' ? 'RNN_RELU' : 'RNN_TANH'
  const mode: Mode | undefined =
    gates === GATES[rnn] ? rnn : gates === GATES.GRU ? 'GRU' : gates === GATES.LSTM ? 'LSTM' : undefined
  if (mode === undefined || gateRows !== inRows) {
    throw rangeError(
      `tensor '${prefix}weight_hh_l0'`,
      `[G * hiddenSize, ·] rows with G = 1 (RNN), 3 (GRU) or 4 (LSTM), as many as '${prefix}weight_ih_l0' has (${inRows})`,
      `shape ${formatShape([gateRows, hh1])} with hiddenSize ${hiddenSize}`,
      'ERR_BIRNN_STATE_DICT',
    )
  }
  if (hasProjection && mode !== 'LSTM') {
    throw stateDictError(
      `tensor '${prefix}weight_hr_l0': only an LSTM has a projection, but the gate count says ${mode}`,
    )
  }
  // As nn.LSTM refuses it: "proj_size has to be smaller than hidden_size".
  if (hasProjection && projSize >= hiddenSize) {
    throw rangeError(
      `tensor '${prefix}weight_hr_l0'`,
      `[proj_size, hidden_size] with proj_size smaller than hidden_size, as nn.LSTM requires`,
      `shape ${formatShape([projSize, hiddenSize])}`,
      'ERR_BIRNN_STATE_DICT',
    )
  }
  // The caller's option only: a file's hint of a nonlinearity says nothing of a GRU or an LSTM.
  if (given.nonlinearity !== undefined && gates !== GATES[rnn]) {
    throw new BirnnTypeError(
      'ERR_BIRNN_INVALID_ARG',
      `nonlinearity: applies to nn.RNN only, but this model is ${mode === 'LSTM' ? 'an' : 'a'} ${mode}`,
    )
  }
  const hOut = projSize || hiddenSize
  const D = bidirectional ? 2 : 1
  const layers: LayerWeights[] = []
  for (let l = 0; l < numLayers; l++) {
    for (let d = 0; d < D; d++) {
      const s = `_l${l}${d ? '_reverse' : ''}`
      const layer: LayerWeights = {
        wIh: get(`weight_ih${s}`, [gateRows, l === 0 ? inputSize : D * hOut]),
        wHh: get(`weight_hh${s}`, [gateRows, hOut]),
      }
      if (bias) {
        layer.bIh = get(`bias_ih${s}`, [gateRows])
        layer.bHh = get(`bias_hh${s}`, [gateRows])
      }
      if (projSize) layer.wHr = get(`weight_hr${s}`, [projSize, hiddenSize])
      layers.push(layer)
    }
  }
  // Anything else that looks like this module's parameter is a sign of a mismatched file.
  for (const name of names) {
    if (!name.startsWith(prefix)) continue
    const match = PARAMETER_NAME.exec(name.slice(prefix.length))
    if (!match) continue
    const [, kind, layer, reverse] = match
    if (
      Number(layer) >= numLayers ||
      (reverse && !bidirectional) ||
      (kind.startsWith('bias') && !bias) ||
      (kind === 'weight_hr' && !hasProjection)
    ) {
      throw stateDictError(
        `unexpected tensor '${name}' for a ${numLayers}-layer ${bidirectional ? 'bidirectional' : 'unidirectional'} ${mode}${bias ? '' : ' without bias'}${projSize ? ` with projection ${projSize}` : ''}`,
      )
    }
  }
  return {
    config: {
      mode,
      inputSize,
      hiddenSize,
      numLayers,
      bidirectional,
      bias,
      batchFirst: options.batchFirst ?? false,
      projSize,
    },
    layers,
    prefix,
    tensorNames,
  }
}
