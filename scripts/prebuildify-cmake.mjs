#!/usr/bin/env node
// Stands in for node-gyp so that prebuildify builds through cmake-js:
//   prebuildify --napi --strip --tag-libc --node-gyp scripts/prebuildify-cmake.mjs   (npm run prebuildify)
// prebuildify calls `<this> rebuild --target=<version> --devdir=<dir> --arch=<arch> --release|--debug`,
// then takes the first .node file in build/Release (build/Debug) and moves it to
// prebuilds/<platform>-<arch>/birnn.<libc>.node, the name node-gyp-build looks for.
// --target and --devdir only matter for node-gyp's header download: Node-API headers come from
// the node-api-headers package, so nothing is downloaded.
// prebuildify spawns this file directly: it must stay executable (git mode 100755).
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = fileURLToPath(new URL('..', import.meta.url))

const args = process.argv.slice(2)
const command = args[0]
if (command !== 'rebuild') {
  console.error(`prebuildify-cmake: expected 'rebuild' from prebuildify, received ${JSON.stringify(args.join(' '))}`)
  process.exit(2)
}
const option = (name) => args.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)

const cmakeArgs = ['rebuild', '--parallel', String(Math.max(1, Math.min(availableParallelism(), 8)))]
const arch = option('arch')
if (arch) cmakeArgs.push('--arch', arch)
if (args.includes('--debug')) cmakeArgs.push('--debug')

const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js')
const build = spawnSync(process.execPath, [cmakeJs, ...cmakeArgs], { cwd: root, stdio: 'inherit' })
if (build.error) console.error(`prebuildify-cmake: ${build.error.message}`)
process.exit(build.status ?? 1)
