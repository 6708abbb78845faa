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
      "found 2 recurrent modules (prefixes 'a.', 'b.'): pass options.prefix to choose one",
    )
    expect((await load(twice, { prefix: 'b.' })).config.hiddenSize).toBe(4)
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
  ['central directory', /missing from the zip central directory/],
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
  ['not a state_dict', /single tensor|nest more|values in nested/],
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
