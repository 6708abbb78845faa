// The package's `install` script. A prebuild (or an existing local build) that loads wins; otherwise
// the addon is built from source with cmake-js. It never fails the install: without cmake or a C++
// compiler, with BIRNN_SKIP_BUILD=1, or when the build fails, it warns and birnn runs on its
// WebAssembly engine where the package ships it, else on the pure-JS engine (load() then says why
// in model.backendReason).
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { cmakeJs, failure, root } from './cmake-js.mjs'

const require = createRequire(import.meta.url)
const fallback = existsSync(join(root, 'wasm', 'birnn.wasm'))
  ? 'birnn will use its WebAssembly engine'
  : 'birnn will use its JavaScript engine'

function warn(why) {
  console.warn(`birnn: ${why}; ${fallback}.`)
  process.exit(0)
}

function loadsAlready() {
  try {
    require(require('node-gyp-build').path(root))
    return true
  } catch {
    return false
  }
}

const runs = (command, args) => spawnSync(command, args, { stdio: 'ignore' }).status === 0
const hasCompiler = () => [process.env.CXX, 'c++', 'g++', 'clang++'].some((cxx) => cxx && runs(cxx, ['--version']))

if (loadsAlready()) process.exit(0)
if (process.env.BIRNN_SKIP_BUILD === '1') warn('BIRNN_SKIP_BUILD=1, not building the native addon')
if (!runs('cmake', ['--version'])) warn('no prebuild for this platform and cmake was not found')
if (!hasCompiler()) warn('no prebuild for this platform and no C++ compiler was found')

const build = cmakeJs('compile')
if (build.status !== 0) {
  warn(`building the native addon with cmake-js failed (${failure(build)}; see the output above)`)
}
