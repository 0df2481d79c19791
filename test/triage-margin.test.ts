/**
 * Triage's decision on controlled numbers (issue 29 item 3, issue 22 item 2): runCompare with the
 * pipeline factory replaced by fakes whose teacher-forced logits carry a chosen error per rerun.
 * A rerun that merely crosses the tolerance (the candidate just above it, the rerun just below)
 * is not blamed; one that removes most of the error is. A WGSL candidate is triaged by reruns
 * of the WGSL engine (and an ORT rerun labelled as such), never by the ORT path alone.
 */
import { describe, expect, it, vi } from 'vitest';
import { runCompare, TRIAGE_EXPLAINS, explainsError, type CompareOptions } from '../compare/run.js';
import { TOLERANCE } from '../compare/tolerance.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import type { Backend, PipelineRun } from '../src/pipeline/ds-pipeline.js';
import type { FusionSwitches } from '../src/inject/plan.js';
import type { GenerateRequest, GenerateResult, TextGenerationPipeline } from '../src/pipeline/types.js';
import { validateCompareReport } from '../src/report/compare-validate.js';

const fake = vi.hoisted(() => ({
  /** The error (added to one top-2 logit at every position) of the pipeline a backend and run give. */
  errorOf: (_b: unknown, _r: unknown, _onReference: boolean): number => 0,
  calls: [] as Array<{ backend: unknown; run: unknown; onReference: boolean }>,
  /** The reference pipeline's checkpoint (the first one created): int8's floor runs on it. */
  reference: undefined as unknown,
}));

vi.mock('../src/pipeline/ds-pipeline.js', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../src/pipeline/ds-pipeline.js')>();
  return {
    ...orig,
    createPipeline: async (ckpt: unknown, backend: Backend, run: PipelineRun): Promise<TextGenerationPipeline> => {
      if (backend.kind === 'reference') fake.reference = ckpt;
      fake.calls.push({ backend, run, onReference: ckpt === fake.reference });
      return fakePipeline(backend.kind === 'reference' ? 0 : fake.errorOf(backend, run, ckpt === fake.reference), run);
    },
  };
});

const V = 64;
const PROMPT = [10, 11, 12];
const NEW = [20, 21, 22, 23, 24];

/** The reference's logits at a position: id 0 well ahead, id 1 second at 0 (so the float32 threshold there is atol exactly). */
function baseRow(p: number): Float32Array {
  const row = new Float32Array(V);
  row[0] = 5;
  row[1] = 0;
  for (let k = 2; k < V; k++) row[k] = -1 - 0.01 * k - 0.001 * p;
  return row;
}

function fakePipeline(error: number, run: PipelineRun): TextGenerationPipeline {
  return {
    info: { name: 'injected', device: run.device, dtype: run.dtype, modelDir: 'fake', modelType: 'opt', executionProviders: [run.device], parameterBytes: 1, parameters: 1, loadMs: 0 },
    validate: () => {},
    score: async (rows: number[][], from: number[]) =>
      rows.map((r, b) =>
        Array.from({ length: r.length - from[b]! }, (_, i) => {
          const row = baseRow(from[b]! + i);
          row[1] = row[1]! + error;
          return row;
        }),
      ),
    generate: async (request: GenerateRequest): Promise<GenerateResult> => ({
      sequences: request.prompts.map((prompt) => ({
        prompt,
        promptIds: PROMPT,
        newIds: NEW,
        finishReason: 'length',
        text: 'the same text',
        generatedText: 'text',
        topK: NEW.map(() => ({ ids: [0, 1], values: [5, 0] })),
      })),
      promptLength: PROMPT.length,
      steps: NEW.length,
      timings: { firstTokenMs: 1, decodeStepMs: [1, 1, 1, 1], totalMs: 5 },
    }),
    dispose: async () => {},
  };
}

function options(o: Partial<CompareOptions> = {}): CompareOptions {
  return { model: tinyModelDir('opt'), dtype: 'float32', device: 'cpu', useKernel: true, kernels: 'ort', numInputs: 1, minLength: 30, maxLength: 40, batchSize: 1, printOutputs: false, speedRepeats: 1, maxRegression: 10, command: ['test'], ...o };
}
const quiet = { out: () => {}, interrupted: () => false };

/** float32 at id 1, whose reference logit is 0: |error| <= atol passes. */
const THRESHOLD = TOLERANCE.float32.atol;

type Ort = Extract<Backend, { kind: 'ort' }>;
const offFusions = (b: Backend): string[] => (b.kind === 'ort' && b.fusions ? (Object.keys(b.fusions) as Array<keyof FusionSwitches>).filter((k) => !b.fusions![k]) : []);

async function triaged(o: Partial<CompareOptions>, errorOf: (b: Backend, r: PipelineRun, onReference: boolean) => number) {
  fake.errorOf = errorOf as typeof fake.errorOf;
  fake.calls = [];
  const report = await runCompare(options(o), quiet);
  expect(() => validateCompareReport(JSON.parse(JSON.stringify(report)))).not.toThrow();
  expect(report.prompts[0]!.verdict).toBe('mismatch');
  return { report, triage: report.prompts[0]!.triage!, variants: report.prompts[0]!.triage!.runs.map((r) => r.variant) };
}

describe('triage blames with margin', () => {
  it('the margin: a rerun is blamed at most at TRIAGE_EXPLAINS of the candidate\'s KL', () => {
    expect(TRIAGE_EXPLAINS).toBeLessThanOrEqual(0.25);
    expect(explainsError(1e-6, 0.2e-6).explains).toBe(true);
    expect(explainsError(1e-6, 0.5e-6)).toEqual({ errorShare: 0.5, explains: false });
    expect(explainsError(0, 0).explains).toBe(false);
  });

  it('a rerun that only crosses the threshold (error 1.3x -> 0.9x the tolerance) is not blamed: the candidate checkpoint is', async () => {
    // Every fusion off or any one off: just below the tolerance, so each rerun "matches".
    const { triage } = await triaged({ candidateModel: tinyModelDir('opt') }, (b) => ((b as Ort).fusions && offFusions(b).length ? 0.9 : 1.3) * THRESHOLD);
    const plain = triage.runs.find((r) => r.variant === 'plain')!;
    expect(plain.verdict).toBe('match'); // a binary rule would blame the fusions here
    expect(plain.explains).toBe(false);
    expect(plain.errorShare).toBeGreaterThan(0.4);
    expect(triage.blame).toMatch(/^the candidate checkpoint: no kernel, fusion or precision change removes most of the error/);
    expect(triage.backend).toBe('ort');
  });

  it('without a candidate checkpoint, the same says that triage could not pin it, not a fusion', async () => {
    const { triage } = await triaged({}, (b) => ((b as Ort).fusions && offFusions(b).length ? 0.9 : 1.3) * THRESHOLD);
    expect(triage.blame).toMatch(/^not explained by triage: no kernel, fusion or precision change removes most of the error; both sides read the same checkpoint/);
  });

  it('a defect only the attention fusion causes is blamed on it, even when the reruns without it still mismatch', async () => {
    // attention off removes 90% of the error (still 2x the tolerance: a mismatch); any other fusion off changes nothing.
    const { triage, variants } = await triaged({ candidateModel: tinyModelDir('opt') }, (b) => (offFusions(b).includes('attention') ? 2 : 20) * THRESHOLD);
    expect(variants).toEqual(['plain', 'no-attention', 'no-packedQkv', 'no-skipNorm', 'no-biasGelu', 'no-packedGateUp']);
    const noAttention = triage.runs.find((r) => r.variant === 'no-attention')!;
    expect(noAttention.verdict).toBe('mismatch');
    expect(noAttention.explains).toBe(true);
    expect(triage.runs.filter((r) => r.explains).map((r) => r.variant)).toEqual(['plain', 'no-attention']);
    expect(triage.blame).toBe('fusion: attention');
  });

  it('quantization is blamed only when the float32 rerun removes most of the error', async () => {
    const unquantized = (b: Backend, r: PipelineRun) => b.kind === 'ort' && r.dtype === 'float32';
    // int8 is held to its floor (the reference checkpoint on the plain graph at int8): here 0.2, so
    // the bound is 1.5 x 0.2 + 0.05 = 0.35 at a reference logit of 0.
    const floor = (onReference: boolean, error: number) => (onReference ? 0.2 : error);
    const crossing = await triaged({ dtype: 'int8', candidateModel: tinyModelDir('opt') }, (b, r, ref) => floor(ref, unquantized(b, r) ? 0.34 : 0.6));
    expect(crossing.report.prompts[0]!.floor!.bounds.atol).toBeCloseTo(0.35, 6);
    expect(crossing.variants).toEqual(['plain', 'unquantized']);
    expect(crossing.triage.runs[1]!.verdict).toBe('match');
    expect(crossing.triage.blame).toMatch(/^the candidate checkpoint/);
    const real = await triaged({ dtype: 'int8', candidateModel: tinyModelDir('opt') }, (b, r, ref) => floor(ref, unquantized(b, r) ? 0.1 : 0.6));
    expect(real.triage.blame).toBe('int8 quantization');
  });
});

describe('triage reruns the backend that was compared', () => {
  const wgsl = { useKernel: true, kernels: 'wgsl' as const, device: 'webgpu' as const, dtype: 'float16' as const, candidateModel: tinyModelDir('opt') };
  // float16's floor (the plain graph at float16 on the reference checkpoint) is exact here: only the candidate's side carries an error.
  const onCandidate = (errorOf: (b: Backend, r: PipelineRun) => number) => (b: Backend, r: PipelineRun, onReference: boolean) => (onReference ? 0 : errorOf(b, r));

  it('a WGSL candidate is rerun on the WGSL engine with float32 weights: its float16 weights are blamed, no ORT fusion', async () => {
    const { triage, variants } = await triaged(wgsl, onCandidate((b, r) => (b.kind === 'wgsl' && r.dtype === 'float32' ? 0 : 5)));
    expect(triage.backend).toBe('wgsl');
    expect(variants).toEqual(['wgsl-float32']);
    expect(triage.runs[0]!.backend).toBe('wgsl');
    expect(triage.blame).toMatch(/^float16 weights in the WGSL engine/);
    const built = (onReference: boolean) => fake.calls.filter((c) => c.onReference === onReference && (c.backend as Backend).kind !== 'reference').map((c) => [(c.backend as Backend).kind, (c.run as PipelineRun).device, (c.run as PipelineRun).dtype]);
    // Only the WGSL engine was built for the candidate and its rerun: no ORT graph ran on the candidate checkpoint.
    expect(built(false)).toEqual([
      ['wgsl', 'webgpu', 'float16'],
      ['wgsl', 'webgpu', 'float32'],
    ]);
    // On the reference checkpoint, beside the float32 reference, the floor: the plain graph at float16, on the CPU for the WGSL engine (compare/tolerance.ts floorDevice).
    expect(built(true)).toEqual([['ort', 'cpu', 'float16']]);
  });

  it('when only fusegen\'s plain graph on the CPU (an ORT rerun, labelled so) is right, the WGSL kernels are blamed', async () => {
    const { triage, variants } = await triaged(wgsl, onCandidate((b) => (b.kind === 'ort' ? 0 : 5)));
    expect(variants).toEqual(['wgsl-float32', 'ort-plain-cpu']);
    expect(triage.runs.map((r) => r.backend)).toEqual(['wgsl', 'ort']);
    const ortRun = fake.calls.find((c) => !c.onReference && (c.backend as Backend).kind === 'ort')!;
    expect(offFusions(ortRun.backend as Backend)).toHaveLength(5);
    expect((ortRun.run as PipelineRun).device).toBe('cpu');
    expect(triage.blame).toMatch(/^the WGSL kernels \(fusegen's plain ONNX graph on the CPU, an ORT rerun/);
  });

  it('a defect every backend shows is the candidate checkpoint\'s, after both WGSL reruns', async () => {
    const { triage, variants } = await triaged(wgsl, onCandidate(() => 5));
    expect(variants).toEqual(['wgsl-float32', 'ort-plain-cpu']);
    expect(triage.blame).toMatch(/^the candidate checkpoint: no rerun \(float32 weights on the WGSL engine; fusegen's plain ONNX graph on the CPU, an ORT rerun\) removes most of the error/);
  });
});
