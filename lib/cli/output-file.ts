// The output file: checked before any input is read, written to a hidden temporary file in the
// output's folder, and renamed over the output only once complete, so that an interrupted or
// failed run never leaves a file that looks complete, and never touches an input.

import { randomBytes } from 'node:crypto'
import {
  accessSync,
  closeSync,
  constants,
  fchmodSync,
  fsyncSync,
  openSync,
  realpathSync,
  renameSync,
  type Stats,
  statSync,
  unlinkSync,
} from 'node:fs'
import { basename, dirname, join, resolve, sep } from 'node:path'
import { fsReason, RunError, UsageError } from './errors.js'

/** The real path of a file that may not exist yet (its folder's real path, then its name). */
function realPath(path: string): string {
  try {
    return realpathSync(path)
  } catch {
    try {
      return join(realpathSync(dirname(resolve(path))), basename(path))
    } catch {
      return resolve(path)
    }
  }
}

/** True when two paths name the same file, through links and relative paths. */
export const sameFile = (a: string, b: string): boolean => realPath(a) === realPath(b)

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path)
  } catch {
    return undefined
  }
}

/**
 * Checks the output path up front: a file (not a folder) in a writable folder, none of the inputs,
 * and, when it exists, writable and allowed to be replaced. `name` is how the command line calls it.
 */
export function checkOutput(
  name: string,
  path: string,
  inputs: ReadonlyArray<{ label: string; path: string }>,
  { replace, hint = '', example = 'out.npy' }: { replace: boolean; hint?: string; example?: string },
): void {
  const what = `${name} ${path}`
  if (path === '') throw new UsageError(`${name}: expected the path of a file, received an empty string`)
  if (path.endsWith('/') || path.endsWith(sep)) {
    throw new UsageError(`${what}: names a folder; give the path of a file, e.g. ${join(path, example)}`)
  }
  const stats = statOrUndefined(path)
  if (stats?.isDirectory()) {
    throw new UsageError(`${what}: is a folder; give the path of a file, e.g. ${join(path, example)}`)
  }
  if (stats && !stats.isFile()) throw new UsageError(`${what}: exists and is not a regular file`)
  for (const input of inputs) {
    if (sameFile(path, input.path)) {
      throw new UsageError(`${what}: is ${input.label} ${input.path}; the output must be another file${hint}`)
    }
  }
  if (stats && !replace) throw new UsageError(`${what}: already exists; add --force to replace it${hint}`)
  // Renaming over a file needs no permission on the file itself: refuse one its owner made read-only.
  if (stats && (stats.mode & constants.S_IWUSR) === 0) {
    throw new RunError(`${what}: is read-only; make it writable (chmod u+w) or choose another output`)
  }
  const folder = dirname(resolve(path))
  const folderStats = statOrUndefined(folder)
  if (!folderStats) throw new RunError(`${what}: the folder ${folder} does not exist`)
  if (!folderStats.isDirectory()) throw new RunError(`${what}: ${folder} is not a folder`)
  try {
    accessSync(folder, constants.W_OK)
  } catch {
    throw new RunError(`${what}: cannot write in the folder ${folder} (permission denied)`)
  }
}

/**
 * The output file under construction: `.NAME.PID.tmp` next to the output (`.NAME.PID-RANDOM.tmp`
 * where a killed run left that name), renamed over it by commit() (keeping the mode of the file
 * it replaces), and removed by discard().
 */
export class PendingOutput {
  readonly path: string
  readonly temp: string
  readonly fd: number
  #done = false

  constructor(path: string) {
    this.path = path
    // Within the 255 bytes a file name may have, whatever the output's own name takes.
    const suffix = `.${process.pid}-00000000.tmp`
    let name = basename(path)
    while (Buffer.byteLength(`.${name}${suffix}`) > 255) name = name.slice(0, -1)
    const stem = join(dirname(resolve(path)), `.${name}.${process.pid}`)
    // A file of that name is left from a killed run whose process had our id (in a container the
    // job often has the same id each time): never ours to remove, so take another name beside it.
    for (let attempt = 0; ; attempt++) {
      const temp = attempt === 0 ? `${stem}.tmp` : `${stem}-${randomBytes(4).toString('hex')}.tmp`
      try {
        this.fd = openSync(temp, 'wx')
        this.temp = temp
        return
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt === 8) {
          throw new RunError(`output ${path}: cannot create ${temp}: ${fsReason(error)}`)
        }
      }
    }
  }

  commit(): void {
    const replaced = statOrUndefined(this.path)
    if (replaced) fchmodSync(this.fd, replaced.mode & 0o7777)
    fsyncSync(this.fd)
    closeSync(this.fd)
    renameSync(this.temp, this.path)
    this.#done = true
  }

  /**
   * Discards the file after `error`, and returns the error to throw: a failed write, sync or
   * rename (a full disk) says which output it was, not just the system call.
   */
  abandon(error: unknown): unknown {
    this.discard()
    const failed = error as NodeJS.ErrnoException
    if (error instanceof Error && typeof failed.syscall === 'string' && (!failed.path || failed.path === this.temp)) {
      return new RunError(`output ${this.path}: cannot write it: ${fsReason(error)}; no output written`)
    }
    return error
  }

  discard(): void {
    if (this.#done) return
    this.#done = true
    try {
      closeSync(this.fd)
    } catch {}
    try {
      unlinkSync(this.temp)
    } catch {}
  }
}

const SIGNALS: ReadonlyArray<[NodeJS.Signals, number]> = [
  ['SIGHUP', 129],
  ['SIGINT', 130],
  ['SIGTERM', 143],
]

/**
 * Until the returned function is called, a SIGHUP, SIGINT or SIGTERM runs `cleanup` (which removes
 * the temporary file), then exits as a shell expects: 128 + the signal's number.
 */
export function onInterrupt(cleanup: () => void): () => void {
  const handler = (signal: NodeJS.Signals) => {
    cleanup()
    process.stderr.write(`birnn: ${signal}: stopped; no output written\n`)
    process.exit(SIGNALS.find(([s]) => s === signal)![1])
  }
  for (const [signal] of SIGNALS) process.on(signal, handler)
  return () => {
    for (const [signal] of SIGNALS) process.off(signal, handler)
  }
}
