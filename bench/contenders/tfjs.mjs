// TensorFlow.js (@tensorflow/tfjs layers) on the wasm and cpu backends, with PyTorch's weights
// transposed (Keras kernels are [in, gates*H]) and the two biases summed. LSTM gate order i,f,g,o is
// the same in both; SimpleRNN has one gate. PyTorch's GRU applies the reset gate after the hidden
// matmul (Keras reset_after=True), which tfjs refuses: that cell is reported "not expressible".
// Input is batch-major [N, T, I] as tfjs wants it (transposed once, outside the timed calls).

import { createRequire } from 'node:module'
import { BENCH, readSafetensors, swap01, timeRuns } from '../lib/common.mjs'

const require = createRequire(`${BENCH}/package.json`)

let tf
let missing

/** tfjs greets Node users with an advert for tfjs-node (on load and on backend changes). */
async function quietly(fn) {
  const [log, warn] = [console.log, console.warn]
  console.log = console.warn = () => {}
  try {
    return await fn()
  } finally {
    console.log = log
    console.warn = warn
  }
}

export function loadTf() {
  if (tf || missing) return tf ?? null
  try {
    const prev = console.log
    console.log = () => {}
    try {
      tf = require('@tensorflow/tfjs')
      require('@tensorflow/tfjs-backend-wasm')
      tf.enableProdMode() // skips debug checks (and the tfjs-node advert on first use of 'cpu')
    } finally {
      console.log = prev
    }
  } catch (e) {
    missing = `@tensorflow/tfjs(-backend-wasm) is not installed in bench/node_modules (ONNXRUNTIME_NODE_INSTALL=skip npm --prefix bench ci): ${e.message.split('\n')[0]}`
  }
  return tf ?? null
}

const NOT_EXPRESSIBLE = {
  GRU: "not expressible: tfjs's GRU has no reset_after (PyTorch applies the reset gate after the hidden matmul)",
}

function transpose(t) {
  const [r, c] = t.shape
  const out = new Float32Array(r * c)
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = t.data[i * c + j]
  return tf.tensor2d(out, [c, r])
}

function buildModel(w) {
  const { mode, inputSize, hiddenSize, numLayers, bidirectional } = w.cfg
  const sd = readSafetensors(w.paths.safetensors)
  const model = tf.sequential()
  const cellOptions = {
    units: hiddenSize,
    returnSequences: true,
    kernelInitializer: 'zeros',
    recurrentInitializer: 'zeros',
    biasInitializer: 'zeros',
  }
  const layers = []
  for (let l = 0; l < numLayers; l++) {
    const make = () =>
      mode === 'LSTM'
        ? tf.layers.lstm({ ...cellOptions, recurrentActivation: 'sigmoid', activation: 'tanh' })
        : tf.layers.simpleRNN({ ...cellOptions, activation: 'tanh' })
    const first = l === 0 ? { inputShape: [w.T, inputSize] } : {}
    const layer = bidirectional ? tf.layers.bidirectional({ layer: make(), mergeMode: 'concat', ...first }) : make()
    if (!bidirectional && l === 0) Object.assign(layer, first)
    model.add(layer)
    layers.push(layer)
  }
  for (let l = 0; l < numLayers; l++) {
    const weights = []
    for (const sfx of bidirectional ? ['', '_reverse'] : ['']) {
      const wih = sd[`weight_ih_l${l}${sfx}`]
      const whh = sd[`weight_hh_l${l}${sfx}`]
      const bih = sd[`bias_ih_l${l}${sfx}`].data
      const bhh = sd[`bias_hh_l${l}${sfx}`].data
      weights.push(transpose(wih), transpose(whh), tf.tensor1d(bih.map((v, i) => v + bhh[i])))
    }
    layers[l].setWeights(weights)
    for (const t of weights) t.dispose()
  }
  return model
}

function variant(backend) {
  return {
    id: `tfjs-${backend}`,
    label: `tfjs ${backend} predict()`,
    family: 'tfjs',
    threads: 1,
    missing: () => (loadTf() ? null : missing),
    notExpressible: (cfg) => NOT_EXPRESSIBLE[cfg.mode] ?? null,
    async open(w) {
      if (!loadTf()) throw new Error(missing)
      await quietly(async () => {
        await tf.setBackend(backend)
        await tf.ready()
      })
      const model = buildModel(w)
      const { T, N } = w
      const I = w.cfg.inputSize
      const x = tf.tensor3d(swap01(w.input, T, N, I), [N, T, I])
      const F = w.cfg.hiddenSize * (w.cfg.bidirectional ? 2 : 1)
      const call = async () => {
        const y = tf.tidy(() => model.predict(x))
        const data = await y.data()
        y.dispose()
        return data
      }
      return {
        info: { backend: tf.getBackend(), version: tf.version.tfjs },
        async output() {
          return swap01(await call(), N, T, F) // back to [T, N, D*H]
        },
        time: (plan, firstMs) => timeRuns(call, plan, firstMs),
        close() {
          x.dispose()
          model.dispose()
        },
      }
    },
  }
}

export const tfjsVariants = () => [variant('wasm'), variant('cpu')]
