// How the command fails. Every error that reaches main() becomes one exit code and one message:
// the user's mistakes and the run's failures are one clean line; anything else is a bug in birnn,
// reported as such with its stack.

import { type Stats, statSync } from 'node:fs'

export const EXIT_FAILED = 1
export const EXIT_USAGE = 2
/** 128 + SIGPIPE: what a shell reports for a tool stopped by a closed pipe. */
export const EXIT_PIPE = 141
/** EX_SOFTWARE in sysexits.h: an internal error. */
const EXIT_INTERNAL = 70

/** The command line is wrong (exit 2). */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** The run cannot go on: a file is missing or invalid, the input does not fit the model (exit 1). */
export class RunError extends Error {
  override name = 'RunError'
}

/** A failed system call (fs, I/O), as Node reports it. */
const isSystemError = (error: unknown): error is NodeJS.ErrnoException =>
  error instanceof Error && typeof (error as NodeJS.ErrnoException).syscall === 'string'

/** Library errors carry a stable code (lib/errors.ts). */
const isLibraryError = (error: unknown): error is Error & { code: string } =>
  error instanceof Error && String((error as { code?: unknown }).code).startsWith('ERR_BIRNN_')

/** True for the errors that are the user's or the environment's, not a bug. */
export const isUserError = (error: unknown): error is Error =>
  error instanceof UsageError || error instanceof RunError || isLibraryError(error) || isSystemError(error)

/** A failed system call in plain words. */
export function fsReason(error: unknown): string {
  switch ((error as NodeJS.ErrnoException).code) {
    case 'ENOENT':
      return 'no such file'
    case 'EACCES':
    case 'EPERM':
      return 'permission denied'
    case 'ENOSPC':
      return 'no space left on the device'
    case 'EISDIR':
      return 'is a folder'
    case 'ENOTDIR':
      return 'a part of the path is not a folder'
    default:
      return (error as Error).message
  }
}

/** Checks up front that a file named on the command line can be read, with a plain message. */
export function requireFile(path: string, what: string): void {
  let stats: Stats
  try {
    stats = statSync(path)
  } catch (error) {
    throw new RunError(`${what} ${path}: ${fsReason(error)}`)
  }
  if (stats.isDirectory()) throw new RunError(`${what} ${path}: is a folder, not a file`)
  // birnn reads its files by position (a header, then part by part); and opening a FIFO would wait
  // for a writer, past any signal.
  if (!stats.isFile()) {
    throw new RunError(
      `${what} ${path}: is not a regular file (a pipe or a device); birnn reads its files by position: save the stream to a file first`,
    )
  }
}

/** The exit code and the line to print for an error that ends the run. */
export function exitFor(error: unknown): { code: number; message: string; internal: boolean } {
  if (error instanceof UsageError) return { code: EXIT_USAGE, message: error.message, internal: false }
  if (isSystemError(error)) {
    const where = error.path ?? error.syscall
    return { code: EXIT_FAILED, message: `${where}: ${fsReason(error)}`, internal: false }
  }
  if (isUserError(error)) return { code: EXIT_FAILED, message: error.message, internal: false }
  // A batch or a file too large for one array of this process: a limit of the run, not a bug.
  if (
    error instanceof RangeError &&
    /^(Invalid typed array length|Array buffer allocation failed)/.test(error.message)
  ) {
    const message = `out of memory: an array of this run is too large (${error.message}); use smaller batches (score's --batch-size) or shorter sequences`
    return { code: EXIT_FAILED, message, internal: false }
  }
  const message = error instanceof Error ? error.message : String(error)
  return { code: EXIT_INTERNAL, message: `internal error: ${message}`, internal: true }
}
