// onnxruntime-node on the ONNX export of the same module (native RNN/GRU/LSTM nodes, opset 17).

import { createRequire } from 'node:module'
import { BENCH, timeRuns } from '../lib/common.mjs'

const require = createRequire(`${BENCH}/package.json`)

let ort
let missing
/** Loads onnxruntime-node from bench/node_modules; returns null (and a reason) when it is absent. */
export function loadOrt() {
  if (ort || missing) return ort ?? null
  try {
    ort = require('onnxruntime-node')
  } catch (e) {
    missing = `onnxruntime-node is not installed in bench/node_modules (ONNXRUNTIME_NODE_INSTALL=skip npm --prefix bench ci): ${e.message.split('\n')[0]}`
  }
  return ort ?? null
}
export const ortMissing = () => (loadOrt() ? null : missing)

function variant(threads) {
  return {
    id: `ort-${threads}t`,
    label: `onnxruntime-node run() ${threads}t`,
    family: 'onnxruntime-node',
    threads,
    missing: ortMissing,
    async open(w) {
      const session = await loadOrt().InferenceSession.create(w.paths.onnx, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      })
      const feeds = { input: new ort.Tensor('float32', w.input, [w.T, w.N, w.cfg.inputSize]) }
      const call = () => session.run(feeds)
      return {
        info: { version: ort.env.versions?.node },
        async output() {
          return (await call()).output.data
        },
        time: (plan, firstMs) => timeRuns(call, plan, firstMs),
        forwardOnce: call,
        close: () => session.release(),
      }
    },
  }
}

export const ortVariants = () => [variant(1), variant(2)]
