/**
 * The WGSL engine end to end on Mesa lavapipe: float32 reproduces the Hugging Face goldens
 * (tokens exact, logits within 1e-4, alone and batched), float16 weights follow the tolerance
 * policy, and the cached decode steps agree with a single pass without cache.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logitAgreement, TOLERANCE, tokenVerdict } from '../compare/tolerance.js';
import { FIXTURE_ARCHS, tinyModelDir } from '../fixtures/checkpoints.js';
import { SEED_PROMPTS } from '../fixtures/prompts.js';
import { openCheckpoint } from '../src/checkpoint/checkpoint.js';
import { InjectedPipeline } from '../src/pipeline/injected.js';
import { WgslPipeline } from '../src/pipeline/wgsl.js';
import { openGpu } from '../src/kernels/device.js';
import { uploadWeights } from '../src/kernels/weights.js';
import { loadGolden } from './helpers.js';

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
if (!process.env['VK_ICD_FILENAMES'] && existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;

describe.each(FIXTURE_ARCHS)('%s on the WGSL engine, float32', (arch) => {
  let pipe: WgslPipeline;
  beforeAll(async () => {
    pipe = await WgslPipeline.create(openCheckpoint(tinyModelDir(arch)), { dtype: 'float32', maxTokens: 256 });
  });
  afterAll(async () => pipe?.dispose());

  it('records the adapter it ran on', () => {
    expect(pipe.info.executionProviders[0]).toMatch(/^dawn:/);
    expect(pipe.adapter.description.length).toBeGreaterThan(0);
  });

  it('reproduces the goldens alone and in a batch: tokens exact, logits within 1e-4', async () => {
    const golden = loadGolden(arch);
    for (const s of golden.single) {
      const r = await pipe.generate({ prompts: [s.prompt], maxNewTokens: golden.max_new_tokens, doSample: false, recordTopK: golden.top_k });
      const seq = r.sequences[0]!;
      expect(seq.promptIds).toEqual(s.input_ids);
      expect(seq.newIds, s.prompt).toEqual(s.new_ids);
      s.steps.forEach((st, i) => st.ids.forEach((id, j) => expect(Math.abs(seq.topK![i]!.values[seq.topK![i]!.ids.indexOf(id)]! - st.values[j]!)).toBeLessThan(1e-4)));
    }
    // Greedy without logits: the argmax runs on the GPU and only ids come back.
    const r = await pipe.generate({ prompts: golden.batch.prompts, maxNewTokens: golden.max_new_tokens, doSample: false });
    expect(r.sequences.map((s) => s.newIds)).toEqual(golden.batch.rows.map((row) => row.new_ids));
  });

  it('cached decode steps give the logits of one pass without cache', async () => {
    const r = await pipe.generate({ prompts: SEED_PROMPTS.slice(0, 3), maxNewTokens: 8, doSample: false, recordTopK: 5 });
    const scored = await pipe.score(r.sequences.map((s) => [...s.promptIds, ...s.newIds]), r.sequences.map((s) => s.promptIds.length - 1));
    r.sequences.forEach((s, b) => s.topK!.forEach((t, step) => t.ids.forEach((id, j) => expect(Math.abs(scored[b]![step]![id]! - t.values[j]!)).toBeLessThan(1e-4))));
  });
});

describe.each(FIXTURE_ARCHS)('%s on the WGSL engine, float16 weights, by the tolerance policy', (arch) => {
  it('teacher-forced logits and greedy tokens agree with the float32 goldens', async () => {
    const tol = TOLERANCE.float16;
    const golden = loadGolden(arch);
    const pipe = await WgslPipeline.create(openCheckpoint(tinyModelDir(arch)), { dtype: 'float16', maxTokens: 256 });
    try {
      const scored = await pipe.score(golden.single.map((s) => [...s.input_ids, ...s.new_ids]), golden.single.map((s) => s.input_ids.length - 1));
      const agreement = logitAgreement(golden.single.flatMap((s) => s.steps), scored.flatMap((r, b) => r.slice(0, golden.single[b]!.steps.length)), tol);
      expect(agreement, JSON.stringify(agreement)).toMatchObject({ withinTolerance: true });
      expect(agreement.maxAbs).toBeGreaterThan(0);
      for (const s of golden.single) {
        const r = await pipe.generate({ prompts: [s.prompt], maxNewTokens: golden.max_new_tokens, doSample: false, recordTopK: 5 });
        expect(tokenVerdict({ newIds: s.new_ids, topK: s.steps }, r.sequences[0]!, tol).status, s.prompt).not.toBe('mismatch');
      }
    } finally {
      await pipe.dispose();
    }
  });
});

describe.each(FIXTURE_ARCHS)('%s on the WGSL engine, int8 weights', (arch) => {
  it('computes what ORT-injected int8 computes on the CPU (the same block-quantized weights, float activations) and stays within the int8 policy of the goldens', async () => {
    const golden = loadGolden(arch);
    const ckpt = openCheckpoint(tinyModelDir(arch));
    const rows = golden.single.map((s) => [...s.input_ids, ...s.new_ids]);
    const from = golden.single.map((s) => s.input_ids.length - 1);
    const score = async (p: { score: WgslPipeline['score']; dispose(): Promise<void> }) => {
      try {
        return await p.score(rows, from);
      } finally {
        await p.dispose();
      }
    };
    const wgsl = await score(await WgslPipeline.create(ckpt, { dtype: 'int8', maxTokens: 256 }));
    const ort8 = await score(await InjectedPipeline.create(ckpt, { device: 'cpu', dtype: 'int8', maxTokens: 256, accuracyLevel: 0 }));
    const ort32 = await score(await InjectedPipeline.create(ckpt, { device: 'cpu', dtype: 'float32', maxTokens: 256 }));
    // The same maximum as before, with b flattened once rather than once an element (that took 8 of each test's 9 s).
    const maxDiff = (a: Float32Array[][], b: Float32Array[][]) => {
      const rowsB = b.flat();
      return Math.max(...a.flat().map((row, i) => Math.max(...row.map((v, j) => Math.abs(v - rowsB[i]![j]!)))));
    };
    const quantization = maxDiff(ort8, ort32);
    expect(quantization).toBeGreaterThan(1e-2); // int8 really changes the logits ...
    // ... and both engines the same way (the rest is the WGSL engine's f16 embedding tables: measured 15-33x apart).
    expect(maxDiff(wgsl, ort8)).toBeLessThan(quantization / 8);
    const agreement = logitAgreement(golden.single.flatMap((s) => s.steps), wgsl.flatMap((r, b) => r.slice(0, golden.single[b]!.steps.length)), TOLERANCE.int8);
    expect(agreement, JSON.stringify(agreement)).toMatchObject({ withinTolerance: true });
  });
});

describe('WGSL engine weights', () => {
  it('int4 quantizes the LM head too (its own copy when tied), never the embedding tables', async () => {
    const ctx = await openGpu();
    for (const arch of ['opt', 'llama'] as const) {
      const w = uploadWeights(ctx, openCheckpoint(tinyModelDir(arch)), 'f16', { bits: 4, blockSize: 32 });
      expect(w.lmHead.quant?.bits, arch).toBe(4);
      expect(w.lmHead).not.toBe(w.embed);
      expect(w.embed.quant, arch).toBeUndefined();
      expect(w.layers[0]!.down.w.quant?.bits).toBe(4);
      const f16 = uploadWeights(ctx, openCheckpoint(tinyModelDir(arch)), 'f16', { bits: 0, blockSize: 32 });
      expect(f16.lmHead.quant).toBeUndefined();
      if (arch === 'opt') expect(f16.lmHead).toBe(f16.embed); // tied: the table serves both
    }
  });
});

describe('WGSL engine over long runs', () => {
  it('replayed step recordings stay right as the context crosses attention split sizes (150 tokens)', async () => {
    const { InjectedPipeline } = await import('../src/pipeline/injected.js');
    const { NO_FUSIONS } = await import('../src/inject/plan.js');
    const ckpt = openCheckpoint(tinyModelDir('gpt2'));
    const wgsl = await WgslPipeline.create(ckpt, { dtype: 'float32', maxTokens: 256 });
    const cpu = await InjectedPipeline.create(ckpt, { device: 'cpu', dtype: 'float32', maxTokens: 256, fusions: NO_FUSIONS });
    try {
      const request = { prompts: [SEED_PROMPTS[0]!, SEED_PROMPTS[3]!], maxNewTokens: 150, doSample: false, ignoreEos: true };
      const [a, b] = [await wgsl.generate(request), await cpu.generate(request)];
      expect(a.sequences.map((s) => s.newIds)).toEqual(b.sequences.map((s) => s.newIds));
      expect(a.sequences[0]!.newIds).toHaveLength(150);
    } finally {
      await wgsl.dispose();
      await cpu.dispose();
    }
  });
});

describe('WGSL engine profiling', () => {
  it('times every kernel of the last step with timestamp queries, grouped by kernel', async () => {
    const pipe = await WgslPipeline.create(openCheckpoint(tinyModelDir('llama')), { dtype: 'float32', maxTokens: 64 });
    try {
      await pipe.generate({ prompts: ['He has a'], maxNewTokens: 3, doSample: false });
      const gpu = await pipe.profileKernels();
      const prompt = await pipe.profileKernels('prefill');
      // The prompt's step (several rows a batch entry) has a scatter and the prefill attention instead.
      expect(prompt!.kernels.some((k) => k.kernel.startsWith('qkv-scatter'))).toBe(true);
      expect(prompt!.stepUs).toBeGreaterThan(0);
      expect(gpu).toBeDefined();
      const profile = gpu!.kernels;
      // 2 layers x (packed qkv, o, gate/up, down) linear dispatches plus the LM head.
      const count = (prefix: string) => profile.filter((k) => k.kernel.startsWith(prefix)).reduce((a, k) => a + k.dispatches, 0);
      expect(count('linear')).toBe(2 * 4 + 1);
      // Decode splits the packed qkv inside the attention kernel: no scatter dispatch, one split per layer.
      expect(count('qkv-scatter')).toBe(0);
      expect(count('split/')).toBe(2);
      // The norms ride in the linear kernels (fused on load): a decode step has no norm dispatch.
      expect(count('norm')).toBe(0);
      expect(profile.every((k) => k.totalUs >= 0 && Number.isFinite(k.totalUs))).toBe(true);
      expect(profile.reduce((a, k) => a + k.totalUs, 0)).toBeGreaterThan(0);
      // Every kernel has a marginal cost, and leaving it out saves less than the whole step
      // (timings on a loaded CPU adapter are noisy: nothing finer holds there).
      expect(gpu!.stepUs).toBeGreaterThan(0);
      expect(profile.every((k) => Number.isFinite(k.marginalUs) && k.marginalUs < gpu!.stepUs)).toBe(true);
      const step = pipe.takeStepProfile();
      expect(step.steps).toBeGreaterThan(0);
      expect(step.encodeMsPerStep).toBeGreaterThan(0);
      expect(step.submitMsPerStep).toBeGreaterThan(0);
      expect(step.submitMsPerStep).toBeLessThan(step.encodeMsPerStep);
    } finally {
      await pipe.dispose();
    }
  });
});
