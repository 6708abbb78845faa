// node prebuild-fixtures.mjs <installed birnn package dir> <fixtures dir> [auto]: every PyTorch
// fixture through the installed package's native engine, on every SIMD path this CPU has; with
// `auto`, through whichever engine the package picks by itself (backend 'auto'). Plain JavaScript
// so that any Node runs it: test/e2e/prebuild.test.ts runs it in this Node (linux-x64) and in the
// arm64 Node under qemu-user (linux-arm64). Prints one JSON object: the architecture, what each
// load said about its backend, and per fixture and path the largest difference from PyTorch
// (|a - b| / max(1, |b|) over outputs, final states and every layer's output).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const [pkg, fixtures, mode] = process.argv.slice(2)
const { load } = await import(pathToFileURL(join(pkg, 'dist', 'index.js')).href)
const { parseSafetensors, toFloat32 } = await import(
  pathToFileURL(join(pkg, 'dist', 'loading', 'safetensors.js')).href
)

const cases = JSON.parse(readFileSync(join(fixtures, 'manifest.json'), 'utf8'))
const read = (file) =>
  Object.fromEntries(
    [...parseSafetensors(readFileSync(join(fixtures, file)))].map(([name, t]) => [name, toFloat32(name, t)]),
  )
function diff(a, b) {
  if (!a || !b || a.length !== b.length) return Number.POSITIVE_INFINITY
  let max = 0
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i]))
    if (!(d <= max)) max = d // NaN where a number was expected counts as infinitely far
  }
  return max
}

const reasons = new Set()
const backends = new Set()
const results = []
// A path is a SIMD choice of the native engine, or null: the package's own choice of engine.
const paths = []
for (const simd of mode === 'auto' ? [null] : ['avx512', 'avx2', 'neon', 'generic']) {
  try {
    const model = await load(join(fixtures, cases[0].model), loadOptions(cases[0], simd))
    reasons.add(model.backendReason)
    backends.add(model.backend)
    model.dispose()
    paths.push(simd)
  } catch (error) {
    if (error.code !== 'ERR_BIRNN_BACKEND') throw error
  }
}
function loadOptions(c, simd) {
  return simd === null ? c.options : { ...c.options, backend: 'native', simd }
}
for (const simd of paths) {
  for (const c of cases) {
    const model = await load(join(fixtures, c.model), loadOptions(c, simd))
    const io = read(c.io)
    const options = { returnLayers: true }
    if (io.h0) options.h0 = io.h0
    if (io.c0) options.c0 = io.c0
    if (c.forward.lengths) options.lengths = c.forward.lengths
    const r = model.forwardSync(io.input, options)
    let worst = Math.max(diff(r.output.data, io.output.data), diff(r.hN.data, io.hN.data))
    if (c.config.mode === 'LSTM') worst = Math.max(worst, diff(r.cN?.data, io.cN.data))
    r.layers.forEach((layer, l) => {
      worst = Math.max(worst, diff(layer.data, io[`layer${l}`].data))
    })
    results.push({ name: c.name, simd: simd ?? model.backend, diff: worst })
    model.dispose()
  }
}
console.log(JSON.stringify({ arch: process.arch, backends: [...backends], reasons: [...reasons], paths, results }))
