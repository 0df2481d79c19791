import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Model loads and ORT sessions are slow on 2 cores; keep files in separate forks.
    pool: 'forks',
    testTimeout: 120_000,
    // Shaders run without Dawn's bounds checks in the tests: an out-of-range index in a kernel
    // shows up as a wrong result instead of being clamped away.
    env: { FUSEGEN_DAWN_TOGGLES: 'disable_robustness' },
    hookTimeout: 300_000,
  },
});
