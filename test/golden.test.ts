/**
 * The outside judge: Hugging Face transformers (PyTorch, fp32, CPU) on the same fixture
 * checkpoints, from fixtures/golden/make_goldens.py. Every pipeline on the CPU in float32 (the
 * reference, and fusegen's loop on the plain and on the kernel-injected graph) must reproduce
 * the greedy tokens exactly and the top-k logits of every step within 1e-4, alone and in a
 * padded batch.
 */
import { LOGIT_ATOL, loadGolden, maxLogitError, sha256 } from './helpers.js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE_ARCHS, tinyModelDir } from '../fixtures/checkpoints.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { ALL_FUSIONS, NO_FUSIONS } from '../src/inject/plan.js';
import { InjectedPipeline } from '../src/pipeline/injected.js';
import { ReferencePipeline } from '../src/pipeline/reference.js';
import type { TextGenerationPipeline } from '../src/pipeline/types.js';

const PIPELINES = {
  reference: (arch: string) => ReferencePipeline.create(openCheckpoint(tinyModelDir(arch as never)), { device: 'cpu', dtype: 'float32', maxTokens: 1024 }),
  plain: (arch: string) => InjectedPipeline.create(openCheckpoint(tinyModelDir(arch as never)), { device: 'cpu', dtype: 'float32', maxTokens: 1024, fusions: NO_FUSIONS }),
  injected: (arch: string) => InjectedPipeline.create(openCheckpoint(tinyModelDir(arch as never)), { device: 'cpu', dtype: 'float32', maxTokens: 1024, fusions: ALL_FUSIONS }),
};
const CASES = FIXTURE_ARCHS.flatMap((arch) => (Object.keys(PIPELINES) as Array<keyof typeof PIPELINES>).map((pipeline) => ({ arch, pipeline })));

describe.each(CASES)('$arch $pipeline pipeline against Hugging Face goldens', ({ arch, pipeline }) => {
  const golden = loadGolden(arch);
  let pipe: TextGenerationPipeline;

  beforeAll(async () => {
    pipe = await PIPELINES[pipeline](arch);
  });
  afterAll(async () => {
    await pipe?.dispose();
  });

  it('the fixture generator still writes the checkpoint the goldens were made from', () => {
    expect(sha256(join(tinyModelDir(arch), 'model.safetensors'))).toBe(golden.checkpoint.weights_sha256);
    expect(sha256(join(tinyModelDir(arch), 'config.json'))).toBe(golden.checkpoint.config_sha256);
  });

  it('matches tokens, tokenization and logits for each prompt alone', async () => {
    for (const g of golden.single) {
      const r = await pipe.generate({ prompts: [g.prompt], maxNewTokens: golden.max_new_tokens, doSample: false, recordTopK: golden.top_k });
      const seq = r.sequences[0]!;
      expect(seq.promptIds, g.prompt).toEqual(g.input_ids);
      expect(seq.newIds, g.prompt).toEqual(g.new_ids);
      expect(maxLogitError(seq, g), g.prompt).toBeLessThan(LOGIT_ATOL);
      expect(seq.text, g.prompt).toBe(g.text);
    }
  });

  it('matches tokens, logits and text in one left-padded batch of all eight prompts', async () => {
    const r = await pipe.generate({ prompts: golden.batch.prompts, maxNewTokens: golden.max_new_tokens, doSample: false, recordTopK: golden.top_k });
    expect(r.promptLength).toBe(golden.batch.input_ids[0]!.length);
    r.sequences.forEach((seq, i) => {
      const g = golden.batch.rows[i]!;
      expect(seq.newIds, seq.prompt).toEqual(g.new_ids);
      expect(maxLogitError(seq, g), seq.prompt).toBeLessThan(LOGIT_ATOL);
      expect(seq.text, seq.prompt).toBe(g.text);
    });
  });
});
