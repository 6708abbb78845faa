import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    // Native tests compare thread counts and time the event loop: keep files from competing for the 2 cores.
    fileParallelism: false,
  },
})
