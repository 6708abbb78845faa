// The prebuilds as users get them (prebuilds/, made by `npm run prebuildify`; .ci/run makes them):
//  - each needs nothing above glibc 2.28 and no libstdc++ (scripts/check-prebuild.mjs);
//  - the packed package, installed with no compiler and no cmake on PATH, loads the linux-x64
//    prebuild at once (its install script finds it and builds nothing) and runs every PyTorch
//    fixture on every SIMD path of this CPU within 1e-5;
//  - the same installed package, run by the official arm64 Node under qemu-user, loads the
//    linux-arm64 prebuild and runs every fixture on neon and generic within 1e-5.
// Prebuilds are build outputs (git-ignored): without them the tests are skipped, saying so.
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, relative } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fixturesDir } from '../helpers.js'

const root = join(import.meta.dirname, '..', '..')
const prebuild = (arch: string) => join(root, 'prebuilds', `linux-${arch}`, 'birnn.glibc.node')
const x64 = prebuild('x64')
const arm64 = prebuild('arm64')
const missing =
  process.platform !== 'linux' || process.arch !== 'x64'
    ? `these tests run on linux-x64, not ${process.platform}-${process.arch}`
    : existsSync(x64)
      ? undefined
      : `no ${relative(root, x64)}: run \`npm run prebuildify\` first (.ci/run does)`
const arm64Missing = existsSync(arm64) ? undefined : `no ${relative(root, arm64)}`
const TOLERANCE = 1e-5

interface FixtureRun {
  arch: string
  backends: string[]
  reasons: string[]
  paths: string[]
  results: Array<{ name: string; simd: string; diff: number }>
}

describe.skipIf(missing)(`the prebuilds${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'birnn-prebuild-'))
  const stage = join(dir, 'stage')
  const consumer = join(dir, 'consumer')
  const installed = join(consumer, 'node_modules', 'birnn')
  let installSeconds = 0
  let installOutput = ''

  beforeAll(() => {
    const skip = ['.git', 'node_modules', 'dist', 'bench/node_modules', 'bench/out']
    cpSync(root, stage, {
      recursive: true,
      filter: (path) => {
        const rel = relative(root, path)
        return !(skip.includes(rel) || /^build(-|$)/.test(rel) || basename(rel).endsWith('.tgz'))
      },
    })
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', join(stage, 'dist')], { cwd: root })
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], {
        cwd: stage,
        encoding: 'utf8',
      }),
    )
    // A machine with no compiler: PATH holds node, npm and sh, nothing else.
    const bin = join(dir, 'bin')
    mkdirSync(bin)
    const which = (command: string) =>
      realpathSync(
        execFileSync('sh', ['-c', `command -v ${command}`])
          .toString()
          .trim(),
      )
    symlinkSync(process.execPath, join(bin, 'node'))
    symlinkSync(which('npm'), join(bin, 'npm'))
    symlinkSync(which('sh'), join(bin, 'sh'))
    mkdirSync(consumer)
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
    // BIRNN_SKIP_BUILD=1 too: a prebuild that loads is taken all the same, with no fallback warning.
    const env = { ...process.env, PATH: bin, CXX: '', BIRNN_SKIP_BUILD: '1' }
    const noCompiler = spawnSync('sh', ['-c', 'command -v cmake || command -v g++ || command -v c++'], { env })
    expect(noCompiler.status, 'cmake or a C++ compiler is still on PATH').not.toBe(0)
    const started = performance.now()
    const install = spawnSync(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', join(dir, packed[0].filename)],
      { cwd: consumer, env, encoding: 'utf8' },
    )
    installSeconds = (performance.now() - started) / 1000
    installOutput = `${install.stdout}${install.stderr}`
    expect(install.status, installOutput).toBe(0)
  }, 300_000)
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('each prebuild needs glibc 2.28 or older and no libstdc++', () => {
    const files = [x64, ...(arm64Missing ? [] : [arm64])]
    const check = spawnSync(process.execPath, [join(root, 'scripts', 'check-prebuild.mjs'), ...files], {
      encoding: 'utf8',
    })
    expect(check.status, check.stderr).toBe(0)
    expect(check.stdout).toMatch(/needs glibc 2\.(1\d|2[0-8]) \(floor 2\.28\)/)
  })

  it('npm install with no compiler on PATH takes the linux-x64 prebuild and builds nothing', () => {
    expect(existsSync(join(installed, 'prebuilds', 'linux-x64', 'birnn.glibc.node'))).toBe(true)
    expect(existsSync(join(installed, 'build'))).toBe(false)
    expect(installOutput).not.toMatch(/birnn: .*(JavaScript|WebAssembly) engine/)
    console.log(`npm install with the prebuild, no compiler: ${installSeconds.toFixed(1)} s`)
    expect(installSeconds).toBeLessThan(120)
  })

  it('runs every PyTorch fixture through the linux-x64 prebuild on every SIMD path of this CPU', () => {
    const run = spawnSync(
      process.execPath,
      [join(import.meta.dirname, 'prebuild-fixtures.mjs'), installed, fixturesDir],
      {
        cwd: consumer,
        encoding: 'utf8',
      },
    )
    expect(run.status, run.stderr).toBe(0)
    const result: FixtureRun = JSON.parse(run.stdout)
    expect(result.arch).toBe('x64')
    for (const reason of result.reasons) expect(reason).toContain(join('prebuilds', 'linux-x64', 'birnn.glibc.node'))
    expect(result.paths).toContain('generic')
    expect(result.paths).not.toContain('neon')
    for (const r of result.results) expect(r.diff, `${r.name} on ${r.simd}`).toBeLessThanOrEqual(TOLERANCE)
  }, 120_000)

  it.skipIf(arm64Missing)(
    `runs every PyTorch fixture through the linux-arm64 prebuild in an arm64 Node under qemu${arm64Missing ? ` (skipped: ${arm64Missing})` : ''}`,
    () => {
      const found = spawnSync(process.execPath, [join(root, 'scripts', 'arm64-node.mjs')], { encoding: 'utf8' })
      expect(found.status, found.stderr).toBe(0)
      const node: { command: string; args: string[] } = JSON.parse(found.stdout)
      const run = spawnSync(
        node.command,
        [...node.args, join(import.meta.dirname, 'prebuild-fixtures.mjs'), installed, fixturesDir],
        { cwd: consumer, encoding: 'utf8' },
      )
      expect(run.status, run.stderr).toBe(0)
      const result: FixtureRun = JSON.parse(run.stdout)
      expect(result.arch).toBe('arm64')
      for (const reason of result.reasons)
        expect(reason).toContain(join('prebuilds', 'linux-arm64', 'birnn.glibc.node'))
      expect(result.paths).toEqual(['neon', 'generic'])
      expect(result.results.length).toBeGreaterThan(0)
      for (const r of result.results) expect(r.diff, `${r.name} on ${r.simd}`).toBeLessThanOrEqual(TOLERANCE)
    },
    600_000,
  )

  // Last: it removes the installed package's prebuilds.
  it.skipIf(!existsSync(join(root, 'wasm', 'birnn.wasm')))(
    'with the prebuilds removed and no compiler, the package runs every fixture on the WebAssembly engine',
    () => {
      rmSync(join(installed, 'prebuilds'), { recursive: true })
      const run = spawnSync(
        process.execPath,
        [join(import.meta.dirname, 'prebuild-fixtures.mjs'), installed, fixturesDir, 'auto'],
        { cwd: consumer, encoding: 'utf8' },
      )
      expect(run.status, run.stderr).toBe(0)
      const result: FixtureRun = JSON.parse(run.stdout)
      expect(result.backends).toEqual(['wasm'])
      expect(result.reasons[0]).toMatch(/since the native addon did not load/)
      expect(result.results.length).toBeGreaterThan(0)
      for (const r of result.results) expect(r.diff, `${r.name} on ${r.simd}`).toBeLessThanOrEqual(TOLERANCE)
    },
    300_000,
  )
})
