#!/usr/bin/env node
// Stands in for node-gyp so that prebuildify builds through cmake-js, for prebuilds made on macOS
// or Windows (the Linux ones come from `npm run prebuildify`, scripts/prebuild.mjs):
//   npx prebuildify --napi --strip --node-gyp scripts/prebuildify-cmake.mjs
// prebuildify calls `<this> rebuild --target=<version> --devdir=<dir> --arch=<arch> --release|--debug`,
// then takes the first .node file in build/Release (build/Debug) and moves it to
// prebuilds/<platform>-<arch>/birnn.<libc>.node, the name node-gyp-build looks for.
// --target and --devdir only matter for node-gyp's header download: Node-API headers come from
// the node-api-headers package, so nothing is downloaded.
// prebuildify spawns this file directly: it must stay executable (git mode 100755).
import { cmakeJs, failure } from './cmake-js.mjs'

const args = process.argv.slice(2)
const command = args[0]
if (command !== 'rebuild') {
  console.error(`prebuildify-cmake: expected 'rebuild' from prebuildify, received ${JSON.stringify(args.join(' '))}`)
  process.exit(2)
}
const option = (name) => args.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)

const cmakeArgs = []
const arch = option('arch')
if (arch) cmakeArgs.push('--arch', arch)
if (args.includes('--debug')) cmakeArgs.push('--debug')

const build = cmakeJs('rebuild', cmakeArgs)
if (build.status !== 0) console.error(`prebuildify-cmake: ${failure(build)}`)
process.exit(build.status ?? 1)
