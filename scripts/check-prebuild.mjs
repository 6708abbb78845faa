// node scripts/check-prebuild.mjs <file.node>...: checks that a Linux prebuild loads on old
// distributions. It reads the ELF's dynamic section and version needs with readelf (binutils, any
// target architecture) and fails when the binary
//   - needs a glibc symbol version above GLIBC_FLOOR (2.28, the floor of Node 20's own Linux
//     binaries: a distribution that runs Node 20 runs the prebuild),
//   - needs libstdc++ at all (or a GLIBCXX_/CXXABI_ version): the prebuilds link it in
//     (CMakeLists.txt, BIRNN_PREBUILD); libgcc_s (the unwinder, on every glibc system) only with
//     versions up to GCC_4.2.0 (GCC 4.2, 2007).
// Used by scripts/prebuild.mjs after each build and by test/e2e/prebuild.test.ts.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const GLIBC_FLOOR = '2.28'

/** The libraries allowed in NEEDED: glibc's own, and libgcc_s. */
const GLIBC_LIBRARIES =
  /^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|ld-linux[\w.-]*\.so\.\d|libgcc_s\.so\.1)$/
const GCC_FLOOR = '4.2.0'

const compare = (a, b) => {
  const x = a.split('.').map(Number)
  const y = b.split('.').map(Number)
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0)
  }
  return 0
}

/**
 * What the binary needs: { needed: libraries, versions: symbol versions, glibc: the highest
 * GLIBC_x.y, problems: why it would not load on glibc GLIBC_FLOOR (empty when fine) }.
 */
export function inspect(file) {
  const result = spawnSync('readelf', ['--dynamic', '--version-info', '--wide', file], { encoding: 'utf8' })
  if (result.error || result.status !== 0) {
    throw new Error(`readelf could not read ${file}: ${result.error?.message ?? result.stderr.trim()}`)
  }
  const needed = [...result.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1])
  const needs = result.stdout.slice(result.stdout.indexOf(".gnu.version_r' contains"))
  const versions = [...new Set([...needs.matchAll(/Name: (\S+)\s+Flags:/g)].map((m) => m[1]))].sort()
  const glibc = versions
    .filter((v) => v.startsWith('GLIBC_') && /^GLIBC_[\d.]+$/.test(v))
    .map((v) => v.slice('GLIBC_'.length))
    .sort(compare)
    .at(-1)
  const problems = []
  for (const library of needed) {
    if (!GLIBC_LIBRARIES.test(library)) problems.push(`needs ${library}`)
  }
  for (const version of versions) {
    const glibcVersion = /^GLIBC_([\d.]+)$/.exec(version)?.[1]
    const gccVersion = /^GCC_([\d.]+)$/.exec(version)?.[1]
    const tooNew = glibcVersion
      ? compare(glibcVersion, GLIBC_FLOOR) > 0
      : gccVersion
        ? compare(gccVersion, GCC_FLOOR) > 0
        : !/^GLIBC_/.test(version)
    if (tooNew) {
      problems.push(`needs symbol version ${version}`)
    }
  }
  return { needed, versions, glibc, problems }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const files = process.argv.slice(2)
  if (!files.length) {
    console.error('usage: node scripts/check-prebuild.mjs <file.node>...')
    process.exit(2)
  }
  let ok = true
  for (const file of files) {
    const { needed, glibc, problems } = inspect(file)
    if (problems.length) {
      ok = false
      console.error(`check-prebuild: ${file} would not load on glibc ${GLIBC_FLOOR}: ${problems.join(', ')}`)
    } else {
      console.log(`check-prebuild: ${file} needs glibc ${glibc} (floor ${GLIBC_FLOOR}), libraries ${needed.join(', ')}`)
    }
  }
  process.exit(ok ? 0 : 1)
}
