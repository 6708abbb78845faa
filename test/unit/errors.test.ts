// Every bad input gets a clear error of the right class and code, naming the argument, the
// expectation and what came; nothing crashes, and the caller's data is never changed.
import { describe, expect, it } from 'vitest'
import { describe as describeValue } from '../../lib/errors.js'
import { BirnnError, BirnnRangeError, BirnnTypeError, fromStateDict, load } from '../../lib/index.js'
import type { Tensor } from '../../lib/types.js'
import { engines, expectError, fixture, modelPath, rejection, thrown } from '../helpers.js'

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

describe('state_dict contents', () => {
  it('a missing tensor is named with its expected shape', () => {
    const tensors = lstm()
    delete tensors.bias_hh_l1
    expectError(
      thrown(() => fromStateDict(tensors)),
      Error,
      'ERR_BIRNN_STATE_DICT',
      "missing tensor 'bias_hh_l1': expected shape [16]",
    )
  })

  it('a mis-shaped tensor is named with both shapes', () => {
    const tensors = lstm('rnn.')
    tensors['rnn.weight_ih_l1'] = t([16, 5])
    expectError(
      thrown(() => fromStateDict(tensors)),
      RangeError,
      'ERR_BIRNN_STATE_DICT',
      "tensor 'rnn.weight_ih_l1': expected shape [16, 4], received [16, 5]",
    )
  })

  it('two recurrent modules need a prefix', () => {
    const tensors = { ...lstm('enc.lstm.'), ...lstm('dec.gru.') }
    expectError(
      thrown(() => fromStateDict(tensors)),
      Error,
      'ERR_BIRNN_STATE_DICT',
      "found 2 recurrent modules (prefixes 'enc.lstm.', 'dec.gru.'): choose one with the prefix option (birnn: --prefix)",
    )
    expect(fromStateDict(tensors, { prefix: 'dec.gru.', backend: 'js' }).config.numLayers).toBe(2)
    expect(fromStateDict(tensors, { prefix: 'dec.gru', backend: 'js' }).config.numLayers).toBe(2)
  })

  it('a prefix that names no module', () => {
    expectError(
      thrown(() => fromStateDict(lstm('enc.'), { prefix: 'encoder.' })),
      Error,
      'ERR_BIRNN_STATE_DICT',
      "prefix 'encoder.': no tensor 'encoder.weight_ih_l0' in the state_dict; recurrent modules found at prefixes 'enc.'",
    )
  })

  it('a state_dict with no recurrent module', () => {
    expectError(
      thrown(() => fromStateDict({ 'head.weight': t([2, 2]) })),
      Error,
      'ERR_BIRNN_STATE_DICT',
      /no recurrent module found: expected a tensor named like 'weight_ih_l0'/,
    )
  })

  it('a parameter that does not fit the inferred module', () => {
    const tensors = { ...lstm(), weight_hh_l3: t([16, 4]) }
    expectError(
      thrown(() => fromStateDict(tensors)),
      Error,
      'ERR_BIRNN_STATE_DICT',
      "unexpected tensor 'weight_hh_l3' for a 2-layer unidirectional LSTM",
    )
    const half = { ...lstm(), weight_ih_l1_reverse: t([16, 4]) }
    expectError(
      thrown(() => fromStateDict(half)),
      Error,
      'ERR_BIRNN_STATE_DICT',
      "unexpected tensor 'weight_ih_l1_reverse' for a 2-layer unidirectional LSTM",
    )
  })

  it('a gate count that is no RNN, GRU or LSTM', () => {
    const tensors = { weight_ih_l0: t([10, 3]), weight_hh_l0: t([10, 5]) }
    expectError(
      thrown(() => fromStateDict(tensors)),
      RangeError,
      'ERR_BIRNN_STATE_DICT',
      "tensor 'weight_hh_l0': expected [G * hiddenSize, ·] rows with G = 1 (RNN), 3 (GRU) or 4 (LSTM), as many as 'weight_ih_l0' has (10), received shape [10, 5] with hiddenSize 5",
    )
  })

  it('nonlinearity on a GRU or LSTM', () => {
    expectError(
      thrown(() => fromStateDict(lstm(), { nonlinearity: 'relu' })),
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'nonlinearity: applies to nn.RNN only, but this model is an LSTM',
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
    expectError(
      thrown(() =>
        fromStateDict({
          ...tensors,
          weight_hh_l0: { data: new Float64Array(64), shape: [16, 4] } as unknown as Tensor,
        }),
      ),
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      "tensors['weight_hh_l0'].data: expected a Float32Array, received Float64Array of length 64",
    )
    expectError(
      thrown(() => fromStateDict({ ...tensors, weight_hh_l0: { data: new Float32Array(63), shape: [16, 4] } })),
      RangeError,
      'ERR_BIRNN_SHAPE',
      "tensors['weight_hh_l0'].data: expected length 64 (the product of shape [16, 4]), received length 63",
    )
    expectError(
      thrown(() => fromStateDict(null as unknown as Record<string, Tensor>)),
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'tensors: expected a record of tensor name to { data: Float32Array, shape: number[] }, received null',
    )
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
      'ERR_BIRNN_UNKNOWN_OPTION',
      "options: unknown option 'backnd' (known options: nonlinearity, batchFirst, prefix, backend, threads, simd)",
    ],
    [
      { backend: 'gpu' },
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      "options.backend: expected 'auto', 'native', 'wasm' or 'js', received the string \"gpu\"",
    ],
    [
      { threads: 0 },
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'options.threads: expected a positive integer, received number 0',
    ],
    [{ threads: 5000 }, RangeError, 'ERR_BIRNN_OUT_OF_RANGE', 'options.threads: expected at most 4096, received 5000'],
    [
      { batchFirst: 'yes' },
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'options.batchFirst: expected a boolean, received the string "yes"',
    ],
    [
      { nonlinearity: 'sigmoid' },
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      "options.nonlinearity: expected 'tanh' or 'relu', received the string \"sigmoid\"",
    ],
    [
      { simd: 'sve' },
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      "options.simd: expected 'auto', 'avx512', 'avx2', 'neon', 'generic', 'wasm-relaxed-simd' or 'wasm-simd128', received the string \"sve\"",
    ],
    [
      { backend: 'native', simd: 'wasm-simd128' },
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      "options.simd: expected 'auto', 'avx512', 'avx2', 'neon' or 'generic' with backend 'native', received the string \"wasm-simd128\"",
    ],
    [
      { backend: 'wasm', simd: 'avx2' },
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      "options.simd: expected 'auto', 'wasm-relaxed-simd' or 'wasm-simd128' with backend 'wasm', received the string \"avx2\"",
    ],
    [
      { backend: 'js', simd: 'generic' },
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      "options.simd: expected 'auto' with backend 'js', received the string \"generic\"",
    ],
  ])('%o', async (options, kind, code, message) => {
    expectError(await rejection(load(path, options as never)), kind, code, message)
  })
  it('a source that is neither a path nor bytes', async () => {
    expectError(
      await rejection(load(42 as never)),
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'source: expected a file path or the safetensors bytes (Uint8Array or Buffer), received number 42',
    )
  })
  it('a missing file keeps the file system error', async () => {
    await expect(load('/nonexistent/model.safetensors')).rejects.toMatchObject({ code: 'ENOENT' })
  })
})

describe.each(engines())('forward arguments on $label', ({ options }) => {
  // The report's model: nn.RNN(25, 50, 4, batch_first=True, bidirectional=True).
  const c = fixture('report_rnn_25_50_4_bi')
  const good = t([15, 5, 25])
  const cases: Array<[string, () => unknown[], ErrorConstructor, string, string]> = [
    [
      'input of the wrong kind',
      () => [[1, 2, 3]],
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'input: expected a tensor { data: Float32Array, shape: number[] }, received an array of length 3',
    ],
    [
      'input data not float32',
      () => [{ data: new Float64Array(1875), shape: [15, 5, 25] }],
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'input.data: expected a Float32Array, received Float64Array of length 1875',
    ],
    [
      'input shape not integers',
      () => [{ data: good.data, shape: [15, 5, 25.5] }],
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'input.shape: expected an array of non-negative integers, received an array of length 3',
    ],
    [
      'input data.length off',
      () => [{ data: new Float32Array(10), shape: [15, 5, 25] }],
      RangeError,
      'ERR_BIRNN_SHAPE',
      'input.data: expected length 1875 (the product of shape [15, 5, 25]), received length 10',
    ],
    [
      'input of rank 4',
      () => [t([1, 15, 5, 25])],
      RangeError,
      'ERR_BIRNN_SHAPE',
      'input: expected a 3-D tensor (N, T, inputSize) or a 2-D unbatched (T, inputSize) with inputSize 25, received shape [1, 15, 5, 25]',
    ],
    [
      'input with the wrong inputSize',
      () => [t([15, 5, 24])],
      RangeError,
      'ERR_BIRNN_SHAPE',
      'input: expected shape [N, T, 25] with T ≥ 1 and N ≥ 1, received [15, 5, 24]',
    ],
    [
      'input with no time steps',
      () => [t([15, 0, 25])],
      RangeError,
      'ERR_BIRNN_SHAPE',
      'input: expected shape [N, T, 25] with T ≥ 1 and N ≥ 1, received [15, 0, 25]',
    ],
    [
      'h0 transposed',
      () => [good, { h0: t([8, 50, 15]) }],
      RangeError,
      'ERR_BIRNN_SHAPE',
      'h0: expected shape [8, 15, 50], received [8, 50, 15]',
    ],
    [
      'h0 2-D for batched input',
      () => [good, { h0: t([8, 50]) }],
      RangeError,
      'ERR_BIRNN_SHAPE',
      'h0: expected shape [8, 15, 50], received [8, 50]',
    ],
    [
      'c0 on an RNN',
      () => [good, { c0: t([8, 15, 50]) }],
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'c0: only an LSTM has a cell state, but this model is RNN_TANH',
    ],
    [
      'lengths of the wrong count',
      () => [good, { lengths: [5, 5] }],
      RangeError,
      'ERR_BIRNN_SHAPE',
      'lengths: expected 15 entries (one per sequence), received 2',
    ],
    [
      'a length past T',
      () => [good, { lengths: Array(15).fill(6) }],
      RangeError,
      'ERR_BIRNN_OUT_OF_RANGE',
      'lengths[0]: expected a length in [1, 5], received 6',
    ],
    [
      'a zero length',
      () => [good, { lengths: [...Array(14).fill(5), 0] }],
      RangeError,
      'ERR_BIRNN_OUT_OF_RANGE',
      'lengths[14]: expected a length in [1, 5], received 0',
    ],
    [
      'a fractional length',
      () => [good, { lengths: [...Array(14).fill(5), 2.5] }],
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'lengths[14]: expected an integer, received number 2.5',
    ],
    [
      'lengths as a Float32Array',
      () => [good, { lengths: new Float32Array(15) }],
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'lengths: expected an array of integers or an Int32Array, received Float32Array of length 15',
    ],
    [
      'returnLayers not a boolean',
      () => [good, { returnLayers: 1 }],
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'returnLayers: expected a boolean, received number 1',
    ],
    [
      'an unknown option',
      () => [good, { ho: t([8, 15, 50]) }],
      TypeError,
      'ERR_BIRNN_UNKNOWN_OPTION',
      "forward options: unknown option 'ho' (known options: h0, c0, lengths, returnLayers, output)",
    ],
    [
      'output not a kind',
      () => [good, { output: 'first' }],
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      "output: expected 'full', 'last' or 'mean', received the string \"first\"",
    ],
    [
      'output not a string',
      () => [good, { output: 1 }],
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      "output: expected 'full', 'last' or 'mean', received number 1",
    ],
    [
      'options not an object',
      () => [good, 'fast'],
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'options: expected an object, received the string "fast"',
    ],
    [
      'options an array',
      () => [good, []],
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'options: expected an object, received an array of length 0',
    ],
    [
      'an unknown option inherited',
      () => [good, Object.create({ ho: t([8, 15, 50]) })],
      TypeError,
      'ERR_BIRNN_UNKNOWN_OPTION',
      "forward options: unknown option 'ho' (known options: h0, c0, lengths, returnLayers, output)",
    ],
    [
      'input shape with a hole', // every() and reduce() skip holes: it passed, and the JS engine returned nothing
      () => {
        const shape = [15, 5, 25]
        delete shape[1]
        return [{ data: good.data, shape }]
      },
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      'input.shape: expected an array of non-negative integers, received an array of length 3',
    ],
  ]
  it.each(cases)('%s', async (_, args, kind, code, message) => {
    const model = await load(modelPath(c), { batchFirst: true, ...options })
    const a = args() as [Tensor, object]
    const snapshot = a.map((v) => structuredClone(v))
    expectError(
      thrown(() => model.forwardSync(...a)),
      kind,
      code,
      message,
    )
    expectError(await rejection(model.forward(...a)), kind, code, message)
    expect(a).toEqual(snapshot) // the caller's values are untouched
  })

  it('input data detached by a transfer', async () => {
    const model = await load(modelPath(c), { batchFirst: true, ...options })
    const x = t([15, 5, 25])
    structuredClone(x.data.buffer, { transfer: [x.data.buffer] })
    const message = 'input.data: expected a Float32Array, received a Float32Array whose buffer is detached'
    expectError(
      thrown(() => model.forwardSync(x)),
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      message,
    )
    expectError(await rejection(model.forward(x)), TypeError, 'ERR_BIRNN_INVALID_ARG', message)
  })

  it('each argument is read once: a getter cannot change what was checked', async () => {
    const model = await load(modelPath(c), { batchFirst: true, ...options })
    const fives = Array(14).fill(5)
    let reads = 0
    // A length that reads 2 the first time and 50 (past T) after.
    const lengths = () => {
      let read = false
      return Object.defineProperty([...fives], 14, {
        enumerable: true,
        get: () => {
          reads++
          const value = read ? 50 : 2
          read = true
          return value
        },
      })
    }
    const want = model.forwardSync(good, { lengths: [...fives, 2] })
    expect(model.forwardSync(good, { lengths: lengths() }).output.data).toEqual(want.output.data)
    expect((await model.forward(good, { lengths: lengths() })).output.data).toEqual(want.output.data)
    expect(reads).toBe(2) // once a call
    // A getter that detaches the input after the input was checked.
    const detaching = (x: Tensor) => ({
      shape: [8, 15, 50],
      get data() {
        structuredClone(x.data.buffer, { transfer: [x.data.buffer] })
        return new Float32Array(8 * 15 * 50)
      },
    })
    const message =
      'input.data: expected a Float32Array of length 1875, as checked, received a Float32Array whose buffer is detached'
    const x1 = t([15, 5, 25])
    expectError(
      thrown(() => model.forwardSync(x1, { h0: detaching(x1) })),
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      message,
    )
    const x2 = t([15, 5, 25])
    expectError(await rejection(model.forward(x2, { h0: detaching(x2) })), TypeError, 'ERR_BIRNN_INVALID_ARG', message)
  })

  it("a key someone added to Object.prototype is nobody's option", async () => {
    const model = await load(modelPath(c), { batchFirst: true, ...options })
    const prototype = Object.prototype as Record<string, unknown>
    prototype.addedByAnotherLibrary = 1
    try {
      expect(model.forwardSync(good, {}).output.shape).toEqual([15, 5, 100])
    } finally {
      delete prototype.addedByAnotherLibrary
    }
  })

  it('forward after dispose', async () => {
    const model = await load(modelPath(c), { batchFirst: true, ...options })
    model.dispose()
    model.dispose() // twice is fine
    const message = 'model is disposed: load it again to run it'
    expectError(
      thrown(() => model.forwardSync(good)),
      Error,
      'ERR_BIRNN_DISPOSED',
      message,
    )
    expectError(await rejection(model.forward(good)), Error, 'ERR_BIRNN_DISPOSED', message)
  })

  it('an LSTM projection as wide as the hidden state is refused at load, as nn.LSTM refuses it', () => {
    const tensors = { ...lstm(), weight_hr_l0: t([4, 4]), weight_hr_l1: t([4, 4]) }
    expectError(
      thrown(() => fromStateDict(tensors, options)),
      RangeError,
      'ERR_BIRNN_STATE_DICT',
      "tensor 'weight_hr_l0': expected [proj_size, hidden_size] with proj_size smaller than hidden_size, as nn.LSTM requires, received shape [4, 4]",
    )
  })
})

describe('the error family', () => {
  it('every class is its built-in and a BirnnError, with a code', () => {
    const type = new BirnnTypeError('ERR_BIRNN_INVALID_ARG', 'x')
    const range = new BirnnRangeError('ERR_BIRNN_SHAPE', 'y')
    const plain = new BirnnError('ERR_BIRNN_DISPOSED', 'z')
    expect(type).toBeInstanceOf(TypeError)
    expect(range).toBeInstanceOf(RangeError)
    for (const error of [type, range, plain]) expect(error).toBeInstanceOf(BirnnError)
    expect(new TypeError('x')).not.toBeInstanceOf(BirnnError)
    expect(Object.assign(new Error('x'), { code: 'ENOENT' })).not.toBeInstanceOf(BirnnError)
  })
})

describe('describing a value in a message', () => {
  it("names an object's kind from its prototype, never from its own keys (parsed JSON may hold any)", () => {
    expect(describeValue(JSON.parse('{"constructor": 1}'))).toBe('an object')
    expect(describeValue(JSON.parse(`{"constructor": {"name": "${'x'.repeat(100)}"}}`))).toBe('an object')
    expect(describeValue(Object.create(null))).toBe('an object')
    expect(describeValue(new Map())).toBe('a Map')
  })
})
