import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Model loads and ORT sessions are slow on 2 cores; keep files in separate forks.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 300_000,
  },
});
