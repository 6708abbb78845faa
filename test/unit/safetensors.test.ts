// Untrusted safetensors files: every malformed one is refused with ERR_BIRNN_SAFETENSORS (or,
// when the file is sound but its tensors are not a recurrent module, ERR_BIRNN_STATE_DICT), and
// the fuzz below proves the checks are reached, not just that something threw.
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { load, type Model } from '../../lib/index.js'
import type { Tensor } from '../../lib/types.js'
import { encodeTensors, expectError, fixture, modelPath, rejection, rng, safetensorsBytes } from '../helpers.js'

/** A valid 1-layer LSTM state_dict (input 3, hidden 4). */
const lstm = (): Record<string, Tensor> => ({
  weight_ih_l0: { data: new Float32Array(48).fill(0.1), shape: [16, 3] },
  weight_hh_l0: { data: new Float32Array(64).fill(0.1), shape: [16, 4] },
  weight_ih_l1: { data: new Float32Array(64).fill(0.1), shape: [16, 4] },
  weight_hh_l1: { data: new Float32Array(64).fill(0.1), shape: [16, 4] },
})

describe('untrusted safetensors files', () => {
  const f32 = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer)
  const cases: Array<[string, Uint8Array, string | RegExp]> = [
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
    [
      // Given by mistake for a model: named for what they are, not as a header length of petabytes.
      'a NumPy .npy array',
      readFileSync(new URL('../../examples/input.npy', import.meta.url)),
      'a NumPy .npy array, not a model: expected a safetensors file, a PyTorch checkpoint (torch.save) or an ONNX export',
    ],
    [
      'a text file (JSONL input)',
      new TextEncoder().encode('[[0.5, 1], [2, 3]]\n'),
      /^text starting "\[\[0\.5, 1\], \[2, 3\]\]\\n", not a model: expected a safetensors file/,
    ],
    ['invalid JSON', safetensorsBytes('{"a": '), /header is not valid UTF-8 JSON/],
    ['a header that is not an object', safetensorsBytes('[1, 2]'), /header is not a JSON object/],
    [
      'an unknown dtype',
      safetensorsBytes({ w: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, f32),
      /^safetensors: tensor 'w': expected a dtype of F64, F32, F16, BF16, .*, BOOL, received the string "F128"$/,
    ],
    [
      'a negative dimension',
      safetensorsBytes({ w: { dtype: 'F32', shape: [-4], data_offsets: [0, 16] } }, f32),
      "safetensors: tensor 'w': expected a shape of non-negative integers, received [-4]",
    ],
    [
      'reversed offsets',
      safetensorsBytes({ w: { dtype: 'F32', shape: [4], data_offsets: [16, 0] } }, f32),
      "safetensors: tensor 'w': expected data_offsets [begin, end] with 0 <= begin <= end, received [16, 0]",
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
      // JSON.stringify of these, for the message, overflowed the stack ('internal error' in the CLI).
      'a shape nested 200,000 deep',
      safetensorsBytes(
        `{"w": {"dtype": "F32", "shape": ${'['.repeat(200_000)}${']'.repeat(200_000)}, "data_offsets": [0, 16]}}`,
        f32,
      ),
      "safetensors: tensor 'w': expected a shape of non-negative integers, received an array of length 1",
    ],
    [
      'a dtype nested 200,000 deep',
      safetensorsBytes(
        `{"w": {"dtype": ${'['.repeat(200_000)}${']'.repeat(200_000)}, "shape": [4], "data_offsets": [0, 16]}}`,
        f32,
      ),
      /^safetensors: tensor 'w': expected a dtype of .*, received an array of length 1$/,
    ],
    [
      'a dtype named like a property of every object',
      safetensorsBytes({ w: { dtype: 'constructor', shape: [4], data_offsets: [0, 16] } }, f32),
      /^safetensors: tensor 'w': expected a dtype of .*, received the string "constructor"$/,
    ],
    [
      'a huge shape in a small file',
      safetensorsBytes({ w: { dtype: 'F32', shape: [1e9, 1e9], data_offsets: [0, 16] } }, f32),
      /tensor 'w' of shape \[1000000000, 1000000000\] and dtype F32 needs/,
    ],
  ]
  it.each(cases)('%s', async (_, bytes, message) => {
    expectError(await rejection(load(bytes)), Error, 'ERR_BIRNN_SAFETENSORS', message)
  })

  it('a recurrent tensor stored with an integer dtype', async () => {
    const tensors = lstm()
    const bytes = encodeTensors(tensors)
    // Rewrite weight_hh_l1's dtype to I32 (same byte size) in the header.
    const text = new TextDecoder().decode(bytes).replace(/("weight_hh_l1":\{"dtype":)"F32"/, '$1"I32"')
    expectError(
      await rejection(load(new TextEncoder().encode(text))),
      Error,
      'ERR_BIRNN_SAFETENSORS',
      "safetensors: tensor 'weight_hh_l1' has dtype I32; expected one of F32, F16, BF16, F64",
    )
  })
})

describe('the nonlinearity birnn convert records in __metadata__ (a state_dict cannot say it)', () => {
  /** The file encodeTensors() writes, with this __metadata__. */
  const withMetadata = (tensors: Record<string, Tensor>, metadata: unknown) => {
    const bytes = encodeTensors(tensors)
    const length = Number(new DataView(bytes.buffer).getBigUint64(0, true))
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)))
    return safetensorsBytes({ __metadata__: metadata, ...header }, bytes.subarray(8 + length))
  }
  /** A 1-layer nn.RNN state_dict (input 3, hidden 4) of ones. */
  const rnn = (metadata: unknown) =>
    withMetadata(
      {
        weight_ih_l0: { data: new Float32Array(12).fill(1), shape: [4, 3] },
        weight_hh_l0: { data: new Float32Array(16).fill(1), shape: [4, 4] },
      },
      metadata,
    )
  const x = { data: new Float32Array([-1, -2, -3]), shape: [1, 1, 3] }

  it("'relu' is taken, and an option that contradicts it refused", async () => {
    const model = await load(rnn({ format: 'pt', nonlinearity: 'relu' }))
    expect(model.config.mode).toBe('RNN_RELU')
    expect([...model.forwardSync(x).output.data]).toEqual([0, 0, 0, 0])
    expect((await load(rnn({ nonlinearity: 'relu' }), { nonlinearity: 'relu' })).config.mode).toBe('RNN_RELU')
    expectError(
      await rejection(load(rnn({ nonlinearity: 'relu' }), { nonlinearity: 'tanh' })),
      TypeError,
      'ERR_BIRNN_INVALID_ARG',
      "nonlinearity: expected 'relu' or nothing, as the file's RNN computes, received 'tanh'",
    )
    expect((await load(rnn({ nonlinearity: 'tanh' }))).config.mode).toBe('RNN_TANH')
    expect((await load(rnn({ other: 'relu' }))).config.mode).toBe('RNN_TANH')
  })

  it('is for an nn.RNN only: an LSTM with it loads', async () => {
    expect((await load(withMetadata(lstm(), { nonlinearity: 'tanh' }))).config.mode).toBe('LSTM')
  })

  it("another tool's value there is not birnn's to judge: ignored", async () => {
    expect((await load(rnn({ nonlinearity: 'gelu' }))).config.mode).toBe('RNN_TANH')
    expect((await load(rnn({ nonlinearity: 'ReLU' }), { nonlinearity: 'relu' })).config.mode).toBe('RNN_RELU')
    expect((await load(withMetadata(lstm(), { nonlinearity: 'sigmoid' }))).config.mode).toBe('LSTM')
  })
})

// Structured fuzzing: parse a real fixture, change one or two fields of its header (or its framing),
// write it back and load it. Each file must load and run, or be refused with a documented code;
// the counts show which check refused it, and every check must be reached many times.
const FUZZ_CASES = Number(process.env.BIRNN_FUZZ_CASES ?? 10_000)

const CHECKS: Array<[string, RegExp]> = [
  ['file too short', /too short for the 8-byte header length/],
  ['header length', /header length \d+ exceeds/],
  ['header JSON', /header is not valid UTF-8 JSON/],
  ['header object', /header is not a JSON object/],
  ['dtype', /expected a dtype of/],
  ['shape', /expected a shape of/],
  ['offsets', /expected data_offsets/],
  ['offsets past the data', /extend past the \d+ bytes of data/],
  ['size vs offsets', /needs \d+ bytes, but its data_offsets/],
  ['overlap', /overlap in the data section/],
  ['not a float dtype', /; expected one of F32, F16, BF16, F64/],
  ['state_dict', /./],
]

function mutate(original: Uint8Array, r: ReturnType<typeof rng>): { bytes: Uint8Array; kind: string } {
  const headerLength = Number(new DataView(original.buffer, original.byteOffset).getBigUint64(0, true))
  const header = JSON.parse(new TextDecoder().decode(original.subarray(8, 8 + headerLength)))
  const data = original.subarray(8 + headerLength)
  const names = Object.keys(header).filter((n) => n !== '__metadata__')
  const name = names[r.int(0, names.length - 1)]
  const entry = header[name]
  const pick = <T>(values: T[]): T => values[r.int(0, values.length - 1)]
  const size = () => pick([0, 1, 2, 3, 4, 7, 16, 2 ** 31, 2 ** 32 + 4, 2 ** 53, -1, -16, 0.5, 1e308])
  const kind = pick(['offsets', 'dtype', 'shape', 'overlap', 'framing', 'header', 'names', 'truncate', 'metadata'])
  let bytes: Uint8Array | undefined
  switch (kind) {
    case 'offsets': {
      const [begin, end] = entry.data_offsets
      entry.data_offsets = pick([
        [begin, end + pick([1, 4, -4])],
        [end, begin],
        [begin + 4, end + 4],
        [size(), size()],
        [begin, data.length + r.int(1, 64)],
        [begin],
        'x',
        [begin, null],
      ])
      break
    }
    case 'dtype':
      entry.dtype = pick(['F16', 'BF16', 'F64', 'I32', 'U8', 'BOOL', 'F8_E4M3', 'I64', 'f32', 'F128', '', 7, null])
      break
    case 'shape': {
      const shape = [...entry.shape]
      shape[r.int(0, shape.length - 1)] = size()
      entry.shape = pick([shape, [...shape, 1], shape.slice(1), [], 'shape', [2 ** 40, 2 ** 40], [-1, ...shape]])
      break
    }
    case 'overlap': {
      const other = header[pick(names)]
      const [begin, end] = other.data_offsets
      const width = entry.data_offsets[1] - entry.data_offsets[0]
      const at = Math.max(0, Math.min(begin + r.int(-width, end - begin), data.length - width))
      entry.data_offsets = [at, at + width]
      break
    }
    case 'framing': {
      bytes = Uint8Array.from(original)
      const length = pick([0, 1, 2, headerLength - 1, headerLength + 1, original.length, 2 ** 40, 2 ** 64 - 1])
      new DataView(bytes.buffer).setBigUint64(0, BigInt(length), true)
      if (r.next() < 0.3) bytes = bytes.subarray(0, r.int(0, 12))
      break
    }
    case 'header':
      bytes = safetensorsBytes(pick(['[1, 2]', '"text"', '7', 'null', 'true', '{"a": [}', '\u00ff']), data)
      break
    case 'names': {
      const renamed = pick(['', '__metadata__', 'ωeight_ih_l0', `${name}\u0000`, `x.${name}`, name.toUpperCase()])
      header[renamed] = entry
      if (renamed !== name) delete header[name]
      break
    }
    case 'truncate':
      bytes = original.subarray(0, r.int(0, original.length - 1))
      break
    case 'metadata':
      header.__metadata__ = pick([null, 7, 'text', [1, 2], { nested: { deep: true } }])
      break
  }
  return { bytes: bytes ?? safetensorsBytes(header, data), kind }
}

describe('structured fuzzing of safetensors headers', () => {
  it(`${FUZZ_CASES} mutated files: each loads and runs, or is refused with a documented code by a named check`, async () => {
    const original = readFileSync(modelPath(fixture('gru_bi_l2_nobias_bf_h0_packed')))
    const r = rng(2026)
    const reached = new Map<string, number>()
    let loaded = 0
    for (let i = 0; i < FUZZ_CASES; i++) {
      const { bytes, kind } = mutate(original, r)
      let model: Model
      try {
        model = await load(bytes, { backend: 'js' })
      } catch (error) {
        const { code, message } = error as { code?: string; message: string }
        expect(['ERR_BIRNN_SAFETENSORS', 'ERR_BIRNN_STATE_DICT'], message).toContain(code)
        const check =
          code === 'ERR_BIRNN_STATE_DICT' ? 'state_dict' : CHECKS.find(([, pattern]) => pattern.test(message))?.[0]
        expect(check, message).toBeDefined()
        reached.set(check!, (reached.get(check!) ?? 0) + 1)
        continue
      }
      const I = model.config.inputSize
      // A shifted frame can make valid but meaningless weights (NaN included): it must still run.
      const { output } = model.forwardSync({ data: new Float32Array(2 * I).fill(0.5), shape: [2, 1, I] })
      expect(output.data.length, kind).toBe(2 * model.config.hiddenSize * (model.config.bidirectional ? 2 : 1))
      loaded++
    }
    const counts = Object.fromEntries([...reached].sort((a, b) => b[1] - a[1]))
    console.log(`safetensors fuzz: ${FUZZ_CASES} files, ${loaded} loaded; refused by`, counts)
    // Every check is reached, and most files get past the JSON parse to the checks behind it.
    for (const [check] of CHECKS) expect(reached.get(check) ?? 0, check).toBeGreaterThanOrEqual(FUZZ_CASES / 2000)
    expect(reached.get('header JSON') ?? 0).toBeLessThan(FUZZ_CASES / 10)
    expect(loaded).toBeGreaterThan(0)
  })
})
