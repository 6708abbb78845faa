// Runs cmake-js from this package's dependencies, the one way every build script invokes it:
// from the package root, with the output shown, and at most 8 parallel compile jobs.
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)

/** The package root (this file is scripts/cmake-js.mjs). */
export const root = fileURLToPath(new URL('..', import.meta.url))

/** `cmake-js <command> ...args --parallel N`; returns spawnSync's result. */
export function cmakeJs(command, args = []) {
  const bin = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js')
  const parallel = String(Math.max(1, Math.min(availableParallelism(), 8)))
  return spawnSync(process.execPath, [bin, command, ...args, '--parallel', parallel], { cwd: root, stdio: 'inherit' })
}

/** Why a finished spawnSync failed, in a few words. */
export const failure = (result) => (result.error ? result.error.message : `exit code ${result.status ?? result.signal}`)
