// The contract between TypeScript and the C++ kernel, in one place. native/spec.h is its mirror
// (the addon exports that table as spec(), and test/native/spec.test.ts holds the two together):
// change both or neither.

import type { Mode, ModelConfig, Simd, WasmSimd } from './types.js'

/** The recurrent cells; a mode's index is its id in the kernel (birnn::Mode). */
export const MODES = ['RNN_TANH', 'RNN_RELU', 'GRU', 'LSTM'] as const satisfies readonly Mode[]

/** Gate rows per hidden unit in PyTorch's weight_ih / weight_hh: [G*H, ·]. */
export const GATES: Readonly<Record<Mode, number>> = { RNN_TANH: 1, RNN_RELU: 1, GRU: 3, LSTM: 4 }

/**
 * The kernel's instruction sets; an ISA's index is its id in the kernel (birnn::Isa). Ids are only
 * appended, so they order the ISAs of one architecture (a higher id is better), not across them.
 */
export const ISAS = ['generic', 'avx2', 'avx512', 'neon'] as const satisfies readonly Simd[]

/** The CPU architecture (process.arch) each ISA runs on; 'any' for the portable path. */
export const ISA_ARCH: Readonly<Record<Simd, 'x64' | 'arm64' | 'any'>> = {
  generic: 'any',
  avx2: 'x64',
  avx512: 'x64',
  neon: 'arm64',
}

/** The WebAssembly kernel's builds, best first (wasm/birnn-relaxed.wasm, wasm/birnn.wasm). */
export const WASM_SIMD = ['wasm-relaxed-simd', 'wasm-simd128'] as const satisfies readonly WasmSimd[]

/** Most threads one call may ask for (`threads`). */
export const MAX_THREADS = 4096

/** 2 for a bidirectional network, else 1. */
export const directions = (config: ModelConfig): number => (config.bidirectional ? 2 : 1)

/** Hout: the width of each direction's hidden state and output (projSize when there is one). */
export const outputSize = (config: ModelConfig): number => config.projSize || config.hiddenSize
