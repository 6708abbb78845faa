// npm run test:arm64 [-- --all]: the C++ kernel tests for linux-arm64, on any Linux machine.
// On x86-64 they are cross-built with Debian's cross compiler (cmake/aarch64-linux-gnu.cmake) into
// build-arm64/ and run under qemu-user: `apt-get install g++-aarch64-linux-gnu qemu-user`. On an
// arm64 machine they are built and run natively. Each arm64 path runs its full test (tanh and
// sigmoid against double precision over the whole float range, every mode against the scalar
// reference, the same bits for every thread count): neon, generic, and the thread plan. wide16
// (the AVX-512 geometry in portable code) only with --all: x86-64's own ctest already runs it, and
// under emulation it costs another minute. Exits non-zero when a test fails or the neon test did
// not run.
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { root } from './cmake-js.mjs'

const all = process.argv.includes('--all')
const native = process.arch === 'arm64'
const out = join(root, native ? 'build-arm64-native' : 'build-arm64')
const parallel = '2'

function fail(message) {
  console.error(`test-arm64: ${message}`)
  process.exit(1)
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', ...options })
  if (result.error) fail(`${command} could not run (${result.error.message})`)
  if (result.status !== 0 && !options.allowFailure) fail(`${command} ${args.join(' ')} exited with ${result.status}`)
  return result
}

const has = (command) => spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0

if (process.platform !== 'linux') fail(`needs Linux, not ${process.platform}`)
if (!native) {
  if (process.arch !== 'x64') fail(`cross-builds from x64 only, not ${process.arch}`)
  const missing = ['aarch64-linux-gnu-g++', 'qemu-aarch64'].filter((command) => !has(command))
  if (missing.length) {
    fail(`${missing.join(' and ')} not found: apt-get install g++-aarch64-linux-gnu qemu-user`)
  }
}

const configure = ['-S', '.', '-B', out, '-DBIRNN_KERNEL_TESTS=ON', '-DCMAKE_BUILD_TYPE=Release']
if (!native) configure.push(`-DCMAKE_TOOLCHAIN_FILE=${join(root, 'cmake', 'aarch64-linux-gnu.cmake')}`)
run('cmake', configure, { stdio: ['ignore', 'ignore', 'inherit'] })
run('cmake', ['--build', out, '--target', 'birnn_kernel_test', '--parallel', parallel])

// ctest runs each test through qemu-aarch64 (CMAKE_CROSSCOMPILING_EMULATOR in the toolchain file).
const exclude = all ? 'avx' : 'avx|wide16'
const ctest = run('ctest', ['--test-dir', out, '--output-on-failure', '-j', parallel, '-E', exclude], {
  stdio: ['ignore', 'pipe', 'inherit'],
  encoding: 'utf8',
  allowFailure: true,
})
process.stdout.write(ctest.stdout)
if (ctest.status !== 0) fail('a kernel test failed')
if (!/birnn_kernel_test_neon \.+\s+Passed/.test(ctest.stdout)) fail('the neon test did not pass (skipped?)')
console.log(`test-arm64: every arm64 kernel test passed${native ? '' : ' under qemu-aarch64'}`)
