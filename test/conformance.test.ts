/**
 * The conformance matrix that Hugging Face transformers wrote (fixtures/conformance/, from
 * fixtures/conformance/make_conformance.py): checkpoints saved by transformers' own
 * `save_pretrained` (its config.json in the 5.x layout, the same config in the 4.x layout, its
 * tensor names) and its goldens, float32 on CPU.
 *
 * For every case expected "ok": both config layouts open to the same description; the
 * reference (transformers.js on the plain export), plain (fusegen's loop, no fusions) and
 * injected (ORT contrib ops) pipelines on cpu float32 reproduce the golden tokens and text exactly
 * and the top-10 logits within the float32 policy (F32 below), in the left-padded batch and for a
 * few prompts alone; the 4.x layout
 * runs the batch too. For every case expected "refused": opening it (or, for run-time refusals,
 * creating or running a pipeline) throws a FusegenError of one line naming the refused key.
 *
 * A pipeline that refuses an "ok" case is a known gap only when KNOWN_GAPS below lists it, with
 * the exact refusal; the test then asserts that refusal. Any other refusal fails, and so does a
 * listed gap that no longer refuses (remove its entry).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOLERANCE } from '../compare/tolerance.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { SEED_PROMPTS } from '../fixtures/prompts.js';
import {
  conformanceDataDir,
  conformanceModelDir,
  loadConformanceGolden,
  loadConformanceIndex,
  type ConformanceCase,
  type ConformanceGolden,
  type ConformanceLayout,
} from '../fixtures/conformance.js';
import { openCheckpoint, type Checkpoint } from '../src/arch/checkpoint.js';
import { ALL_FUSIONS, NO_FUSIONS } from '../src/inject/plan.js';
import { InjectedPipeline } from '../src/pipeline/injected.js';
import { ReferencePipeline } from '../src/pipeline/reference.js';
import type { GenerateRequest, GenerateResult, TextGenerationPipeline } from '../src/pipeline/types.js';
import { errorText, expectOneLineRefusal, maxLogitError, settle, sha256, type Outcome } from './helpers.js';

type Stage = 'checkpoint' | 'reference' | 'plain' | 'injected';

interface KnownGap {
  case: string;
  /** `checkpoint`: openCheckpoint refuses the case (either layout); else the pipeline refuses it (at creation or when run). */
  stage: Stage;
  /** The refusal, exactly enough to tell it from any other. */
  refusal: RegExp;
  why: string;
}

/**
 * Cases expected "ok" that a stage refuses today. Keep it short and exact: every entry is asserted
 * (one-line FusegenError matching `refusal`), and an entry whose case now runs fails the suite.
 */
const KNOWN_GAPS: readonly KnownGap[] = [];

const PIPELINES = ['reference', 'plain', 'injected'] as const;
type Pipeline = (typeof PIPELINES)[number];

const CREATE: Record<Pipeline, (ckpt: Checkpoint) => Promise<TextGenerationPipeline>> = {
  reference: (ckpt) => ReferencePipeline.create(ckpt, { device: 'cpu', dtype: 'float32', maxTokens: 1024 }),
  plain: (ckpt) => InjectedPipeline.create(ckpt, { device: 'cpu', dtype: 'float32', maxTokens: 1024, fusions: NO_FUSIONS }),
  injected: (ckpt) => InjectedPipeline.create(ckpt, { device: 'cpu', dtype: 'float32', maxTokens: 1024, fusions: ALL_FUSIONS }),
};

/**
 * Float32 logits against HF's: within the tolerance policy's atol + rtol * |logit| (1e-4 + 1e-4 *
 * |logit|). The tied heads here give logits up to ~50, where float32 summation order alone moves
 * a logit by ~1.4e-4 (measured on the plain graph too), so a bare 1e-4 would fail on rounding.
 */
const F32 = TOLERANCE.float32;

/** Which of the eight prompts also run alone (a short one and the longest): the batch covers the rest. */
const SINGLE_PROMPTS = [1, 6];

function gapFor(name: string, stage: Stage): KnownGap | undefined {
  return KNOWN_GAPS.find((g) => g.case === name && g.stage === stage);
}

function batchRequest(golden: ConformanceGolden): GenerateRequest {
  return { prompts: golden.batch.prompts, maxNewTokens: golden.max_new_tokens, doSample: false, recordTopK: golden.top_k };
}

function expectBatch(r: GenerateResult, golden: ConformanceGolden, label: string): void {
  expect(r.promptLength, label).toBe(golden.batch.input_ids[0]!.length);
  expect(r.sequences).toHaveLength(golden.batch.rows.length);
  r.sequences.forEach((seq, i) => {
    const g = golden.batch.rows[i]!;
    expect(seq.newIds, `${label}: ${seq.prompt}`).toEqual(g.new_ids);
    expect(maxLogitError(seq, g, F32.rtol), `${label}: ${seq.prompt}`).toBeLessThanOrEqual(F32.atol);
    expect(seq.text, `${label}: ${seq.prompt}`).toBe(g.text);
  });
}

async function expectSingles(pipe: TextGenerationPipeline, golden: ConformanceGolden, label: string): Promise<void> {
  for (const i of SINGLE_PROMPTS) {
    const g = golden.single[i]!;
    const r = await pipe.generate({ prompts: [g.prompt], maxNewTokens: golden.max_new_tokens, doSample: false, recordTopK: golden.top_k });
    const seq = r.sequences[0]!;
    expect(seq.promptIds, `${label}: ${g.prompt}`).toEqual(g.input_ids);
    expect(seq.newIds, `${label}: ${g.prompt}`).toEqual(g.new_ids);
    expect(maxLogitError(seq, g, F32.rtol), `${label}: ${g.prompt}`).toBeLessThanOrEqual(F32.atol);
    expect(seq.text, `${label}: ${g.prompt}`).toBe(g.text);
  }
}

/** What both layouts must agree on: everything fusegen derived from the config (functions and paths aside). */
function derived(ckpt: Checkpoint): unknown {
  const { dir: _dir, config: _config, configPath: _path, ...rest } = ckpt;
  return JSON.parse(JSON.stringify({ ...rest, traits: ckpt.spec.traits }));
}

/**
 * A known gap: the stage must refuse (at creation or when run) with the listed one-line refusal.
 * Returns after asserting it; the caller stops there.
 */
async function expectGap(gap: KnownGap, created: Outcome<TextGenerationPipeline> | undefined, golden: ConformanceGolden): Promise<void> {
  const context = `KNOWN_GAPS ${gap.case} ${gap.stage}`;
  let error: unknown;
  if (created && !created.ok) error = created.error;
  else if (created?.ok) {
    const run = await settle(() => created.value.generate(batchRequest(golden)));
    if (!run.ok) error = run.error;
  }
  expect(error, `${context}: it no longer refuses; remove the entry`).toBeDefined();
  expectOneLineRefusal(error, gap.refusal, context);
}

// A missing index fails the file at once, naming the path (loadConformanceIndex).
const index = loadConformanceIndex();
{
  const okCases = index.cases.filter((c) => c.expect === 'ok');
  const refusedCases = index.cases.filter((c) => c.expect === 'refused');

  describe('Hugging Face conformance matrix', () => {
    it('has cases of both kinds, and KNOWN_GAPS names only cases expected to run', () => {
      expect(okCases.length).toBeGreaterThan(0);
      expect(refusedCases.length).toBeGreaterThan(0);
      for (const g of KNOWN_GAPS) expect(okCases.map((c) => c.name), `KNOWN_GAPS entry ${g.case} ${g.stage}`).toContain(g.case);
    });
  });

  describe.each(okCases)('$name ($model_type): $description', (c: ConformanceCase) => {
    const golden = loadConformanceGolden(c.name);
    const ckpt: Partial<Record<ConformanceLayout, Outcome<Checkpoint>>> = {};

    beforeAll(async () => {
      for (const layout of ['v5', 'v4'] as const) {
        const dir = conformanceModelDir(c.name, layout);
        ckpt[layout] = await settle(() => openCheckpoint(dir));
      }
    });

    it('holds the checkpoint and the tokenizer the goldens were made from', () => {
      const data = join(conformanceDataDir(), c.name);
      expect(sha256(join(data, 'config.json'))).toBe(golden.checkpoint.config_sha256);
      expect(sha256(join(data, 'config.v4.json'))).toBe(golden.checkpoint.config_v4_sha256);
      expect(sha256(join(data, 'generation_config.json'))).toBe(golden.checkpoint.generation_config_sha256);
      // model.safetensors is rebuilt from its header and its draws (fixtures/conformance.ts), and must be the file transformers wrote.
      expect(sha256(join(conformanceModelDir(c.name, 'v5'), 'model.safetensors')), 'the rebuilt model.safetensors').toBe(golden.checkpoint.weights_sha256);
      expect(sha256(join(conformanceModelDir(c.name, 'v4'), 'model.safetensors')), 'the rebuilt model.safetensors (4.x layout)').toBe(golden.checkpoint.weights_sha256);
      if (golden.checkpoint.header_sha256) expect(sha256(join(data, 'model.safetensors.header'))).toBe(golden.checkpoint.header_sha256);
      if (golden.checkpoint.weights_manifest_sha256) expect(sha256(join(data, 'weights.json'))).toBe(golden.checkpoint.weights_manifest_sha256);
      expect(sha256(join(tinyModelDir(c.family), 'tokenizer.json')), `the ${c.family} fixture tokenizer drifted from the one HF used`).toBe(golden.tokenizer_sha256);
      if (golden.tokenizer_config_sha256) expect(sha256(join(tinyModelDir(c.family), 'tokenizer_config.json'))).toBe(golden.tokenizer_config_sha256);
    });

    it('opens in the 5.x and the 4.x config layouts to the same dimensions and traits', () => {
      const gap = gapFor(c.name, 'checkpoint');
      if (gap) {
        const refused = (['v5', 'v4'] as const).filter((l) => !ckpt[l]!.ok);
        expect(refused, `KNOWN_GAPS ${c.name} checkpoint: it opens now; remove the entry`).not.toHaveLength(0);
        for (const l of refused) expectOneLineRefusal((ckpt[l] as { error: unknown }).error, gap.refusal, `KNOWN_GAPS ${c.name} checkpoint (${l})`);
        return;
      }
      for (const l of ['v5', 'v4'] as const) {
        const o = ckpt[l]!;
        if (!o.ok) throw new Error(`${c.name} (${l} layout): openCheckpoint refused a case expected to run, and KNOWN_GAPS does not list it: ${errorText(o.error)}`);
      }
      const [v5, v4] = [ckpt.v5 as { value: Checkpoint }, ckpt.v4 as { value: Checkpoint }];
      expect(derived(v4.value)).toEqual(derived(v5.value));
    });

    describe.each(PIPELINES)('%s pipeline, cpu float32', (pipeline: Pipeline) => {
      let created: Outcome<TextGenerationPipeline> | undefined;
      beforeAll(async () => {
        const opened = ckpt.v5;
        if (opened?.ok) created = await settle(() => CREATE[pipeline](opened.value));
      });
      afterAll(async () => {
        if (created?.ok) await created.value.dispose();
      });

      it('reproduces the goldens: the left-padded batch and prompts alone, tokens and text exact, top-10 logits within 1e-4 + 1e-4 x |logit|', async () => {
        if (!ckpt.v5!.ok) {
          expect(gapFor(c.name, 'checkpoint'), `${c.name}: the checkpoint is refused and KNOWN_GAPS does not list it`).toBeDefined();
          return;
        }
        const gap = gapFor(c.name, pipeline);
        if (gap) return expectGap(gap, created, golden);
        if (!created!.ok) throw new Error(`${c.name} ${pipeline}: refused a case expected to run, and KNOWN_GAPS does not list it: ${errorText(created!.error)}`);
        const pipe = created!.value;
        expectBatch(await pipe.generate(batchRequest(golden)), golden, `${c.name} ${pipeline} batch`);
        await expectSingles(pipe, golden, `${c.name} ${pipeline} alone`);
      });
    });

    it('4.x config layout: the plain pipeline reproduces the golden batch', async () => {
      if (!ckpt.v4!.ok) {
        expect(gapFor(c.name, 'checkpoint'), `${c.name}: the 4.x layout is refused and KNOWN_GAPS does not list it`).toBeDefined();
        return;
      }
      const created4 = await settle(() => CREATE.plain((ckpt.v4 as { value: Checkpoint }).value));
      try {
        const gap = gapFor(c.name, 'plain');
        if (gap) return await expectGap(gap, created4, golden);
        if (!created4.ok) throw new Error(`${c.name} plain (4.x layout): refused a case expected to run: ${errorText(created4.error)}`);
        expectBatch(await created4.value.generate(batchRequest(golden)), golden, `${c.name} plain v4 batch`);
      } finally {
        if (created4.ok) await created4.value.dispose();
      }
    });
  });

  describe.each(refusedCases)('$name ($model_type) is refused: $description', (c: ConformanceCase) => {
    it.each(['v5', 'v4'] as const)('%s config layout: one line naming the key, at open or when a pipeline is made or run', async (layout) => {
      const key = layout === 'v5' ? c.refused_key! : (c.refused_key_v4 ?? c.refused_key!);
      const dir = conformanceModelDir(c.name, layout);
      const opened = await settle(() => openCheckpoint(dir));
      if (!opened.ok) {
        expectOneLineRefusal(opened.error, key, `${c.name} (${layout}) openCheckpoint`);
        return;
      }
      // A run-time refusal (e.g. a sliding window shorter than the run): every pipeline refuses.
      const request: GenerateRequest = { prompts: [...SEED_PROMPTS], maxNewTokens: 16, doSample: false };
      for (const pipeline of PIPELINES) {
        const created = await settle(() => CREATE[pipeline](opened.value));
        let error: unknown = created.ok ? undefined : created.error;
        if (created.ok) {
          const run = await settle(() => created.value.generate(request));
          await created.value.dispose();
          if (!run.ok) error = run.error;
        }
        expect(error, `${c.name} (${layout}): the ${pipeline} pipeline ran it without refusing`).toBeDefined();
        expectOneLineRefusal(error, key, `${c.name} (${layout}) ${pipeline}`);
      }
    });
  });
}
