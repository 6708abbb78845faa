#!/usr/bin/env node
// Builds wasm/birnn.wasm, the WebAssembly engine's module: the kernel (native/network.cc,
// forward.cc, thread_plan.cc and kernels/wasm.cc, the one-source kernel on 128-bit wasm SIMD)
// and its C ABI (native/wasm_api.cc), with clang for wasm32-wasi. `npm run build:wasm`.
//
// Needs clang and wasm-ld with a wasm32-wasi libc and libc++ (Debian: clang-19 lld-19
// wasi-libc libc++-19-dev-wasm32 libc++abi-19-dev-wasm32 libclang-rt-19-dev-wasm32). Set
// BIRNN_WASM_CXX to pick the compiler, WASI_SYSROOT for a sysroot that is not the compiler's default.
// The module imports nothing (no WASI: a reactor with no entry point and no I/O), which is
// checked here, so any runtime with WebAssembly SIMD can instantiate it from its bytes alone.

import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const out = join(root, 'wasm', 'birnn.wasm')

const candidates = [process.env.BIRNN_WASM_CXX, 'clang++-19', 'clang++', '/usr/lib/llvm-19/bin/clang++'].filter(Boolean)
const cxx = candidates.find((c) => {
  try {
    execFileSync(c, ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})
if (!cxx) {
  console.error(`build-wasm: no clang++ found (tried ${candidates.join(', ')}); set BIRNN_WASM_CXX`)
  process.exit(1)
}

const sources = [
  'native/network.cc',
  'native/forward.cc',
  'native/thread_plan.cc',
  'native/kernels/wasm.cc',
  'native/wasm_api.cc',
].map((s) => join(root, s))

const flags = [
  '--target=wasm32-wasi',
  ...(process.env.WASI_SYSROOT ? [`--sysroot=${process.env.WASI_SYSROOT}`] : []),
  '-std=c++17',
  '-O3',
  '-DNDEBUG',
  '-msimd128',
  '-mbulk-memory',
  '-mnontrapping-fptoint',
  '-ffp-contract=fast',
  // `throw` becomes a call to wasm_api.cc's __cxa_throw, which traps (see there).
  '-fexceptions',
  '-I',
  join(root, 'native'),
  '-include',
  join(root, 'native/wasm_no_threads.h'),
  '-Wall',
  '-Wextra',
  '-Werror',
]
const link = [
  // A reactor: no main, _initialize runs the static constructors once. (A command module would
  // wrap every export in constructors and destructors, and its destructors flush stdio: WASI.)
  '-mexec-model=reactor',
  '-Wl,--gc-sections',
  '-Wl,--strip-all',
  '-Wl,-z,stack-size=1048576',
  '-Wl,--initial-memory=4194304',
  '-Wl,--max-memory=4294967296',
]

mkdirSync(dirname(out), { recursive: true })
const tmp = `${out}.tmp`
rmSync(tmp, { force: true })
const args = [...flags, ...sources, ...link, '-o', tmp]
console.log(`${cxx} ${args.map((a) => a.replace(`${root}/`, '')).join(' ')}`)
try {
  execFileSync(cxx, args, { stdio: 'inherit', cwd: root })
} catch {
  console.error('build-wasm: the compile failed (above)')
  process.exit(1)
}

const module = new WebAssembly.Module(readFileSync(tmp))
const imports = WebAssembly.Module.imports(module)
if (imports.length > 0) {
  rmSync(tmp)
  console.error(
    `build-wasm: the module must import nothing, but imports ${imports.map((i) => `${i.module}.${i.name}`).join(', ')}`,
  )
  process.exit(1)
}
const exported = new Set(WebAssembly.Module.exports(module).map((e) => e.name))
for (const name of [
  'memory',
  '_initialize',
  'birnn_malloc',
  'birnn_free',
  'birnn_last_error',
  'birnn_network_create',
  'birnn_network_free',
  'birnn_network_forward',
]) {
  if (!exported.has(name)) {
    rmSync(tmp)
    console.error(`build-wasm: the module does not export ${name}`)
    process.exit(1)
  }
}
renameSync(tmp, out)
console.log(`build-wasm: wrote ${out.replace(`${root}/`, '')} (${readFileSync(out).length} bytes)`)
