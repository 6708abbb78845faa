// Faults from outside: a full disk while `birnn score` writes, the process killed (SIGKILL, no
// cleanup) mid-write, a stale temporary file of an earlier killed run, and a machine that refuses
// new threads. The command runs as users run it (harness.ts: the CLI built into a temporary
// package, in a subprocess); everything is written under temporary folders.
import { spawn, spawnSync } from 'node:child_process'
import {
  chmodSync,
  closeSync,
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
import { maxAbsDiff, rng } from '../helpers.js'
import { buildPackage, npyBytes, readNpy, root, runCli } from './harness.js'

const exampleModel = join(root, 'examples', 'model.safetensors')
let built: string
let dir: string

beforeAll(() => {
  built = buildPackage()
  dir = mkdtempSync(join(tmpdir(), 'birnn-faults-'))
}, 120_000)

afterAll(() => {
  for (const folder of [built, dir]) if (folder) rmSync(folder, { recursive: true, force: true })
})

const cli = () => join(built, 'dist', 'cli', 'main.js')

/** A new empty folder under the test's temporary folder. */
const folder = (name: string) => mkdtempSync(join(dir, `${name}-`))

/** A batch-first (N, T, 16) float32 .npy of seeded values, written in chunks. */
function writeInput(path: string, N: number, T: number): string {
  const fd = openSync(path, 'w')
  writeSync(fd, npyBytes([N, T, 16], '<f4', Buffer.alloc(0)))
  const chunk = rng(1).floats(1 << 16)
  for (let left = N * T * 16; left > 0; left -= chunk.length)
    writeSync(fd, new Uint8Array(chunk.buffer, 0, Math.min(left, chunk.length) * 4))
  closeSync(fd)
  return path
}

/** JSONL input of the same kind: one sequence of T rows of 16 numbers per line. */
function writeJsonl(path: string, N: number, T: number): string {
  const r = rng(3)
  const line = () => JSON.stringify(Array.from({ length: T }, () => Array.from(r.floats(16), (v) => +v.toFixed(3))))
  writeFileSync(path, `${Array.from({ length: N }, line).join('\n')}\n`)
  return path
}

/** Runs the CLI with a module preloaded (`node --import preload main.js ...`). */
function runWith(preload: string, args: string[], cwd: string) {
  const result = spawnSync(process.execPath, ['--import', preload, cli(), ...args], { encoding: 'utf8', cwd })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

describe('a full disk while writing the output', () => {
  // Preloaded: every write to a file whose name ends in .tmp (the output under construction)
  // fails with ENOSPC once LIMIT bytes went to such files, as a full disk would; a write that
  // crosses the limit writes what fits first, as write(2) does.
  const preload = () => {
    const path = join(dir, 'enospc.mjs')
    writeFileSync(
      path,
      `import fs from 'node:fs'
       import { syncBuiltinESMExports } from 'node:module'
       const LIMIT = Number(process.env.FAULT_ENOSPC_AFTER)
       const open = fs.openSync
       const write = fs.writeSync
       const temp = new Set()
       let written = 0
       fs.openSync = (path, ...rest) => {
         const fd = open(path, ...rest)
         if (String(path).endsWith('.tmp')) temp.add(fd)
         return fd
       }
       fs.writeSync = (fd, buffer, offset = 0, length, position) => {
         if (!temp.has(fd)) return write(fd, buffer, offset, length, position)
         length ??= buffer.length - offset
         const room = LIMIT - written
         if (room <= 0) {
           throw Object.assign(new Error('ENOSPC: no space left on device, write'), { errno: -28, code: 'ENOSPC', syscall: 'write' })
         }
         const n = write(fd, buffer, offset, Math.min(length, room), position)
         written += n
         return n
       }
       syncBuiltinESMExports()`,
    )
    return path
  }

  it.each([
    ['.npy, a full output', 'npy', ['--batch-first'], 20_000],
    ['.npy, the header already does not fit', 'npy', ['--batch-first'], 10],
    ['JSONL, a mean output', 'jsonl', ['-k', 'mean'], 3_000],
  ] as const)('%s: exit 1 with one clean line, no partial file, the old output kept', (_, kind, extra, limit) => {
    const where = folder('enospc')
    const input =
      kind === 'npy' ? writeInput(join(where, 'in.npy'), 200, 20) : writeJsonl(join(where, 'in.jsonl'), 200, 5)
    const output = join(where, `out.${kind}`)
    writeFileSync(output, 'the previous output')
    const hook = preload()
    const env = { ...process.env, FAULT_ENOSPC_AFTER: String(limit) }
    const result = spawnSync(
      process.execPath,
      ['--import', hook, cli(), 'score', exampleModel, '-i', input, '-o', output, '-b', '16', ...extra],
      { encoding: 'utf8', cwd: where, env },
    )
    expect(result.status).toBe(1)
    // It names the output, not only the system call that failed.
    expect(result.stderr).toBe(
      `birnn: output ${output}: cannot write it: no space left on the device; no output written\n`,
    )
    expect(readFileSync(output, 'utf8')).toBe('the previous output')
    expect(readdirSync(where).sort()).toEqual([`in.${kind}`, `out.${kind}`])
    console.log(`disk full after ${limit} bytes (${kind}): exit ${result.status}, ${result.stderr.trim()}`)
  })

  // The same on a real, small file system where the machine allows mounting one (root on Linux).
  it('a real 256 KiB tmpfs that fills up: the same', (context) => {
    const mountPoint = folder('tmpfs')
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mountPoint], { encoding: 'utf8' })
    if (mounted.status !== 0) {
      context.skip(`cannot mount a tmpfs here: ${(mounted.stderr || mounted.error?.message || '').trim()}`)
      return
    }
    try {
      const input = writeInput(join(dir, 'tmpfs-in.npy'), 400, 20) // its full output: 400·20·64·4 = 2 MB
      const output = join(mountPoint, 'out.npy')
      writeFileSync(output, 'the previous output')
      const result = runCli(
        built,
        ['score', exampleModel, '-i', input, '-o', output, '--batch-first', '-b', '16'],
        {},
        dir,
      )
      expect(result.code).toBe(1)
      expect(result.stderr).toMatch(
        /^birnn: output .*out\.npy: cannot write it: no space left on the device; no output written\n$/,
      )
      expect(readFileSync(output, 'utf8')).toBe('the previous output')
      expect(readdirSync(mountPoint)).toEqual(['out.npy'])
      // And a job that fits runs there.
      const small = writeInput(join(dir, 'tmpfs-small.npy'), 4, 20)
      expect(
        runCli(built, ['score', exampleModel, '-i', small, '-o', output, '--batch-first', '-q'], {}, dir).code,
      ).toBe(0)
      expect(readNpy(output).shape).toEqual([4, 20, 64])
      expect(readdirSync(mountPoint)).toEqual(['out.npy'])
    } finally {
      spawnSync('umount', [mountPoint])
    }
  })
})

describe('killed mid-write (SIGKILL: no handler runs)', () => {
  it('leaves no partial file under the output name, only its temporary file; the next run succeeds', async () => {
    const where = folder('sigkill')
    const input = writeInput(join(where, 'in.npy'), 4_000, 50)
    const output = join(where, 'out.npy')
    writeFileSync(output, 'the previous output')
    const args = ['score', exampleModel, '-i', input, '-o', output, '--batch-first', '-b', '8', '--backend', 'js']
    const child = spawn(process.execPath, [cli(), ...args], { stdio: 'ignore' })
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_, signal) => resolve(signal)))
    const temp = `.out.npy.${child.pid}.tmp`
    const deadline = Date.now() + 20_000
    while (!(existsSync(join(where, temp)) && statSync(join(where, temp)).size > 64 * 1024) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20))
    expect(statSync(join(where, temp)).size).toBeGreaterThan(64 * 1024)
    child.kill('SIGKILL')
    expect(await exited).toBe('SIGKILL')
    expect(readFileSync(output, 'utf8')).toBe('the previous output')
    expect(readdirSync(where).sort()).toEqual([temp, 'in.npy', 'out.npy'])

    // The stale temporary file does not get in the way of the next run, which leaves it alone.
    const small = writeInput(join(where, 'small.npy'), 3, 50)
    const rerun = runCli(built, ['score', exampleModel, '-i', small, '-o', output, '--batch-first', '-q'], {}, where)
    expect(rerun).toMatchObject({ code: 0, stderr: '' })
    const model = await load(exampleModel, { batchFirst: true })
    const expected = model.forwardSync(readNpy(small)).output
    const got = readNpy(output)
    expect(got.shape).toEqual(expected.shape)
    expect(maxAbsDiff(got.data, expected.data)).toBeLessThanOrEqual(1e-5)
    expect(readdirSync(where).sort()).toEqual([temp, 'in.npy', 'out.npy', 'small.npy'])
  }, 60_000)

  // In a container the job often has the same process id every time it starts (PID 1, or a
  // small fixed number): the temporary file of a killed run then has the very name the next run
  // wants. Simulated by fixing process.pid in a preloaded module.
  it('a stale temporary file with the name this run would use (a reused process id) does not block it', () => {
    const where = folder('pid-reuse')
    const hook = join(where, 'pid.mjs')
    writeFileSync(hook, "Object.defineProperty(process, 'pid', { value: 7 })\n")
    const input = writeInput(join(where, 'in.npy'), 3, 10)
    const stale = join(where, '.out.npy.7.tmp')
    writeFileSync(stale, 'half of an output from a killed run')
    const result = runWith(
      hook,
      ['score', exampleModel, '-i', input, '-o', join(where, 'out.npy'), '--batch-first', '-q'],
      where,
    )
    expect(result).toMatchObject({ code: 0, stderr: '' })
    expect(readNpy(join(where, 'out.npy')).shape).toEqual([3, 10, 64])
    // The stale file is not ours to remove (another live process may own that name).
    expect(readFileSync(stale, 'utf8')).toBe('half of an output from a killed run')
    expect(readdirSync(where).sort()).toEqual(['.out.npy.7.tmp', 'in.npy', 'out.npy', 'pid.mjs'])
    // A run killed mid-write leaves its temporary file under another name (.out.npy.7-RANDOM.tmp).
  })
})

describe('no new threads allowed (RLIMIT_NPROC)', () => {
  // A child process lowers its own RLIMIT_NPROC to 1 once Node and the libuv pool are up, so
  // every thread the kernel tries to start fails (EAGAIN); the results must not change. The
  // limit does not apply to root, so as root the child runs as `nobody` (setpriv).
  it('a forward with threads: 8 still gives the right result, sync and async', (context) => {
    const work = folder('nproc')
    for (const path of [dir, work]) chmodSync(path, 0o755)
    chmodSync(built, 0o755)
    const script = join(work, 'nproc.mjs')
    writeFileSync(
      script,
      `import { execFileSync, spawnSync } from 'node:child_process'
       import { stat } from 'node:fs/promises'
       const { fromStateDict } = await import(${JSON.stringify(join(built, 'dist', 'index.js'))})
       let seed = 1
       const floats = (n, scale) => Float32Array.from({ length: n }, () => {
         seed = (seed * 1103515245 + 12345) % 2147483648
         return (seed / 2147483648 - 0.5) * 2 * scale
       })
       const I = 32, H = 96, T = 24, N = 24
       const tensors = {}
       for (const l of [0, 1]) for (const s of ['', '_reverse']) {
         tensors['weight_ih_l' + l + s] = { data: floats(4 * H * (l ? 2 * H : I), 0.1), shape: [4 * H, l ? 2 * H : I] }
         tensors['weight_hh_l' + l + s] = { data: floats(4 * H * H, 0.1), shape: [4 * H, H] }
         tensors['bias_ih_l' + l + s] = { data: floats(4 * H, 0.1), shape: [4 * H] }
         tensors['bias_hh_l' + l + s] = { data: floats(4 * H, 0.1), shape: [4 * H] }
       }
       const input = { data: floats(T * N * I, 1), shape: [T, N, I] }
       const backend = process.argv[2]
       const one = fromStateDict(tensors, { backend, threads: 1 })
       const eight = fromStateDict(tensors, { backend, threads: 8 })
       const js = fromStateDict(tensors, { backend: 'js' })
       await stat('.') // the libuv pool starts its threads now
       execFileSync('prlimit', ['--pid', String(process.pid), '--nproc=1:1'])
       const probe = spawnSync('true')
       const limited = probe.error?.code === 'EAGAIN'
       const reference = one.forwardSync(input).output.data
       const sync = eight.forwardSync(input).output.data
       const asyncResult = (await eight.forward(input)).output.data
       const oracle = js.forwardSync(input).output.data
       let jsDiff = 0
       for (let i = 0; i < oracle.length; i++) jsDiff = Math.max(jsDiff, Math.abs(oracle[i] - reference[i]))
       const same = (a, b) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]))
       console.log(JSON.stringify({ limited, probe: probe.error?.code ?? null, backend: eight.backend,
         sameSync: same(sync, reference), sameAsync: same(asyncResult, reference), jsDiff }))`,
    )
    const backend = process.env.BIRNN_REQUIRE_NATIVE === '1' ? 'native' : 'auto'
    const asRoot = process.getuid?.() === 0
    const command = asRoot
      ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, script, backend]
      : [process.execPath, script, backend]
    const result = spawnSync(command[0], command.slice(1), { encoding: 'utf8', cwd: work, timeout: 120_000 })
    if (result.error || (result.status !== 0 && /setpriv/.test(result.stderr))) {
      context.skip(`cannot run a process as another user here: ${result.error?.message ?? result.stderr.trim()}`)
      return
    }
    expect(result.stderr).toBe('')
    expect(result.status).toBe(0)
    const outcome = JSON.parse(result.stdout)
    console.log(`no new threads: ${result.stdout.trim()}`)
    if (!outcome.limited) {
      context.skip(`RLIMIT_NPROC is not enforced here (starting a process gave ${outcome.probe ?? 'no error'})`)
      return
    }
    expect(outcome).toMatchObject({ sameSync: true, sameAsync: true })
    expect(outcome.jsDiff).toBeLessThanOrEqual(1e-5)
    if (backend === 'native') expect(outcome.backend).toBe('native')
  }, 120_000)
})
