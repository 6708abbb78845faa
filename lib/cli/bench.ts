// birnn bench: sequences/s of the model on random input at a few batch sizes, on the engine that
// --backend / --simd pick (native, else WebAssembly) against the JS engine.

import type { Model } from '../model/model.js'
import type { Tensor } from '../types.js'
import { describeBackend, describeModel, openModel } from './model.js'
import type { ModelOptions } from './options.js'
import { showProgress, statusLine } from './progress.js'

interface BenchOptions extends ModelOptions {
  batchSizes: number[]
  seqLen: number
  seconds: number
  json?: boolean
}

/**
 * Times calls for about `seconds`. The warm-up call is timed too: when it alone takes longer, it
 * is the measurement, so that a big model costs one call per measurement, not several.
 */
function measure(model: Model, input: Tensor, seconds: number): { calls: number; elapsed: number } {
  let began = performance.now()
  model.forwardSync(input)
  let elapsed = performance.now() - began
  if (elapsed >= seconds * 1000) return { calls: 1, elapsed }
  let calls = 0
  began = performance.now()
  do {
    model.forwardSync(input)
    calls++
    elapsed = performance.now() - began
  } while (elapsed < seconds * 1000)
  return { calls, elapsed }
}

function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export async function bench(modelPath: string, options: BenchOptions): Promise<void> {
  // --backend native, wasm or js: that engine alone; auto: the engine it picks, then JS.
  const requested = options.backend ?? 'auto'
  const models: Model[] = []
  const skipped: string[] = []
  if (requested !== 'js') {
    try {
      models.push((await openModel(modelPath, { ...options, backend: requested }, false)).model)
    } catch (error) {
      // Without --backend, a kernel that does not load (a --simd this CPU lacks) is reported, and JS runs alone.
      if (requested !== 'auto') throw error
      skipped.push((error as Error).message)
    }
  }
  if (requested === 'js') models.push((await openModel(modelPath, options, false)).model)
  // The JS engine to compare with (a --simd is the other kernel's: not the JS engine's).
  else if (requested === 'auto' && models[0]?.backend !== 'js') {
    models.push((await openModel(modelPath, { ...options, backend: 'js', simd: undefined }, false)).model)
  }
  const { config } = models[0]
  const print = (line: string) => {
    if (!options.json) process.stdout.write(`${line}\n`)
  }
  print(
    `birnn bench: ${describeModel(config)}; ${options.seqLen} steps per sequence, ` +
      `~${options.seconds} s per measurement (one call where a call takes longer)`,
  )
  for (const reason of skipped) print(`(the native and wasm kernels skipped: ${reason})`)
  print(
    [
      'batch'.padStart(6),
      ...models.map((m) => `${describeBackend(m)} seq/s`.padStart(14)),
      ...(models.length === 2 ? ['speed-up'.padStart(9)] : []),
    ].join('  '),
  )
  const status = statusLine(showProgress(false))
  const next = random(1)
  const results: Array<{
    backend: string
    batchSize: number
    sequencesPerSecond: number
    msPerCall: number
    calls: number
  }> = []
  for (const batchSize of options.batchSizes) {
    const input = {
      data: new Float32Array(options.seqLen * batchSize * config.inputSize).map(() => next() * 2 - 1),
      shape: [options.seqLen, batchSize, config.inputSize],
    }
    const row: string[] = [String(batchSize).padStart(6)]
    for (const model of models) {
      status.show(`birnn bench: batch ${batchSize} on ${describeBackend(model)}…`)
      const { calls, elapsed } = measure(model, input, options.seconds)
      const sequencesPerSecond = Math.round((calls * batchSize * 1000) / elapsed)
      results.push({
        backend: describeBackend(model),
        batchSize,
        sequencesPerSecond,
        msPerCall: Number((elapsed / calls).toFixed(3)),
        calls,
      })
      row.push(sequencesPerSecond.toLocaleString('en-US').padStart(14))
    }
    if (models.length === 2) {
      const [a, b] = results.slice(-2)
      row.push(`${(a.sequencesPerSecond / b.sequencesPerSecond).toFixed(1).padStart(8)}×`)
    }
    status.clear()
    print(row.join('  '))
  }
  for (const model of models) model.dispose()
  if (options.json)
    process.stdout.write(`${JSON.stringify({ command: 'bench', model: modelPath, seqLen: options.seqLen, results })}\n`)
}
