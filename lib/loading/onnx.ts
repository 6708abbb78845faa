// ONNX models (.onnx) as torch.onnx.export writes them for nn.RNN, nn.GRU and nn.LSTM: one ONNX
// RNN / GRU / LSTM node per layer, chained through the Transpose / Reshape / Squeeze that
// rearrange a layer's output into the next layer's input. The protobuf is decoded with protobufjs
// (the part of onnx.proto we read is declared below); the graph is then checked to compute
// exactly what the PyTorch module computes, and the weights are mapped back to PyTorch's names
// and layout: ONNX orders the LSTM gates i, o, f, c where PyTorch has i, f, g, o, and the GRU
// gates z, r, h where PyTorch has r, z, n; ONNX's bias B is [Wb, Rb], PyTorch's bias_ih and bias_hh.

import protobuf from 'protobufjs/light.js'
import { BirnnError } from '../errors.js'
import type { Tensor } from '../types.js'
import { toFloat32 } from './safetensors.js'
import type { StateDictSource } from './state-dict.js'

// The fields of onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto) that birnn reads.
const SCHEMA = {
  nested: {
    ModelProto: {
      fields: {
        irVersion: { type: 'int64', id: 1 },
        graph: { type: 'GraphProto', id: 7 },
        opsetImport: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
      },
    },
    OperatorSetIdProto: { fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } } },
    GraphProto: {
      fields: {
        node: { rule: 'repeated', type: 'NodeProto', id: 1 },
        initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
        input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
        output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
      },
    },
    ValueInfoProto: { fields: { name: { type: 'string', id: 1 } } },
    NodeProto: {
      fields: {
        input: { rule: 'repeated', type: 'string', id: 1 },
        output: { rule: 'repeated', type: 'string', id: 2 },
        name: { type: 'string', id: 3 },
        opType: { type: 'string', id: 4 },
        domain: { type: 'string', id: 7 },
        attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
      },
    },
    AttributeProto: {
      fields: {
        name: { type: 'string', id: 1 },
        f: { type: 'float', id: 2 },
        i: { type: 'int64', id: 3 },
        s: { type: 'bytes', id: 4 },
        t: { type: 'TensorProto', id: 5 },
        floats: { rule: 'repeated', type: 'float', id: 7 },
        ints: { rule: 'repeated', type: 'int64', id: 8 },
        strings: { rule: 'repeated', type: 'bytes', id: 9 },
        type: { type: 'int32', id: 20 },
      },
    },
    TensorProto: {
      fields: {
        dims: { rule: 'repeated', type: 'int64', id: 1 },
        dataType: { type: 'int32', id: 2 },
        floatData: { rule: 'repeated', type: 'float', id: 4 },
        int32Data: { rule: 'repeated', type: 'int32', id: 5 },
        name: { type: 'string', id: 8 },
        rawData: { type: 'bytes', id: 9 },
        doubleData: { rule: 'repeated', type: 'double', id: 10 },
        dataLocation: { type: 'int32', id: 14 },
      },
    },
  },
}

interface OnnxTensor {
  dims?: number[]
  dataType?: number
  floatData?: number[]
  int32Data?: number[]
  name?: string
  rawData?: Uint8Array
  doubleData?: number[]
  dataLocation?: number
}
interface OnnxAttribute {
  name?: string
  f?: number
  i?: number
  s?: Uint8Array
  t?: OnnxTensor
  floats?: number[]
  ints?: number[]
  strings?: Uint8Array[]
}
interface OnnxNode {
  input?: string[]
  output?: string[]
  name?: string
  opType?: string
  domain?: string
  attribute?: OnnxAttribute[]
}
interface OnnxModel {
  graph?: {
    node?: OnnxNode[]
    initializer?: OnnxTensor[]
    input?: Array<{ name?: string }>
    output?: Array<{ name?: string }>
  }
}

let modelType: protobuf.Type | undefined
/** The ModelProto message type (the tests use it to write altered models). */
export const ModelProto = (): protobuf.Type => {
  modelType ??= protobuf.Root.fromJSON(SCHEMA).lookupType('ModelProto')
  return modelType
}

function onnxError(message: string): BirnnError {
  return new BirnnError('ERR_BIRNN_ONNX', `onnx: ${message}`)
}

/** An ONNX ModelProto starts with field 1 (ir_version), a varint: the byte 0x08. */
export const isOnnx = (bytes: Uint8Array): boolean => bytes.length >= 2 && bytes[0] === 0x08

/** TensorProto.DataType → the dtype names of safetensors, for the float types a weight may have. */
const DATA_TYPES: Readonly<Record<number, string>> = { 1: 'F32', 10: 'F16', 11: 'F64', 16: 'BF16' }
const ITEM: Readonly<Record<string, number>> = { F32: 4, F16: 2, F64: 8, BF16: 2 }

type Mode = 'RNN' | 'GRU' | 'LSTM'
const GATES: Readonly<Record<Mode, number>> = { RNN: 1, GRU: 3, LSTM: 4 }
/** For each PyTorch gate block, in PyTorch's order, the ONNX gate block it comes from. */
const FROM_ONNX: Readonly<Record<Mode, readonly number[]>> = { RNN: [0], GRU: [1, 0, 2], LSTM: [0, 2, 3, 1] }
const MODULE: Readonly<Record<Mode, string>> = { RNN: 'nn.RNN', GRU: 'nn.GRU', LSTM: 'nn.LSTM' }
/** The activations PyTorch's module computes, per direction (an RNN's may also be all Relu). */
const ACTIVATIONS: Readonly<Record<Mode, readonly string[]>> = {
  RNN: ['Tanh'],
  GRU: ['Sigmoid', 'Tanh'],
  LSTM: ['Sigmoid', 'Tanh', 'Tanh'],
}
/** The ops torch.onnx.export puts between a graph input and the first layer, or between layers. */
const PASS_THROUGH = new Set(['Transpose', 'Reshape', 'Squeeze', 'Unsqueeze', 'Identity'])
/** A node's inputs that birnn takes at call time instead: index, ONNX's name, forward()'s name. */
const CALL_TIME_INPUTS: ReadonlyArray<[number, string, string]> = [
  [4, 'sequence_lens', 'lengths'],
  [5, 'initial_h', 'h0'],
  [6, 'initial_c', 'c0'],
]
/**
 * The ops that only select from a value, broadcast it or change its type: torch.onnx.export slices
 * h0 per layer, and casts the lengths of pack_padded_sequence to int32.
 */
const SELECT = new Set(['Slice', 'Gather', 'Squeeze', 'Unsqueeze', 'Identity', 'Expand', 'Cast'])

const decodeText = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes ?? new Uint8Array(0))
const label = (node: OnnxNode) => `${node.opType} node '${node.name ?? ''}'`

/** A stored tensor as float32 in a fresh buffer, with its dims. */
function readOnnxTensor(what: string, t: OnnxTensor): { data: Float32Array; dims: number[]; dtype: string } {
  const dims = (t.dims ?? []).map(Number)
  if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw onnxError(`${what}: expected non-negative dims, received [${dims.join(', ')}]`)
  }
  if (t.dataLocation === 1) {
    throw onnxError(`${what}: stored in an external data file; birnn reads a model saved as one .onnx file`)
  }
  const dtype = DATA_TYPES[t.dataType ?? 0]
  if (dtype === undefined) {
    throw onnxError(
      `${what}: expected a float tensor (FLOAT, FLOAT16, DOUBLE or BFLOAT16), received data_type ${t.dataType}`,
    )
  }
  const numel = dims.reduce((a, b) => a * b, 1)
  let data: Float32Array
  if (t.rawData && t.rawData.length > 0) {
    if (t.rawData.length !== numel * ITEM[dtype]) {
      throw onnxError(
        `${what}: expected ${numel * ITEM[dtype]} bytes of ${dtype} for dims [${dims.join(', ')}], received ${t.rawData.length}`,
      )
    }
    data = toFloat32(what, { dtype, shape: dims, bytes: t.rawData }).data
  } else {
    const values =
      dtype === 'F32' ? t.floatData : dtype === 'F64' ? t.doubleData : (t.int32Data ?? []).map((v) => v & 0xffff)
    if ((values?.length ?? 0) !== numel) {
      throw onnxError(
        `${what}: expected ${numel} values for dims [${dims.join(', ')}], received ${values?.length ?? 0}`,
      )
    }
    if (dtype === 'F32' || dtype === 'F64') data = Float32Array.from(values!)
    else {
      const bytes = new Uint8Array(numel * 2)
      const view = new DataView(bytes.buffer)
      values!.forEach((v, i) => {
        view.setUint16(i * 2, v, true)
      })
      data = toFloat32(what, { dtype, shape: dims, bytes }).data
    }
  }
  return { data, dims, dtype }
}

function decode(bytes: Uint8Array): OnnxModel {
  try {
    const type = ModelProto()
    return type.toObject(type.decode(bytes), { longs: Number, arrays: true }) as OnnxModel
  } catch (error) {
    throw onnxError(
      `expected an ONNX model (a ModelProto), received bytes that do not decode as one (${(error as Error).message})`,
    )
  }
}

interface Layer {
  node: OnnxNode
  W: string
  R: string
  B?: string
}

/** An ONNX model as a StateDictSource with PyTorch's tensor names, shapes and layout. */
export function openOnnx(bytes: Uint8Array): StateDictSource {
  const model = decode(bytes)
  const graph = model.graph
  if (!graph) throw onnxError('expected a ModelProto with a graph, received one without')
  const nodes = graph.node ?? []
  const recurrent = nodes.filter((n) => (n.opType === 'RNN' || n.opType === 'GRU' || n.opType === 'LSTM') && !n.domain)
  if (recurrent.length === 0) {
    const ops = [...new Set(nodes.map((n) => n.opType))].slice(0, 10).join(', ')
    throw onnxError(
      `expected a graph with RNN, GRU or LSTM nodes (as torch.onnx.export writes for nn.RNN, nn.GRU, nn.LSTM), received ${nodes.length} nodes without one${ops ? ` (${ops})` : ''}`,
    )
  }
  const mode = recurrent[0].opType as Mode
  for (const node of recurrent) {
    if (node.opType !== mode)
      throw onnxError(`${label(node)}: expected only ${mode} nodes, as one PyTorch module exports`)
  }

  // Stored tensors: initializers, and the values of Constant nodes.
  const stored = new Map<string, OnnxTensor>()
  for (const t of graph.initializer ?? []) if (t.name) stored.set(t.name, t)
  const producer = new Map<string, OnnxNode>()
  for (const node of nodes) {
    for (const out of node.output ?? []) producer.set(out, node)
    if (node.opType === 'Constant' && node.output?.[0]) {
      const value = node.attribute?.find((a) => a.name === 'value')?.t
      if (value) stored.set(node.output[0], value)
    }
  }
  const graphInputs = new Set((graph.input ?? []).map((i) => i.name))

  // Where each recurrent node's input X comes from: a graph input or another recurrent node's Y.
  let batchFirst = false
  const sourceOf = (node: OnnxNode): OnnxNode | undefined => {
    let name = node.input?.[0] ?? ''
    const transposes: number[][] = []
    for (let steps = 0; steps <= nodes.length; steps++) {
      const from = producer.get(name)
      if (from === undefined) {
        if (!graphInputs.has(name))
          throw onnxError(`${label(node)}: its input X '${name}' is neither a graph input nor computed`)
        if (transposes.length > 1 || (transposes.length === 1 && transposes[0].join() !== '1,0,2')) {
          throw onnxError(
            `${label(node)}: expected its input X to be the graph input, or its transpose (1, 0, 2) for batch_first`,
          )
        }
        if (transposes.length === 1) batchFirst = true
        return undefined
      }
      if (recurrent.includes(from)) {
        if (name !== from.output?.[0]) {
          throw onnxError(
            `${label(node)}: expected its input X to be the output Y of ${label(from)}, received another of its outputs`,
          )
        }
        if (transposes.some((perm) => perm.join() !== '0,2,1,3')) {
          throw onnxError(
            `${label(node)}: expected the layers' directions joined by Transpose (0, 2, 1, 3), as PyTorch does`,
          )
        }
        return from
      }
      if (!PASS_THROUGH.has(from.opType ?? '') || from.domain) {
        throw onnxError(
          `${label(from)} is on the path into ${label(node)}: birnn runs a chain of ${mode} nodes joined only by ${[...PASS_THROUGH].join(', ')}, as torch.onnx.export writes for ${MODULE[mode]}`,
        )
      }
      if (from.opType === 'Transpose')
        transposes.push((from.attribute?.find((a) => a.name === 'perm')?.ints ?? []).map(Number))
      name = from.input?.[0] ?? ''
    }
    throw onnxError(`${label(node)}: its input X comes through a cycle`)
  }
  const sources = new Map(recurrent.map((node) => [node, sourceOf(node)]))
  const chain: OnnxNode[] = []
  let next = recurrent.filter((node) => sources.get(node) === undefined)
  while (next.length === 1 && chain.length < recurrent.length) {
    chain.push(next[0])
    next = recurrent.filter((node) => sources.get(node) === chain[chain.length - 1])
  }
  if (chain.length !== recurrent.length || next.length > 0) {
    throw onnxError(
      `expected the ${recurrent.length} ${mode} nodes to form one chain, layer after layer, received ${chain.length ? `a chain of ${chain.length} and others` : 'no node fed by a graph input'}`,
    )
  }

  // A node's initial state and sequence lengths are what the caller gives forward() (h0, c0,
  // lengths): each must come from a graph input, or be zeros (the state birnn starts from without
  // h0 or c0), never a value stored in the file that birnn would drop.
  const checkCallTimeInput = (node: OnnxNode, index: number, onnxName: string, ours: string) => {
    let name = node.input?.[index]
    if (!name) return
    let received = 'a value computed in a cycle'
    for (let steps = 0; steps <= nodes.length; steps++) {
      const from = producer.get(name)
      const filled = from?.opType === 'ConstantOfShape' && !from.domain
      if (filled || stored.has(name)) {
        // ConstantOfShape fills with its 'value' attribute, zero when it has none.
        const value = filled ? from.attribute?.find((a) => a.name === 'value')?.t : stored.get(name)
        const zeros = (t: OnnxTensor) => readOnnxTensor(`tensor '${name}'`, t).data.every((v) => v === 0)
        if (ours !== 'lengths' && (value === undefined || zeros(value))) return
        received = `${from ? `the value of ${label(from)}` : `the initializer '${name}'`}, stored in the file`
        break
      }
      if (from === undefined) {
        if (graphInputs.has(name)) return
        received = `'${name}', neither a graph input nor computed`
        break
      }
      if (!SELECT.has(from.opType ?? '') || from.domain) {
        received = `a value computed by ${label(from)}`
        break
      }
      name = from.input?.[0] ?? ''
    }
    throw onnxError(
      `${label(node)} input ${onnxName}: expected a graph input (birnn takes ${ours} at call time)${ours === 'lengths' ? '' : ' or zeros'}, received ${received}; export the model with ${ours} as an input, and pass it to forward()`,
    )
  }

  // Each node's attributes: anything PyTorch's module would not compute is refused.
  let directions = 0
  let hiddenSize = 0
  let nonlinearity: 'tanh' | 'relu' | undefined
  const layers: Layer[] = chain.map((node) => {
    const attributes = new Map((node.attribute ?? []).map((a) => [a.name ?? '', a]))
    const refuse = (name: string, expected: string, received: string): never => {
      throw onnxError(
        `${label(node)} attribute ${name}: expected ${expected}, received ${received}; birnn runs exactly what ${MODULE[mode]} computes`,
      )
    }
    for (const [name, a] of attributes) {
      if (
        !['hidden_size', 'direction', 'activations', 'linear_before_reset', 'layout', 'input_forget'].includes(name)
      ) {
        const value = a.s ? `'${decodeText(a.s)}'` : a.floats?.length ? `[${a.floats.join(', ')}]` : String(a.f ?? a.i)
        refuse(name, 'none (torch.onnx.export writes no such attribute)', value)
      }
    }
    const direction = decodeText(attributes.get('direction')?.s) || 'forward'
    if (direction !== 'forward' && direction !== 'bidirectional')
      refuse('direction', "'forward' or 'bidirectional'", `'${direction}'`)
    const D = direction === 'bidirectional' ? 2 : 1
    if (directions && D !== directions)
      refuse('direction', `'${directions === 2 ? 'bidirectional' : 'forward'}' like the layer before`, `'${direction}'`)
    directions = D
    const H = Number(attributes.get('hidden_size')?.i ?? 0)
    if (!(Number.isSafeInteger(H) && H > 0)) refuse('hidden_size', 'a positive integer', String(H))
    if (hiddenSize && H !== hiddenSize) refuse('hidden_size', `${hiddenSize} like the layer before`, String(H))
    hiddenSize = H
    const activations = (attributes.get('activations')?.strings ?? []).map(decodeText)
    const expected = ACTIVATIONS[mode]
    let relu = false
    if (activations.length > 0) {
      relu = mode === 'RNN' && activations.every((a) => a === 'Relu')
      const wanted = Array.from({ length: D }, () => (relu ? ['Relu'] : expected)).flat()
      if (activations.join() !== wanted.join()) {
        refuse(
          'activations',
          `[${Array.from({ length: D }, () => expected)
            .flat()
            .join(', ')}]${mode === 'RNN' ? ' or all Relu' : ''}`,
          `[${activations.join(', ')}]`,
        )
      }
    }
    if (mode === 'RNN') {
      const which = relu ? 'relu' : 'tanh'
      if (nonlinearity && which !== nonlinearity) refuse('activations', `${nonlinearity} like the layer before`, which)
      nonlinearity = which
    }
    if (mode === 'GRU' && Number(attributes.get('linear_before_reset')?.i ?? 0) !== 1) {
      refuse(
        'linear_before_reset',
        '1 (PyTorch applies the reset gate after the hidden linear map)',
        String(Number(attributes.get('linear_before_reset')?.i ?? 0)),
      )
    }
    if (Number(attributes.get('layout')?.i ?? 0) !== 0) refuse('layout', '0', String(attributes.get('layout')?.i))
    if (Number(attributes.get('input_forget')?.i ?? 0) !== 0)
      refuse('input_forget', '0', String(attributes.get('input_forget')?.i))
    const inputs = node.input ?? []
    if (mode === 'LSTM' && inputs[7]) {
      throw onnxError(
        `${label(node)} input P (peepholes): expected none, received '${inputs[7]}'; ${MODULE[mode]} has no peepholes`,
      )
    }
    const weight = (index: number, name: string) => {
      const input = inputs[index]
      if (!input) return undefined
      if (!stored.has(input))
        throw onnxError(
          `${label(node)} input ${name} '${input}': expected a stored weight (an initializer), received a computed value`,
        )
      return input
    }
    const W = weight(1, 'W')
    const R = weight(2, 'R')
    if (!W || !R) throw onnxError(`${label(node)}: expected inputs W and R, received ${inputs.length} inputs`)
    for (const [index, onnxName, ours] of CALL_TIME_INPUTS) {
      if (index < 6 || mode === 'LSTM') checkCallTimeInput(node, index, onnxName, ours)
    }
    return { node, W, R, B: weight(3, 'B') }
  })

  // PyTorch names → (ONNX tensor, direction, which half of B), read and permuted when asked.
  const G = GATES[mode]
  const GH = G * hiddenSize
  const cache = new Map<string, ReturnType<typeof readOnnxTensor>>()
  const onnxTensor = (name: string, dims: number[]) => {
    let t = cache.get(name)
    if (!t) {
      t = readOnnxTensor(`tensor '${name}'`, stored.get(name)!)
      cache.set(name, t)
    }
    if (t.dims.length !== dims.length || t.dims.some((d, i) => dims[i] >= 0 && d !== dims[i])) {
      throw onnxError(
        `tensor '${name}': expected dims [${dims.map((d) => (d < 0 ? '·' : d)).join(', ')}], received [${t.dims.join(', ')}]`,
      )
    }
    return t
  }
  interface Entry {
    onnx: string
    dims: number[]
    direction: number
    half: number
    shape: number[]
  }
  const entries = new Map<string, Entry>()
  layers.forEach((layer, l) => {
    const W = onnxTensor(layer.W, [directions, GH, -1])
    onnxTensor(layer.R, [directions, GH, hiddenSize])
    if (layer.B) onnxTensor(layer.B, [directions, 2 * GH])
    const inputSize = W.dims[2]
    for (let d = 0; d < directions; d++) {
      const s = `_l${l}${d ? '_reverse' : ''}`
      entries.set(`weight_ih${s}`, { onnx: layer.W, dims: W.dims, direction: d, half: 0, shape: [GH, inputSize] })
      entries.set(`weight_hh${s}`, {
        onnx: layer.R,
        dims: [directions, GH, hiddenSize],
        direction: d,
        half: 0,
        shape: [GH, hiddenSize],
      })
      if (layer.B) {
        entries.set(`bias_ih${s}`, { onnx: layer.B, dims: [directions, 2 * GH], direction: d, half: 0, shape: [GH] })
        entries.set(`bias_hh${s}`, { onnx: layer.B, dims: [directions, 2 * GH], direction: d, half: 1, shape: [GH] })
      }
    }
  })
  const entry = (name: string) => entries.get(name)!
  return {
    names: [...entries.keys()],
    shape: (name) => entry(name).shape,
    dtype: (name) => DATA_TYPES[stored.get(entry(name).onnx)!.dataType ?? 0] ?? 'unknown',
    read: (name): Tensor => {
      const { onnx, dims, direction, half, shape } = entry(name)
      const source = onnxTensor(onnx, dims).data
      const columns = shape.length === 2 ? shape[1] : 1
      const block = hiddenSize * columns
      const start = direction * (source.length / directions) + half * GH * columns
      const data = new Float32Array(GH * columns)
      FROM_ONNX[mode].forEach((from, to) => {
        data.set(source.subarray(start + from * block, start + (from + 1) * block), to * block)
      })
      return { data, shape: [...shape] }
    },
    hints: { ...(nonlinearity ? { nonlinearity } : {}), ...(batchFirst ? { batchFirst } : {}) },
  }
}
