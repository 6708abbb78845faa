// The `birnn` command, run as users run it: the CLI built into a temporary package (harness.ts) in
// a subprocess, on fixture files and generated inputs. Its output files are compared with the
// library's own results for every input kind (.npy time-major and batch-first,
// float32/float64/float16, JSONL) and output kind; then its errors, exit codes and output-file rules.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { load } from '../../lib/index.js'
import type { LoadOptions, ModelConfig, Tensor } from '../../lib/types.js'
import { type FixtureCase, fixture, maxAbsDiff, modelPath, readIo, readTensors, rng } from '../helpers.js'
import { buildPackage, npyBytes, readNpy, root, runCli, writeNpy } from './harness.js'

const exampleModel = join(root, 'examples', 'model.safetensors')
const TOLERANCE = 1e-5
let built: string
let dir: string

beforeAll(() => {
  built = buildPackage()
  dir = mkdtempSync(join(tmpdir(), 'birnn-cli-'))
}, 120_000)

afterAll(() => {
  for (const folder of [built, dir]) if (folder) rmSync(folder, { recursive: true, force: true })
})

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(built, args, env, dir)

/** Runs and expects success; returns stdout. */
function ok(args: string[]): string {
  const result = run(args)
  if (result.code !== 0) throw new Error(`birnn ${args.join(' ')} exited ${result.code}: ${result.stderr}`)
  return result.stdout
}

const file = (name: string) => join(dir, name)

const readJsonl = (path: string): unknown[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line))

// --- The expected results, from the library ---------------------------------------------------

type Kind = 'full' | 'last' | 'mean'

/**
 * What `--output-kind` gives, from a library forward() output: full as is; last = the forward
 * direction at the last valid step and the backward direction at step 0; mean over valid steps.
 */
function expectedKind(
  output: Tensor,
  kind: Kind,
  config: ModelConfig,
  batchFirst: boolean,
  lengths?: ArrayLike<number>,
): Tensor {
  if (kind === 'full') return output
  const [T, N, W] = batchFirst ? [output.shape[1], output.shape[0], output.shape[2]] : output.shape
  const H = W / (config.bidirectional ? 2 : 1)
  const value = (t: number, n: number, w: number) => output.data[(batchFirst ? n * T + t : t * N + n) * W + w]
  const data = new Float32Array(N * W)
  for (let n = 0; n < N; n++) {
    const length = lengths ? lengths[n] : T
    for (let w = 0; w < W; w++) {
      if (kind === 'last') data[n * W + w] = w < H ? value(length - 1, n, w) : value(0, n, w)
      else {
        let sum = 0
        for (let t = 0; t < length; t++) sum += value(t, n, w)
        data[n * W + w] = sum / length
      }
    }
  }
  return { data, shape: [N, W] }
}

/** The library's forward over the whole input at once. */
async function libraryOutput(
  model: string,
  options: LoadOptions,
  input: Tensor,
  forward: Parameters<Awaited<ReturnType<typeof load>>['forward']>[1] = {},
) {
  const m = await load(model, options)
  const result = await m.forward(input, forward)
  m.dispose()
  return { output: result.output, config: m.config }
}

function expectClose(actual: Tensor, expected: Tensor): void {
  expect(actual.shape).toEqual(expected.shape)
  expect(maxAbsDiff(actual.data, expected.data)).toBeLessThanOrEqual(TOLERANCE)
}

/** Deterministic input of `n` values, each a multiple of 1/64 in [-2, 2]: exact in float16 too. */
function exactInput(seed: number, shape: number[]): Tensor {
  const r = rng(seed)
  const size = shape.reduce((a, b) => a * b, 1)
  return { data: Float32Array.from({ length: size }, () => r.int(-128, 128) / 64), shape }
}

// --- The tests ----------------------------------------------------------------------------------

const KINDS: Kind[] = ['full', 'last', 'mean']

// Fixture cases covering both layouts, lengths, h0 and c0, projections, RNN relu, uni and bi.
const NPY_CASES = [
  'gru_bi_l3_tm',
  'lstm_bi_l2_nobias_bf_h0_packed',
  'lstm_proj_bi_l2_bf_h0c0',
  'rnn_relu_bi_l1_tm_packed',
  'lstm_uni_l2_nobias_bf_h0c0_packed',
  'rnn_tanh_uni_l4_bf_h0',
]

describe('birnn score, .npy input, against the library', () => {
  describe.each(NPY_CASES.map(fixture))('$name', (c: FixtureCase) => {
    it.each(KINDS)('--output-kind %s', async (kind) => {
      const io = readIo(c)
      const args = [
        'score',
        modelPath(c),
        '--input',
        writeNpy(file(`${c.name}.npy`), io.input),
        '--output',
        file(`${c.name}.${kind}.npy`),
        '-k',
        kind,
      ]
      args.push('--batch-size', '2', '--quiet') // several batches, and strided reads when time-major
      if (c.options.batchFirst) args.push('--batch-first')
      if (c.options.nonlinearity === 'relu') args.push('--nonlinearity', 'relu')
      if (io.options.lengths)
        args.push(
          '--lengths',
          writeNpy(
            file(`${c.name}.lengths.npy`),
            { data: Float32Array.from(io.options.lengths as number[]), shape: [io.options.lengths.length] },
            '<i8',
          ),
        )
      if (io.options.h0) args.push('--h0', writeNpy(file(`${c.name}.h0.npy`), io.options.h0))
      if (io.options.c0) args.push('--c0', writeNpy(file(`${c.name}.c0.npy`), io.options.c0))
      expect(run(args)).toMatchObject({ code: 0, stdout: '', stderr: '' })

      const { output, config } = await libraryOutput(modelPath(c), c.options, io.input, io.options)
      const expected = expectedKind(output, kind, config, c.options.batchFirst === true, io.options.lengths)
      expectClose(readNpy(file(`${c.name}.${kind}.npy`)), expected)
    })
  })

  it.each([
    ['float64, format version 2', '<f8' as const, 2],
    ['float16, format version 3', '<f2' as const, 3],
  ])('reads %s', async (_label, dtype, version) => {
    const input = exactInput(7, [9, 5, 16])
    const path = writeNpy(file(`x${dtype.slice(1)}.npy`), input, dtype, { version })
    for (const kind of KINDS) {
      ok(['score', exampleModel, '-i', path, '-o', file(`x${dtype.slice(1)}.${kind}.npy`), '-k', kind, '-b', '3'])
      const { output, config } = await libraryOutput(exampleModel, {}, input)
      expectClose(readNpy(file(`x${dtype.slice(1)}.${kind}.npy`)), expectedKind(output, kind, config, false))
    }
  })

  it('matches PyTorch on the bundled example (what npm start runs)', () => {
    const expected = readTensors(join(root, 'examples', 'expected.safetensors'))
    const stdout = ok([
      'score',
      exampleModel,
      '-i',
      join(root, 'examples', 'input.npy'),
      '-o',
      file('example.last.npy'),
      '-k',
      'last',
      '--preview',
    ])
    expect(stdout).toMatch(
      /^birnn: scored 64 sequences .* last output, float32 \(64, 64\); [\d.]+ s, [\d,]+ seq\/s on (native \(\w+\)|js)\nbirnn: sequence 0, last, first 6 of 64 values: \[/,
    )
    expectClose(readNpy(file('example.last.npy')), expected.npy_last)
    ok([
      'score',
      exampleModel,
      '-i',
      join(root, 'examples', 'input.npy'),
      '-o',
      file('example.mean.npy'),
      '-k',
      'mean',
      '--backend',
      'js',
    ])
    expectClose(readNpy(file('example.mean.npy')), expected.npy_mean)
    ok([
      'score',
      exampleModel,
      '-i',
      join(root, 'examples', 'input.jsonl'),
      '-o',
      file('example.last.jsonl'),
      '-k',
      'last',
    ])
    const rows = readJsonl(file('example.last.jsonl')) as number[][]
    expectClose({ data: Float32Array.from(rows.flat()), shape: [rows.length, rows[0].length] }, expected.jsonl_last)
  })
})

describe('birnn score, JSONL input', () => {
  const config = { N: 11, I: 16 }
  const r = rng(3)
  const sequences = Array.from({ length: config.N }, (_, n) => exactInput(100 + n, [r.int(1, 9), config.I]))
  const toLine = (s: Tensor) =>
    JSON.stringify(
      Array.from({ length: s.shape[0] }, (_, t) => Array.from(s.data.subarray(t * config.I, (t + 1) * config.I))),
    )

  /** Each line scored alone by the library, as a batch of one. */
  async function expectedLines(kind: Kind, state?: { h0: Tensor; c0: Tensor }) {
    const m = await load(exampleModel, { batchFirst: true })
    const lines = []
    for (const [n, s] of sequences.entries()) {
      const slice = (x: Tensor) => {
        const [LD, N, H] = x.shape
        const data = new Float32Array(LD * H)
        for (let l = 0; l < LD; l++) data.set(x.data.subarray((l * N + n) * H, (l * N + n + 1) * H), l * H)
        return { data, shape: [LD, 1, H] }
      }
      const { output } = await m.forward(
        { data: s.data, shape: [1, ...s.shape] },
        state ? { h0: slice(state.h0), c0: slice(state.c0) } : {},
      )
      const rows = expectedKind(output, kind, m.config, true)
      lines.push(kind === 'full' ? { data: rows.data, shape: rows.shape.slice(1) } : rows)
    }
    m.dispose()
    return lines
  }

  it.each(KINDS)('--output-kind %s: one line per sequence, ragged lengths', async (kind) => {
    const input = file('ragged.jsonl')
    writeFileSync(input, `${sequences.map(toLine).join('\n')}\n`)
    ok(['score', exampleModel, '-i', input, '-o', file(`ragged.${kind}.jsonl`), '-k', kind, '-b', '4'])
    const lines = readJsonl(file(`ragged.${kind}.jsonl`)) as number[][] | number[][][]
    const expected = await expectedLines(kind)
    expect(lines).toHaveLength(config.N)
    lines.forEach((line, n) => {
      const data = Float32Array.from((line as number[][]).flat())
      if (kind === 'full') expect(line).toHaveLength(sequences[n].shape[0])
      expect(maxAbsDiff(data, expected[n].data)).toBeLessThanOrEqual(TOLERANCE)
    })
  })

  it('with --h0 and --c0, sliced per line', async () => {
    const input = file('ragged-state.jsonl')
    writeFileSync(input, sequences.map(toLine).join('\n')) // no final newline: the last line still counts
    const h0 = exactInput(5, [4, config.N, 32])
    const c0 = exactInput(6, [4, config.N, 32])
    const args = ['score', exampleModel, '-i', input, '-o', file('ragged-state.jsonl.out'), '-k', 'last', '-b', '3']
    ok([...args, '--h0', writeNpy(file('jh0.npy'), h0), '--c0', writeNpy(file('jc0.npy'), c0)])
    const lines = readJsonl(file('ragged-state.jsonl.out')) as number[][]
    const expected = await expectedLines('last', { h0, c0 })
    for (const [n, line] of lines.entries()) {
      expect(maxAbsDiff(Float32Array.from(line), expected[n].data)).toBeLessThanOrEqual(TOLERANCE)
    }
  })
})

describe('birnn score --shard i/n', () => {
  it('the joined shards of .npy output equal the unsharded output, time-major and batch-first', () => {
    const N = 23
    for (const batchFirst of [false, true]) {
      const input = exactInput(11, batchFirst ? [N, 7, 16] : [7, N, 16])
      const tag = batchFirst ? 'bf' : 'tm'
      const lengths = writeNpy(
        file(`shard-${tag}.lengths.npy`),
        { data: Float32Array.from({ length: N }, (_, n) => 1 + (n % 7)), shape: [N] },
        '<i4',
      )
      const h0 = writeNpy(file(`shard-${tag}.h0.npy`), exactInput(12, [4, N, 32]))
      const common = [
        '-i',
        writeNpy(file(`shard-${tag}.npy`), input),
        '--lengths',
        lengths,
        '--h0',
        h0,
        '-b',
        '2',
        ...(batchFirst ? ['--batch-first'] : []),
      ]
      // Time-major full output is written with strided writes; batch-first last in one piece.
      for (const kind of batchFirst ? (['last'] as const) : (['full'] as const)) {
        ok(['score', exampleModel, ...common, '-o', file(`shard-${tag}.${kind}.npy`), '-k', kind])
        const parts = [0, 1, 2, 3].map((i) => file(`shard-${tag}.${kind}.part${i}.npy`))
        for (const [i, part] of parts.entries())
          ok(['score', exampleModel, ...common, '-o', part, '-k', kind, '--shard', `${i}/4`])
        expect(readNpy(parts[0]).shape[kind === 'full' && !batchFirst ? 1 : 0]).toBe(5) // floor(23/4)
        const joined = file(`shard-${tag}.${kind}.joined.npy`)
        ok(['join', joined, ...parts, ...(batchFirst ? ['--batch-first'] : [])])
        expect(readFileSync(joined).equals(readFileSync(file(`shard-${tag}.${kind}.npy`)))).toBe(true)
      }
    }
  })

  it('the concatenated shards of JSONL output equal the unsharded output', () => {
    const input = file('shard.jsonl')
    writeFileSync(
      input,
      `${Array.from({ length: 10 }, (_, n) => JSON.stringify([[n, ...Array(15).fill(0.5)], Array(16).fill(-n / 10)])).join('\n')}\n`,
    )
    ok(['score', exampleModel, '-i', input, '-o', file('shard.out.jsonl'), '-k', 'mean', '-b', '3'])
    const parts = [0, 1, 2].map((i) => {
      ok([
        'score',
        exampleModel,
        '-i',
        input,
        '-o',
        file(`shard.${i}.jsonl`),
        '-k',
        'mean',
        '-b',
        '3',
        '--shard',
        `${i}/3`,
      ])
      return readFileSync(file(`shard.${i}.jsonl`), 'utf8')
    })
    expect(parts.map((p) => p.split('\n').length - 1)).toEqual([3, 3, 4])
    expect(parts.join('')).toBe(readFileSync(file('shard.out.jsonl'), 'utf8'))
  })
})

/** A float32 (N, T, I) .npy of `N` sequences, written in 1 MiB pieces, without holding it. */
function writeLargeNpy(path: string, N: number, T: number, I: number): void {
  const fd = openSync(path, 'w')
  writeSync(fd, npyBytes([N, T, I], '<f4', Buffer.alloc(0)))
  const chunk = rng(1).floats(1 << 18)
  for (let left = N * T * I; left > 0; left -= chunk.length)
    writeSync(fd, new Uint8Array(chunk.buffer, 0, Math.min(left, chunk.length) * 4))
  closeSync(fd)
}

/** A small GRU (inputSize 16, hidden 8) as safetensors, so a large input scores in about a second. */
function writeSmallGru(path: string): string {
  const r = rng(2)
  const tensors: Record<string, number[]> = {
    weight_ih_l0: [24, 16],
    weight_hh_l0: [24, 8],
    bias_ih_l0: [24],
    bias_hh_l0: [24],
  }
  const header: Record<string, unknown> = {}
  const blobs: Buffer[] = []
  let offset = 0
  for (const [name, shape] of Object.entries(tensors)) {
    const data = r.floats(
      shape.reduce((a, b) => a * b, 1),
      0.3,
    )
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] }
    offset += data.byteLength
    blobs.push(Buffer.from(data.buffer))
  }
  const json = Buffer.from(JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8))
  const length = Buffer.alloc(8)
  length.writeBigUInt64LE(BigInt(json.length))
  writeFileSync(path, Buffer.concat([length, json, ...blobs]))
  return path
}

describe('streaming', () => {
  it('memory stays bounded by the batch size, not the file size', () => {
    const model = writeSmallGru(file('small-gru.safetensors'))
    const peak = (name: string, N: number) => {
      writeLargeNpy(file(name), N, 64, 16)
      const stdout = ok([
        'score',
        model,
        '-i',
        file(name),
        '-o',
        file(`${name}.out.npy`),
        '--batch-first',
        '-k',
        'last',
        '-b',
        '64',
        '--json',
      ])
      const summary = JSON.parse(stdout)
      expect(summary.sequences).toBe(N)
      rmSync(file(name))
      return summary.maxRssBytes as number
    }
    const small = peak('small.npy', 2_560) // 10 MiB
    const large = peak('large.npy', 51_200) // 200 MiB
    expect(statSync(file('large.npy.out.npy')).size).toBeGreaterThan(51_200 * 8 * 4)
    // 20 times the input, and the peak barely moves: well under the file's 200 MiB.
    expect(large).toBeLessThan(small + 40 * 2 ** 20)
    expect(large).toBeLessThan(170 * 2 ** 20)
  }, 30_000)

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)(
    'a run stopped by %s leaves no output and no temporary file',
    async (signal, code) => {
      const folder = mkdtempSync(join(dir, 'signal-'))
      const input = join(folder, 'in.npy')
      writeLargeNpy(input, 4_000, 50, 16)
      const output = join(folder, 'out.npy')
      const child = spawn(
        process.execPath,
        [
          join(built, 'dist', 'cli', 'main.js'),
          'score',
          exampleModel,
          '-i',
          input,
          '-o',
          output,
          '--batch-first',
          '-b',
          '8',
          '--backend',
          'js',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let stderr = ''
      child.stderr.on('data', (d) => {
        stderr += d
      })
      const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
      // Wait until it is writing: the temporary file exists and holds more than the .npy header.
      const temp = join(folder, `.out.npy.${child.pid}.tmp`)
      const deadline = Date.now() + 10_000
      while (!(existsSync(temp) && statSync(temp).size > 4096) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20))
      expect(existsSync(temp)).toBe(true)
      child.kill(signal)
      expect(await exited).toBe(code)
      expect(stderr).toContain(`birnn: ${signal}: stopped; no output written`)
      expect(readdirSync(folder)).toEqual(['in.npy'])
    },
    30_000,
  )
})

describe('a JSONL run stops at a signal', () => {
  it('within a moment, though each batch takes seconds to parse and print', async () => {
    const folder = mkdtempSync(join(dir, 'signal-jsonl-'))
    const input = join(folder, 'in.jsonl')
    // 300 sequences of 200 steps: 45 MB of text, about a second a batch of 100 to parse or print.
    const r = rng(8)
    const row = () => `[${Array.from({ length: 16 }, () => r.normal().toFixed(4)).join(',')}]`
    const line = () => `[${Array.from({ length: 200 }, row).join(',')}]\n`
    writeFileSync(input, Array.from({ length: 300 }, line).join(''))
    const output = join(folder, 'out.jsonl')
    const child = spawn(
      process.execPath,
      [join(built, 'dist', 'cli', 'main.js'), 'score', exampleModel, '-i', input, '-o', output, '-b', '100', '-q'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
    // Mid-run: the first batch's lines are in the temporary file.
    const temp = join(folder, `.out.jsonl.${child.pid}.tmp`)
    const deadline = Date.now() + 20_000
    while (!(existsSync(temp) && statSync(temp).size > 0) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 10))
    const signalled = performance.now()
    child.kill('SIGTERM')
    expect(await exited).toBe(143)
    // Each batch left to parse and print holds the event loop for about a second without the pauses.
    expect(performance.now() - signalled).toBeLessThan(1000)
    expect(readdirSync(folder)).toEqual(['in.jsonl'])
  }, 60_000)
})

describe('user errors: one line, no stack trace, exit code', () => {
  const npyInput = () => writeNpy(file('err.npy'), exactInput(1, [3, 2, 16]))
  const cases: Array<[string, () => string[], number, RegExp]> = [
    [
      'missing model file',
      () => ['score', file('nope.safetensors'), '-i', npyInput(), '-o', file('e.npy')],
      1,
      /^birnn: model .*nope\.safetensors: no such file$/,
    ],
    [
      'missing input file',
      () => ['score', exampleModel, '-i', file('nope.npy'), '-o', file('e.npy')],
      1,
      /^birnn: input .*nope\.npy: no such file$/,
    ],
    [
      'inputSize mismatch',
      () => ['score', exampleModel, '-i', writeNpy(file('i8.npy'), exactInput(1, [3, 2, 8])), '-o', file('e.npy')],
      1,
      /^birnn: input .*i8\.npy: its last dimension is 8 \(shape \(3, 2, 8\)\) but the model's inputSize is 16$/,
    ],
    [
      'bad JSONL line',
      () => {
        writeFileSync(
          file('bad.jsonl'),
          `${JSON.stringify([Array(16).fill(0)])}\n${JSON.stringify([Array(16).fill(1)])}\n[[1, 2, 3]]\n`,
        )
        return ['score', exampleModel, '-i', file('bad.jsonl'), '-o', file('e.jsonl')]
      },
      1,
      /^birnn: input .*bad\.jsonl line 3: step 0 has 3 numbers; expected 16 \(the model's inputSize\)$/,
    ],
    [
      'JSONL line that is not JSON',
      () => {
        writeFileSync(file('bad2.jsonl'), `${JSON.stringify([Array(16).fill(0)])}\n[[0.1,\n`)
        return ['score', exampleModel, '-i', file('bad2.jsonl'), '-o', file('e.jsonl')]
      },
      1,
      /^birnn: input .*bad2\.jsonl line 2: not valid JSON/,
    ],
    [
      'Fortran-order .npy',
      () => [
        'score',
        exampleModel,
        '-i',
        writeNpy(file('f.npy'), exactInput(1, [3, 2, 16]), '<f4', { fortran: true }),
        '-o',
        file('e.npy'),
      ],
      1,
      /Fortran order/,
    ],
    [
      'length out of range',
      () => [
        'score',
        exampleModel,
        '-i',
        npyInput(),
        '-o',
        file('e.npy'),
        '--lengths',
        writeNpy(file('len.npy'), { data: Float32Array.of(3, 4), shape: [2] }, '<i4'),
      ],
      1,
      /^birnn: --lengths .*len\.npy: entry 1 is 4; expected a length in \[1, 3\] \(T\)$/,
    ],
    [
      'h0 of the wrong shape',
      () => [
        'score',
        exampleModel,
        '-i',
        npyInput(),
        '-o',
        file('e.npy'),
        '--h0',
        writeNpy(file('h0.npy'), exactInput(1, [4, 3, 32])),
      ],
      1,
      /^birnn: --h0 .*h0\.npy: expected shape \(4, 2, 32\) \(numLayers\*D, N, Hout\), received \(4, 3, 32\)$/,
    ],
    [
      'unknown option',
      () => ['score', exampleModel, '-i', npyInput(), '-o', file('e.npy'), '--bogus'],
      2,
      /^birnn: unknown option '--bogus'/,
    ],
    [
      'the model as the output',
      () => {
        copyFileSync(exampleModel, file('m.safetensors'))
        return ['score', file('m.safetensors'), '-i', npyInput(), '-o', file('m.safetensors')]
      },
      2,
      /^birnn: --output .*m\.safetensors: is the model .*m\.safetensors; the output must be another file$/,
    ],
    [
      'an empty output path',
      () => ['score', exampleModel, '-i', npyInput(), '-o', ''],
      2,
      /^birnn: --output: expected the path of a file, received an empty string$/,
    ],
    [
      'a pipe as input',
      () => {
        execFileSync('mkfifo', [file('fifo')])
        return ['score', exampleModel, '-i', file('fifo'), '-o', file('e.npy')]
      },
      1,
      /^birnn: input .*fifo: is not a regular file \(a pipe or a device\); birnn reads its files by position/,
    ],
    [
      // Each used to wait in open() for a writer, deaf to signals.
      'a pipe as model',
      () => {
        execFileSync('mkfifo', [file('fifo-model.safetensors')])
        return ['info', file('fifo-model.safetensors')]
      },
      1,
      /^birnn: model .*fifo-model\.safetensors: is not a regular file \(a pipe or a device\)/,
    ],
    [
      'a pipe as --h0',
      () => {
        execFileSync('mkfifo', [file('fifo-h0.npy')])
        return ['score', exampleModel, '-i', npyInput(), '-o', file('h.npy'), '--h0', file('fifo-h0.npy')]
      },
      1,
      /^birnn: --h0 .*fifo-h0\.npy: is not a regular file \(a pipe or a device\)/,
    ],
    [
      'a pipe as a part of join',
      () => {
        execFileSync('mkfifo', [file('fifo-part.npy')])
        return ['join', file('j.npy'), file('fifo-part.npy')]
      },
      1,
      /^birnn: part .*fifo-part\.npy: is not a regular file \(a pipe or a device\)/,
    ],
    [
      'join of parts that are not outputs of score',
      () => {
        writeNpy(file('zero-d.npy'), { data: Float32Array.of(1), shape: [] })
        return ['join', file('e.npy'), file('zero-d.npy'), file('zero-d.npy')]
      },
      1,
      /^birnn: part .*zero-d\.npy: shape \(\) is not an output of birnn score; expected \(N, W\), \(T, N, W\)/,
    ],
    [
      'bad --shard',
      () => ['score', exampleModel, '-i', npyInput(), '-o', file('e.npy'), '--shard', '4/4'],
      2,
      /^birnn: option '--shard <i\/n>' argument '4\/4' is invalid\. expected i\/n with 0 ≤ i < n/,
    ],
    [
      'bad --batch-size',
      () => ['score', exampleModel, '-i', npyInput(), '-o', file('e.npy'), '-b', '0'],
      2,
      /^birnn: option '-b, --batch-size <n>' argument '0' is invalid\. expected a positive integer/,
    ],
    [
      'bad --output-kind',
      () => ['score', exampleModel, '-i', npyInput(), '-o', file('e.npy'), '-k', 'first'],
      2,
      /^birnn: option '-k, --output-kind <kind>' argument 'first' is invalid/,
    ],
    [
      '--lengths with JSONL',
      () => [
        'score',
        exampleModel,
        '-i',
        join(root, 'examples', 'input.jsonl'),
        '-o',
        file('e.jsonl'),
        '--lengths',
        file('len.npy'),
      ],
      2,
      /^birnn: --lengths applies to \.npy input/,
    ],
    [
      'missing --output',
      () => ['score', exampleModel, '-i', npyInput()],
      2,
      /^birnn: required option '-o, --output <file>' not specified/,
    ],
    ['unknown command', () => ['scroe', exampleModel], 2, /^birnn: unknown command 'scroe'/],
    [
      'native backend demanded where it does not load',
      () => ['info', exampleModel, '--backend', 'native'],
      1,
      /^birnn: model .*: backend 'native' is not available: /,
    ],
  ]

  it.each(cases)('%s', (label, args, code, message) => {
    const env = label.startsWith('native backend') ? { BIRNN_NATIVE_PATH: file('no-such-addon.node') } : {}
    const result = run(args(), env)
    expect(result.code).toBe(code)
    const lines = result.stderr.trimEnd().split('\n')
    expect(lines[0]).toMatch(message)
    expect(result.stderr).not.toMatch(/^\s+at /m) // no stack trace
    expect(lines.length).toBeLessThanOrEqual(3) // the message; for usage errors a suggestion and a hint
    expect(existsSync(file('e.npy')) || existsSync(file('e.jsonl'))).toBe(false)
  })
})

describe('files people have', () => {
  it('a JSONL input with a byte-order mark reads as without one', () => {
    const lines = readFileSync(join(root, 'examples', 'input.jsonl'))
    writeFileSync(file('bom.jsonl'), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), lines]))
    ok(['score', exampleModel, '-i', file('bom.jsonl'), '-o', file('bom.out.jsonl'), '-k', 'last', '-q'])
    ok([
      'score',
      exampleModel,
      '-i',
      join(root, 'examples', 'input.jsonl'),
      '-o',
      file('nobom.out.jsonl'),
      '-k',
      'last',
      '-q',
    ])
    expect(readFileSync(file('bom.out.jsonl'))).toEqual(readFileSync(file('nobom.out.jsonl')))
  })

  it('an output name as long as a file name may be (255 bytes) is written', () => {
    const name = `${'o'.repeat(251)}.npy`
    ok(['score', exampleModel, '-i', writeNpy(file('long-in.npy'), exactInput(2, [3, 2, 16])), '-o', file(name), '-q'])
    expect(readNpy(file(name)).shape).toEqual([3, 2, 64])
    expect(readdirSync(dir).filter((entry) => entry.endsWith('.tmp'))).toEqual([])
  })
})

describe('birnn info and bench', () => {
  it('info: configuration, parameters, stored dtype, memory, backend', () => {
    const text = ok(['info', exampleModel])
    expect(text).toContain('LSTM, inputSize 16, hiddenSize 32, numLayers 2, bidirectional, with bias')
    expect(text).toContain('parameters  37,888, stored as F32')
    expect(text).toMatch(/memory {6}148\.0 KiB of float32 weights/)
    expect(text).toMatch(/backend {5}(native|js)/)
    const f16 = fixture('dtype_f16_lstm_bi_l2_tm_h0c0')
    const json = JSON.parse(ok(['info', modelPath(f16), '--json', '--backend', 'js']))
    expect(json).toMatchObject({
      config: f16.config,
      storedDtype: 'F16',
      backend: 'js',
      backendReason: 'the JS engine was requested',
    })
    const prefixed = fixture('prefix_two_rnns_dec_gru_uni_l2_tm')
    const withPrefix = JSON.parse(ok(['info', modelPath(prefixed), '--json', '--prefix', 'dec.gru']))
    expect(withPrefix).toMatchObject({ prefix: 'dec.gru.', config: prefixed.config })
  })

  it('bench: sequences/s at each batch size, native vs JS', () => {
    const json = JSON.parse(
      ok(['bench', exampleModel, '--batch-sizes', '1,4', '--seq-len', '5', '--seconds', '0.02', '--json']),
    )
    expect(json.results.map((r: { batchSize: number }) => r.batchSize)).toEqual(expect.arrayContaining([1, 4]))
    for (const r of json.results) expect(r.sequencesPerSecond).toBeGreaterThan(0)
    const text = ok([
      'bench',
      exampleModel,
      '--batch-sizes',
      '2',
      '--seq-len',
      '3',
      '--seconds',
      '0.02',
      '--backend',
      'js',
    ])
    expect(text).toMatch(/batch +js seq\/s\n +2 +[\d,]+\n$/)
  })

  it('bench: the kernel --simd names against JS, or the one --backend names alone', () => {
    const args = ['bench', exampleModel, '--batch-sizes', '2', '--seq-len', '3', '--seconds', '0.02']
    expect(ok([...args, '--simd', 'generic'])).toMatch(
      /batch +native \(generic\) seq\/s +js seq\/s +speed-up\n +2 +[\d,]+ +[\d,]+ +[\d.]+×\n$/,
    )
    // This Node's build of the wasm kernel (the subprocess has no flags: Node 20's is the 128-bit one).
    const wasm = JSON.parse(ok([...args, '--backend', 'wasm', '--json'])).results
    expect(wasm).toHaveLength(1)
    expect(wasm[0].backend).toMatch(/^wasm \(wasm-(relaxed-simd|simd128)\)$/)
    expect(ok([...args, '--simd', 'wasm-simd128'])).toMatch(
      /batch +wasm \(wasm-simd128\) seq\/s +js seq\/s +speed-up\n/,
    )
    // A kernel of one engine with another engine demanded is refused, as by every command.
    const conflict = run([...args, '--backend', 'js', '--simd', 'avx2'])
    expect(conflict.code).toBe(2)
    expect(conflict.stderr).toBe("birnn: --simd avx2 is the native kernel's, but --backend is js\n")
  })
})

describe('exit codes: a bug is not a user error', () => {
  it('an unexpected error exits 70 with "internal error" and its stack', () => {
    // Preloaded: fstat fails the way a bug would, with a plain Error.
    const preload = file('break-fstat.mjs')
    writeFileSync(
      preload,
      `import fs from 'node:fs'
       import { syncBuiltinESMExports } from 'node:module'
       fs.fstatSync = () => { throw new Error('boom') }
       syncBuiltinESMExports()`,
    )
    const input = writeNpy(file('bug.npy'), exactInput(1, [2, 1, 16]))
    const result = spawnSync(
      process.execPath,
      [
        '--import',
        preload,
        join(built, 'dist', 'cli', 'main.js'),
        'score',
        exampleModel,
        '-i',
        input,
        '-o',
        file('bug.out.npy'),
      ],
      { encoding: 'utf8', cwd: dir },
    )
    expect(result.status).toBe(70)
    expect(result.stderr).toMatch(/^birnn: internal error: boom\nError: boom\n\s+at /)
  })

  it('--help lists every exit code, SIGHUP included', () => {
    const help = ok(['--help'])
    for (const code of ['0 ', '1 ', '2 ', '70 ', '129, 130, 143 ', '141 ']) expect(help).toContain(`\n  ${code}`)
    expect(help).toContain('SIGHUP')
  })

  it('stdout closed by its reader (| head): exit 141 at once, no error printed', async () => {
    const child = spawn(process.execPath, [join(built, 'dist', 'cli', 'main.js'), 'info', exampleModel], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child.stdout!.destroy() // before the CLI has loaded: its first write meets a closed pipe
    let stderr = ''
    child.stderr!.on('data', (chunk) => {
      stderr += chunk
    })
    const code = await new Promise((resolve) => child.on('exit', resolve))
    expect([code, stderr]).toEqual([141, ''])
  })

  it('stdout on a full disk: exit 1, said on stderr, the output file committed first', () => {
    const out = file('full.npy')
    const result = spawnSync(
      process.execPath,
      [
        join(built, 'dist', 'cli', 'main.js'),
        'score',
        exampleModel,
        '-i',
        writeNpy(file('full-in.npy'), exactInput(1, [3, 2, 16])),
        '-o',
        out,
      ],
      { stdio: ['ignore', openSync('/dev/full', 'w'), 'pipe'], encoding: 'utf8' },
    )
    expect([result.status, result.stderr]).toEqual([1, 'birnn: stdout: no space left on the device\n'])
    expect(existsSync(out)).toBe(true)
  })
})

describe('the output file', () => {
  const input = () => writeNpy(file('o.npy'), exactInput(2, [3, 2, 16]))

  it('a folder as --output is refused before any input is read, in the CLI words', () => {
    const folder = mkdtempSync(join(dir, 'outdir-'))
    // The input does not exist: the output is checked first.
    const missing = run(['score', exampleModel, '-i', file('missing.npy'), '-o', folder])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toBe(
      `birnn: --output ${folder}: is a folder; give the path of a file, e.g. ${folder}/out.npy\n`,
    )
    const slash = run(['score', exampleModel, '-i', input(), '-o', `${file('new.npy')}/`])
    expect(slash.code).toBe(2)
    expect(slash.stderr).toMatch(/^birnn: --output .*new\.npy\/: names a folder; give the path of a file/)
    const joined = run(['join', folder, input()])
    expect(joined.code).toBe(2)
    expect(joined.stderr).toMatch(/^birnn: output .*outdir-\w+: is a folder/)
    expect(readdirSync(folder)).toEqual([])
  })

  it('--output may not be an input, however it is spelled', () => {
    const x = input()
    const h0 = writeNpy(file('o.h0.npy'), exactInput(3, [4, 2, 32]))
    const before = readFileSync(h0)
    const result = run(['score', exampleModel, '-i', x, '--h0', h0, '-o', join('.', 'o.h0.npy')])
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/^birnn: --output o\.h0\.npy: is the --h0 file .*; the output must be another file$/m)
    expect(readFileSync(h0).equals(before)).toBe(true)
    const lengths = run(['score', exampleModel, '-i', x, '--lengths', join('.', 'o.npy'), '-o', file('l.npy')])
    expect(lengths).toMatchObject({ code: 2, stderr: 'birnn: --lengths and --input name the same file\n' })
  })

  it('a read-only output is refused; a writable one is replaced keeping its mode', () => {
    const out = file('ro.npy')
    writeFileSync(out, 'keep me')
    chmodSync(out, 0o444)
    const refused = run(['score', exampleModel, '-i', input(), '-o', out])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toBe(
      `birnn: --output ${out}: is read-only; make it writable (chmod u+w) or choose another output\n`,
    )
    expect(readFileSync(out, 'utf8')).toBe('keep me')
    chmodSync(out, 0o640)
    ok(['score', exampleModel, '-i', input(), '-o', out, '-q'])
    expect(readNpy(out).shape).toEqual([3, 2, 64])
    expect(statSync(out).mode & 0o777).toBe(0o640)
  })
})

describe('birnn join: never over a part', () => {
  const parts = () =>
    [0, 1].map((i) => writeNpy(file(`jp.${i}.npy`), { data: Float32Array.of(i, i, i, i), shape: [2, 2] }))

  it('a forgotten output (the first part taken as it) is refused, and the part is intact', () => {
    const [a, b] = parts()
    const before = readFileSync(a)
    // `birnn join parts/out.*.npy`: the first part is taken as the output, and it exists.
    const forgotten = run(['join', a, b])
    expect(forgotten.code).toBe(2)
    expect(forgotten.stderr).toBe(
      `birnn: output ${a}: already exists; add --force to replace it (the output comes first: birnn join OUT.npy PART.npy…)\n`,
    )
    // An output among the parts is refused even with --force, however it is spelled.
    for (const output of [a, join('.', 'jp.0.npy')]) {
      const result = run(['join', output, a, b, '--force'])
      expect(result.code).toBe(2)
      expect(result.stderr).toMatch(
        /^birnn: output .*jp\.0\.npy: is the part .*jp\.0\.npy; the output must be another file/,
      )
    }
    expect(readFileSync(a).equals(before)).toBe(true)
  })

  it('an existing output needs --force; -q prints nothing; counts are singular when one', () => {
    const [a, b] = parts()
    const out = file('jp.out.npy')
    writeFileSync(out, 'old')
    const refused = run(['join', out, a, b])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/: already exists; add --force to replace it/)
    expect(readFileSync(out, 'utf8')).toBe('old')
    expect(run(['join', out, a, b, '--force', '-q'])).toMatchObject({ code: 0, stdout: '', stderr: '' })
    expect(readNpy(out)).toEqual({ data: Float32Array.of(0, 0, 0, 0, 1, 1, 1, 1), shape: [4, 2] })
    expect(ok(['join', file('jp.one.npy'), a])).toMatch(/^birnn: joined 1 part into .*: float32 \(2, 2\)\n$/)
  })

  it('more parts than the process may open at once: each part is open only while it is read', () => {
    const many = Array.from({ length: 120 }, (_, i) =>
      writeNpy(file(`jm.${i}.npy`), { data: Float32Array.of(i, -i), shape: [1, 2] }),
    )
    const out = file('jm.out.npy')
    const result = spawnSync(
      'prlimit',
      ['--nofile=64:64', process.execPath, join(built, 'dist', 'cli', 'main.js'), 'join', out, ...many, '-q'],
      { encoding: 'utf8' },
    )
    expect([result.status, result.stderr]).toEqual([0, ''])
    expect(readNpy(out)).toEqual({
      data: Float32Array.from({ length: 240 }, (_, k) => (k % 2 ? -(k >> 1) : k >> 1)),
      shape: [120, 2],
    })
    // A part that is not float32 is named as a part.
    const ints = writeNpy(file('jm.int.npy'), { data: Float32Array.of(1, 2), shape: [1, 2] }, '<i4')
    expect(run(['join', file('jm.bad.npy'), many[0], ints]).stderr).toMatch(/^birnn: part .*jm\.int\.npy: /)
  })
})

describe('option values and inputs', () => {
  const input = () => writeNpy(file('v.npy'), exactInput(4, [1, 1, 16]))

  it.each(['5000', '1e9', '0'])('--threads %s is a command-line error naming the range', (threads) => {
    const result = run(['score', exampleModel, '-i', input(), '-o', file('v.out.npy'), '--threads', threads])
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(
      new RegExp(
        `^birnn: option '--threads <n>' argument '${threads}' is invalid\\. expected an integer in \\[1, 4096\\]`,
      ),
    )
  })

  it('one sequence is "1 sequence"', () => {
    expect(ok(['score', exampleModel, '-i', input(), '-o', file('v.out.npy')])).toMatch(
      /^birnn: scored 1 sequence from /,
    )
  })

  it('a binary file or a model as --input is named for what it is, not taken for JSONL', () => {
    const binary = file('blob.bin')
    writeFileSync(binary, Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x00, 0xff, 0x10, 0x20, 0x30]))
    const b = run(['score', exampleModel, '-i', binary, '-o', file('blob.out')])
    expect(b.code).toBe(1)
    expect(b.stderr).toBe(
      `birnn: input ${binary}: expected .npy (starting with "\\x93NUMPY") or JSONL (lines like [[0.1, …], …]), received binary data starting with the bytes 50 4b 03 04 00 ff 10 20\n`,
    )
    const model = run(['score', exampleModel, '-i', exampleModel, '-o', file('m.out')])
    expect(model.code).toBe(1)
    expect(model.stderr).toMatch(
      /^birnn: input .*model\.safetensors: is a safetensors file \(a model\?\), not sequences/,
    )
    writeFileSync(file('text.txt'), 'sequence,value\n1,2\n')
    expect(run(['score', exampleModel, '-i', file('text.txt'), '-o', file('t.out')]).stderr).toMatch(
      /received text starting "sequence,value\\n1,2\\n"\n$/,
    )
  })

  it('JSONL: blank lines at the end are ignored; a blank line in the middle is an error', () => {
    const line = JSON.stringify([Array(16).fill(0.25), Array(16).fill(-0.5)])
    writeFileSync(file('trailing.jsonl'), `${line}\n${line}\n\n  \r\n\n`)
    ok(['score', exampleModel, '-i', file('trailing.jsonl'), '-o', file('trailing.out.jsonl'), '-k', 'last'])
    expect(readFileSync(file('trailing.out.jsonl'), 'utf8').split('\n')).toHaveLength(3) // two lines and the end
    writeFileSync(file('middle.jsonl'), `${line}\n\n${line}\n`)
    const result = run(['score', exampleModel, '-i', file('middle.jsonl'), '-o', file('middle.out.jsonl')])
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(
      /^birnn: input .*middle\.jsonl line 2: the line is blank \(blank lines are allowed only at the end\)/,
    )
  })
})

describe('birnn bench keeps its time estimate', () => {
  it('a call slower than --seconds is the measurement itself, and the header says so', () => {
    const args = ['bench', exampleModel, '--batch-sizes', '64', '--seq-len', '50', '--seconds', '0.001']
    const json = JSON.parse(ok([...args, '--json']))
    expect(json.results.length).toBeGreaterThan(0)
    for (const r of json.results) expect(r).toMatchObject({ calls: 1, batchSize: 64 })
    expect(ok([...args, '--backend', 'js'])).toMatch(
      /^birnn bench: .*; 50 steps per sequence, ~0\.001 s per measurement \(one call where a call takes longer\)\n/,
    )
  })
})

describe('the library alone', () => {
  it('does not load the CLI dependencies (commander, cli-progress), which the CLI loads as needed', () => {
    // CommonJS packages imported from ESM land in require.cache: list those of the two packages.
    const probe = join(built, 'probe.mjs')
    writeFileSync(
      probe,
      `import { createRequire } from 'node:module'
       const require = createRequire(import.meta.url)
       await import(process.argv[2])
       const loaded = Object.keys(require.cache).flatMap((k) => /node_modules[\\\\/](commander|cli-progress)[\\\\/]/.exec(k)?.[1] ?? [])
       console.log(JSON.stringify([...new Set(loaded)].sort()))`,
    )
    const loaded = (target: string) =>
      JSON.parse(execFileSync(process.execPath, [probe, target], { cwd: built, encoding: 'utf8' }))
    expect(loaded('./dist/index.js')).toEqual([])
    expect(loaded('./dist/cli/main.js')).toEqual(['commander']) // the progress bar is loaded only when shown
    expect(loaded('cli-progress')).toEqual(['cli-progress']) // the probe does see it when it loads
  })
})

// --- birnn convert, and info / score on .pt and ONNX (issue #13) ---------------------------------

describe('birnn convert, and the other commands on .pt checkpoints and ONNX exports', () => {
  const checkpoint = (name: string) => join(root, 'test', 'fixtures', 'checkpoints', name)
  const ioOf = (name: string) => readTensors(checkpoint(`${name}.io.safetensors`))

  it.each([
    ['pt_nested_lstm_bi_l1', 'pt_nested_lstm_bi_l1.pt', {}],
    ['onnx_gru_bi_l2_tm_h0', 'onnx_gru_bi_l2_tm_h0.onnx', {}],
    ['onnx_rnn_relu_uni_l2_bf_h0', 'onnx_rnn_relu_uni_l2_bf_h0.onnx', {}],
  ])(
    '%s: converted to safetensors, it gives the same outputs as the original and as PyTorch',
    async (name, input, options: LoadOptions) => {
      const out = file(`${name}.converted.safetensors`)
      const summary = ok(['convert', checkpoint(input), out])
      expect(summary).toMatch(
        new RegExp(
          `^birnn: converted .*${input}.* into .*${name}\\.converted\\.safetensors: .*; \\d+ tensors, float32, [\\d,]+ bytes`,
        ),
      )
      const relu = name.includes('relu')
      if (relu) expect(summary).toContain("nonlinearity 'relu' recorded in its metadata, which load() follows")
      // The layout of a batch_first module's export too (it was dropped: the converted file read
      // the same .npy as time-major).
      const bf = name.includes('_bf')
      if (bf) expect(summary).toContain('batch_first recorded in its metadata, which load() follows')
      // The metadata carries the ReLU and the layout: no option needed.
      const converted = await load(out, { ...options, backend: 'js' })
      const original = await load(checkpoint(input), { ...options, backend: 'js' })
      expect(converted.config).toEqual(original.config)
      expect(converted.config.batchFirst).toBe(bf)
      // Only the module's tensors, under PyTorch's names without any prefix.
      expect(Object.keys(readTensors(out)).every((n) => /^(weight|bias)_(ih|hh)_l\d(_reverse)?$/.test(n))).toBe(true)
      const io = ioOf(name)
      const forward = { ...(io.h0 ? { h0: io.h0 } : {}), ...(io.c0 ? { c0: io.c0 } : {}) }
      const a = converted.forwardSync(io.input, forward)
      const b = original.forwardSync(io.input, forward)
      expect(a.output).toEqual(b.output)
      expect(maxAbsDiff(a.output.data, io.output.data)).toBeLessThanOrEqual(TOLERANCE)
      expect(maxAbsDiff(a.hN.data, io.hN.data)).toBeLessThanOrEqual(TOLERANCE)
    },
  )

  it("an ONNX export of a batch_first module: score and info take the graph's layout without --batch-first", () => {
    const name = 'onnx_lstm_bi_l1_bf'
    const io = ioOf(name) // input (N, T, I), as PyTorch ran it
    const input = writeNpy(file(`${name}.in.npy`), io.input)
    const summary = ok(['score', checkpoint(`${name}.onnx`), '-i', input, '-o', file(`${name}.out.npy`)])
    expect(summary).toContain(`scored ${io.input.shape[0]} sequences`)
    const out = readNpy(file(`${name}.out.npy`))
    expect(out.shape).toEqual(io.output.shape)
    expect(maxAbsDiff(out.data, io.output.data)).toBeLessThanOrEqual(TOLERANCE)
    expect(ok(['info', checkpoint(`${name}.onnx`)])).toMatch(
      /^input {7}\(N, T, \d+\): the file records a batch-first module$/m,
    )
  })

  it('convert follows the output rules: never over the input, an existing output needs --force, -q is quiet', () => {
    const input = checkpoint('pt_rnn_tanh_uni_l1.pt')
    const over = run(['convert', input, input, '--force'])
    expect(over.code).toBe(2)
    expect(over.stderr).toMatch(
      /^birnn: output .*pt_rnn_tanh_uni_l1\.pt: is the input .*; the output must be another file \(birnn convert IN OUT\.safetensors\)\n$/,
    )
    const out = file('existing.safetensors')
    writeFileSync(out, 'old')
    expect(run(['convert', input, out]).stderr).toMatch(/: already exists; add --force to replace it/)
    expect(readFileSync(out, 'utf8')).toBe('old')
    expect(run(['convert', input, out, '--force', '-q'])).toMatchObject({ code: 0, stdout: '', stderr: '' })
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([])
    const folder = run(['convert', input, `${dir}/`])
    expect(folder.code).toBe(2)
    expect(folder.stderr).toMatch(/names a folder; give the path of a file/)
  })

  it('convert chooses the module with --prefix, and refuses a malicious checkpoint in one line', () => {
    const out = file('deeper.safetensors')
    ok(['convert', checkpoint('pt_deeper_gru_uni_l2.pt'), out, '--prefix', 'checkpoint.state_dict.encoder.rnn.', '-q'])
    expect(Object.keys(readTensors(out))).toContain('weight_ih_l1')
    const evil = run(['convert', checkpoint('pt_malicious_system.pt'), file('evil.safetensors')])
    expect(evil.code).toBe(1)
    expect(evil.stderr).toMatch(
      /^birnn: model .*pt_malicious_system\.pt: checkpoint: data\.pkl at byte \d+: refused the global 'posix\.system': .*\n$/,
    )
    expect(existsSync(file('evil.safetensors'))).toBe(false)
  })

  it('info and score take a .pt checkpoint', () => {
    const pt = checkpoint('pt_gru_bi_l2_bf.pt')
    const json = JSON.parse(ok(['info', pt, '--json', '--backend', 'js']))
    expect(json).toMatchObject({
      prefix: '',
      storedDtype: 'F32',
      config: { mode: 'GRU', numLayers: 2, bidirectional: true },
    })
    const io = ioOf('pt_gru_bi_l2_bf')
    const input = writeNpy(file('pt.in.npy'), io.input)
    ok(['score', pt, '-i', input, '-o', file('pt.out.npy'), '--batch-first', '-q', '--backend', 'js'])
    // Without h0, so compared with the library rather than with PyTorch's h0 run.
    return load(pt, { batchFirst: true, backend: 'js' }).then((model) => {
      const expected = model.forwardSync(io.input).output
      expect(maxAbsDiff(readNpy(file('pt.out.npy')).data, expected.data)).toBeLessThanOrEqual(TOLERANCE)
    })
  })
})
