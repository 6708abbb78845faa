import { defineConfig } from 'vitest/config'

// Tests by kind (`npx vitest run --project unit`, ...): unit (no addon needed), parity (every engine
// against PyTorch and against each other), native (the addon: threads, event loop, workers),
// e2e (the CLI and the package as published).
const project = (name: string) => ({ extends: true as const, test: { name, include: [`test/${name}/**/*.test.ts`] } })

// Node 20 has WebAssembly relaxed SIMD behind a flag (on by default from Node 21, which no longer
// takes the flag): with it, the tests run both builds of the wasm kernel, as later Nodes do.
const relaxedSimdFlag = Number(process.versions.node.split('.')[0]) < 21 ? ['--experimental-wasm-relaxed-simd'] : []

export default defineConfig({
  test: {
    testTimeout: 60_000,
    execArgv: relaxedSimdFlag,
    // Native tests compare thread counts and time the event loop: keep files from competing for the 2 cores.
    fileParallelism: false,
    projects: [project('unit'), project('parity'), project('native'), project('e2e')],
  },
})
