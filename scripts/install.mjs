// The package's `install` script. A prebuild (or an existing local build) that loads wins; otherwise
// the addon is built from source with cmake-js. Without cmake or a C++ compiler, or with
// BIRNN_SKIP_BUILD=1, it warns in one line and succeeds: birnn then runs on its pure-JS engine.
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = fileURLToPath(new URL('..', import.meta.url))
const fallback = 'birnn will use its JavaScript engine'

function warn(why) {
  console.warn(`birnn: ${why}; ${fallback}.`)
  process.exit(0)
}

function loadsAlready() {
  try {
    const file = require('node-gyp-build').path(root)
    require(file)
    return file
  } catch {
    return undefined
  }
}

function runs(command, args) {
  const result = spawnSync(command, args, { stdio: 'ignore', shell: process.platform === 'win32' })
  return result.status === 0
}

function hasCompiler() {
  if (process.platform === 'win32') return true // cmake-js finds Visual Studio itself
  const candidates = [process.env.CXX, 'c++', 'g++', 'clang++'].filter(Boolean)
  return candidates.some((cxx) => runs(cxx, ['--version']))
}

if (process.env.BIRNN_SKIP_BUILD === '1') warn('BIRNN_SKIP_BUILD=1, not building the native addon')

const found = loadsAlready()
if (found) process.exit(0)

if (!runs('cmake', ['--version'])) warn('no prebuild for this platform and cmake was not found')
if (!hasCompiler()) warn('no prebuild for this platform and no C++ compiler was found')

const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js')
const parallel = String(Math.max(1, Math.min(availableParallelism(), 8)))
const build = spawnSync(process.execPath, [cmakeJs, 'compile', '--parallel', parallel], { cwd: root, stdio: 'inherit' })
if (build.status !== 0) {
  const how = build.error ? build.error.message : `exit code ${build.status ?? build.signal}`
  console.error(
    `birnn: building the native addon with cmake-js failed (${how}); see the output above. ` +
      `Fix the toolchain, or set BIRNN_SKIP_BUILD=1 to install without it and use the JavaScript engine.`,
  )
  process.exit(1)
}
