/**
 * The WGSL engine end to end on Mesa lavapipe: float32 reproduces the Hugging Face goldens
 * (tokens exact, logits within 1e-4, alone and batched), float16 weights follow the tolerance
 * policy, and the cached decode steps agree with a single pass without cache. Gemma 2 (GeGLU,
 * sandwich norms, soft capping, scaled embedding) agrees with the plain ONNX graph.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logitAgreement, TOLERANCE, tokenVerdict } from '../compare/tolerance.js';
import { FIXTURE_ARCHS, tinyModelDir, writeTinyCheckpoint } from '../fixtures/checkpoints.js';
import { SEED_PROMPTS } from '../fixtures/prompts.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { InjectedPipeline, NO_FUSIONS } from '../src/pipeline/injected.js';
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
      const w = await uploadWeights(ctx, openCheckpoint(tinyModelDir(arch)), 'f16', { bits: 4, blockSize: 32 });
      expect(w.lmHead.quant?.bits, arch).toBe(4);
      expect(w.lmHead).not.toBe(w.embed);
      expect(w.embed.quant, arch).toBeUndefined();
      expect(w.layers[0]!.down.w.quant?.bits).toBe(4);
      const f16 = await uploadWeights(ctx, openCheckpoint(tinyModelDir(arch)), 'f16', { bits: 0, blockSize: 32 });
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

describe('WGSL engine over a paged KV cache', () => {
  it('gives the contiguous cache\'s logits to the last bit, the rows\' blocks scattered over the pool, and refuses tables that do not cover a step', async () => {
    const wgsl = await WgslPipeline.create(openCheckpoint(tinyModelDir('llama')), { dtype: 'float32', maxTokens: 64 });
    const engine = wgsl.engine;
    // A prompt step (two rows of 7 and 3 tokens), then a decode step, then a step of one row only (the other's cache kept).
    const steps = [
      { tokens: [[5, 17, 301, 42, 7, 88, 9], [9, 8, 7]], start: [0, 0], last: [6, 2], suppress: [] },
      { tokens: [[11], [12]], start: [7, 3], last: [0, 0], suppress: [] },
      { tokens: [[13, 14]], start: [8], last: [1], suppress: [] },
    ];
    const bits = (x: { logits?: Float32Array }) => Buffer.from(x.logits!.buffer);
    try {
      engine.begin(2, 64);
      const contiguous = [];
      for (const st of steps) contiguous.push(await engine.step(st, true));
      // Blocks of 4 in a pool of 12: row 0 takes blocks 7, 2, 10 (positions up to 10), row 1 block 5.
      engine.begin(2, 64, { blockSize: 4, blocks: 12 });
      const tables = [[7, 2, 10], [5]];
      for (const [i, st] of steps.entries()) {
        const paged = await engine.step({ ...st, blockTables: tables.slice(0, st.tokens.length) }, true);
        expect(bits(paged).equals(bits(contiguous[i]!)), `step ${i}`).toBe(true);
      }
      const next = { tokens: [[1, 2, 3, 4, 5]], start: [11], last: [4], suppress: [] };
      await expect(engine.step({ ...next, blockTables: [[7, 2, 10]] }, true)).rejects.toThrow(/row 0 holds 3 blocks, short of the 4 its positions up to 16 take/);
      await expect(engine.step({ ...next, blockTables: [[7, 2, 10, 12]] }, true)).rejects.toThrow(/row 0's block 12 is not in the pool of 12/);
      await expect(engine.step(next, true)).rejects.toThrow(/names no block tables/);
    } finally {
      await wgsl.dispose();
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

/**
 * Gemma 2 against the plain ONNX graph (src/graph/decoder.ts: Hugging Face's forward pass in
 * standard ops) on ONNX Runtime's CPU, both float32, on the tiny random Gemma 2 (head dim 32
 * apart from hidden / heads, query_pre_attn_scalar 16, GQA 4/2, tied head) with its soft caps
 * lowered so that they bend these weights' scores and logits: without either cap the plain
 * graph's logits move by far more than the tolerance, so each cap is really checked.
 */
describe('gemma2 on the WGSL engine (GeGLU, sandwich norms, soft capping, scaled embedding), float32', () => {
  const CAPS = { attn_logit_softcapping: 0.5, final_logit_softcapping: 2 };
  let root: string;
  let wgsl: WgslPipeline;
  let plain: InjectedPipeline;
  const modelWith = (name: string, caps: Record<string, number | null>) => {
    const dir = join(root, name);
    writeTinyCheckpoint(dir, 'gemma2', { force: true });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, ...caps }, null, 2));
    return openCheckpoint(dir);
  };
  const plainOf = (ckpt: ReturnType<typeof openCheckpoint>) => InjectedPipeline.create(ckpt, { device: 'cpu', dtype: 'float32', maxTokens: 128, fusions: NO_FUSIONS });
  const within = (got: number, want: number) => Math.abs(got - want) <= TOLERANCE.float32.atol + TOLERANCE.float32.rtol * Math.abs(want);
  const maxDiff = (a: Float32Array[][], b: Float32Array[][]) => {
    const rowsB = b.flat();
    return Math.max(...a.flat().map((row, i) => Math.max(...row.map((v, j) => Math.abs(v - rowsB[i]![j]!)))));
  };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'fusegen-gemma2-'));
    const ckpt = modelWith('capped', CAPS);
    expect(ckpt.dims).toMatchObject({ attnSoftcap: 0.5, logitSoftcap: 2, embedScale: 8, headDim: 32 });
    wgsl = await WgslPipeline.create(ckpt, { dtype: 'float32', maxTokens: 128 });
    plain = await plainOf(ckpt);
  });
  afterAll(async () => {
    await wgsl?.dispose();
    await plain?.dispose();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('greedy tokens and their top-5 logits match the plain graph, alone and left-padded in a batch; argmax on the GPU too', async () => {
    const prompts = SEED_PROMPTS.slice(0, 4);
    const request = { prompts, maxNewTokens: 8, doSample: false, ignoreEos: true, recordTopK: 5 };
    const [a, b] = [await wgsl.generate(request), await plain.generate(request)];
    expect(a.sequences.map((s) => s.newIds)).toEqual(b.sequences.map((s) => s.newIds));
    a.sequences.forEach((s, i) =>
      s.topK!.forEach((t, step) => {
        const ref = b.sequences[i]!.topK![step]!;
        // Values by rank (robust to the order of near-ties); the top id is the token, checked above.
        t.values.forEach((v, j) => expect(within(v, ref.values[j]!), `${s.prompt} step ${step}: ${v} vs ${ref.values[j]}`).toBe(true));
        // The final cap: no logit reaches it.
        expect(Math.max(...t.values.map(Math.abs))).toBeLessThan(CAPS.final_logit_softcapping);
      }),
    );
    // Greedy without logits: the capped head's argmax on the GPU, only ids read back; one prompt alone.
    const ids = await wgsl.generate({ prompts, maxNewTokens: 8, doSample: false, ignoreEos: true });
    expect(ids.sequences.map((s) => s.newIds)).toEqual(b.sequences.map((s) => s.newIds));
    const alone = await wgsl.generate({ prompts: [prompts[3]!], maxNewTokens: 8, doSample: false, ignoreEos: true, recordTopK: 5 });
    expect(alone.sequences[0]!.newIds).toEqual(b.sequences[3]!.newIds);
  });

  it('teacher-forced logits of every row match within 1e-4 (40-token rows: the GEMM and prefill attention paths), and each cap matters', async () => {
    // Rows of 40, 35 and 9 tokens from the tokenizer's ids of the seed prompts (left to right, repeated).
    const ids = (await plain.generate({ prompts: SEED_PROMPTS.slice(0, 8), maxNewTokens: 1, doSample: false })).sequences.flatMap((s) => s.promptIds);
    const rows = [40, 35, 9].map((n, r) => Array.from({ length: n }, (_, i) => ids[(i + 7 * r) % ids.length]!));
    const from = [0, 20, 4];
    const want = await plain.score(rows, from);
    const got = await wgsl.score(rows, from);
    const diff = maxDiff(got, want);
    expect(diff).toBeLessThan(TOLERANCE.float32.atol);
    // Without either cap the plain graph's logits are far from these: the caps are exercised.
    for (const [name, caps] of [['no-attn-cap', { ...CAPS, attn_logit_softcapping: null }], ['no-final-cap', { ...CAPS, final_logit_softcapping: null }]] as const) {
      const other = await plainOf(modelWith(name, caps));
      try {
        expect(maxDiff(await other.score(rows, from), want), name).toBeGreaterThan(100 * TOLERANCE.float32.atol);
      } finally {
        await other.dispose();
      }
    }
  });
});
