// birnn itself: the native kernel (1 and 2 threads, forward and forwardSync), the WebAssembly
// kernel (forward() on its worker pool, and forwardSync()) and the pure-JS engine.
// Imports the compiled package (dist/, built by run.mjs with `npm run build`).

import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ROOT, timeRuns } from '../lib/common.mjs'

let birnn
async function lib() {
  birnn ??= await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href)
  return birnn
}

function variant(id, label, loadOptions, sync, threads) {
  return {
    id,
    label,
    family: 'birnn',
    threads,
    async open(w) {
      const { load } = await lib()
      const model = await load(w.paths.safetensors, {
        ...loadOptions,
        ...(w.cfg.mode === 'RNN_TANH' ? { nonlinearity: 'tanh' } : {}),
      })
      const x = { data: w.input, shape: [w.T, w.N, w.cfg.inputSize] }
      const call = sync ? () => model.forwardSync(x) : () => model.forward(x)
      return {
        info: { backend: model.backend, simd: model.simd, reason: model.backendReason },
        async output() {
          return (await call()).output.data
        },
        time: (plan, firstMs) => timeRuns(call, plan, firstMs),
        /** One async forward, for the event-loop stall probe. */
        forwardOnce: () => model.forward(x),
        close: () => model.dispose(),
      }
    },
  }
}

export function birnnVariants() {
  return [
    variant('birnn-native-1t', 'birnn native forward() 1t', { backend: 'native', threads: 1 }, false, 1),
    variant('birnn-native-1t-sync', 'birnn native forwardSync() 1t', { backend: 'native', threads: 1 }, true, 1),
    variant('birnn-native-2t', 'birnn native forward() 2t', { backend: 'native', threads: 2 }, false, 2),
    variant('birnn-native-2t-sync', 'birnn native forwardSync() 2t', { backend: 'native', threads: 2 }, true, 2),
    variant('birnn-wasm', 'birnn wasm forward()', { backend: 'wasm' }, false, 1),
    variant('birnn-wasm-sync', 'birnn wasm forwardSync()', { backend: 'wasm' }, true, 1),
    variant('birnn-js', 'birnn JS engine forwardSync()', { backend: 'js' }, true, 1),
  ]
}

export async function birnnInfo() {
  const { load } = await lib()
  return { load: typeof load }
}
