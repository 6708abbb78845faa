// torch.save checkpoints (lib/loading/torch.ts): the archive's refusals, each with its code and
// message: a pickled module, malicious pickles (and proof that no command ran), the legacy format,
// big-endian archives, truncated and corrupted files; nested checkpoints and `prefix`; then a
// seeded fuzz of mutated archives that must load and run, or be refused with a documented code.
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { unzipSync, zipSync } from 'fflate'
import { describe, expect, it } from 'vitest'
import { BirnnError } from '../../lib/errors.js'
import { load, type Model } from '../../lib/index.js'
import { openFile } from '../../lib/loading/source.js'
import { expectError, fixturesDir, rejection, rng } from '../helpers.js'
import { mutatePickle } from './pickle-mutations.js'

const dir = join(fixturesDir, 'checkpoints')
const bytesOf = (name: string) => new Uint8Array(readFileSync(join(dir, `${name}.pt`)))
const MARKER = '/tmp/birnn-pickle-marker'
const ADVICE = "save the weights instead: torch.save(model.state_dict(), 'model.pt') (or convert to safetensors)"
const RULE =
  "a checkpoint may hold only tensors, containers, numbers and strings (PyTorch's weights_only rule), and birnn never runs code from a file"

/** The fixture's records, changed by `edit`, written back as a valid zip (CRCs recomputed). */
function rezip(name: string, edit: (records: Record<string, Uint8Array>, prefix: string) => void): Uint8Array {
  const records = unzipSync(bytesOf(name))
  edit(records, `${name}/`)
  return zipSync(records, { level: 0 })
}

const refusedWith = async (source: string | Uint8Array, message: string | RegExp) =>
  expectError(await rejection(load(source)), Error, 'ERR_BIRNN_CHECKPOINT', message)

describe('refused checkpoints', () => {
  it('a whole pickled nn.Module (torch.save(model))', async () => {
    await refusedWith(
      join(dir, 'pt_whole_module.pt'),
      `checkpoint: data.pkl at byte 29: refused the global 'torch.nn.modules.rnn.LSTM': ${RULE}; ${ADVICE}`,
    )
  })

  it.each([
    ['pt_malicious_system', 'posix.system'],
    ['pt_malicious_eval', '__builtin__.eval'],
  ])('%s: refused, and the command it carries never runs', async (name, global) => {
    rmSync(MARKER, { force: true })
    const error = await rejection(load(join(dir, `${name}.pt`)))
    expectError(error, Error, 'ERR_BIRNN_CHECKPOINT', new RegExp(`refused the global '${global}': `))
    expect((error as Error).message.endsWith(ADVICE)).toBe(true)
    expect(existsSync(MARKER)).toBe(false)
  })

  it('the legacy (pre-1.6) format, with the line that re-saves it', async () => {
    await refusedWith(
      join(dir, 'pt_legacy.pt'),
      `checkpoint: this is PyTorch's legacy (pre-1.6) torch.save format, which birnn does not read; re-save it with PyTorch 1.6 or later: python3 -c "import torch; torch.save(torch.load('model.pt', map_location='cpu'), 'model-new.pt')"`,
    )
  })

  it('a big-endian archive', async () => {
    const big = rezip('pt_rnn_tanh_uni_l1', (r, p) => {
      r[`${p}byteorder`] = new TextEncoder().encode('big')
    })
    await refusedWith(
      big,
      'checkpoint: byteorder: expected a little-endian archive, received one saved on a big-endian machine; load and re-save it with torch.save on a little-endian machine (x86, ARM)',
    )
    const little = rezip('pt_rnn_tanh_uni_l1', (r, p) => {
      r[`${p}byteorder`] = new TextEncoder().encode('little')
    })
    expect((await load(little, { nonlinearity: 'tanh' })).config.mode).toBe('RNN_TANH')
  })

  it.each([10, 100, 1000, 1700])('an archive truncated to %i bytes', async (length) => {
    await refusedWith(
      bytesOf('pt_rnn_tanh_uni_l1').subarray(0, length),
      /^checkpoint: expected a zip archive written by torch.save, received bytes that do not read as one \(.*\): the file is truncated or corrupted$/,
    )
  })

  it('a corrupted tensor record (its CRC-32 does not match)', async () => {
    const bytes = bytesOf('pt_rnn_tanh_uni_l1')
    const records = unzipSync(bytes)
    const data = records['pt_rnn_tanh_uni_l1/data/0']
    const at = Buffer.from(bytes).indexOf(Buffer.from(data)) + 5
    bytes[at] ^= 0x40
    await refusedWith(
      bytes,
      /^checkpoint: record 'pt_rnn_tanh_uni_l1\/data\/0': expected CRC-32 [0-9a-f]{8}, received [0-9a-f]{8}: the file is corrupted$/,
    )
  })

  it('a storage record missing, or of the wrong size', async () => {
    await refusedWith(
      rezip('pt_rnn_tanh_uni_l1', (r, p) => delete r[`${p}data/1`]),
      "checkpoint: expected a record 'pt_rnn_tanh_uni_l1/data/1' for a storage, received none",
    )
    await refusedWith(
      rezip('pt_rnn_tanh_uni_l1', (r, p) => {
        r[`${p}data/0`] = r[`${p}data/0`].subarray(4)
      }),
      "checkpoint: storage '0' of 12 F32 elements: expected 48 bytes, received 44",
    )
  })

  it('a zip archive without data.pkl', async () => {
    await refusedWith(
      zipSync({ 'a/readme.txt': new TextEncoder().encode('hello') }),
      'checkpoint: expected a torch.save archive with a data.pkl record, received a zip archive of 1 records without one',
    )
  })

  it('a module tensor stored as integers', async () => {
    const ints = rezip('pt_rnn_tanh_uni_l1', (r, p) => {
      const text = new TextDecoder('latin1')
        .decode(r[`${p}data.pkl`])
        .replace('torch\nFloatStorage\n', 'torch\nIntStorage\n')
      r[`${p}data.pkl`] = Uint8Array.from(text, (c) => c.charCodeAt(0))
    })
    await refusedWith(ints, "checkpoint: tensor 'weight_ih_l0' has dtype I32; expected one of F32, F16, BF16, F64")
  })
})

describe('nested checkpoints', () => {
  it('flattens to dotted names; the module is found, or chosen with prefix', async () => {
    const source = await openFile(join(dir, 'pt_nested_lstm_bi_l1.pt'))
    expect(source.names).toContain('model.weight_ih_l0_reverse')
    expect(source.names).toContain('optimizer.state.0.exp_avg')
    expect(source.dtype('model.weight_ih_l0')).toBe('F32')
    const deep = await openFile(join(dir, 'pt_deeper_gru_uni_l2.pt'))
    expect(deep.names).toContain('checkpoint.state_dict.encoder.rnn.weight_hh_l1')
    const model = await load(join(dir, 'pt_deeper_gru_uni_l2.pt'), { prefix: 'checkpoint.state_dict.encoder.rnn' })
    expect(model.config.numLayers).toBe(2)
  })

  it('two modules in one checkpoint need prefix', async () => {
    const twice = rezip('pt_rnn_tanh_uni_l1', (r, p) => {
      r[`${p}data.pkl`] = r[`${p}data.pkl`] // the same state_dict under two keys, built below
      const inner = r[`${p}data.pkl`]
      // {'a': <state_dict>, 'b': <memo 0>}: EMPTY_DICT, MARK, 'a', <inner without PROTO/STOP>, 'b', BINGET 1, SETITEMS, STOP
      const body = inner.subarray(2, inner.length - 1)
      const str = (s: string) => [0x8c, s.length, s.charCodeAt(0)]
      r[`${p}data.pkl`] = Uint8Array.from([0x80, 2, 0x7d, 0x28, ...str('a'), ...body, ...str('b'), 0x68, 1, 0x75, 0x2e])
    })
    expectError(
      await rejection(load(twice)),
      Error,
      'ERR_BIRNN_STATE_DICT',
      "found 2 recurrent modules (prefixes 'a.', 'b.'): choose one with the prefix option (birnn: --prefix)",
    )
    expect((await load(twice, { prefix: 'b.' })).config.hiddenSize).toBe(4)
  })
})

describe('dotted names', () => {
  // pt_rnn_tanh_uni_l1's pickle without PROTO and STOP: it leaves its state_dict, memo 1, on the stack.
  const stateDict = (() => {
    const pkl = unzipSync(bytesOf('pt_rnn_tanh_uni_l1'))['pt_rnn_tanh_uni_l1/data.pkl']
    return [...pkl.subarray(2, pkl.length - 1)]
  })()
  const u32 = (n: number) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24]
  const text = (s: string) => [0x58, ...u32(s.length), ...new TextEncoder().encode(s)]
  /** The fixture with its data.pkl replaced by {'a': <its state_dict>, ...entries}. */
  const withEntries = (...entries: number[]) =>
    rezip('pt_rnn_tanh_uni_l1', (r, p) => {
      r[`${p}data.pkl`] = Uint8Array.from([0x80, 2, 0x7d, 0x28, ...text('a'), ...stateDict, ...entries, 0x75, 0x2e])
    })
  const names = ['a.weight_ih_l0', 'a.weight_hh_l0', 'a.bias_ih_l0', 'a.bias_hh_l0']

  it('a value whose name would pass 1024 characters is not searched', async () => {
    // 'b': 5 dicts nested under one 300-character key (memo 1000), then 100 references to the
    // state_dict: a 1 MB file of this shape made 30 MB names and ran out of memory.
    const nested = [
      0x7d,
      ...text('k'.repeat(300)),
      0x72,
      ...u32(1000),
      ...Array(4)
        .fill([0x7d, 0x6a, ...u32(1000)])
        .flat(),
      0x5d,
      0x28,
      ...Array(100).fill([0x68, 1]).flat(),
      0x65,
      ...Array(5).fill(0x73),
    ]
    const source = await openFile(withEntries(...text('b'), ...nested))
    expect(source.names).toEqual(names)
    expect((await load(withEntries(...text('b'), ...nested), { nonlinearity: 'tanh' })).config.hiddenSize).toBe(4)
  })

  it('names of more than 2**24 characters in all are refused', async () => {
    // A 900-character key over 100 × 100 × 5 references to the state_dict: 200,000 names of ~920.
    const list = [0x5d, 0x28, ...Array(5).fill([0x68, 1]).flat(), 0x65]
    const dictOf = (value: number[], memo: number) => [
      0x7d,
      0x28,
      ...Array.from({ length: 100 }, (_, i) => [
        0x4b,
        i,
        ...(i ? [0x6a, ...u32(memo)] : [...value, 0x72, ...u32(memo)]),
      ]),
      0x75,
    ]
    const entries = [...text('p'.repeat(900)), ...dictOf(dictOf(list, 3000).flat(), 2000).flat()]
    await refusedWith(
      withEntries(...entries),
      /^checkpoint: expected tensor names of at most 16777216 characters in all, received more \(\d+ tensors so far\)$/,
    )
  })

  it.each([
    ['pt_ambiguous_dotted', 'rnn.weight_ih_l0'],
    ['pt_ambiguous_int_str', '0.weight_ih_l0'],
  ])('%s: two different tensors under one name are refused', async (name, tensor) => {
    await refusedWith(
      join(dir, `${name}.pt`),
      `checkpoint: expected one tensor for each dotted name, received two different tensors named '${tensor}' (a key with dots in it, or the keys 0 and '0', can lead to the same name)`,
    )
  })

  it('one tensor reached twice under one name is the same tensor', async () => {
    const twice = withEntries(0x4b, 0, 0x68, 1) // {'a': sd, 0: sd}, and 'a' again as 0
    expect((await openFile(twice)).names).toEqual([...names, ...names.map((n) => n.replace('a.', '0.'))])
    const again = rezip('pt_rnn_tanh_uni_l1', (r, p) => {
      r[`${p}data.pkl`] = Uint8Array.from([
        0x80,
        2,
        0x7d,
        0x28,
        0x4b,
        0,
        ...stateDict,
        ...text('0'),
        0x68,
        1,
        0x75,
        0x2e,
      ])
    })
    expect((await openFile(again)).names).toEqual(names.map((n) => n.replace('a.', '0.')))
  })
})

// --- The zip archive: records read when used -----------------------------------------------------

const dv = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/** The central directory entries of a zip without zip64: where each starts, its name and length. */
function centralEntries(zip: Uint8Array): Array<{ at: number; name: string; length: number }> {
  const view = dv(zip)
  const end = zip.length - 22
  const entries = []
  let at = view.getUint32(end + 16, true)
  for (let i = 0; i < view.getUint16(end + 10, true); i++) {
    const nameLength = view.getUint16(at + 28, true)
    const length = 46 + nameLength + view.getUint16(at + 30, true) + view.getUint16(at + 32, true)
    entries.push({ at, name: new TextDecoder().decode(zip.subarray(at + 46, at + 46 + nameLength)), length })
    at += length
  }
  return entries
}

/** Sets the uncompressed size the directory and the local header declare for a record; returns its data. */
function declareSize(zip: Uint8Array, name: string, size: number): Uint8Array {
  const view = dv(zip)
  const { at } = centralEntries(zip).find((e) => e.name === name)!
  const local = view.getUint32(at + 42, true)
  view.setUint32(at + 24, size, true)
  view.setUint32(local + 22, size, true)
  const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true)
  return zip.subarray(start, start + view.getUint32(at + 20, true))
}

/** The same archive with its sizes and offsets in zip64 fields, as a writer does past 4 GiB. */
function toZip64(zip: Uint8Array): Uint8Array {
  const end = zip.length - 22
  const start = dv(zip).getUint32(end + 16, true)
  const parts = [zip.subarray(0, start)]
  const entries = centralEntries(zip)
  for (const { at, length } of entries) {
    const nameEnd = at + 46 + dv(zip).getUint16(at + 28, true)
    const entry = new Uint8Array(length + 28)
    entry.set(zip.subarray(at, nameEnd))
    entry.set(zip.subarray(nameEnd, at + length), nameEnd - at + 28)
    const view = dv(entry)
    const extra = nameEnd - at
    view.setUint16(extra, 1, true) // the zip64 field: original size, compressed size, offset
    view.setUint16(extra + 2, 24, true)
    for (const [i, field] of [24, 20, 42].entries()) {
      view.setBigUint64(extra + 4 + 8 * i, BigInt(view.getUint32(field, true)), true)
      view.setUint32(field, 0xffffffff, true)
    }
    view.setUint16(30, view.getUint16(30, true) + 28, true)
    parts.push(entry)
  }
  const size = parts.slice(1).reduce((n, p) => n + p.length, 0)
  const tail = new Uint8Array(56 + 20 + 22)
  const view = dv(tail)
  view.setUint32(0, 0x06064b50, true)
  view.setBigUint64(4, 44n, true)
  view.setBigUint64(24, BigInt(entries.length), true)
  view.setBigUint64(32, BigInt(entries.length), true)
  view.setBigUint64(40, BigInt(size), true)
  view.setBigUint64(48, BigInt(start), true)
  view.setUint32(56, 0x07064b50, true)
  view.setBigUint64(64, BigInt(start + size), true)
  view.setUint32(72, 1, true)
  tail.set(zip.subarray(end), 76)
  view.setUint32(76 + 8, 0xffffffff, true) // both counts
  view.setUint32(76 + 12, 0xffffffff, true)
  view.setUint32(76 + 16, 0xffffffff, true)
  return Uint8Array.from([...parts.flatMap((p) => [...p]), ...tail])
}

describe('the archive', () => {
  const output = async (source: Uint8Array) => {
    const model = await load(source, { nonlinearity: 'tanh', backend: 'js' })
    return model.forwardSync({ data: new Float32Array([0.5, -1, 2]), shape: [1, 1, 3] }).output.data
  }

  it('deflated records, and zip64 fields, read as the stored records do', async () => {
    const expected = await output(bytesOf('pt_rnn_tanh_uni_l1'))
    const deflated = rezip('pt_rnn_tanh_uni_l1', () => {})
    const records = unzipSync(deflated)
    expect(await output(zipSync(records, { level: 6 }))).toEqual(expected)
    expect(await output(toZip64(zipSync(records, { level: 6 })))).toEqual(expected)
  })

  it('a record never used is never read: one that claims 4 GiB from a few bytes costs nothing', async () => {
    const records = unzipSync(bytesOf('pt_rnn_tanh_uni_l1'))
    const name = 'pt_rnn_tanh_uni_l1/extra/notes.bin'
    const zip = zipSync({ ...records, [name]: [new Uint8Array(1 << 16), { level: 9 }] }, { level: 0 })
    declareSize(zip, name, 0xfffffff0)
    expect(await output(zip)).toEqual(await output(bytesOf('pt_rnn_tanh_uni_l1')))
  })

  it("an optimizer's storages are read only when asked for: a corrupted one loads the model", async () => {
    const bytes = bytesOf('pt_nested_lstm_bi_l1')
    const record = unzipSync(bytes)['pt_nested_lstm_bi_l1/data/31']
    const at = Buffer.from(bytes).indexOf(Buffer.from(record))
    expect(Buffer.from(bytes).lastIndexOf(Buffer.from(record))).toBe(at)
    bytes[at + 5] ^= 0x40
    expect((await load(bytes)).config.bidirectional).toBe(true)
    const source = await openFile(bytes)
    const refused = source.names
      .filter((n) => n.startsWith('optimizer.'))
      .flatMap((n) => {
        try {
          source.read(n)
          return []
        } catch (error) {
          return [error]
        }
      })
    expect(refused).toHaveLength(1)
    expectError(
      refused[0],
      Error,
      'ERR_BIRNN_CHECKPOINT',
      /^checkpoint: record 'pt_nested_lstm_bi_l1\/data\/31': expected CRC-32 [0-9a-f]{8}, received [0-9a-f]{8}: the file is corrupted$/,
    )
  })

  it('a storage whose declared size disagrees with the pickle is refused before it is inflated', async () => {
    const zip = zipSync(unzipSync(bytesOf('pt_rnn_tanh_uni_l1')), { level: 6 })
    declareSize(zip, 'pt_rnn_tanh_uni_l1/data/0', 100).fill(0xff) // no longer a deflate stream
    await refusedWith(zip, "checkpoint: storage '0' of 12 F32 elements: expected 48 bytes, received 100")
    // Of the right size, it is inflated when read, and refused then.
    declareSize(zip, 'pt_rnn_tanh_uni_l1/data/0', 48)
    await refusedWith(
      zip,
      /^checkpoint: expected a zip archive written by torch\.save, received bytes that do not read as one \(record 'pt_rnn_tanh_uni_l1\/data\/0': .+\): the file is truncated or corrupted$/,
    )
  })

  it('a record listed twice', async () => {
    const zip = zipSync(unzipSync(bytesOf('pt_rnn_tanh_uni_l1')), { level: 0 })
    const { at } = centralEntries(zip).find((e) => e.name === 'pt_rnn_tanh_uni_l1/data/3')!
    zip[at + 46 + 'pt_rnn_tanh_uni_l1/data/'.length] = '2'.charCodeAt(0)
    await refusedWith(
      zip,
      "checkpoint: expected a zip archive written by torch.save, received bytes that do not read as one (record 'pt_rnn_tanh_uni_l1/data/2' is listed twice): the file is truncated or corrupted",
    )
  })
})

describe('the values besides tensors that PyTorch allows', () => {
  it('a device, a set, a bytearray, a complex and a Counter, under their Python 2 names', async () => {
    const source = await openFile(join(dir, 'pt_extras_gru_uni_l1.pt'))
    expect(source.names.every((n) => n.startsWith('model.'))).toBe(true)
    expect((await load(join(dir, 'pt_extras_gru_uni_l1.pt'))).config.mode).toBe('GRU')
  })
})

// --- Fuzz -------------------------------------------------------------------------------------------

const FUZZ_CASES = Number(process.env.BIRNN_FUZZ_CASES ?? 10_000)
const DOCUMENTED = ['ERR_BIRNN_CHECKPOINT', 'ERR_BIRNN_STATE_DICT', 'ERR_BIRNN_SAFETENSORS', 'ERR_BIRNN_ONNX']

/** Which documented check refused a file, by its message. */
const CHECKS: Array<[string, RegExp]> = [
  ['zip', /do not read as one/],
  ['zip records', /more records than the file holds|compression method|claims \d+ bytes from/],
  ['crc', /expected CRC-32/],
  ['no data.pkl', /with a data\.pkl record/],
  ['storage record', /for a storage, received none|storage '.*' of \d+ .* elements|declared twice/],
  ['refused global', /refused the global/],
  ['opcode', /is not one a tensor checkpoint uses/],
  [
    'pickle stream',
    /more bytes, received|without a STOP|stack is empty|no MARK|STOP with|TUPLE\d with|memo entry|UTF-8|longer than a checkpoint|GLOBAL without|more than the file holds|protocol above/,
  ],
  ['pickle values', /SETITEMS|APPENDS|dict key|persistent id|STACK_GLOBAL|REDUCE|BUILD|called with/],
  ['tensor view', /tensor size|tensor stride|within the storage|_rebuild_tensor_v2|elements from a storage/],
  ['dtype', /has dtype/],
  ['not a state_dict', /single tensor|nest more|values in nested|tensor names of at most|one tensor for each/],
  ['pickle (other)', /^checkpoint: data\.pkl/],
]

function mutateArchive(
  original: Uint8Array,
  records: Record<string, Uint8Array>,
  pkl: string,
  r: ReturnType<typeof rng>,
): { bytes: Uint8Array; kind: string } {
  const pick = <T>(values: readonly T[]): T => values[r.int(0, values.length - 1)]
  const kind = pick(['pickle', 'pickle', 'pickle', 'storage', 'zip field', 'zip byte', 'truncate'])
  switch (kind) {
    case 'pickle': // a mutated pickle in a valid archive, so that the unpickler is reached
      return { bytes: zipSync({ ...records, [pkl]: mutatePickle(records[pkl], r).bytes }, { level: 0 }), kind }
    case 'storage': {
      const names = Object.keys(records).filter((n) => n.includes('/data/'))
      const name = pick(names)
      const changed = { ...records }
      const action = r.int(0, 2)
      if (action === 0) delete changed[name]
      else if (action === 1) changed[name] = records[name].subarray(0, r.int(0, records[name].length - 1))
      else changed[name] = Uint8Array.from([...records[name], 0, 0, 0, 0])
      return { bytes: zipSync(changed, { level: 0 }), kind }
    }
    case 'zip field': {
      // A field of a local header, the central directory or its end record set to a boundary value.
      const bytes = original.slice()
      const view = new DataView(bytes.buffer)
      const signatures = [0x04034b50, 0x02014b50, 0x06054b50]
      const at: number[] = []
      for (let i = 0; i + 4 <= bytes.length; i++) if (signatures.includes(view.getUint32(i, true))) at.push(i)
      const base = pick(at)
      const offset = base + pick([4, 6, 8, 10, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 42])
      if (offset + 4 <= bytes.length)
        view.setUint32(offset, pick([0, 1, 8, 0xffff, 0xffffffff, r.int(0, 2 ** 32 - 1)]), true)
      return { bytes, kind }
    }
    case 'zip byte': {
      const bytes = original.slice()
      for (let i = r.int(1, 4); i > 0; i--) bytes[r.int(0, bytes.length - 1)] = r.int(0, 255)
      return { bytes, kind }
    }
    default:
      return { bytes: original.subarray(0, r.int(0, original.length - 1)), kind }
  }
}

describe('structured fuzzing of .pt archives', () => {
  it(`${FUZZ_CASES} mutated archives: each loads and runs, or is refused with a documented code by a named check`, async () => {
    const originals = ['pt_views_gru_uni_l1', 'pt_shared_storage_lstm_uni_l1', 'pt_f16_lstm_uni_l1'].map((name) => {
      const bytes = bytesOf(name)
      return { bytes, records: unzipSync(bytes), pkl: `${name}/data.pkl` }
    })
    const r = rng(2613)
    const reached = new Map<string, number>()
    const kinds = new Map<string, number>()
    let loaded = 0
    const before = process.memoryUsage().rss
    const started = performance.now()
    const cpuBefore = process.cpuUsage()
    for (let i = 0; i < FUZZ_CASES; i++) {
      const original = originals[i % originals.length]
      const { bytes, kind } = mutateArchive(original.bytes, original.records, original.pkl, r)
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
      let model: Model
      try {
        model = await load(bytes, { backend: 'js' })
      } catch (error) {
        const { code, message } = error as { code?: string; message: string }
        // Anything but a documented refusal (a TypeError from deep inside, a RangeError) is a bug.
        if (!(error instanceof BirnnError) || !DOCUMENTED.includes(code!)) throw error
        // A changed signature makes the file another format (safetensors, ONNX): refused as that.
        const check =
          code === 'ERR_BIRNN_CHECKPOINT'
            ? CHECKS.find(([, p]) => p.test(message))?.[0]
            : code!.replace('ERR_BIRNN_', '').toLowerCase()
        if (check === undefined) throw new Error(`no named check for: ${message}`)
        reached.set(check, (reached.get(check) ?? 0) + 1)
        continue
      }
      const I = model.config.inputSize
      const { output } = model.forwardSync({ data: new Float32Array(2 * I).fill(0.5), shape: [2, 1, I] })
      expect(output.data.length).toBe(2 * model.config.hiddenSize * (model.config.bidirectional ? 2 : 1))
      loaded++
    }
    const seconds = (performance.now() - started) / 1000
    const cpu = process.cpuUsage(cpuBefore)
    const cpuSeconds = (cpu.user + cpu.system) / 1e6
    const grown = (process.memoryUsage().rss - before) / 2 ** 20
    const counts = Object.fromEntries([...reached].sort((a, b) => b[1] - a[1]))
    console.log(
      `.pt fuzz: ${FUZZ_CASES} archives (${JSON.stringify(Object.fromEntries(kinds))}) in ${seconds.toFixed(2)} s (${cpuSeconds.toFixed(2)} s of CPU), rss +${grown.toFixed(0)} MiB; ${loaded} loaded; refused by`,
      counts,
    )
    for (const check of [
      'zip',
      'crc',
      'storage record',
      'refused global',
      'opcode',
      'pickle stream',
      'pickle values',
      'tensor view',
      'state_dict',
    ]) {
      expect(reached.get(check) ?? 0, check).toBeGreaterThan(0)
    }
    expect(loaded).toBeGreaterThan(FUZZ_CASES / 100)
    // Under the sanitizer (npm run test:sanitize) its shadow memory and quarantine inflate RSS.
    if (!process.env.BIRNN_SANITIZED) expect(grown).toBeLessThan(512)
  })
})
