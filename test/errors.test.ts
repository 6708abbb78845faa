// Every bad input gets a clear error of the right class naming the argument, the expectation
// and what came; nothing crashes, and the caller's data is never changed.
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { fromStateDict, load } from '../lib/index.js'
import type { Tensor } from '../lib/types.js'
import { encodeTensors, engines, fixture, modelPath, rng, safetensorsBytes } from './helpers.js'

const t = (shape: number[], fill = 0.1): Tensor => ({
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill),
  shape,
})

/** A valid 2-layer LSTM state_dict (input 3, hidden 4) under a prefix. */
const lstm = (prefix = '', layers = 2): Record<string, Tensor> => {
  const out: Record<string, Tensor> = {}
  for (let l = 0; l < layers; l++) {
    out[`${prefix}weight_ih_l${l}`] = t([16, l ? 4 : 3])
    out[`${prefix}weight_hh_l${l}`] = t([16, 4])
    out[`${prefix}bias_ih_l${l}`] = t([16])
    out[`${prefix}bias_hh_l${l}`] = t([16])
  }
  return out
}

describe('untrusted safetensors files', () => {
  const f32 = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer)
  const cases: Array<[string, Uint8Array, RegExp]> = [
    [
      'a file shorter than the header length',
      new Uint8Array(5),
      /file is 5 bytes, too short for the 8-byte header length/,
    ],
    [
      'a header length beyond the file',
      (() => {
        const b = safetensorsBytes({})
        new DataView(b.buffer).setBigUint64(0, 1n << 40n, true)
        return b
      })(),
      /header length 1099511627776 exceeds the 2 bytes that follow it/,
    ],
    ['invalid JSON', safetensorsBytes('{"a": '), /header is not valid UTF-8 JSON/],
    ['a header that is not an object', safetensorsBytes('[1, 2]'), /header is not a JSON object/],
    [
      'an unknown dtype',
      safetensorsBytes({ w: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, f32),
      /tensor 'w' has unknown dtype "F128"/,
    ],
    [
      'a negative dimension',
      safetensorsBytes({ w: { dtype: 'F32', shape: [-4], data_offsets: [0, 16] } }, f32),
      /tensor 'w' has an invalid shape \[-4\]/,
    ],
    [
      'reversed offsets',
      safetensorsBytes({ w: { dtype: 'F32', shape: [4], data_offsets: [16, 0] } }, f32),
      /tensor 'w' has invalid data_offsets \[16,0\]/,
    ],
    [
      'offsets outside the data',
      safetensorsBytes({ w: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, f32),
      /tensor 'w' data_offsets \[0, 32\] extend past the 16 bytes of data/,
    ],
    [
      'a shape that disagrees with its byte range',
      safetensorsBytes({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, f32),
      /tensor 'w' of shape \[3\] and dtype F32 needs 12 bytes, but its data_offsets \[0, 16\] hold 16/,
    ],
    [
      'overlapping tensors',
      safetensorsBytes(
        {
          a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
          b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
        },
        f32,
      ),
      /tensors 'a' and 'b' overlap in the data section/,
    ],
    [
      'a huge shape in a small file',
      safetensorsBytes({ w: { dtype: 'F32', shape: [1e9, 1e9], data_offsets: [0, 16] } }, f32),
      /tensor 'w' of shape \[1000000000, 1000000000\] and dtype F32 needs/,
    ],
  ]
  it.each(cases)('%s', async (_, bytes, message) => {
    await expect(load(bytes)).rejects.toThrow(message)
  })

  it('a recurrent tensor stored with an integer dtype', async () => {
    const tensors = lstm()
    const bytes = encodeTensors(tensors)
    // Rewrite weight_hh_l1's dtype to I32 (same byte size) in the header.
    const text = new TextDecoder().decode(bytes).replace(/("weight_hh_l1":\{"dtype":)"F32"/, '$1"I32"')
    await expect(load(new TextEncoder().encode(text))).rejects.toThrow(
      "safetensors: tensor 'weight_hh_l1' has dtype I32; expected one of F32, F16, BF16, F64",
    )
  })

  it('300 randomly corrupted files: each loads or throws an Error, never crashes or hangs', async () => {
    const original = readFileSync(modelPath(fixture('gru_bi_l2_nobias_bf_h0_packed')))
    const r = rng(2024)
    for (let i = 0; i < 300; i++) {
      const bytes = Uint8Array.from(original)
      // Flip a few bytes, mostly in the header where the offsets and shapes live.
      for (let k = r.int(1, 4); k > 0; k--) {
        const at = r.next() < 0.7 ? r.int(0, Math.min(bytes.length - 1, 600)) : r.int(0, bytes.length - 1)
        bytes[at] = r.int(0, 255)
      }
      if (r.next() < 0.2) bytes.fill(0, r.int(8, bytes.length - 1)) // or truncate the data
      try {
        const model = await load(r.next() < 0.1 ? bytes.subarray(0, r.int(0, bytes.length)) : bytes)
        const I = model.config.inputSize
        model.forwardSync({ data: new Float32Array(2 * I), shape: [2, 1, I] })
      } catch (error) {
        expect(error).toBeInstanceOf(Error)
      }
    }
  })

  it('a missing file', async () => {
    await expect(load('/nonexistent/model.safetensors')).rejects.toThrow(/ENOENT/)
  })
})

describe('state_dict contents', () => {
  it('a missing tensor is named with its expected shape', () => {
    const tensors = lstm()
    delete tensors.bias_hh_l1
    expect(() => fromStateDict(tensors)).toThrow("missing tensor 'bias_hh_l1': expected shape [16]")
  })

  it('a mis-shaped tensor is named with both shapes', () => {
    const tensors = lstm('rnn.')
    tensors['rnn.weight_ih_l1'] = t([16, 5])
    expect(() => fromStateDict(tensors)).toThrow(
      new RangeError("tensor 'rnn.weight_ih_l1': expected shape [16, 4], received [16, 5]"),
    )
  })

  it('two recurrent modules need a prefix', () => {
    const tensors = { ...lstm('enc.lstm.'), ...lstm('dec.gru.') }
    expect(() => fromStateDict(tensors)).toThrow(
      "found 2 recurrent modules (prefixes 'enc.lstm.', 'dec.gru.'): pass options.prefix to choose one",
    )
    expect(fromStateDict(tensors, { prefix: 'dec.gru.', backend: 'js' }).config.numLayers).toBe(2)
    expect(fromStateDict(tensors, { prefix: 'dec.gru', backend: 'js' }).config.numLayers).toBe(2)
  })

  it('a prefix that names no module', () => {
    expect(() => fromStateDict(lstm('enc.'), { prefix: 'encoder.' })).toThrow(
      "prefix 'encoder.': no tensor 'encoder.weight_ih_l0' in the state_dict; recurrent modules found at prefixes 'enc.'",
    )
  })

  it('a state_dict with no recurrent module', () => {
    expect(() => fromStateDict({ 'head.weight': t([2, 2]) })).toThrow(
      /no recurrent module found: expected a tensor named like 'weight_ih_l0'/,
    )
  })

  it('a parameter that does not fit the inferred module', () => {
    const tensors = { ...lstm(), weight_hh_l3: t([16, 4]) }
    expect(() => fromStateDict(tensors)).toThrow("unexpected tensor 'weight_hh_l3' for a 2-layer unidirectional LSTM")
    const half = { ...lstm(), weight_ih_l1_reverse: t([16, 4]) }
    expect(() => fromStateDict(half)).toThrow(
      "unexpected tensor 'weight_ih_l1_reverse' for a 2-layer unidirectional LSTM",
    )
  })

  it('a gate count that is no RNN, GRU or LSTM', () => {
    const tensors = { weight_ih_l0: t([10, 3]), weight_hh_l0: t([10, 5]) }
    expect(() => fromStateDict(tensors)).toThrow(RangeError)
    expect(() => fromStateDict(tensors)).toThrow(
      /does not describe an RNN \(1 gate\), GRU \(3\) or LSTM \(4\) of hidden size 5/,
    )
  })

  it('nonlinearity on a GRU or LSTM', () => {
    expect(() => fromStateDict(lstm(), { nonlinearity: 'relu' })).toThrow(
      new TypeError('nonlinearity: applies to nn.RNN only, but this model is an LSTM'),
    )
  })

  it('keys of other modules are ignored once the prefix is known', () => {
    const model = fromStateDict(
      { ...lstm('encoder.rnn.'), 'head.weight': t([2, 8]), 'embed.weight': t([10, 3]) },
      { backend: 'js' },
    )
    expect(model.config).toEqual({
      mode: 'LSTM',
      inputSize: 3,
      hiddenSize: 4,
      numLayers: 2,
      bidirectional: false,
      bias: true,
      batchFirst: false,
      projSize: 0,
    })
  })

  it('nn.RNN defaults to tanh when no nonlinearity is given', async () => {
    const c = fixture('rnn_tanh_uni_l1_tm')
    const model = await load(modelPath(c), { backend: 'js' })
    expect(model.config.mode).toBe('RNN_TANH')
  })

  it('fromStateDict checks each tensor and never keeps or changes the caller arrays', () => {
    const tensors = lstm()
    expect(() =>
      fromStateDict({ ...tensors, weight_hh_l0: { data: new Float64Array(64), shape: [16, 4] } as unknown as Tensor }),
    ).toThrow(
      new TypeError("tensors['weight_hh_l0'].data: expected a Float32Array, received Float64Array of length 64"),
    )
    expect(() => fromStateDict({ ...tensors, weight_hh_l0: { data: new Float32Array(63), shape: [16, 4] } })).toThrow(
      new RangeError(
        "tensors['weight_hh_l0'].data: expected length 64 (the product of shape [16, 4]), received length 63",
      ),
    )
    expect(() => fromStateDict(null as unknown as Record<string, Tensor>)).toThrow(TypeError)
    const model = fromStateDict(tensors, { backend: 'js' })
    const x = t([2, 1, 3], 1)
    const before = model.forwardSync(x).output.data.slice()
    tensors.weight_ih_l0.data.fill(5) // changing the caller's arrays afterwards changes nothing
    expect(model.forwardSync(x).output.data).toEqual(before)
  })
})

describe('load options', () => {
  const path = modelPath(fixture('lstm_uni_l1_tm'))
  it.each([
    [
      { backnd: 'js' },
      TypeError,
      "options: unknown option 'backnd' (known options: nonlinearity, batchFirst, prefix, backend, threads, simd)",
    ],
    [{ backend: 'gpu' }, TypeError, "options.backend: expected 'auto', 'native' or 'js', received the string \"gpu\""],
    [{ threads: 0 }, TypeError, 'options.threads: expected a positive integer, received number 0'],
    [{ threads: 5000 }, RangeError, 'options.threads: expected at most 4096, received 5000'],
    [{ batchFirst: 'yes' }, TypeError, 'options.batchFirst: expected a boolean, received the string "yes"'],
    [
      { nonlinearity: 'sigmoid' },
      TypeError,
      "options.nonlinearity: expected 'tanh' or 'relu', received the string \"sigmoid\"",
    ],
    [
      { simd: 'neon' },
      TypeError,
      "options.simd: expected 'auto', 'avx512', 'avx2' or 'generic', received the string \"neon\"",
    ],
  ])('%o', async (options, kind, message) => {
    await expect(load(path, options as never)).rejects.toThrow(new kind(message))
  })
  it('a source that is neither a path nor bytes', async () => {
    await expect(load(42 as never)).rejects.toThrow(
      new TypeError('source: expected a file path or the safetensors bytes (Uint8Array or Buffer), received number 42'),
    )
  })
})

describe.each(engines())('forward arguments on $label', ({ options }) => {
  // The report's model: nn.RNN(25, 50, 4, batch_first=True, bidirectional=True).
  const c = fixture('report_rnn_25_50_4_bi')
  const good = t([15, 5, 25])
  const cases: Array<[string, () => unknown[], ErrorConstructor, string]> = [
    [
      'input of the wrong kind',
      () => [[1, 2, 3]],
      TypeError,
      'input: expected a tensor { data: Float32Array, shape: number[] }, received an array of length 3',
    ],
    [
      'input data not float32',
      () => [{ data: new Float64Array(1875), shape: [15, 5, 25] }],
      TypeError,
      'input.data: expected a Float32Array, received Float64Array of length 1875',
    ],
    [
      'input shape not integers',
      () => [{ data: good.data, shape: [15, 5, 25.5] }],
      TypeError,
      'input.shape: expected an array of non-negative integers, received an array of length 3',
    ],
    [
      'input data.length off',
      () => [{ data: new Float32Array(10), shape: [15, 5, 25] }],
      RangeError,
      'input.data: expected length 1875 (the product of shape [15, 5, 25]), received length 10',
    ],
    [
      'input of rank 4',
      () => [t([1, 15, 5, 25])],
      RangeError,
      'input: expected a 3-D tensor (N, T, inputSize) or a 2-D unbatched (T, inputSize) with inputSize 25, received shape [1, 15, 5, 25]',
    ],
    [
      'input with the wrong inputSize',
      () => [t([15, 5, 24])],
      RangeError,
      'input: expected shape [N, T, 25] with T ≥ 1 and N ≥ 1, received [15, 5, 24]',
    ],
    [
      'input with no time steps',
      () => [t([15, 0, 25])],
      RangeError,
      'input: expected shape [N, T, 25] with T ≥ 1 and N ≥ 1, received [15, 0, 25]',
    ],
    [
      'h0 transposed',
      () => [good, { h0: t([8, 50, 15]) }],
      RangeError,
      'h0: expected shape [8, 15, 50], received [8, 50, 15]',
    ],
    [
      'h0 2-D for batched input',
      () => [good, { h0: t([8, 50]) }],
      RangeError,
      'h0: expected shape [8, 15, 50], received [8, 50]',
    ],
    [
      'c0 on an RNN',
      () => [good, { c0: t([8, 15, 50]) }],
      TypeError,
      'c0: only an LSTM has a cell state, but this model is RNN_TANH',
    ],
    [
      'lengths of the wrong count',
      () => [good, { lengths: [5, 5] }],
      RangeError,
      'lengths: expected 15 entries (one per sequence), received 2',
    ],
    [
      'a length past T',
      () => [good, { lengths: Array(15).fill(6) }],
      RangeError,
      'lengths[0]: expected a length in [1, 5], received 6',
    ],
    [
      'a zero length',
      () => [good, { lengths: [...Array(14).fill(5), 0] }],
      RangeError,
      'lengths[14]: expected a length in [1, 5], received 0',
    ],
    [
      'a fractional length',
      () => [good, { lengths: [...Array(14).fill(5), 2.5] }],
      TypeError,
      'lengths[14]: expected an integer, received number 2.5',
    ],
    [
      'lengths as a Float32Array',
      () => [good, { lengths: new Float32Array(15) }],
      TypeError,
      'lengths: expected an array of integers or an Int32Array, received Float32Array of length 15',
    ],
    [
      'returnLayers not a boolean',
      () => [good, { returnLayers: 1 }],
      TypeError,
      'returnLayers: expected a boolean, received number 1',
    ],
    [
      'an unknown option',
      () => [good, { ho: t([8, 15, 50]) }],
      TypeError,
      "forward options: unknown option 'ho' (known options: h0, c0, lengths, returnLayers)",
    ],
    [
      'options not an object',
      () => [good, 'fast'],
      TypeError,
      'options: expected an object, received the string "fast"',
    ],
  ]
  it.each(cases)('%s', async (_, args, kind, message) => {
    const model = await load(modelPath(c), { batchFirst: true, ...options })
    const a = args() as [Tensor, object]
    const snapshot = a.map((v) => structuredClone(v))
    expect(() => model.forwardSync(...a)).toThrow(new kind(message))
    await expect(model.forward(...a)).rejects.toThrow(new kind(message))
    expect(a).toEqual(snapshot) // the caller's values are untouched
  })

  it('forward after dispose', async () => {
    const model = await load(modelPath(c), { batchFirst: true, ...options })
    model.dispose()
    model.dispose() // twice is fine
    expect(() => model.forwardSync(good)).toThrow('model is disposed')
    await expect(model.forward(good)).rejects.toThrow('model is disposed')
  })
})
