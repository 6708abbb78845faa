// ONNX models (lib/loading/onnx.ts): what birnn cannot run exactly is refused with ERR_BIRNN_ONNX,
// naming the node and the attribute; what the graph says of the module (an RNN's nonlinearity, a
// batch-first input) completes the options; mutated files load or are refused with a documented code.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { BirnnError } from '../../lib/errors.js'
import { load } from '../../lib/index.js'
import { ModelProto } from '../../lib/loading/onnx.js'
import { openFile } from '../../lib/loading/source.js'
import { expectError, fixturesDir, rejection, rng } from '../helpers.js'

const dir = join(fixturesDir, 'checkpoints')
const path = (name: string) => join(dir, `${name}.onnx`)

interface Node {
  input: string[]
  output: string[]
  name: string
  opType: string
  attribute: Array<{ name: string; s?: Uint8Array; strings?: Uint8Array[]; i?: number; type?: number; t?: Tensor }>
}
interface Tensor {
  dims?: number[]
  dataType?: number
  rawData?: Uint8Array
  int32Data?: number[]
  dataLocation?: number
}
interface Model {
  graph: { node: Node[]; initializer: Array<Tensor & { name: string }>; input: Array<{ name: string }> }
}

/** The fixture decoded, changed by `edit`, and encoded again. */
function edited(name: string, edit: (model: Model) => void): Uint8Array {
  const type = ModelProto()
  const model = type.toObject(type.decode(readFileSync(path(name))), { longs: Number, arrays: true }) as Model
  edit(model)
  return type.encode(type.fromObject(model)).finish()
}
const text = (s: string) => new TextEncoder().encode(s)
const refusedWith = async (source: string | Uint8Array, message: string | RegExp) =>
  expectError(await rejection(load(source)), Error, 'ERR_BIRNN_ONNX', message)

describe('refused ONNX graphs', () => {
  it('a GRU with linear_before_reset = 0', async () => {
    await refusedWith(
      path('onnx_gru_lbr0'),
      "onnx: GRU node '/GRU' attribute linear_before_reset: expected 1 (PyTorch applies the reset gate after the hidden linear map), received 0; birnn runs exactly what nn.GRU computes",
    )
  })

  it('an LSTM with clip', async () => {
    await refusedWith(
      path('onnx_lstm_clip'),
      "onnx: LSTM node '/LSTM' attribute clip: expected none (torch.onnx.export writes no such attribute), received 3; birnn runs exactly what nn.LSTM computes",
    )
  })

  it('an LSTM with peepholes', async () => {
    const bytes = edited('onnx_lstm_uni_l1_tm', (m) => {
      const lstm = m.graph.node.find((n) => n.opType === 'LSTM')!
      while (lstm.input.length < 7) lstm.input.push('')
      lstm.input.push(m.graph.initializer[0].name)
    })
    await refusedWith(
      bytes,
      /^onnx: LSTM node '\/LSTM' input P \(peepholes\): expected none, received '.*'; nn\.LSTM has no peepholes$/,
    )
  })

  it('activations PyTorch does not have', async () => {
    const bytes = edited('onnx_gru_uni_l1_tm', (m) => {
      m.graph.node
        .find((n) => n.opType === 'GRU')!
        .attribute.push({ name: 'activations', strings: [text('HardSigmoid'), text('Tanh')], type: 8 })
    })
    await refusedWith(
      bytes,
      "onnx: GRU node '/GRU' attribute activations: expected [Sigmoid, Tanh], received [HardSigmoid, Tanh]; birnn runs exactly what nn.GRU computes",
    )
  })

  it('a reverse-only direction', async () => {
    const bytes = edited('onnx_rnn_tanh_uni_l1_tm', (m) => {
      m.graph.node.find((n) => n.opType === 'RNN')!.attribute.push({ name: 'direction', s: text('reverse'), type: 3 })
    })
    await refusedWith(
      bytes,
      "onnx: RNN node '/RNN' attribute direction: expected 'forward' or 'bidirectional', received 'reverse'; birnn runs exactly what nn.RNN computes",
    )
  })

  it('another op between the layers', async () => {
    const bytes = edited('onnx_rnn_tanh_uni_l2_bf_h0', (m) => {
      const squeeze = m.graph.node.find(
        (n) => n.opType === 'Squeeze' && m.graph.node.some((k) => k.opType === 'RNN' && k.input[0] === n.output[0]),
      )!
      squeeze.opType = 'Relu'
    })
    await refusedWith(
      bytes,
      /^onnx: Relu node '.*' is on the path into RNN node '\/RNN_1': birnn runs a chain of RNN nodes joined only by Transpose, Reshape, Squeeze, Unsqueeze, Identity, as torch\.onnx\.export writes for nn\.RNN$/,
    )
  })

  it('weights in an external data file', async () => {
    const bytes = edited('onnx_gru_uni_l1_tm', (m) => {
      for (const t of m.graph.initializer) t.dataLocation = 1
    })
    await refusedWith(
      bytes,
      /^onnx: tensor '.*': stored in an external data file; birnn reads a model saved as one \.onnx file$/,
    )
  })

  it('a graph without recurrent nodes', async () => {
    const bytes = edited('onnx_gru_uni_l1_tm', (m) => {
      m.graph.node = m.graph.node.filter((n) => n.opType !== 'GRU')
    })
    await refusedWith(
      bytes,
      /^onnx: expected a graph with RNN, GRU or LSTM nodes \(as torch\.onnx\.export writes for nn\.RNN, nn\.GRU, nn\.LSTM\), received \d+ nodes without one \(.*\)$/,
    )
  })

  it('bytes that are not a ModelProto', async () => {
    await refusedWith(
      Uint8Array.from([0x08, 0x07, 0x12, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]),
      /^onnx: expected an ONNX model \(a ModelProto\), received bytes that do not decode as one \(.*\)$/,
    )
  })
})

describe('initial states and sequence lengths: what birnn takes at call time', () => {
  const PASS_H0 = 'export the model with h0 as an input, and pass it to forward()'
  /** onnx_gru_uni_l1_tm, whose GRU starts from Expand(Constant zeros): the edit gets both nodes. */
  const zeroState = (edit: (expand: Node, constant: Node, m: Model) => void) =>
    edited('onnx_gru_uni_l1_tm', (m) => {
      const gru = m.graph.node.find((n) => n.opType === 'GRU')!
      const expand = m.graph.node.find((n) => n.output[0] === gru.input[5])!
      edit(expand, m.graph.node.find((n) => n.output[0] === expand.input[0])!, m)
    })

  it('a learned h0 stored as an initializer (its values would be dropped)', async () => {
    await refusedWith(
      path('onnx_gru_h0_param'),
      `onnx: GRU node '/rnn/GRU' input initial_h: expected a graph input (birnn takes h0 at call time) or zeros, received the initializer 'h0', stored in the file; ${PASS_H0}`,
    )
  })

  it('a Constant of zeros, as torch.onnx.export writes without h0, loads; of other values, is refused', async () => {
    expect((await load(zeroState(() => {}))).config.mode).toBe('GRU')
    const ones = zeroState((_, constant) => {
      constant.attribute[0].t!.rawData = new Uint8Array(new Float32Array(8).fill(0.5).buffer)
    })
    await refusedWith(
      ones,
      `onnx: GRU node '/GRU' input initial_h: expected a graph input (birnn takes h0 at call time) or zeros, received the value of Constant node '/Constant', stored in the file; ${PASS_H0}`,
    )
  })

  it('a state computed by an op that changes values', async () => {
    const negated = zeroState((expand) => {
      expand.opType = 'Neg'
    })
    await refusedWith(
      negated,
      `onnx: GRU node '/GRU' input initial_h: expected a graph input (birnn takes h0 at call time) or zeros, received a value computed by Neg node '/Expand'; ${PASS_H0}`,
    )
  })

  it('sequence_lens: a graph input loads, stored lengths are refused', async () => {
    const lengths = (stored: boolean) =>
      edited('onnx_gru_uni_l1_tm', (m) => {
        m.graph.node.find((n) => n.opType === 'GRU')!.input[4] = 'lengths'
        if (stored) m.graph.initializer.push({ name: 'lengths', dims: [2], dataType: 6, int32Data: [4, 2] })
        else m.graph.input.push({ name: 'lengths' })
      })
    expect((await load(lengths(false))).config.mode).toBe('GRU')
    // pack_padded_sequence's export: the int64 lengths input cast to int32 on its way in.
    const cast = edited('onnx_gru_uni_l1_tm', (m) => {
      m.graph.node.find((n) => n.opType === 'GRU')!.input[4] = 'lengths_int32'
      m.graph.input.push({ name: 'lengths' })
      m.graph.node.unshift({
        opType: 'Cast',
        name: '/Cast',
        input: ['lengths'],
        output: ['lengths_int32'],
        attribute: [],
      })
    })
    expect((await load(cast)).config.mode).toBe('GRU')
    await refusedWith(
      lengths(true),
      "onnx: GRU node '/GRU' input sequence_lens: expected a graph input (birnn takes lengths at call time), received the initializer 'lengths', stored in the file; export the model with lengths as an input, and pass it to forward()",
    )
  })
})

describe('what the graph says of the module', () => {
  it('PyTorch names, shapes and the stored dtype, before any tensor is read', async () => {
    const source = await openFile(path('onnx_lstm_bi_l2_tm_h0'))
    expect(source.dtype('weight_hh_l1_reverse')).toBe('F32')
    expect(source.shape('weight_ih_l1')).toEqual([12, 6])
    expect(source.shape('bias_hh_l0_reverse')).toEqual([12])
    expect(source.names).toHaveLength(16)
  })

  it("an RNN's nonlinearity: taken from the graph, and a contradicting option refused", async () => {
    expect((await load(path('onnx_rnn_relu_uni_l1_tm'))).config.mode).toBe('RNN_RELU')
    expect((await load(path('onnx_rnn_tanh_uni_l1_tm'))).config.mode).toBe('RNN_TANH')
    expectError(
      await rejection(load(path('onnx_rnn_relu_uni_l1_tm'), { nonlinearity: 'tanh' })),
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      "nonlinearity: expected 'relu' or nothing, as the file's RNN computes, received 'tanh'",
    )
  })

  it('a batch-first input (a Transpose before the first layer), unless batchFirst says otherwise', async () => {
    expect((await load(path('onnx_gru_bi_l1_bf'))).config.batchFirst).toBe(true)
    expect((await load(path('onnx_gru_bi_l1_bf'), { batchFirst: false })).config.batchFirst).toBe(false)
    expect((await load(path('onnx_gru_uni_l1_tm'))).config.batchFirst).toBe(false)
  })
})

const FUZZ_CASES = Number(process.env.BIRNN_ONNX_FUZZ_CASES ?? 2_000)

describe('fuzzing ONNX files', () => {
  it(`${FUZZ_CASES} mutated exports: each loads and runs, or is refused with a documented code`, async () => {
    const originals = ['onnx_lstm_bi_l2_tm_h0', 'onnx_gru_uni_l2_bf_h0'].map(
      (n) => new Uint8Array(readFileSync(path(n))),
    )
    const r = rng(1307)
    const codes = new Map<string, number>()
    let loaded = 0
    for (let i = 0; i < FUZZ_CASES; i++) {
      const bytes = originals[i % 2].slice()
      if (r.next() < 0.2) {
        const cut = bytes.slice(0, r.int(1, bytes.length - 1))
        bytes.fill(0)
        bytes.set(cut)
      }
      for (let k = r.int(1, 4); k > 0; k--) bytes[r.int(1, bytes.length - 1)] = r.int(0, 255)
      try {
        const model = await load(bytes, { backend: 'js' })
        const I = model.config.inputSize
        model.forwardSync({ data: new Float32Array(2 * I).fill(0.5), shape: [2, 1, I] })
        loaded++
      } catch (error) {
        const code = (error as BirnnError).code
        if (
          !(error instanceof BirnnError) ||
          !['ERR_BIRNN_ONNX', 'ERR_BIRNN_STATE_DICT', 'ERR_BIRNN_SAFETENSORS'].includes(code)
        )
          throw error
        codes.set(code, (codes.get(code) ?? 0) + 1)
      }
    }
    console.log(`onnx fuzz: ${FUZZ_CASES} files, ${loaded} loaded; refused`, Object.fromEntries(codes))
    expect(codes.get('ERR_BIRNN_ONNX') ?? 0).toBeGreaterThan(0)
  })
})
