// npm run prebuildify [-- --arch x64,arm64]: the Linux prebuilds the package ships, from one
// x86-64 Linux machine:
//   prebuilds/linux-x64/birnn.glibc.node     host compiler
//   prebuilds/linux-arm64/birnn.glibc.node   Debian's cross compiler (cmake/aarch64-linux-gnu.cmake)
// named as node-gyp-build looks them up (Node-API, so no ABI tag; glibc tagged), each built by
// cmake-js into build-prebuild/<arch>/ (never build/, the local build) with -DBIRNN_PREBUILD=ON
// (libstdc++ and libgcc linked in, glibc symbols of 2.28 or older), stripped, then checked:
//   - scripts/check-prebuild.mjs: it needs nothing above glibc 2.28 and no libstdc++;
//   - it loads and reports its spec and ISAs on its own architecture: x64 in this Node, arm64 in
//     the official arm64 Node under qemu-user (scripts/arm64-node.mjs).
// A prebuild that fails a check is deleted and the script fails: none ships unchecked.
// For macOS or Windows prebuilds, run prebuildify there through the cmake-js shim:
//   npx prebuildify --napi --strip --node-gyp scripts/prebuildify-cmake.mjs
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { arm64Node } from './arm64-node.mjs'
import { inspect } from './check-prebuild.mjs'
import { cmakeJs, failure, root } from './cmake-js.mjs'

const TARGETS = {
  x64: { toolchain: undefined, strip: 'strip' },
  arm64: { toolchain: join(root, 'cmake', 'aarch64-linux-gnu.cmake'), strip: 'aarch64-linux-gnu-strip' },
}

function fail(message) {
  console.error(`prebuild: ${message}`)
  process.exit(1)
}

if (process.platform !== 'linux' || process.arch !== 'x64') {
  fail(`builds the Linux prebuilds on linux-x64, not ${process.platform}-${process.arch}`)
}
const archOption = process.argv.indexOf('--arch')
const arches = archOption > 0 ? process.argv[archOption + 1]?.split(',') : Object.keys(TARGETS)
for (const arch of arches ?? []) if (!(arch in TARGETS)) fail(`--arch: expected x64 and/or arm64, received ${arch}`)

/** Runs `what` in Node on `arch` with the addon at `file`: its spec's ISAs and the best one. */
function smoke(arch, file) {
  const script = `const a = require(${JSON.stringify(file)}); const s = a.spec(); const i = a.isa();
    console.log(JSON.stringify({ arch: process.arch, isas: s.isas.map((x) => x.name), best: i.best, supported: i.supported }))`
  const node = arch === 'x64' ? { command: process.execPath, args: [] } : arm64Node()
  const run = spawnSync(node.command, [...node.args, '-e', script], { encoding: 'utf8' })
  if (run.status !== 0) throw new Error(run.error?.message ?? run.stderr.trim())
  return JSON.parse(run.stdout.trim().split('\n').at(-1))
}

for (const arch of arches) {
  const target = TARGETS[arch]
  const out = join(root, 'build-prebuild', arch)
  const args = ['--out', out, '--CDBIRNN_PREBUILD=ON']
  if (target.toolchain) args.push(`--CDCMAKE_TOOLCHAIN_FILE=${target.toolchain}`)
  console.log(`prebuild: linux-${arch} into ${out}`)
  const build = cmakeJs('compile', args)
  if (build.status !== 0) fail(`the linux-${arch} build failed (${failure(build)})`)

  const dir = join(root, 'prebuilds', `linux-${arch}`)
  const dest = join(dir, 'birnn.glibc.node')
  mkdirSync(dir, { recursive: true })
  copyFileSync(join(out, 'Release', 'birnn.node'), dest)
  const strip = spawnSync(target.strip, ['--strip-all', dest], { stdio: 'inherit' })
  if (strip.status !== 0) fail(`${target.strip} failed (${failure(strip)})`)

  const { needed, glibc, problems } = inspect(dest)
  const reject = (why) => {
    rmSync(dest, { force: true })
    fail(`${dest} is not shipped: ${why}`)
  }
  if (problems.length) reject(`it would not load on glibc 2.28: ${problems.join(', ')}`)
  let loaded
  try {
    loaded = smoke(arch, dest)
  } catch (error) {
    reject(`it did not load on ${arch} (${error.message})`)
  }
  if (loaded.arch !== arch) reject(`the ${arch} check ran on ${loaded.arch}`)
  console.log(
    `prebuild: ${dest}: needs glibc ${glibc}, ${needed.join(', ')}; loads on ${loaded.arch}` +
      ` (best ${loaded.best}; supported ${loaded.supported.join(', ')})`,
  )
}
if (!existsSync(join(root, 'prebuilds'))) fail('no prebuild was made')
