// The restricted unpickler (lib/loading/pickle.ts): what a checkpoint holds reads back as values;
// every global outside the allowlist, every opcode a checkpoint never uses and every malformed
// stream is refused with ERR_BIRNN_CHECKPOINT; and a seeded fuzz of mutated pickles never
// throws anything else, never hangs and never allocates without bound.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { unzipSync } from 'fflate'
import { describe, expect, it } from 'vitest'
import { BirnnError } from '../../lib/errors.js'
import {
  PickleDict,
  type PickleStorage,
  type PickleTensor,
  type PickleTuple,
  type PickleValue,
  unpickle,
} from '../../lib/loading/pickle.js'
import { expectError, fixturesDir, rng, thrown } from '../helpers.js'
import { mutatePickle } from './pickle-mutations.js'

const enc = new TextEncoder()
/** Concatenates opcodes (numbers), text (UTF-8) and byte arrays into a pickle. */
function pickle(...parts: Array<number | string | Uint8Array | number[]>): Uint8Array {
  const chunks = parts.map((p) =>
    typeof p === 'number' ? Uint8Array.of(p) : typeof p === 'string' ? enc.encode(p) : Uint8Array.from(p),
  )
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.length
  }
  return out
}
const u32 = (n: number) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff]
const str = (s: string) => pickle(0x58, u32(enc.encode(s).length), s)
const storages = (key: string, dtype: string, numel: number): PickleStorage => ({ kind: 'storage', key, dtype, numel })
const noStorage = () => {
  throw new Error('no storage expected')
}
const refused = (bytes: Uint8Array, message: string | RegExp) =>
  expectError(
    thrown(() => unpickle(bytes, storages)),
    Error,
    'ERR_BIRNN_CHECKPOINT',
    message,
  )

describe('values a checkpoint holds', () => {
  it('dicts, lists, tuples, numbers, strings, None and booleans', () => {
    const bytes = pickle(
      0x80,
      2,
      0x7d, // {}
      0x28, // MARK
      str('epoch'),
      0x4b,
      3,
      str('loss'),
      0x47,
      [0x3f, 0xd0, 0, 0, 0, 0, 0, 0], // 0.25, big-endian
      str('list'),
      0x5d,
      0x28,
      0x4e,
      0x88,
      0x89,
      0x4a,
      u32(-5 >>> 0),
      0x65, // [None, True, False, -5]
      str('tuple'),
      0x4d,
      [0x34, 0x12],
      0x8c,
      2,
      'hi',
      0x86, // (0x1234, 'hi')
      str('big'),
      0x8a,
      9,
      [0, 0, 0, 0, 0, 0, 0, 0, 1], // 2**64
      0x75, // SETITEMS
      0x2e,
    )
    const value = unpickle(bytes, noStorage) as PickleDict
    expect(value).toBeInstanceOf(PickleDict)
    expect(value.entries.get('epoch')).toBe(3)
    expect(value.entries.get('loss')).toBe(0.25)
    expect(value.entries.get('list')).toEqual([null, true, false, -5])
    expect((value.entries.get('tuple') as PickleTuple).items).toEqual([0x1234, 'hi'])
    expect(value.entries.get('big')).toBe(2n ** 64n)
  })

  it('an OrderedDict of tensors, memo and persistent storages as torch.save writes them', () => {
    const bytes = pickle(
      0x80,
      2,
      'ccollections\nOrderedDict\n',
      0x71,
      0,
      0x29,
      0x52, // OrderedDict()
      0x28,
      str('w'),
      'ctorch._utils\n_rebuild_tensor_v2\n',
      0x28,
      0x28,
      str('storage'),
      'ctorch\nHalfStorage\n',
      str('0'),
      str('cpu'),
      0x4b,
      6,
      0x74,
      0x51, // BINPERSID
      0x4b,
      1, // offset
      0x4b,
      2,
      0x4b,
      2,
      0x86, // size (2, 2)
      0x4b,
      1,
      0x4b,
      2,
      0x86, // stride (1, 2): a transposed view
      0x89,
      0x68,
      0,
      0x29,
      0x52, // OrderedDict() as backward hooks
      0x74,
      0x52,
      0x75,
      0x2e,
    )
    const value = unpickle(bytes, storages) as PickleDict
    const tensor = value.entries.get('w') as PickleTensor
    expect(tensor.kind).toBe('tensor')
    expect(tensor.storage).toEqual(storages('0', 'F16', 6))
    expect([tensor.offset, tensor.size, tensor.stride]).toEqual([1, [2, 2], [1, 2]])
  })

  it("what PyTorch's weights_only also takes, under Python 2 names too: inert values", () => {
    const bytes = pickle(
      0x80,
      2,
      0x7d,
      0x28,
      str('device'),
      'ctorch\ndevice\n',
      str('cuda'),
      0x4b,
      1,
      0x86,
      0x52, // torch.device('cuda', 1)
      str('set'),
      'c__builtin__\nset\n',
      0x5d,
      0x28,
      str('a'),
      str('b'),
      0x65,
      0x85,
      0x52, // set(['a', 'b'])
      str('bytearray'),
      'cbuiltins\nbytearray\n',
      0x43,
      2,
      'xy',
      0x85,
      0x52, // bytearray(b'xy')
      str('complex'),
      'c__builtin__\ncomplex\n',
      0x47,
      [0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
      0x47,
      [0x40, 0, 0, 0, 0, 0, 0, 0],
      0x86,
      0x52, // complex(1.0, 2.0)
      str('counter'),
      'ccollections\nCounter\n',
      0x7d,
      str('a'),
      0x4b,
      2,
      0x73,
      0x85,
      0x52, // Counter({'a': 2})
      str('parameter'),
      'ctorch._utils\n_rebuild_parameter_with_state\n',
      0x28,
      'ctorch._utils\n_rebuild_tensor\n',
      0x28,
      0x28,
      str('storage'),
      'ctorch\nFloatStorage\n',
      str('0'),
      str('cpu'),
      0x4b,
      4,
      0x74,
      0x51,
      0x4b,
      0,
      0x4b,
      4,
      0x85,
      0x4b,
      1,
      0x85,
      0x74,
      0x52, // a tensor of 4 elements
      0x88,
      0x7d,
      0x7d, // requires_grad, hooks, attributes
      0x74,
      0x52,
      0x75,
      0x2e,
    )
    const value = unpickle(bytes, storages) as PickleDict
    expect(value.entries.get('device')).toBe('cuda:1')
    expect(value.entries.get('set')).toEqual(['a', 'b'])
    expect(value.entries.get('bytearray')).toEqual(Uint8Array.from([0x78, 0x79]))
    expect((value.entries.get('complex') as PickleTuple).items).toEqual([1, 2])
    expect((value.entries.get('counter') as PickleDict).entries.get('a')).toBe(2)
    expect((value.entries.get('parameter') as PickleTensor).size).toEqual([4])
  })

  it('a tuple of scalars as a dict key, as its text', () => {
    const bytes = pickle(0x80, 2, 0x7d, 0x28, 0x4b, 1, str('a'), 0x4e, 0x88, 0x74, 0x4b, 7, 0x73, 0x2e)
    expect([...(unpickle(bytes, noStorage) as PickleDict).entries]).toEqual([['(1, a, None, True)', 7]])
  })
})

describe('refused', () => {
  const advice = "save the weights instead: torch.save(model.state_dict(), 'model.pt') (or convert to safetensors)"
  const rule =
    "a checkpoint may hold only tensors, containers, numbers and strings (PyTorch's weights_only rule), and birnn never runs code from a file"
  it.each([
    ['os.system by GLOBAL', pickle(0x80, 2, 'cposix\nsystem\n'), 'posix.system', 16],
    ['builtins.eval by GLOBAL', pickle(0x80, 2, 'cbuiltins\neval\n'), 'builtins.eval', 17],
    [
      'os.system by STACK_GLOBAL (protocol 4)',
      pickle(0x80, 4, 0x8c, 2, 'os', 0x8c, 6, 'system', 0x93),
      'os.system',
      15,
    ],
    ['a custom class', pickle(0x80, 2, 'c__main__\nMyModel\n'), '__main__.MyModel', 20],
    ['a pickled nn.Module', pickle(0x80, 2, 'ctorch.nn.modules.rnn\nLSTM\n'), 'torch.nn.modules.rnn.LSTM', 29],
    [
      'torch.load inside a pickle',
      pickle(0x80, 2, 'ctorch.storage\n_load_from_bytes\n'),
      'torch.storage._load_from_bytes',
      34,
    ],
  ])('%s', (_, bytes, name, at) => {
    refused(bytes, `checkpoint: data.pkl at byte ${at}: refused the global '${name}': ${rule}; ${advice}`)
  })

  it.each([
    ['INST', 0x69],
    ['OBJ', 0x6f],
    ['NEWOBJ', 0x81],
    ['NEWOBJ_EX', 0x92],
    ['EXT1', 0x82],
    ['PERSID', 0x50],
    ['NEXT_BUFFER', 0x97],
  ])('opcode %s', (name, op) => {
    refused(pickle(0x80, 2, op), `checkpoint: data.pkl at byte 2: opcode ${name} is not one a tensor checkpoint uses`)
  })

  it.each([
    [
      'a string longer than the stream',
      pickle(0x80, 2, 0x58, u32(1e9)),
      /byte 7: expected 1000000000 more bytes, received 0/,
    ],
    [
      'an integer of 100 bytes',
      pickle(0x80, 2, 0x8b, u32(100)),
      /an integer of 100 bytes is longer than a checkpoint's \(64 at most\)/,
    ],
    ['a memo entry never stored', pickle(0x80, 2, 0x68, 7), /memo entry 7 was never stored/],
    ['no STOP', pickle(0x80, 2, 0x4e), /the pickle ends without a STOP opcode/],
    ['POP on an empty stack', pickle(0x80, 2, 0x30), /the stack is empty/],
    ['TUPLE without a MARK', pickle(0x80, 2, 0x74), /no MARK to pop to/],
    ['REDUCE of a value', pickle(0x80, 2, 0x4e, 0x29, 0x52), /REDUCE calls None, not an allowed global/],
    ['invalid UTF-8', pickle(0x80, 2, 0x8c, 1, [0xff]), /a string is not valid UTF-8/],
    [
      'a list as a dict key',
      pickle(0x80, 2, 0x7d, 0x5d, 0x4e, 0x73),
      /a dict key is a list, which a checkpoint never uses/,
    ],
    [
      'a tensor past its storage',
      pickle(
        0x80,
        2,
        'ctorch._utils\n_rebuild_tensor\n',
        0x28,
        0x28,
        str('storage'),
        'ctorch\nFloatStorage\n',
        str('0'),
        str('cpu'),
        0x4b,
        4,
        0x74,
        0x51,
        0x4b,
        0,
        0x4b,
        3,
        0x4b,
        3,
        0x86,
        0x4b,
        3,
        0x4b,
        1,
        0x86,
        0x74,
        0x52,
      ),
      "checkpoint: tensor of size (3, 3), stride (3, 1) at offset 0: expected its elements within the storage's 4, received a last element at 8",
    ],
    [
      'an OrderedDict called with arguments',
      pickle(0x80, 2, 'ccollections\nOrderedDict\n', 0x4b, 1, 0x85, 0x52),
      'checkpoint: data.pkl: collections.OrderedDict called with 1 arguments it does not take',
    ],
    [
      'a torch.device of a number',
      pickle(0x80, 2, 'ctorch\ndevice\n', 0x4b, 1, 0x85, 0x52),
      'checkpoint: data.pkl: torch.device called with 1 arguments it does not take',
    ],
    [
      // 334 bytes of DUP, TUPLE2 made a key whose text doubled 40 times: 48 s, then a RangeError.
      'a dict key of a tuple nested 40 times, each level its item twice',
      pickle(0x80, 2, 0x7d, 0x4b, 1, ...Array(40).fill([0x32, 0x86]).flat(), 0x4e, 0x73, 0x2e),
      `checkpoint: data.pkl: expected a dict key that is a tuple of numbers, strings, booleans or None, received a tuple holding a tuple`,
    ],
    [
      'a dict key of 200,000 nested tuples',
      pickle(0x80, 2, 0x7d, 0x4b, 1, new Uint8Array(200_000).fill(0x85), 0x4e, 0x73, 0x2e),
      'checkpoint: data.pkl: expected a dict key that is a tuple of numbers, strings, booleans or None, received a tuple holding a tuple',
    ],
    [
      'a tuple dict key longer than 1024 characters',
      pickle(0x80, 2, 0x7d, str('k'.repeat(600)), 0x32, 0x86, 0x4e, 0x73, 0x2e),
      'checkpoint: data.pkl: expected a tuple dict key of at most 1024 characters, received a tuple of 2 items that is longer',
    ],
    [
      'a STACK_GLOBAL name of 300 characters',
      pickle(0x80, 4, str('builtins'), str('x'.repeat(300)), 0x93),
      'checkpoint: data.pkl at byte 321: STACK_GLOBAL with names that are not strings of at most 256 characters',
    ],
  ])('%s', (_, bytes, message) => refused(bytes, message))
})

// --- Fuzz -------------------------------------------------------------------------------------------

const FUZZ_CASES = Number(process.env.BIRNN_FUZZ_CASES ?? 10_000)
describe('fuzzing the unpickler', () => {
  it(`${FUZZ_CASES} mutated pickles of real checkpoints: each reads, or is refused with ERR_BIRNN_CHECKPOINT`, () => {
    const pickles = ['pt_nested_lstm_bi_l1', 'pt_views_gru_uni_l1', 'pt_deeper_gru_uni_l2'].map((name) => {
      const records = unzipSync(readFileSync(join(fixturesDir, 'checkpoints', `${name}.pt`)))
      return records[`${name}/data.pkl`]
    })
    const r = rng(13)
    const outcomes = new Map<string, number>()
    const count = (key: string) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
    const before = process.memoryUsage().rss
    const started = performance.now()
    const cpuBefore = process.cpuUsage()
    for (let i = 0; i < FUZZ_CASES; i++) {
      const { bytes } = mutatePickle(pickles[i % pickles.length], r)
      let value: PickleValue
      try {
        value = unpickle(bytes, (key, dtype, numel) => storages(key, dtype, numel))
      } catch (error) {
        // Anything but our own error (a TypeError, a RangeError from an allocation) is a bug.
        if (!(error instanceof BirnnError) || (error as BirnnError).code !== 'ERR_BIRNN_CHECKPOINT') throw error
        const message = (error as Error).message
        count(
          message
            .replace(/^checkpoint: (data\.pkl at byte \d+: )?/, '')
            .replace(/[\d'(][^ ]*/g, '#')
            .slice(0, 40),
        )
        continue
      }
      if (value === undefined) throw new Error('unpickle returned nothing')
      count('read')
    }
    const seconds = (performance.now() - started) / 1000
    const cpu = process.cpuUsage(cpuBefore)
    const cpuSeconds = (cpu.user + cpu.system) / 1e6
    const grown = (process.memoryUsage().rss - before) / 2 ** 20
    const top = Object.fromEntries([...outcomes].sort((a, b) => b[1] - a[1]).slice(0, 25))
    console.log(
      `pickle fuzz: ${FUZZ_CASES} pickles in ${seconds.toFixed(2)} s (${cpuSeconds.toFixed(2)} s of CPU), rss +${grown.toFixed(0)} MiB; outcomes`,
      top,
    )
    expect(outcomes.get('read') ?? 0).toBeGreaterThan(FUZZ_CASES / 50)
    expect(outcomes.size).toBeGreaterThan(15)
    // Under the sanitizer (npm run test:sanitize) its shadow memory and quarantine inflate RSS.
    if (!process.env.BIRNN_SANITIZED) expect(grown).toBeLessThan(256)
  })
})
