import { existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

/** Mesa lavapipe's Vulkan ICD, which scripts/provision.sh installs (npm test runs it first). */
const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.json';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Model loads and ORT sessions are slow on 2 cores; keep files in separate forks. Files run
    // one at a time on 2 cores (vitest's default there, cores - 1): one lavapipe kernel file already
    // keeps both busy compiling, and two at once took longer (kernels-attention + wgsl: 231 s against 214).
    pool: 'forks',
    testTimeout: 120_000,
    env: {
      // Shaders run without Dawn's bounds checks in the tests: an out-of-range index in a kernel
      // shows up as a wrong result instead of being clamped away.
      FUSEGEN_DAWN_TOGGLES: 'disable_robustness',
      // compare and bench append a summary to $GITHUB_STEP_SUMMARY (empty: none): not the test runs'
      // own when the suite runs in GitHub Actions (test/ci-gate.test.ts sets it where it checks it).
      GITHUB_STEP_SUMMARY: '',
      // The WebGPU tests run on lavapipe (the CPU) unless the caller chose a Vulkan driver.
      ...(!process.env['VK_ICD_FILENAMES'] && existsSync(LAVAPIPE_ICD) ? { VK_ICD_FILENAMES: LAVAPIPE_ICD } : {}),
    },
    hookTimeout: 300_000,
  },
});
