// From a PyTorch state_dict to a checked model description: finds the recurrent module's key
// prefix, infers the configuration from tensor names and shapes (as nn.RNN/GRU/LSTM name them:
// weight_ih_l{k}[_reverse], weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, weight_hr_l{k}) and
// checks every tensor it will use.

import { formatShape } from './errors.js'
import { checkTensor } from './shapes.js'
import type { LoadOptions, Mode, ModelConfig, Tensor } from './types.js'

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
}

/** Reads a tensor by name, converting it to float32 (or throwing if it cannot be). */
export type TensorReader = (name: string) => Tensor

const MODULE_KEY = /^(.*)weight_ih_l0$/

function findPrefix(names: readonly string[], requested: string | undefined): string {
  const candidates = names.flatMap((name) => MODULE_KEY.exec(name)?.[1] ?? [])
  const list = candidates.map((p) => `'${p}'`).join(', ')
  if (requested !== undefined) {
    // 'encoder.rnn' is taken to mean the module 'encoder.rnn.'.
    if (!candidates.includes(requested) && candidates.includes(`${requested}.`)) return `${requested}.`
    if (!candidates.includes(requested)) {
      throw new Error(
        `prefix '${requested}': no tensor '${requested}weight_ih_l0' in the state_dict` +
          (candidates.length ? `; recurrent modules found at prefixes ${list}` : '; it has no recurrent module'),
      )
    }
    return requested
  }
  if (candidates.length === 0) {
    throw new Error(
      `no recurrent module found: expected a tensor named like 'weight_ih_l0' or 'rnn.weight_ih_l0' among ${names.length} tensors`,
    )
  }
  if (candidates.length > 1) {
    throw new Error(
      `found ${candidates.length} recurrent modules (prefixes ${list}): pass options.prefix to choose one`,
    )
  }
  return candidates[0]
}

export function readStateDict(names: readonly string[], read: TensorReader, options: LoadOptions): Weights {
  const prefix = findPrefix(names, options.prefix)
  const cache = new Map<string, Tensor>()
  const load = (name: string): Tensor => {
    let tensor = cache.get(name)
    if (!tensor) {
      tensor = read(name)
      cache.set(name, tensor)
    }
    return tensor
  }
  const has = (key: string) => names.includes(prefix + key)
  const get = (key: string, shape: number[]): Float32Array => {
    const name = prefix + key
    if (!names.includes(name)) throw new Error(`missing tensor '${name}': expected shape ${formatShape(shape)}`)
    const tensor = load(name)
    if (tensor.shape.length !== shape.length || tensor.shape.some((d, i) => d !== shape[i])) {
      throw new RangeError(
        `tensor '${name}': expected shape ${formatShape(shape)}, received ${formatShape(tensor.shape)}`,
      )
    }
    return tensor.data
  }
  const shapeOf = (key: string, rank: number): number[] => {
    const shape = load(prefix + key).shape
    if (shape.length !== rank || shape.some((d) => d === 0)) {
      throw new RangeError(
        `tensor '${prefix}${key}': expected a non-empty ${rank}-D tensor, received shape ${formatShape(shape)}`,
      )
    }
    return shape
  }

  let numLayers = 0
  while (has(`weight_ih_l${numLayers}`)) numLayers++
  const bidirectional = has('weight_ih_l0_reverse')
  const bias = has('bias_ih_l0')
  const hasProjection = has('weight_hr_l0')
  if (!has('weight_hh_l0')) throw new Error(`missing tensor '${prefix}weight_hh_l0'`)
  const [gateRows, hh1] = shapeOf('weight_hh_l0', 2)
  const [inRows, inputSize] = shapeOf('weight_ih_l0', 2)
  let hiddenSize = hh1
  let projSize = 0
  if (hasProjection) {
    ;[projSize, hiddenSize] = shapeOf('weight_hr_l0', 2)
  }
  const gates = gateRows / hiddenSize
  const mode: Mode | undefined =
    gates === 4
      ? 'LSTM'
      : gates === 3
        ? 'GRU'
        : gates === 1
          ? options.nonlinearity === 'relu'
            ? 'RNN_RELU'
            : 'RNN_TANH'
          : undefined
  if (mode === undefined || gateRows !== inRows) {
    throw new RangeError(
      `tensor '${prefix}weight_hh_l0' of shape [${gateRows}, ${hh1}] with '${prefix}weight_ih_l0' of ${inRows} rows does not describe an RNN (1 gate), GRU (3) or LSTM (4) of hidden size ${hiddenSize}`,
    )
  }
  if (hasProjection && mode !== 'LSTM') {
    throw new Error(`tensor '${prefix}weight_hr_l0': only an LSTM has a projection, but the gate count says ${mode}`)
  }
  if (options.nonlinearity !== undefined && gates !== 1) {
    throw new TypeError(`nonlinearity: applies to nn.RNN only, but this model is an ${mode}`)
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
  const known = /^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$/
  for (const name of names) {
    if (!name.startsWith(prefix)) continue
    const match = known.exec(name.slice(prefix.length))
    if (!match) continue
    const [, kind, layer, reverse] = match
    if (
      Number(layer) >= numLayers ||
      (reverse && !bidirectional) ||
      (kind.startsWith('bias') && !bias) ||
      (kind === 'weight_hr' && !hasProjection)
    ) {
      throw new Error(
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
  }
}

/** A reader over a user's Record<string, Tensor> (fromStateDict): checks kind and size, then copies. */
export function recordReader(tensors: Record<string, Tensor>): TensorReader {
  return (name) => {
    const { data, shape } = checkTensor(`tensors['${name}']`, tensors[name])
    return { data: data.slice(), shape: [...shape] }
  }
}
