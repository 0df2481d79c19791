/**
 * Why an independent reference matters, shown on a checkpoint Hugging Face wrote: fusegen made
 * to misread its config (FUSEGEN_TEST_MISREAD drops transformers 5's `rope_parameters`, as the
 * bug of issue 21 did) changes both sides of the default comparison alike, so `compare` passes;
 * Hugging Face's own goldens for the same checkpoint catch it. `compare --reference hf` is that
 * judge at run time (it reads the config with transformers' code).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { conformanceModelDir, loadConformanceGolden } from '../fixtures/conformance.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { NO_FUSIONS } from '../src/inject/plan.js';
import { InjectedPipeline } from '../src/pipeline/injected.js';

const ROOT = join(import.meta.dirname, '..');
const CASE = 'llama-rope-theta-500k';

describe('a config misread the same way on both sides', () => {
  afterEach(() => {
    delete process.env['FUSEGEN_TEST_MISREAD'];
  });

  it('reads rope_parameters (theta 500000); the test switch makes it fall back to 10000', () => {
    const dir = conformanceModelDir(CASE, 'v5');
    expect(openCheckpoint(dir).dims.rope?.theta).toBe(500000);
    process.env['FUSEGEN_TEST_MISREAD'] = 'rope_parameters';
    expect(openCheckpoint(dir).dims.rope?.theta).toBe(10000);
  });

  it("passes the default compare gate (both sides share fusegen's reading)", () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'dist/src/cli/main.js'), 'compare', '--model', conformanceModelDir(CASE, 'v5'), '--use_kernel', '--num_inputs', '2', '--min_length', '20', '--max_length', '24', '--speed_repeats', '1', '--report_dir', mkdtempSync(join(tmpdir(), 'fusegen-misread-'))], {
      cwd: ROOT,
      env: { ...process.env, FUSEGEN_TEST_MISREAD: 'rope_parameters' },
      encoding: 'utf8',
      timeout: 110_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/gate: pass/);
  });

  it("fails Hugging Face's goldens for the same checkpoint", async () => {
    const golden = loadConformanceGolden(CASE);
    const row = golden.single[0]!;
    const run = async () => {
      const pipe = await InjectedPipeline.create(openCheckpoint(conformanceModelDir(CASE, 'v5')), { device: 'cpu', dtype: 'float32', maxTokens: 256, fusions: NO_FUSIONS });
      try {
        return (await pipe.generate({ prompts: [row.prompt], maxNewTokens: golden.max_new_tokens, doSample: false })).sequences[0]!.newIds;
      } finally {
        await pipe.dispose();
      }
    };
    expect(await run()).toEqual(row.new_ids);
    process.env['FUSEGEN_TEST_MISREAD'] = 'rope_parameters';
    expect(await run()).not.toEqual(row.new_ids);
  });
});
