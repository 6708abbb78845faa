// The package as users get it: `npm pack`, installed into a fresh project, imported by name, its
// type declarations compiled against, and its `birnn` command run. The native build is skipped
// there (BIRNN_SKIP_BUILD=1) and no prebuild is packed, so this also checks the fallback (to the
// WebAssembly engine where its module is built, else to JS) and its reason.
// Nothing is written into the repository: the package is packed from a copy in a temporary folder,
// built there, with npm's scripts off (its `prepare` would build into the repository's dist/).
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, relative } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fixture, modelPath } from '../helpers.js'

const root = join(import.meta.dirname, '..', '..')
const dir = mkdtempSync(join(tmpdir(), 'birnn-package-'))
const run = (cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
  execFileSync(cmd, args, {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })

const stage = join(dir, 'stage')
const pack = (...args: string[]) =>
  JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', ...args], { cwd: stage, encoding: 'utf8' }))

/** What a clone has that the package is made from: not the installed, built or packed things. */
function source(path: string): boolean {
  const rel = relative(root, path)
  return !(
    // prebuilds/ too: this is the package without a binary for its platform (prebuild.test.ts
    // installs the one with them).
    ['.git', 'node_modules', 'dist', 'bench/node_modules', 'bench/out', 'prebuilds'].includes(rel) ||
    /^build(-|$)/.test(rel) ||
    basename(rel).endsWith('.tgz')
  )
}

describe('the packed package', () => {
  beforeAll(() => {
    cpSync(root, stage, { recursive: true, filter: source })
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', join(stage, 'dist')], { cwd: root })
    const packed = pack('--pack-destination', dir)
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, packed[0].filename)], {
      BIRNN_SKIP_BUILD: '1',
    })
  }, 300_000)
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('ships the built library, its declarations, the native sources and no test files', () => {
    const files: string[] = pack('--dry-run')[0].files.map((f: { path: string }) => f.path)
    for (const f of [
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
      'native/binding.cc',
      'native/birnn.h',
      'CMakeLists.txt',
      'scripts/install.mjs',
    ]) {
      expect(files).toContain(f)
    }
    expect(files.filter((f) => f.startsWith('test/') || f.includes('/test/') || f.includes('.test.'))).toEqual([])
  })

  it('imports by name and, with no native binary, runs a model on the next engine, saying why', () => {
    const path = modelPath(fixture('lstm_bi_l1_tm_packed'))
    writeFileSync(
      join(dir, 'use.mjs'),
      `import { load } from 'birnn'
       const model = await load(${JSON.stringify(path)})
       const I = model.config.inputSize
       const out = model.forwardSync({ data: new Float32Array(3 * 4 * I), shape: [3, 4, I] })
       let relaxed
       try {
         relaxed = (await load(${JSON.stringify(path)}, { simd: 'wasm-relaxed-simd' })).simd
       } catch (error) {
         relaxed = error.code + ': ' + error.message
       }
       console.log(JSON.stringify({ backend: model.backend, simd: model.simd, reason: model.backendReason,
         shape: out.output.shape, node: process.versions.node, relaxed }))`,
    )
    const result = JSON.parse(run('node', ['use.mjs']))
    // The WebAssembly engine where the package ships its modules (npm run build:wasm), else JS:
    // the relaxed-SIMD build where the runtime has it (Node 21 on), else the 128-bit one.
    const wasm = existsSync(join(stage, 'wasm', 'birnn.wasm'))
    expect(result.backend).toBe(wasm ? 'wasm' : 'js')
    expect(result.reason).toMatch(/, since the native addon did not load: /)
    if (wasm && Number(result.node.split('.')[0]) < 21) {
      expect(result.simd).toBe('wasm-simd128')
      expect(result.reason).toMatch(
        /^the WebAssembly kernel \(128-bit SIMD, since this runtime has no relaxed SIMD\) from .*birnn\.wasm, since /,
      )
      expect(result.relaxed).toBe(
        "ERR_BIRNN_BACKEND: simd 'wasm-relaxed-simd' is not available: the WebAssembly module did not load: this runtime has no relaxed SIMD",
      )
    } else if (wasm) {
      expect(result.simd).toBe('wasm-relaxed-simd')
      expect(result.relaxed).toBe('wasm-relaxed-simd')
    }
    expect(result.shape).toEqual([3, 4, 2 * 9]) // bidirectional, hidden 9
  })

  it('type-checks a consumer against the declarations', () => {
    writeFileSync(
      join(dir, 'use.ts'),
      `import { load, fromStateDict, type Model, type ForwardResult, type Tensor } from 'birnn'
       const model: Model = await load('m.safetensors', { backend: 'native', threads: 2, batchFirst: true })
       const x: Tensor = { data: new Float32Array(6), shape: [1, 2, 3] }
       const r: ForwardResult = await model.forward(x, { lengths: [2], returnLayers: true })
       const mode: 'RNN_TANH' | 'RNN_RELU' | 'GRU' | 'LSTM' = model.config.mode
       fromStateDict({}, { nonlinearity: 'relu' })
       // @ts-expect-error: backend is 'auto' | 'native' | 'js'
       await load('m.safetensors', { backend: 'gpu' })
       export { r, mode }`,
    )
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          noEmit: true,
          skipLibCheck: false,
          types: [],
        },
        files: ['use.ts'],
      }),
    )
    const tsc = join(root, 'node_modules', '.bin', 'tsc')
    expect(() => run(tsc, ['-p', 'tsconfig.json'])).not.toThrow()
  })

  it('installs the birnn command', () => {
    const info = run(join(dir, 'node_modules', '.bin', 'birnn'), [
      'info',
      modelPath(fixture('gru_uni_l1_tm')),
      '--json',
    ])
    expect(JSON.parse(info).config.mode).toBe('GRU')
    expect(readFileSync(join(dir, 'node_modules', 'birnn', 'package.json'), 'utf8')).toContain('"name": "birnn"')
  })
})
