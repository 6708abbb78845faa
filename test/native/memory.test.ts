// What a native model keeps between calls is bounded, shrinks to the working set, and is given
// back when the model is idle or trimmed (issue #12: it used to keep the buffers of its largest
// calls, 3 GB in one report, until dispose()).
import { spawnSync } from 'node:child_process'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import { loadAddon } from '../../lib/engines/addon.js'
import { IDLE_TRIM_MS } from '../../lib/engines/native.js'
import { fromStateDict } from '../../lib/index.js'
import { nativeMissing, randomStateDict, rng } from '../helpers.js'

const missing =
  nativeMissing() ??
  (process.env.BIRNN_SANITIZED ? 'under the sanitizer, whose shadow memory and quarantine inflate RSS' : undefined)

/**
 * Runs `body` in a Node process of its own (so that its RSS and page faults are the kernel's),
 * after a prelude that makes `net`, the raw addon's bi-LSTM (I = 32, hidden size H, constant
 * weights), and returns what the body wrote to stdout, parsed.
 */
function inProcessOfItsOwn(H: number, body: string, nodeFlags: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const script = `
      const addon = require(process.argv[1])
      const I = 32, H = ${H}, G = 4
      const w = [new Float32Array(G * H * I).fill(0.01), new Float32Array(G * H * H).fill(0.01)]
      const config = { mode: 3, inputSize: I, hiddenSize: H, projSize: 0, numLayers: 1, bidirectional: true, bias: false }
      const net = new addon.Network(config, [...w, ...w], addon.isa().best)
      ${body}`
  const child = spawnSync(process.execPath, [...nodeFlags, '-e', script, (loadAddon() as { path: string }).path], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ...env },
  })
  expect(child.stderr).toBe('')
  return JSON.parse(child.stdout)
}

describe.skipIf(missing)(`memory kept between calls${missing ? ` (skipped: ${missing})` : ''}`, () => {
  // In a process of its own, so its RSS is the kernel's: a bi-LSTM whose T = 600, N = 64 calls
  // need ~80 MB of work buffers each.
  it('is bounded by bytes, shrinks after small calls, and trim() frees it', () => {
    const rss = inProcessOfItsOwn(
      64,
      `
      const call = (T, N) => ({ seqLen: T, batch: N, batchFirst: false, input: new Float32Array(T * N * I).fill(0.5), returnLayers: false, threads: 1 })
      // V8 frees array buffers on a background thread after a GC: give it a moment.
      const mb = async () => { global.gc(); await new Promise((r) => setTimeout(r, 300)); return Math.round(process.memoryUsage().rss / 2 ** 20) }
      ;(async () => {
        net.forwardSync(call(4, 4))
        const base = await mb()
        await Promise.all([1, 2, 3, 4, 5, 6].map(() => net.forward(call(600, 64))))
        const afterBig = await mb()
        for (let i = 0; i < 8; i++) net.forwardSync(call(10, 4))
        const afterSmall = await mb()
        await Promise.all([1, 2].map(() => net.forward(call(600, 64))))
        const beforeTrim = await mb()
        await mb() // a collected array's memory reaches the cache of freed outputs a GC later
        net.trim()
        const afterTrim = await mb()
        process.stdout.write(JSON.stringify({ base, afterBig, afterSmall, beforeTrim, afterTrim }))
      })()`,
      ['--expose-gc'],
      // Six calls at once on any machine. A fixed mmap threshold: glibc then returns every large
      // JS array it frees at once, so RSS shows what the kernel keeps, not what the allocator
      // holds on to.
      { BIRNN_POOL_THREADS: '6', MALLOC_MMAP_THRESHOLD_: '131072' },
    )
    // Six calls computing at once (80 MB of work buffers each): at most 256 MiB of those is kept
    // (three of them), besides the freed output memory kept for reuse (at most 64 MiB) and the six
    // input copies (29 MB).
    expect(rss.afterBig - rss.base).toBeGreaterThan(100)
    expect(rss.afterBig - rss.base).toBeLessThan(256 + 64 + 29 + 40)
    // Small calls free what is far larger than they need (the big calls' collected outputs stay
    // in the process's cache of freed output memory, up to 64 MiB, until trimmed).
    expect(rss.afterSmall - rss.base).toBeLessThan(40 + 64)
    expect(rss.beforeTrim - rss.base).toBeGreaterThan(100)
    expect(rss.afterTrim - rss.base).toBeLessThan(40)
  })

  // Node frees an external array's memory only in a later turn of the event loop; forwardSync's
  // outputs used to be such arrays, so a scoring loop that never yields kept all of them (3.3 MB a
  // call here: 900 MB after 250 calls).
  it('a forwardSync() loop that never yields keeps none of its outputs', () => {
    const { grewMB } = inProcessOfItsOwn(
      64,
      `
      const T = 100, N = 64
      const call = { seqLen: T, batch: N, batchFirst: false, input: new Float32Array(T * N * I).fill(0.5), returnLayers: false, threads: 1 }
      for (let i = 0; i < 20; i++) net.forwardSync(call)
      const base = process.memoryUsage().rss
      for (let i = 0; i < 250; i++) net.forwardSync(call)
      process.stdout.write(JSON.stringify({ grewMB: (process.memoryUsage().rss - base) / 2 ** 20 }))`,
    )
    expect(grewMB).toBeLessThan(150)
  })

  // A server's batches alternate in size (9-16 and 33-64 sequences); workspaces sized by the last
  // call alone were freed after each small batch, and the next large one faulted tens of MB in anew.
  it('keeps the work buffers of large calls that alternate with small ones', () => {
    const { faults } = inProcessOfItsOwn(
      256,
      `
      // No output: the faults counted are the work buffers' (a large call's: 26 MB, 6,400 pages).
      const call = (T, N) => ({ seqLen: T, batch: N, batchFirst: false, input: new Float32Array(T * N * I).fill(0.5), returnLayers: false, returnOutput: false, threads: 1 })
      const large = call(400, 8), small = call(10, 4)
      for (let i = 0; i < 2; i++) net.forwardSync(large), net.forwardSync(small)
      const before = process.resourceUsage().minorPageFault
      for (let i = 0; i < 8; i++) net.forwardSync(large), net.forwardSync(small)
      process.stdout.write(JSON.stringify({ faults: process.resourceUsage().minorPageFault - before }))`,
    )
    expect(faults).toBeLessThan(3200)
  })

  it(`a model idle for ${IDLE_TRIM_MS} ms gives its work buffers back`, async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const mb = async () => {
      gc()
      await new Promise((resolve) => setTimeout(resolve, 300))
      return process.memoryUsage().rss / 2 ** 20
    }
    const model = fromStateDict(randomStateDict(rng(1), { mode: 'LSTM', I: 32, H: 64, L: 1, D: 2, bias: true }), {
      backend: 'native',
      threads: 1,
    })
    const input = { data: new Float32Array(600 * 64 * 32).fill(0.5), shape: [600, 64, 32] }
    const base = await mb()
    await Promise.all([1, 2, 3].map(async () => void (await model.forward(input))))
    const busy = await mb()
    await new Promise((resolve) => setTimeout(resolve, IDLE_TRIM_MS + 500))
    const idle = await mb()
    expect(busy - base).toBeGreaterThan(100)
    expect(idle - base).toBeLessThan(40)
    model.dispose()
  })
})
