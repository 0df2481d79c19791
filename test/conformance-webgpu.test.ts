/**
 * The Hugging Face conformance matrix (see test/conformance.test.ts) on WebGPU, run on Mesa's
 * lavapipe here (a real GPU where VK_ICD_FILENAMES names one): ORT-injected on onnxruntime-node's
 * WebGPU EP and fusegen's WGSL engine on Dawn, on the left-padded golden batch of every case
 * expected "ok". Float32 (both take it): tokens exact and top-10 logits within 1e-4 + 1e-4 x |logit|
 * (the float32 policy); a pipeline
 * set to float16 in DTYPE is held to the tolerance policy (compare/tolerance.ts) instead.
 *
 * As in the CPU suite, a refusal of an "ok" case passes only when KNOWN_GAPS lists it with its
 * exact one-line refusal, and a listed gap that no longer refuses fails.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logitAgreement, TOLERANCE, tokenVerdict } from '../compare/tolerance.js';
import { conformanceModelDir, loadConformanceGolden, loadConformanceIndex, type ConformanceCase, type ConformanceGolden } from '../fixtures/conformance.js';
import { openCheckpoint, type Checkpoint } from '../src/arch/checkpoint.js';
import { ALL_FUSIONS } from '../src/inject/plan.js';
import { InjectedPipeline } from '../src/pipeline/injected.js';
import type { DType, TextGenerationPipeline } from '../src/pipeline/types.js';
import { WgslPipeline } from '../src/pipeline/wgsl.js';
import { errorText, expectOneLineRefusal, maxLogitError, settle, type Outcome } from './helpers.js';

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
if (!process.env['VK_ICD_FILENAMES'] && existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;
/**
 * onnxruntime-node 1.30's WebGPU GroupQueryAttention is wrong on lavapipe for long prefills
 * (see test/webgpu.test.ts): the golden prompts stay short, and teacher-forced rows are cut.
 */
const MAX_PREFILL = 31;

const PIPELINES = ['ort-webgpu', 'wgsl'] as const;
type Pipeline = (typeof PIPELINES)[number];
type Stage = 'checkpoint' | Pipeline;

interface KnownGap {
  case: string;
  /** `checkpoint`: openCheckpoint refuses the case; else the pipeline refuses it (at creation or when run). */
  stage: Stage;
  refusal: RegExp;
  why: string;
}

/** The WGSL engine's refusal of blocks whose residual is the norm's output (src/kernels/engine.ts). */
const WGSL_NO_POST_NORM_RESIDUAL =
  /^--kernels: wgsl: the residual layout of \S+config\.json \(residual from the norm's output: post-LayerNorm OPT, BLOOM's apply_residual_connection_post_layernorm\) is not in the WGSL engine; use --kernels ort$/;

/** Cases expected "ok" that a stage refuses today: each entry is asserted, and one that now runs fails. */
const KNOWN_GAPS: readonly KnownGap[] = [
  { case: 'opt-350m-shape', stage: 'wgsl', refusal: WGSL_NO_POST_NORM_RESIDUAL, why: 'post-LayerNorm OPT (its word_embed_proj_dim projections are not in the engine either)' },
  { case: 'opt-post-ln', stage: 'wgsl', refusal: WGSL_NO_POST_NORM_RESIDUAL, why: 'post-LayerNorm OPT' },
  { case: 'bloom-post-ln-residual', stage: 'wgsl', refusal: WGSL_NO_POST_NORM_RESIDUAL, why: "BLOOM's apply_residual_connection_post_layernorm" },
];

/** Float32 logits: the policy's atol + rtol * |logit| (see test/conformance.test.ts). */
const F32 = TOLERANCE.float32;

/** Float32 where the pipeline takes it; float16 is held to the tolerance policy. */
const DTYPE: Record<Pipeline, DType> = { 'ort-webgpu': 'float32', wgsl: 'float32' };

const CREATE: Record<Pipeline, (ckpt: Checkpoint) => Promise<TextGenerationPipeline & { info: { executionProviders: string[] } }>> = {
  'ort-webgpu': (ckpt) => InjectedPipeline.create(ckpt, { device: 'webgpu', dtype: DTYPE['ort-webgpu'], maxTokens: 256, fusions: ALL_FUSIONS }),
  wgsl: (ckpt) => WgslPipeline.create(ckpt, { dtype: DTYPE.wgsl, maxTokens: 256 }),
};

/** Proof of where it ran: the WebGPU EP for ORT (a CPU fallback fails the load), a Dawn adapter for WGSL. */
const RAN_ON: Record<Pipeline, RegExp> = { 'ort-webgpu': /^WebGpuExecutionProvider$/, wgsl: /^dawn:/ };

function gapFor(name: string, stage: Stage): KnownGap | undefined {
  return KNOWN_GAPS.find((g) => g.case === name && g.stage === stage);
}

async function expectBatchWithinPolicy(pipe: TextGenerationPipeline, golden: ConformanceGolden, dtype: DType, label: string): Promise<void> {
  const r = await pipe.generate({ prompts: golden.batch.prompts, maxNewTokens: golden.max_new_tokens, doSample: false, recordTopK: golden.top_k });
  expect(r.sequences).toHaveLength(golden.batch.rows.length);
  if (dtype === 'float32') {
    r.sequences.forEach((seq, i) => {
      const g = golden.batch.rows[i]!;
      expect(seq.newIds, `${label}: ${seq.prompt}`).toEqual(g.new_ids);
      expect(maxLogitError(seq, g, F32.rtol), `${label}: ${seq.prompt}`).toBeLessThanOrEqual(F32.atol);
    });
    return;
  }
  const tol = TOLERANCE[dtype];
  r.sequences.forEach((seq, i) => {
    const g = golden.batch.rows[i]!;
    expect(tokenVerdict({ newIds: g.new_ids, topK: g.steps }, seq, tol).status, `${label}: ${seq.prompt}`).not.toBe('mismatch');
  });
  // Teacher-forced logits of every row (unpadded prompt + the golden's tokens) against the goldens,
  // rows cut to MAX_PREFILL tokens (see there).
  const prompts = golden.batch.input_ids.map((ids, b) => ids.filter((_, t) => golden.batch.attention_mask[b]![t] === 1));
  const rows = prompts.map((p, b) => [...p, ...golden.batch.rows[b]!.new_ids].slice(0, MAX_PREFILL));
  const scored = await pipe.score(rows, prompts.map((p) => p.length - 1));
  const n = golden.batch.rows.map((row, b) => Math.min(row.steps.length, scored[b]!.length));
  const agreement = logitAgreement(golden.batch.rows.flatMap((row, b) => row.steps.slice(0, n[b])), scored.flatMap((s, b) => s.slice(0, n[b])), tol);
  expect(agreement, `${label}: ${JSON.stringify(agreement)}`).toMatchObject({ withinTolerance: true });
}

// A missing index fails the file at once, naming the path (loadConformanceIndex).
const index = loadConformanceIndex();
{
  const okCases = index.cases.filter((c) => c.expect === 'ok');

  describe('Hugging Face conformance matrix on WebGPU', () => {
    it('has cases, and KNOWN_GAPS names only cases expected to run', () => {
      expect(okCases.length).toBeGreaterThan(0);
      for (const g of KNOWN_GAPS) expect(okCases.map((c) => c.name), `KNOWN_GAPS entry ${g.case} ${g.stage}`).toContain(g.case);
    });
  });

  describe.each(okCases)('$name ($model_type) on WebGPU', (c: ConformanceCase) => {
    const golden = loadConformanceGolden(c.name);
    let opened: Outcome<Checkpoint>;
    beforeAll(async () => {
      opened = await settle(() => openCheckpoint(conformanceModelDir(c.name, 'v5')));
    });

    describe.each(PIPELINES)('%s', (pipeline: Pipeline) => {
      let created: Outcome<TextGenerationPipeline & { info: { executionProviders: string[] } }> | undefined;
      beforeAll(async () => {
        const o = opened;
        if (o.ok) created = await settle(() => CREATE[pipeline](o.value));
      });
      afterAll(async () => {
        if (created?.ok) await created.value.dispose();
      });

      it(`reproduces the golden batch (${DTYPE[pipeline]})`, async () => {
        if (!opened.ok) {
          const gap = gapFor(c.name, 'checkpoint');
          if (!gap) throw new Error(`${c.name}: openCheckpoint refused a case expected to run, and KNOWN_GAPS does not list it: ${errorText(opened.error)}`);
          expectOneLineRefusal(opened.error, gap.refusal, `KNOWN_GAPS ${c.name} checkpoint`);
          return;
        }
        const gap = gapFor(c.name, pipeline);
        if (gap) {
          const made = created!;
          let error: unknown = made.ok ? undefined : made.error;
          if (made.ok) {
            const run = await settle(() => made.value.generate({ prompts: golden.batch.prompts, maxNewTokens: golden.max_new_tokens, doSample: false }));
            if (!run.ok) error = run.error;
          }
          expect(error, `KNOWN_GAPS ${c.name} ${pipeline}: it no longer refuses; remove the entry`).toBeDefined();
          expectOneLineRefusal(error, gap.refusal, `KNOWN_GAPS ${c.name} ${pipeline}`);
          return;
        }
        if (!created!.ok) throw new Error(`${c.name} ${pipeline}: refused a case expected to run, and KNOWN_GAPS does not list it: ${errorText(created!.error)}`);
        const pipe = created!.value;
        expect(pipe.info.executionProviders.some((p) => RAN_ON[pipeline].test(p)), `${c.name} ${pipeline} ran on ${pipe.info.executionProviders.join(', ')}`).toBe(true);
        await expectBatchWithinPolicy(pipe, golden, DTYPE[pipeline], `${c.name} ${pipeline}`);
      });
    });
  });
}
