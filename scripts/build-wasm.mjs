#!/usr/bin/env node
// Builds the WebAssembly engine's modules: the kernel (native/network.cc, forward.cc,
// thread_plan.cc and kernels/wasm.cc, the one-source kernel on 128-bit wasm SIMD) and its C ABI
// (native/wasm_api.cc), with clang for wasm32-wasi, twice: `npm run build:wasm`.
//   wasm/birnn.wasm          128-bit SIMD: every runtime with WebAssembly SIMD (Node 16.4 on)
//   wasm/birnn-relaxed.wasm  relaxed SIMD as well (fused multiply-add): Node 21 on, Deno, Chrome
//
// Needs clang and wasm-ld with a wasm32-wasi libc and libc++ (Debian: clang-19 lld-19
// wasi-libc libc++-19-dev-wasm32 libc++abi-19-dev-wasm32 libclang-rt-19-dev-wasm32). Set
// BIRNN_WASM_CXX to pick the compiler, WASI_SYSROOT for a sysroot that is not the compiler's default.
// A module imports nothing (no WASI: a reactor with no entry point and no I/O), which is
// checked here, so any runtime with WebAssembly SIMD can instantiate it from its bytes alone.
// Node 20 checks the relaxed module in a child process with --experimental-wasm-relaxed-simd
// (`build-wasm.mjs --check FILE`); later Nodes have it on by default.

import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const EXPORTS = [
  'memory',
  '_initialize',
  'birnn_malloc',
  'birnn_free',
  'birnn_last_error',
  'birnn_network_create',
  'birnn_network_free',
  'birnn_network_forward',
]

/** Why the module at `path` is not one the engine can instantiate, or undefined. */
function problem(path) {
  const module = new WebAssembly.Module(readFileSync(path))
  const imports = WebAssembly.Module.imports(module)
  if (imports.length > 0) {
    return `the module must import nothing, but imports ${imports.map((i) => `${i.module}.${i.name}`).join(', ')}`
  }
  const exported = new Set(WebAssembly.Module.exports(module).map((e) => e.name))
  const missing = EXPORTS.filter((name) => !exported.has(name))
  return missing.length > 0 ? `the module does not export ${missing.join(', ')}` : undefined
}

if (process.argv[2] === '--check') {
  const why = problem(process.argv[3])
  if (why) console.error(why)
  process.exit(why ? 1 : 0)
}

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
  // fma() is explicit (relaxed_madd, or a multiply and an add): no contraction may fuse anything else.
  '-ffp-contract=off',
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

/** Compiles one variant into wasm/NAME, checked before it replaces the old one. */
function build(name, extraFlags, checkArgs) {
  const out = join(root, 'wasm', name)
  mkdirSync(dirname(out), { recursive: true })
  const tmp = `${out}.tmp`
  rmSync(tmp, { force: true })
  const args = [...flags, ...extraFlags, ...sources, ...link, '-o', tmp]
  console.log(`${cxx} ${args.map((a) => a.replace(`${root}/`, '')).join(' ')}`)
  try {
    execFileSync(cxx, args, { stdio: 'inherit', cwd: root })
  } catch {
    console.error('build-wasm: the compile failed (above)')
    process.exit(1)
  }
  let why
  try {
    execFileSync(process.execPath, [...checkArgs, fileURLToPath(import.meta.url), '--check', tmp], { stdio: 'pipe' })
  } catch (error) {
    why = error.stderr?.toString().trim() || error.message
  }
  if (why) {
    rmSync(tmp)
    console.error(`build-wasm: ${name}: ${why}`)
    process.exit(1)
  }
  renameSync(tmp, out)
  console.log(`build-wasm: wrote wasm/${name} (${readFileSync(out).length} bytes)`)
}

// Relaxed SIMD is on by default from Node 21 (V8 11.4); Node 20 has it behind a flag, which
// later Nodes no longer accept.
const relaxedFlag = Number(process.versions.node.split('.')[0]) < 21 ? ['--experimental-wasm-relaxed-simd'] : []
build('birnn.wasm', [], [])
build('birnn-relaxed.wasm', ['-mrelaxed-simd'], relaxedFlag)
