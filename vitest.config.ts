import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Model loads and ORT sessions are slow on 2 cores; keep files in separate forks.
    pool: 'forks',
    testTimeout: 120_000,
    // Dawn validates every call in the tests (production skips it), while the shaders run
    // without bounds checks as in production: an out-of-range index shows up as a wrong result.
    env: { FUSEGEN_DAWN_TOGGLES: 'disable_robustness' },
    hookTimeout: 300_000,
  },
});
