// npm run test:sanitize [-- <vitest args>]: builds the addon with AddressSanitizer and
// UndefinedBehaviorSanitizer into build-asan/ and runs the tests that reach the addon against it
// (the native, parity and unit projects: every PyTorch fixture on every SIMD path, errors, fuzzing).
// Exits non-zero on a failing test or on any sanitizer report. Linux with GCC only (the runtimes
// are preloaded into node, which is not itself instrumented).
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, isAbsolute, join } from 'node:path'
import { cmakeJs, failure, root } from './cmake-js.mjs'

const require = createRequire(import.meta.url)
const out = join(root, 'build-asan')
const addon = join(out, 'Release', 'birnn.node')

function fail(message) {
  console.error(`sanitize: ${message}`)
  process.exit(1)
}

if (process.platform !== 'linux')
  fail(`needs Linux (LD_PRELOAD of the GCC sanitizer runtimes), not ${process.platform}`)

// 1. Build.
const build = cmakeJs('compile', ['--out', out, '--CDBIRNN_SANITIZE=ON'])
if (build.status !== 0) fail(`the sanitizer build failed (${failure(build)})`)
if (!existsSync(addon)) fail(`the sanitizer build did not produce ${addon}`)

// 2. The runtimes, from the compiler that built the addon.
const cache = readFileSync(join(out, 'CMakeCache.txt'), 'utf8')
const cxx = /^CMAKE_CXX_COMPILER:\w+=(.+)$/m.exec(cache)?.[1]?.trim() || 'gcc'
function runtime(name) {
  const found = spawnSync(cxx, [`-print-file-name=${name}`], { encoding: 'utf8' }).stdout?.trim()
  if (!found || !isAbsolute(found) || !existsSync(found)) {
    fail(`${cxx} -print-file-name=${name} did not find the runtime (received '${found ?? ''}'); build with GCC`)
  }
  return found
}
const preload = [runtime('libasan.so'), runtime('libubsan.so')]

// 3. Test, watching the output for sanitizer reports (a report in a vitest worker may only show as
// a crashed worker, or not fail the run at all).
const env = {
  ...process.env,
  LD_PRELOAD: [...preload, process.env.LD_PRELOAD].filter(Boolean).join(' '),
  // node itself leaks at exit and is not instrumented: leak checking would only report node.
  ASAN_OPTIONS: 'detect_leaks=0',
  UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
  BIRNN_NATIVE_PATH: addon,
  // Tests that measure memory (RSS) skip: the sanitizer's shadow memory and quarantine inflate it.
  BIRNN_SANITIZED: '1',
  // The forward-call fuzz (test/parity/forward-fuzz.test.ts) at a reduced count: every call runs
  // through the instrumented addon, several times slower.
  BIRNN_FUZZ_CALLS: process.env.BIRNN_FUZZ_CALLS ?? '2000',
}
const vitest = join(dirname(require.resolve('vitest/package.json')), 'vitest.mjs')
const extra = process.argv.slice(2)
const vitestArgs = [
  'run',
  ...(extra.length ? extra : ['--project', 'native', '--project', 'parity', '--project', 'unit']),
]
console.log(`sanitize: LD_PRELOAD=${env.LD_PRELOAD} BIRNN_NATIVE_PATH=${addon} vitest ${vitestArgs.join(' ')}`)

const pattern = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: \w+Sanitizer/
let reported = false
const child = spawn(process.execPath, [vitest, ...vitestArgs], { cwd: root, env, stdio: ['inherit', 'pipe', 'pipe'] })
for (const [stream, sink] of [
  [child.stdout, process.stdout],
  [child.stderr, process.stderr],
]) {
  let tail = ''
  stream.on('data', (chunk) => {
    sink.write(chunk)
    // Keep a little of the previous chunk so a marker split across chunks is still seen.
    const text = tail + chunk.toString('utf8')
    if (pattern.test(text)) reported = true
    tail = text.slice(-64)
  })
}
child.on('close', (code, signal) => {
  if (reported) fail('a sanitizer reported an error (see above)')
  if (code !== 0) fail(`vitest failed (${code ?? signal})`)
  console.log('sanitize: no sanitizer reports, tests passed')
})
