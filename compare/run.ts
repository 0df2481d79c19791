/**
 * The compare suite (DeepSpeed's ds-hf-compare.py): the same prompts through the reference
 * pipeline and fusegen's pipeline, greedy; per prompt a token diff, teacher-forced logit
 * statistics and a verdict under the tolerance policy; triage of mismatches; both pipelines
 * timed side by side; a gate exit code.
 */
import { readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { COMPARE_PROMPTS } from '../fixtures/prompts.js';
import { openCheckpoint, type Checkpoint } from '../src/arch/checkpoint.js';
import { CapacityError, InputError, UsageError } from '../src/errors.js';
import { ALL_FUSIONS, NO_FUSIONS, type FusionSwitches } from '../src/inject/plan.js';
import { InjectedPipeline } from '../src/pipeline/injected.js';
import { createPipeline, type Backend, type PipelineRun, type ReferenceKind } from '../src/pipeline/ds-pipeline.js';
import { DTYPES, referenceDtype } from '../src/pipeline/dtypes.js';
import { HfPipeline } from '../src/pipeline/hf.js';
import { RemotePipeline } from '../src/pipeline/remote.js';
import { WgslPipeline } from '../src/pipeline/wgsl.js';
import { parameterCount } from '../src/pipeline/common.js';
import { savedLine, saveInjected } from '../src/pipeline/saved.js';
import { encode, loadTokenizer } from '../src/pipeline/tokenizer.js';
import type { DType, Device, GenerateResult, SequenceResult, TextGenerationPipeline } from '../src/pipeline/types.js';
import { COMPARE_SCHEMA, referenceLine, type BaselineCheck, type CompareReport, type LogprobStats, type PipelineSpeed, type PromptResult, type RemoteSide, type TriageRun } from '../src/report/compare-report.js';
import { decodeFigures, type RunTiming } from '../src/report/perf.js';
import { environment } from '../src/report/environment.js';
import { bootstrapRatio, decodeSteps, ratioText, regression, runSamples } from '../src/report/speed-stats.js';
import { promptVerdict, similarity, speedIntervals, teacherForced, tokenDiff } from './metrics.js';
import { floorDevice, floorPolicyFor, floorTolerance, TWIN_POLICY, llamaCppCandidate, logprobAgreement, logprobRow, logprobToleranceFor, pairedBounds, tokenVerdict, toleranceFor, type LogprobAgreement, type LogprobRow, type FloorPolicy, type LogprobTolerance, type Tolerance, type TokenVerdict } from './tolerance.js';

export interface CompareOptions {
  model: string;
  candidateModel?: string;
  dtype: DType;
  device: Device;
  useKernel: boolean;
  /** What runs the reference: transformers.js on fusegen's plain export (default), or Hugging Face transformers itself (Python). */
  reference?: ReferenceKind;
  /** The injected backend (with useKernel): fused ONNX Runtime ops, or fusegen's WGSL kernels (webgpu). */
  kernels: 'ort' | 'wgsl';
  numInputs: number;
  minLength: number;
  maxLength: number;
  batchSize: number;
  printOutputs: boolean;
  /** Timed runs per pipeline after the correctness pass (which warms both up). */
  speedRepeats: number;
  /** Baseline report to compare throughput against, and the largest drop accepted (percent). */
  baseline?: { file: string; report: CompareReport };
  maxRegression: number;
  command: string[];
  /**
   * Builds the ORT candidate's fused attention op with this softmax scale: a deliberate defect that
   * only the attention fusion causes, which the gate must catch and triage must blame on that fusion.
   */
  candidateAttentionScale?: number;
  /** ORT-injected int8/int4: MatMulNBits' accuracy_level (default the plan's). */
  accuracyLevel?: 0 | 4;
  /** The WGSL candidate's layers split across this many devices (--world_size). */
  worldSize?: number;
  /** Save the injected candidate here before the prompts run (--save_mp_checkpoint_path). */
  saveTo?: string;
  /** NaN/Inf weights are read instead of refused at load (--allow_nonfinite); such logits still never match. */
  allowNonfinite?: boolean;
  /** --checkpoint_path: the reference's weights (and the candidate's, without candidateModel) from the shards this listing names. */
  checkpointPath?: string;
  /** A side served by an engine speaking the OpenAI completions API (normalized base URLs); --model still gives tokenizer and config. */
  referenceUrl?: string;
  candidateUrl?: string;
  /** The served model's name (default: the only one GET /v1/models lists). */
  servedModel?: string;
  /** Sent as Authorization: Bearer to the served side(s). */
  apiKey?: string;
  /** `llamacpp`: the candidate is llama.cpp (node-llama-cpp) on fusegen's GGUF export, a second opinion fusegen did not write (--candidate). */
  candidate?: 'llamacpp';
}

export interface CompareIo {
  out: (line: string) => void;
  interrupted: () => boolean;
  /** Gets the report as soon as it exists; its prompts grow as they finish (a second Ctrl-C writes it as it stands). */
  live?: (report: CompareReport) => void;
}

const DASHES = '-'.repeat(60);

/** Python's repr() of a str, so `baseline output:` lines read as the seed prints them. */
export function pyRepr(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = q;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === q) out += `\\${q}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + q;
}

/** The candidate's backend: the WGSL engine, or fusegen's loop on the ORT graph, injected or plain. */
export function candidateBackend(o: Pick<CompareOptions, 'useKernel' | 'kernels' | 'accuracyLevel' | 'candidateAttentionScale' | 'worldSize' | 'candidate'>): Backend {
  if (o.candidate === 'llamacpp') return { kind: 'llamacpp' };
  if (o.useKernel && o.kernels === 'wgsl') return { kind: 'wgsl', ...((o.worldSize ?? 1) > 1 ? { worldSize: o.worldSize } : {}) };
  return {
    kind: 'ort',
    fusions: o.useKernel ? ALL_FUSIONS : NO_FUSIONS,
    ...(o.accuracyLevel !== undefined ? { accuracyLevel: o.accuracyLevel } : {}),
    ...(o.candidateAttentionScale ? { fusedAttentionScale: o.candidateAttentionScale } : {}),
  };
}

function checkCandidate(ref: Checkpoint, cand: Checkpoint): void {
  if (cand.modelType !== ref.modelType) throw new UsageError('--candidate_model', `model_type ${cand.modelType} differs from --model's ${ref.modelType}`);
  const tok = (c: Checkpoint) => readFileSync(join(c.dir, 'tokenizer.json'), 'utf8');
  if (tok(cand) !== tok(ref)) throw new UsageError('--candidate_model', 'tokenizer.json differs from --model\'s: token ids would not be comparable');
  if (cand.dims.vocabSize !== ref.dims.vocabSize) throw new UsageError('--candidate_model', `vocab_size ${cand.dims.vocabSize} differs from ${ref.dims.vocabSize}`);
}

/** The candidate's pipeline as the speed section names it: fusegen's loop on the plain graph, the ORT-injected graph, or the WGSL engine. */
export function candidatePipeline(s: { useKernel: boolean; kernels: string }): 'plain' | 'injected' | 'wgsl' {
  return s.useKernel ? (s.kernels === 'wgsl' ? 'wgsl' : 'injected') : 'plain';
}

/** What the candidate's speed depends on, which a --baseline must share. */
export interface SpeedIdentity {
  candidateDir: string;
  modelType: string;
  /** The candidate checkpoint's parameters (float tensors as stored); absent in reports written before it was recorded. */
  parameters?: number;
  dtype: string;
  device: string;
  pipeline: 'plain' | 'injected' | 'wgsl';
  batchSize: number;
}

/**
 * A baseline from another model, dtype, device, pipeline or batch size timed something else:
 * refused before any work, in one line naming each difference (issue 29 item 5: a baseline of
 * another model was accepted, showed -374% and passed). The model is its model_type and size
 * (parameters); a baseline written before the size was recorded is held to the checkpoint
 * directory's name instead.
 */
export function checkBaseline(baseline: NonNullable<CompareOptions['baseline']>, run: SpeedIdentity): void {
  const b = baseline.report;
  const diffs: string[] = [];
  const differ = (what: string, there: string | number, here: string | number) => {
    if (there !== here) diffs.push(`${what} ${there} there, ${here} here`);
  };
  differ('model_type', b.model.modelType, run.modelType);
  if (b.model.parameters !== undefined && run.parameters !== undefined) differ('model size', `${b.model.parameters} parameters`, `${run.parameters} parameters`);
  else differ('model', basename(b.model.candidateDir), basename(run.candidateDir));
  differ('dtype', b.settings.dtype, run.dtype);
  differ('device', b.settings.device, run.device);
  differ('pipeline', candidatePipeline(b.settings), run.pipeline);
  differ('batch size', b.settings.batchSize, run.batchSize);
  if (diffs.length) throw new InputError(baseline.file, `a baseline of another run (${diffs.join('; ')}): its speed is not comparable with this run's`);
}

function speedOf(name: string, runs: RunTiming[], pipe: TextGenerationPipeline, batch: number): PipelineSpeed {
  const f = decodeFigures(runs, pipe.info, batch, 0);
  const mid = [...runs].sort((a, b) => a.totalMs - b.totalMs)[runs.length >> 1]!.result;
  return {
    pipeline: name,
    ttftMs: f.ttftMs,
    tpotMedianMs: f.tpotMs,
    tpotP90Ms: f.tpotP90Ms,
    decodeTokensPerSec: f.decodeTokensPerSec,
    prefillTokensPerSec: f.prefillTokensPerSec,
    perPosition: mid.timings.decodeStepMs.map((ms, i): [number, number] => [mid.promptLength + i + 1, ms]),
    samples: runSamples(runs),
  };
}

export async function runCompare(o: CompareOptions, io: CompareIo): Promise<CompareReport> {
  const tol: Tolerance = toleranceFor(o.dtype, o.candidate === 'llamacpp' ? llamaCppCandidate(o.candidateModel ?? o.model) : undefined);
  if (o.minLength > o.maxLength) throw new UsageError('--min_length', `${o.minLength} is above --max_length ${o.maxLength}`);
  let prompts = COMPARE_PROMPTS.slice(0, o.numInputs);
  if (o.numInputs > COMPARE_PROMPTS.length) {
    io.out(`Warning: num_inputs (${o.numInputs}) is greater than the number of test inputs (${COMPARE_PROMPTS.length}). Using all test inputs.`);
    prompts = [...COMPARE_PROMPTS];
  }
  const open = { allowNonfinite: o.allowNonfinite ?? false };
  const refCkpt = openCheckpoint(o.model, { ...open, ...(o.checkpointPath !== undefined ? { checkpointPath: o.checkpointPath } : {}) });
  const candCkpt = o.candidateModel ? openCheckpoint(o.candidateModel, open) : refCkpt;
  if (o.candidateModel) checkCandidate(refCkpt, candCkpt);
  const parameters = parameterCount(candCkpt);
  if (o.baseline) checkBaseline(o.baseline, { candidateDir: candCkpt.dir, modelType: candCkpt.modelType, parameters, dtype: o.dtype, device: o.device, pipeline: candidatePipeline(o), batchSize: o.batchSize });
  const tokenizer = await loadTokenizer(refCkpt);
  const lengths = prompts.map((p) => encode(tokenizer, p).length);
  const longest = Math.max(...lengths);
  if (longest >= o.maxLength) throw new CapacityError('--max_length', `the longest prompt has ${longest} tokens; --max_length ${o.maxLength} leaves no room to generate`);
  if (o.maxLength > refCkpt.dims.maxPositions) throw new CapacityError('--max_length', `${o.maxLength} exceeds the model's ${refCkpt.dims.maxPositions} positions`);

  const backend = candidateBackend(o);
  const floorAt = floorDevice(o.dtype, backend.kind, o.device);
  const referenceKind = o.reference ?? 'transformersjs';
  // Served sides first: a server that cannot be reached, or whose tokenizer differs, is refused before any work.
  const lpTol = o.referenceUrl !== undefined || o.candidateUrl !== undefined ? logprobToleranceFor(o.dtype) : undefined;
  // A served side is judged on its log-probabilities, with no floor.
  const floorPolicy = lpTol ? undefined : floorPolicyFor(o.dtype);
  if (o.candidateUrl !== undefined && o.candidateModel) throw new UsageError('--candidate_url', 'the candidate is the served model: drop --candidate_model');
  const serve = (url: string, flag: string) =>
    RemotePipeline.create(refCkpt, { url, flag, dtype: o.dtype, maxTokens: o.maxLength, topK: lpTol!.topK, ...(o.servedModel !== undefined ? { model: o.servedModel } : {}), ...(o.apiKey !== undefined ? { apiKey: o.apiKey } : {}) });
  const served = {
    reference: o.referenceUrl !== undefined ? await serve(o.referenceUrl, '--reference_url') : undefined,
    candidate: o.candidateUrl !== undefined ? await serve(o.candidateUrl, '--candidate_url') : undefined,
  };
  const mode = comparedOn(served);
  // A floored dtype is judged against the float32 reference, beside the reference's own error at that dtype (the floor).
  const refDtype: DType = floorPolicy ? 'float32' : referenceDtype(o.dtype);
  const ref = served.reference ?? (await createPipeline(refCkpt, { kind: 'reference', reference: referenceKind }, { device: o.device, dtype: refDtype, maxTokens: o.maxLength }));
  const pipes: TextGenerationPipeline[] = [ref];
  const report: CompareReport = {
    schema: COMPARE_SCHEMA,
    status: 'complete',
    createdAt: new Date().toISOString(),
    command: o.command,
    model: { dir: refCkpt.dir, modelType: refCkpt.modelType, candidateDir: candCkpt.dir, parameters },
    settings: {
      dtype: o.dtype,
      device: o.device,
      ...(served.reference ? {} : { reference: referenceKind }),
      referenceDtype: refDtype,
      useKernel: !served.candidate && o.useKernel,
      kernels: !served.candidate && o.useKernel ? o.kernels : 'none',
      batchSize: o.batchSize,
      numInputs: prompts.length,
      minLength: o.minLength,
      maxLength: o.maxLength,
      compared: mode.compared,
      ...(served.reference || served.candidate ? { remote: { ...(served.reference ? { reference: remoteSide(served.reference) } : {}), ...(served.candidate ? { candidate: remoteSide(served.candidate) } : {}) } } : {}),
    },
    tolerance: { ...tol, ...(floorPolicy ? { floor: { pipeline: 'plain', device: floorAt, ...floorPolicy } } : {}), ...(lpTol ? { logprobs: { ...lpTol } } : {}) },
    environment: { ...environment(), executionProviders: {}, adapter: null, ...(ref instanceof HfPipeline ? { hf: { ...ref.runtime } } : {}) },
    fusions: {},
    prompts: [],
    speed: null,
    summary: { matches: 0, tolerated: 0, mismatches: 0, errored: 0 },
    gate: { exitCode: 0, reasons: [] },
  };
  if (o.allowNonfinite) report.settings.allowNonfinite = true;
  io.live?.(report);
  const triagePipes = new Map<string, TextGenerationPipeline>();
  let triageCkpt: Checkpoint | undefined; // opened at the first mismatch
  try {
    const cand = served.candidate ?? (await createPipeline(candCkpt, backend, { device: o.device, dtype: o.dtype, maxTokens: o.maxLength }));
    pipes.push(cand);
    if (o.saveTo) io.out(savedLine(o.saveTo, await saveInjected(cand, candCkpt, o.saveTo)));
    // The reference's own error at the candidate's precision: fusegen's plain graph on the reference checkpoint.
    // The floor quantizes as the candidate does (its accuracy_level too: int8 activations round differently from float ones).
    const floorBackend: Backend = { kind: 'ort', fusions: NO_FUSIONS, ...(o.accuracyLevel !== undefined ? { accuracyLevel: o.accuracyLevel } : {}) };
    const floor = floorPolicy ? { pipe: await createPipeline(refCkpt, floorBackend, { device: floorAt, dtype: o.dtype, maxTokens: o.maxLength }), policy: floorPolicy } : undefined;
    if (floor) pipes.push(floor.pipe);
    const paired = floor ? pairedBounds(backend.kind, o.device, floor.pipe.info.accuracyLevel) : undefined;
    if (paired && report.tolerance.floor) report.tolerance.floor.paired = paired;
    // A candidate checkpoint: the candidate's own pipeline on the reference checkpoint (the twin), whose difference from the candidate is the checkpoint's alone.
    const twin = resolve(candCkpt.dir) !== resolve(refCkpt.dir) && !served.candidate && backend.kind !== 'llamacpp' && !lpTol ? await createPipeline(refCkpt, backend, { device: o.device, dtype: o.dtype, maxTokens: o.maxLength }) : undefined;
    if (twin) {
      pipes.push(twin);
      report.tolerance.twin = { ...TWIN_POLICY };
    }
    report.fusions = cand instanceof InjectedPipeline ? cand.fused : {};
    if (cand.info.accuracyLevel !== undefined) report.settings.accuracyLevel = cand.info.accuracyLevel;
    if (cand instanceof WgslPipeline) report.environment.adapter = cand.adapter.description;
    report.environment.executionProviders = { reference: ref.info.executionProviders, candidate: cand.info.executionProviders };

    let seedMatches = 0;
    let firstBatch: { request: Parameters<TextGenerationPipeline['generate']>[0] } | undefined;
    for (let start = 0; start < prompts.length && !io.interrupted(); start += o.batchSize) {
      const batch = prompts.slice(start, start + o.batchSize);
      const batchLongest = Math.max(...lengths.slice(start, start + o.batchSize));
      // HF's min_length / max_length count the (padded) prompt.
      const request = { prompts: batch, maxNewTokens: o.maxLength - batchLongest, minNewTokens: Math.max(0, o.minLength - batchLongest), doSample: false, recordTopK: tol.topN };
      firstBatch ??= { request };
      let refGen: GenerateResult | undefined;
      let candGen: GenerateResult | undefined;
      let floorGen: GenerateResult | undefined;
      let batchError: string | undefined;
      try {
        refGen = await ref.generate(request);
        candGen = await cand.generate(request);
        if (floor) floorGen = await floor.pipe.generate(request);
      } catch (e) {
        batchError = e instanceof Error ? e.message.split('\n')[0]! : String(e);
      }
      for (const [i, prompt] of batch.entries()) {
        const index = start + i;
        const seqs = refGen && candGen ? { ref: refGen.sequences[i]!, cand: candGen.sequences[i]! } : undefined;
        const { result, refLogits, tol: promptTol } = !seqs
          ? { result: errored(index, prompt, batchError ?? 'no result'), refLogits: undefined, tol }
          : lpTol
            ? { result: await judgeServed(index, prompt, seqs, { ref, cand }, mode, tol, lpTol, tokenizer), refLogits: undefined, tol }
            : await judge(index, prompt, { ...seqs, ...(floorGen ? { floor: floorGen.sequences[i]! } : {}) }, { ref, cand, floor, twin }, tol, tokenizer, paired);
        if (result.verdict === 'mismatch' && tol.gate && refLogits && result.logits) result.triage = await triage(refGen!.sequences[i]!, refLogits, meanKl(result.logits), { o, candCkpt: (triageCkpt ??= triageCheckpoint(candCkpt, open)), backend, tol: promptTol, cache: triagePipes });
        report.prompts.push(result);
        const textsEqual = result.reference.text === result.candidate.text && result.verdict !== 'errored';
        if (textsEqual) seedMatches++;
        if (o.printOutputs) {
          io.out(`baseline output: {'generated_text': ${pyRepr(result.reference.text)}}`);
          io.out(`optimized output: [{'generated_text': ${pyRepr(result.candidate.text)}}]`);
          io.out(DASHES);
          io.out(textsEqual ? 'outputs match' : 'outputs do not match');
          io.out(`The similarity ratio is: ${result.similarity * 100}%`);
        }
      }
    }
    io.out(seedLine(seedMatches, report.prompts));
    if (io.interrupted()) {
      report.status = 'interrupted';
      report.stoppedBy = `interrupted after ${report.prompts.length} of ${prompts.length} prompts`;
    } else if (firstBatch && !lpTol) {
      // Both pipelines timed on the same prompts; the correctness pass above was their warm-up.
      const timed = async (p: TextGenerationPipeline): Promise<RunTiming[]> => {
        const runs: RunTiming[] = [];
        for (let r = 0; r < o.speedRepeats; r++) {
          const t = performance.now();
          const result = await p.generate({ ...firstBatch!.request, recordTopK: 0 });
          runs.push({ totalMs: performance.now() - t, result });
        }
        return runs;
      };
      const batchSize = firstBatch.request.prompts.length;
      const refSpeed = speedOf(referenceKind === 'hf' ? 'hf-pytorch' : 'reference', await timed(ref), ref, batchSize);
      const candSpeed = speedOf(backend.kind === 'llamacpp' ? 'llamacpp' : o.useKernel ? (o.kernels === 'wgsl' ? 'wgsl' : 'injected') : 'plain', await timed(cand), cand, batchSize);
      report.speed = { reference: refSpeed, candidate: candSpeed, decodeSpeedup: refSpeed.tpotMedianMs / candSpeed.tpotMedianMs, intervals: speedIntervals(refSpeed.samples!, candSpeed.samples!) };
    }
  } catch (e) {
    report.status = 'failed';
    report.stoppedBy = e instanceof Error ? e.message.split('\n')[0]! : String(e);
  } finally {
    for (const p of [...pipes, ...triagePipes.values()]) await p.dispose();
  }
  summarize(report, tol, o);
  return report;
}

function errored(index: number, prompt: string, reason: string): PromptResult {
  const empty = { ids: [], tokens: [], text: '' };
  return { index, prompt, verdict: 'errored', reason, reference: empty, candidate: empty, firstDivergence: null, similarity: 0, diff: [], logits: null };
}

/** A pipeline's teacher-forced logits on the reference's tokens; the last position predicts past the end. */
async function scoredOn(r: SequenceResult, pipe: TextGenerationPipeline): Promise<Float32Array[]> {
  return (await pipe.score([[...r.promptIds, ...r.newIds]], [0]))[0]!.slice(0, -1);
}

/**
 * The verdict for one prompt, with the reference's teacher-forced logits and the tolerance it was
 * judged by (the floor's, where the dtype has one) for triage to reuse.
 */
async function judge(
  index: number,
  prompt: string,
  seqs: { ref: SequenceResult; cand: SequenceResult; floor?: SequenceResult },
  pipes: { ref: TextGenerationPipeline; cand: TextGenerationPipeline; floor?: { pipe: TextGenerationPipeline; policy: FloorPolicy } | undefined; twin?: TextGenerationPipeline | undefined },
  tableTol: Tolerance,
  tokenizer: Awaited<ReturnType<typeof loadTokenizer>>,
  /** The bounds of the candidate against the floor itself, where they are gated (tolerance.ts pairedBounds). */
  pairedBound?: { atol: number; maxKl: number },
): Promise<{ result: PromptResult; refLogits?: Float32Array[]; tol: Tolerance }> {
  const { ref: r, cand: c } = seqs;
  let tol = tableTol;
  // With a floor, the candidate's tokens are held to the floor's greedy tokens (the same precision);
  // the report still shows where they part from the reference's.
  const verdict = tokenVerdict(seqs.floor ?? r, c, tol);
  const fromReference = seqs.floor ? tokenVerdict(r, c, tol) : verdict;
  const base = promptBase(index, prompt, r, c, fromReference, tokenizer);
  let refLogits: Float32Array[] | undefined;
  try {
    // Teacher forcing: both sides read the reference's tokens.
    refLogits = await scoredOn(r, pipes.ref);
    const candLogits = await scoredOn(r, pipes.cand);
    const figures = (x: ReturnType<typeof teacherForced>) => ({ unionMaxAbs: x.full.unionMaxAbs, maxKl: x.full.maxKl, top1Agreement: x.agreement.top1Agreement });
    if (pipes.twin) base.twin = figures(teacherForced(await scoredOn(r, pipes.twin), candLogits, r.promptIds.length, tableTol));
    if (pipes.floor) {
      const floorLogits = await scoredOn(r, pipes.floor.pipe);
      const f = figures(teacherForced(refLogits, floorLogits, r.promptIds.length, tableTol));
      tol = floorTolerance(tableTol, f, pipes.floor.policy);
      base.floor = { ...f, bounds: { atol: tol.atol, maxKl: tol.maxKl, minTop1Agreement: tol.minTop1Agreement }, paired: figures(teacherForced(floorLogits, candLogits, r.promptIds.length, tableTol)) };
    }
    const tf = teacherForced(refLogits, candLogits, r.promptIds.length, tol);
    base.logits = { prefill: tf.prefill, decode: tf.decode, perPositionMaxAbs: tf.perPositionMaxAbs };
    Object.assign(base, promptVerdict(verdict, tf, tol, seqs.floor ? " from the floor's" : ''));
    const floor = base.floor;
    if (floor?.paired) {
      const { paired } = floor;
      const e = (x: number) => x.toExponential(2);
      // Within the floor's error of the reference, yet apart from the floor itself: what the candidate's checkpoint or kernels added.
      if (pairedBound && base.verdict !== 'mismatch' && !(paired.unionMaxAbs <= pairedBound.atol && paired.maxKl <= pairedBound.maxKl)) {
        base.verdict = 'mismatch';
        base.reason = `apart from the floor (the reference at this dtype): max |error| ${e(paired.unionMaxAbs)} (bound ${pairedBound.atol}) over both sides' top-10, max KL ${e(paired.maxKl)} (bound ${pairedBound.maxKl}); ${base.reason}`;
      }
      base.reason += `; floor (the plain graph at this dtype): max |error| ${e(floor.unionMaxAbs)}, max KL ${e(floor.maxKl)}, top-1 ${(floor.top1Agreement * 100).toFixed(1)}% against the reference; the candidate against it: max |error| ${e(paired.unionMaxAbs)}, max KL ${e(paired.maxKl)}`;
    }
    // Within the reference's tolerance, yet apart from its own pipeline on the reference checkpoint: the checkpoint changed something.
    if (base.twin && !withinTwin(base.twin) && base.verdict !== 'mismatch') {
      base.verdict = 'mismatch';
      base.reason = `apart from the same pipeline on the reference checkpoint: ${twinFigures(base.twin)}; ${base.reason}`;
    }
  } catch (e) {
    Object.assign(base, { verdict: 'errored', reason: e instanceof Error ? e.message.split('\n')[0] : String(e) });
  }
  return refLogits ? { result: base, refLogits, tol } : { result: base, tol };
}

function withinTwin(t: NonNullable<PromptResult['twin']>): boolean {
  return t.unionMaxAbs <= TWIN_POLICY.atol && t.maxKl <= TWIN_POLICY.maxKl;
}

function twinFigures(t: NonNullable<PromptResult['twin']>): string {
  const e = (x: number) => x.toExponential(2);
  return `max |error| ${e(t.unionMaxAbs)} (bound ${TWIN_POLICY.atol}) over both sides' top-10, max KL ${e(t.maxKl)} (bound ${TWIN_POLICY.maxKl})`;
}

/** What a run with served sides compares: log-probabilities where every served side returns them (teacher-forced where every one echoes the prompt's), else tokens. */
interface ServedMode {
  compared: 'logits' | 'logprobs' | 'tokens';
  from: 'teacher-forced' | 'generation';
}

function comparedOn(served: { reference?: RemotePipeline | undefined; candidate?: RemotePipeline | undefined }): ServedMode {
  const sides = [served.reference, served.candidate].filter((s): s is RemotePipeline => s !== undefined);
  if (sides.length === 0) return { compared: 'logits', from: 'teacher-forced' };
  return { compared: sides.every((s) => s.caps.topLogprobs > 0) ? 'logprobs' : 'tokens', from: sides.every((s) => s.caps.promptLogprobs) ? 'teacher-forced' : 'generation' };
}

function remoteSide(p: RemotePipeline): RemoteSide {
  const c = p.caps;
  return { url: p.url, model: p.model, api: c.dialect, prompt: c.prompt, topLogprobs: c.topLogprobs, promptLogprobs: c.promptLogprobs, tokens: c.tokens, notes: [...c.notes] };
}

/** A side's log-probabilities at every position of `row` but the last (position p predicts token p + 1): a server's top-k, or an in-process side's logits rows. */
async function logprobRowsOn(pipe: TextGenerationPipeline, row: number[], k: number): Promise<LogprobRow[]> {
  if (pipe instanceof RemotePipeline) return (await pipe.scoreLogprobs([row], [0]))[0]!.slice(0, -1).map((top) => ({ top }));
  return (await pipe.score([row], [0]))[0]!.slice(0, -1).map((l) => logprobRow(l, k));
}

/** A side's log-probabilities of its own generated steps 0 .. n - 1: a server's as it generated, an in-process side's scored on its tokens. */
async function stepRowsOn(pipe: TextGenerationPipeline, seq: SequenceResult, n: number, k: number): Promise<LogprobRow[]> {
  if (pipe instanceof RemotePipeline) return (seq.topK ?? []).slice(0, n).map((top) => ({ top }));
  return (await logprobRowsOn(pipe, [...seq.promptIds, ...seq.newIds], k)).slice(seq.promptIds.length - 1, seq.promptIds.length - 1 + n);
}

function logprobStats(a: LogprobAgreement): LogprobStats {
  return { positions: a.positions, maxAbs: a.maxAbs, maxKl: a.maxKl, meanKl: a.meanKl, top1Agreement: a.top1Agreement };
}

/**
 * The verdict for one prompt where a side is served: its tokens, then top-k log-probabilities
 * (LOGPROB_TOLERANCE) teacher-forced on the reference's tokens where every served side echoes the
 * prompt's, else of the generated steps up to the sides' first divergence (after it they follow
 * different tokens); a server without log-probabilities is held to identical tokens, or identical
 * texts where it returns no token ids (its text re-tokenized may differ where its tokens did not).
 */
async function judgeServed(
  index: number,
  prompt: string,
  seqs: { ref: SequenceResult; cand: SequenceResult },
  pipes: { ref: TextGenerationPipeline; cand: TextGenerationPipeline },
  mode: ServedMode,
  tol: Tolerance,
  lpTol: LogprobTolerance,
  tokenizer: Awaited<ReturnType<typeof loadTokenizer>>,
): Promise<PromptResult> {
  const { ref: r, cand: c } = seqs;
  const verdict = tokenVerdict(r, c, tol);
  const base = promptBase(index, prompt, r, c, verdict, tokenizer);
  const servers = [pipes.ref, pipes.cand].filter((p): p is RemotePipeline => p instanceof RemotePipeline);
  try {
    if (mode.compared === 'tokens') {
      const silent = servers.filter((p) => p.caps.topLogprobs === 0).map((p) => p.url).join(' and ');
      if (servers.some((p) => p.caps.tokens === 'text')) {
        const same = r.text === c.text;
        let at = 0;
        while (at < r.text.length && r.text[at] === c.text[at]) at++;
        return { ...base, verdict: same ? 'match' : 'mismatch', reason: `texts only (${silent} returns no log-probabilities and no token ids): ${same ? 'identical' : `they part at character ${at}`}` };
      }
      if (verdict.status === 'match') return { ...base, reason: `tokens only (${silent} returns no log-probabilities): identical` };
      return { ...base, verdict: 'mismatch', reason: `tokens only (${silent} returns no log-probabilities): they part at ${verdict.position}, which without log-probabilities cannot be told from a near-tie` };
    }
    let refRows: LogprobRow[];
    let candRows: LogprobRow[];
    let promptPositions = 0;
    if (mode.from === 'teacher-forced') {
      // Teacher forcing: both sides read the reference's tokens.
      const row = [...r.promptIds, ...r.newIds];
      [refRows, candRows] = [await logprobRowsOn(pipes.ref, row, lpTol.topK), await logprobRowsOn(pipes.cand, row, lpTol.topK)];
      promptPositions = r.promptIds.length;
    } else {
      // The generated steps up to the first divergence, which both sides reach on the same tokens.
      const n = Math.min(r.newIds.length, c.newIds.length, base.firstDivergence === null ? Infinity : base.firstDivergence + 1);
      [refRows, candRows] = [await stepRowsOn(pipes.ref, r, n, lpTol.topK), await stepRowsOn(pipes.cand, c, n, lpTol.topK)];
      const have = Math.min(refRows.length, candRows.length);
      [refRows, candRows] = [refRows.slice(0, have), candRows.slice(0, have)];
    }
    const all = logprobAgreement(refRows, candRows, lpTol);
    const part = (from: number, to: number) => logprobStats(logprobAgreement(refRows.slice(from, to), candRows.slice(from, to), lpTol));
    base.logprobs = {
      from: mode.from,
      prefill: mode.from === 'teacher-forced' ? part(0, promptPositions) : null,
      decode: part(promptPositions, refRows.length),
      perPositionMaxAbs: all.perPositionMaxAbs,
      perPositionKl: all.perPositionKl,
    };
    const e = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : String(x));
    const where = mode.from === 'teacher-forced' ? 'teacher-forced log-probabilities' : 'log-probabilities of the generated steps';
    if (all.nonFinite.reference || all.nonFinite.candidate) {
      return { ...base, verdict: 'mismatch', reason: `non-finite log-probabilities (NaN/Inf): reference at ${all.nonFinite.reference}, candidate at ${all.nonFinite.candidate} of ${all.positions} positions; they never match` };
    }
    const failed = [
      ...(all.maxAbs > lpTol.maxAbs ? [`|Δ| above ${lpTol.maxAbs}`] : []),
      ...(all.maxKl > lpTol.maxKl ? [`KL above ${lpTol.maxKl}`] : []),
      ...(all.top1Agreement < lpTol.minTop1Agreement ? [`top-1 agreement below ${(lpTol.minTop1Agreement * 100).toFixed(1)}%`] : []),
    ];
    const why =
      `${where}: max |Δ| ${e(all.maxAbs)} over both sides' top-${lpTol.topK} (position ${all.maxAbsPosition}), max KL ${e(all.maxKl)} over their renormalized mass (position ${all.maxKlPosition}), ` +
      `${all.outOfTolerance} of ${all.positions} positions out of tolerance${failed.length ? ` (${failed.join(', ')})` : ''}, top-1 agreement ${(all.top1Agreement * 100).toFixed(1)}%`;
    if (verdict.status === 'mismatch') return { ...base, verdict: 'mismatch', reason: `tokens part at ${verdict.position}: ${verdict.reason}; ${why}` };
    if (!all.withinTolerance) return { ...base, verdict: 'mismatch', reason: why };
    if (verdict.status === 'tolerated') return { ...base, verdict: 'tolerated', reason: `tokens part at ${verdict.position} on a near-tie (reference margin ${verdict.margin.toFixed(4)}); ${why}` };
    return { ...base, reason: why };
  } catch (e) {
    return { ...base, verdict: 'errored', reason: e instanceof Error ? e.message.split('\n')[0]! : String(e) };
  }
}

interface TriageContext {
  o: CompareOptions;
  candCkpt: Checkpoint;
  /** The candidate's backend: triage reruns it with one thing changed. */
  backend: Backend;
  tol: Tolerance;
  cache: Map<string, TextGenerationPipeline>;
}

/**
 * Triage blames a rerun only when it removes most of the error: its mean teacher-forced KL is at
 * most this share of the candidate's. A rerun that merely crosses the tolerance (the candidate
 * just above it, the rerun just below) changed nothing that matters and is not blamed.
 */
export const TRIAGE_EXPLAINS = 0.25;

/** Mean KL(reference || candidate) over every teacher-forced position, prefill and decode. */
export function meanKl(l: { prefill: { positions: number; meanKl: number }; decode: { positions: number; meanKl: number } }): number {
  const n = l.prefill.positions + l.decode.positions;
  return n ? (l.prefill.meanKl * l.prefill.positions + l.decode.meanKl * l.decode.positions) / n : 0;
}

/**
 * The rerun's share of the candidate's error (mean KL), and whether that share is small enough
 * to blame what the rerun changed. A candidate without error (KL 0) leaves nothing to remove.
 */
export function explainsError(candidateKl: number, rerunKl: number): { errorShare: number; explains: boolean } {
  const errorShare = candidateKl > 0 ? rerunKl / candidateKl : rerunKl > 0 ? Infinity : 1;
  return { errorShare, explains: errorShare <= TRIAGE_EXPLAINS };
}

/** What triage reruns: the candidate's checkpoint, or for a saved injected candidate the checkpoint it was saved from. */
function triageCheckpoint(cand: Checkpoint, open: { allowNonfinite: boolean }): Checkpoint {
  return cand.saved ? openCheckpoint(cand.saved.source.dir, open) : cand;
}

/** What triage says when no rerun removed most of the error: `reruns` names them (`no kernel, fusion or precision change`). */
function unexplained(o: CompareOptions, reruns: string): string {
  return o.candidateModel
    ? `the candidate checkpoint: ${reruns} removes most of the error`
    : `not explained by triage: ${reruns} removes most of the error; both sides read the same checkpoint, so the difference lies in what triage cannot switch (the graph builder or the reference)`;
}

/**
 * Reruns the candidate's teacher-forced logits on its own backend with one thing changed at a
 * time, and blames what removes most of the error (TRIAGE_EXPLAINS), nothing on a rerun that
 * merely crosses the tolerance. The ORT candidate: the CPU instead of the device, no fusions,
 * each fusion off, no quantization. The WGSL candidate: what the WGSL engine can switch (float32
 * weights instead of float16 or quantized ones; it has no fusion switches), then fusegen's plain
 * ONNX graph on the CPU, an ORT rerun labelled as such, to tell the WGSL kernels from the checkpoint.
 */
async function triage(r: SequenceResult, refLogits: Float32Array[], candidateKl: number, t: TriageContext): Promise<NonNullable<PromptResult['triage']>> {
  const { o } = t;
  const row = [...r.promptIds, ...r.newIds];
  const runs: TriageRun[] = [];
  const attempt = async (variant: string, backend: Exclude<Backend, { kind: 'reference' | 'llamacpp' }>, run: Omit<PipelineRun, 'maxTokens'>) => {
    let pipe = t.cache.get(variant);
    if (!pipe) {
      pipe = await createPipeline(t.candCkpt, backend, { ...run, maxTokens: o.maxLength });
      t.cache.set(variant, pipe);
    }
    const tf = teacherForced(refLogits, (await pipe.score([row], [0]))[0]!.slice(0, -1), r.promptIds.length, t.tol);
    const kl = meanKl(tf);
    const { errorShare, explains } = explainsError(candidateKl, kl);
    runs.push({ variant, backend: backend.kind, verdict: tf.agreement.withinTolerance ? 'match' : 'mismatch', maxAbs: tf.agreement.maxAbs, meanKl: kl, errorShare, explains });
    return explains;
  };
  // On the CPU fusegen's graphs run float32 where the device ran float16 (ORT lacks most fp16 kernels there).
  const cpuDtype: DType = o.dtype === 'float16' ? 'float32' : o.dtype;
  const quantized = DTYPES[o.dtype].bits > 0;
  const b = t.backend;
  let blame: string;
  if (b.kind === 'wgsl') {
    const plainCpu: Backend = { kind: 'ort', fusions: NO_FUSIONS };
    if (o.dtype !== 'float32' && (await attempt('wgsl-float32', b, { device: o.device, dtype: 'float32' }))) {
      blame = `${quantized ? `${o.dtype} quantization` : `${o.dtype} weights`} in the WGSL engine (the same engine with float32 weights removes most of the error)`;
    } else if (await attempt('ort-plain-cpu', plainCpu, { device: 'cpu', dtype: cpuDtype })) {
      blame = "the WGSL kernels (fusegen's plain ONNX graph on the CPU, an ORT rerun, removes most of the error)";
    } else blame = unexplained(o, `no rerun (${o.dtype === 'float32' ? '' : 'float32 weights on the WGSL engine; '}fusegen's plain ONNX graph on the CPU, an ORT rerun)`);
    return { backend: 'wgsl', runs, blame };
  }
  if (b.kind === 'llamacpp') return { runs, blame: 'llama.cpp: triage has no reruns for it; which side is right is told against the Hugging Face goldens (test/llamacpp.test.ts)' };
  if (b.kind !== 'ort') throw new Error(`triage: no reruns for a ${b.kind} candidate`);
  const fusions = b.fusions ?? ALL_FUSIONS;
  const on = (Object.keys(fusions) as Array<keyof FusionSwitches>).filter((k) => fusions[k]);
  if (o.device !== 'cpu' && (await attempt('cpu', b, { device: 'cpu', dtype: cpuDtype }))) blame = `the ${o.device} kernels (the same graph on the CPU removes most of the error)`;
  else if (on.length > 0 && (await attempt('plain', { ...b, fusions: NO_FUSIONS }, { device: o.device, dtype: o.dtype }))) {
    const culprits: string[] = [];
    for (const f of on) if (await attempt(`no-${f}`, { ...b, fusions: { ...fusions, [f]: false } }, { device: o.device, dtype: o.dtype })) culprits.push(f);
    blame = culprits.length ? `fusion: ${culprits.join(', ')}` : 'a combination of fusions (all off removes most of the error, no one alone does)';
  } else if (quantized && (await attempt('unquantized', b, { device: o.device, dtype: 'float32' }))) blame = `${o.dtype} quantization`;
  else blame = unexplained(o, 'no kernel, fusion or precision change');
  return { backend: 'ort', runs, blame };
}

/** The report as it stands, for a second Ctrl-C: the prompts that finished, marked interrupted, gated on them. */
export function interruptedReport(live: CompareReport, total: number): CompareReport {
  const partial: CompareReport = { ...live, status: 'interrupted', stoppedBy: `interrupted at once after ${live.prompts.length} of ${total} prompts`, prompts: [...live.prompts], speed: null };
  summarize(partial, partial.tolerance, { maxRegression: 0 });
  return partial;
}

function summarize(report: CompareReport, tol: Pick<Tolerance, 'gate'>, o: Pick<CompareOptions, 'baseline' | 'maxRegression'>): void {
  const count = (v: PromptResult['verdict']) => report.prompts.filter((p) => p.verdict === v).length;
  report.summary = { matches: count('match'), tolerated: count('tolerated'), mismatches: count('mismatch'), errored: count('errored') };
  const reasons: string[] = [];
  if (report.status !== 'complete') reasons.push(`run ${report.status}: ${report.stoppedBy ?? ''}`);
  if (report.summary.errored) reasons.push(`${report.summary.errored} prompt(s) errored`);
  if (tol.gate && report.summary.mismatches) reasons.push(`${report.summary.mismatches} prompt(s) mismatch beyond the ${report.settings.dtype} tolerance`);
  if (o.baseline && report.speed) {
    const check = baselineCheck(report.speed.candidate, o.baseline, o.maxRegression);
    if (check) {
      report.gate.baseline = check.check;
      if (check.reason) reasons.push(check.reason);
    }
  }
  report.gate.reasons = reasons;
  report.gate.exitCode = reasons.length ? 1 : 0;
}

/**
 * This run's candidate speed against a baseline report's: the ratio of the median time per output
 * token (the baseline's over this run's, above 1 faster) with its bootstrap interval over both
 * runs' steps and runs. A baseline written before samples were kept is held at its recorded median.
 * The gate fails only on a significant slowdown (the whole interval below 1) whose estimate is
 * more than `maxRegression` percent. Undefined when the baseline has no speed figures.
 */
export function baselineCheck(now: PipelineSpeed, baseline: NonNullable<CompareOptions['baseline']>, maxRegression: number): { check: BaselineCheck; reason?: string } | undefined {
  const base = baseline.report.speed?.candidate;
  if (!base || !now.samples) return undefined;
  const speedRatio = bootstrapRatio(base.samples ? decodeSteps(base.samples) : base.tpotMedianMs, decodeSteps(now.samples), 'median');
  const r = regression(speedRatio, maxRegression);
  const check: BaselineCheck = { file: baseline.file, decodeTokensPerSec: base.decodeTokensPerSec, regressionPct: r.regressionPct, maxRegressionPct: maxRegression, speedRatio, significant: r.significant };
  if (!r.fails) return { check };
  const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
  return {
    check,
    reason: `decode speed is ${r.regressionPct.toFixed(1)}% below the baseline's (median time per output token ${ms(now.tpotMedianMs)} ms against ${ms(base.tpotMedianMs)} ms; speed ratio ${ratioText(speedRatio)}): a significant regression of more than ${maxRegression}%`,
  };
}

/** The decode speedup line: with its interval, or "no significant difference" where the interval includes 1. */
export function speedupLine(speed: NonNullable<CompareReport['speed']>): string {
  return `decode speedup: ${speed.intervals ? ratioText(speed.intervals.tpotMedian) : Number.isFinite(speed.decodeSpeedup) ? `${speed.decodeSpeedup.toFixed(2)}x` : 'n/a'}`;
}

/**
 * The seed's closing count, kept for familiarity: ds-hf-compare.py counts prompts whose two texts
 * are identical. Identical texts can still fail the gate (their logits beyond the tolerance) and
 * different texts can pass it (a near-tie flip), so the line says once what it counts and gives
 * fusegen's verdicts beside it (issue 29 item 4).
 */
export function seedLine(identical: number, prompts: readonly Pick<PromptResult, 'verdict'>[]): string {
  const n = (v: PromptResult['verdict']) => prompts.filter((p) => p.verdict === v).length;
  return `Matches: ${identical} / Mismatches: ${prompts.length - identical} (identical texts: the seed's count) | fusegen's verdicts: ${n('match')} match, ${n('tolerated')} tolerated, ${n('mismatch')} mismatch, ${n('errored')} errored`;
}

export function summaryTable(report: CompareReport): string[] {
  // Logit columns: the largest |error| over both sides' top-10 (the reference's alone in reports
  // written before the union was kept) and the largest per-position KL over the full vocabulary.
  // A served side: its URL and model, what its server gave, and what the verdicts rest on.
  const remote = report.settings.remote;
  const served = (side: RemoteSide) => `${side.url} (served model "${side.model}", ${side.api === 'llama.cpp' ? "llama.cpp's /completion" : '/v1/completions'})`;
  const lines = ['', `reference: ${remote?.reference ? served(remote.reference) : referenceLine(report)}`];
  if (remote?.candidate) lines.push(`candidate: ${served(remote.candidate)}`);
  const compared = report.settings.compared ?? 'logits';
  const lpt = report.tolerance.logprobs;
  if (compared !== 'logits') {
    const from = report.prompts.find((p) => p.logprobs)?.logprobs?.from;
    lines.push(`compared: ${compared === 'logprobs' ? `top-${lpt?.topK ?? '?'} log-probabilities${from ? (from === 'teacher-forced' ? ', teacher-forced on the reference\'s tokens' : ', of the generated steps up to the first divergence') : ''}` : 'tokens only'}`);
    for (const [name, side] of Object.entries(remote ?? {})) for (const note of side.notes) lines.push(`  ${name} server: ${note}`);
  }
  lines.push(`prompt  verdict     first-diff  similarity  ${compared === 'logprobs' ? 'max|dlogp| ' : 'max|dlogit|'}     max KL  mean KL (decode)`);
  const e = (x: number | undefined, w: number) => (x !== undefined && Number.isFinite(x) ? x.toExponential(2) : 'n/a').padStart(w);
  for (const p of report.prompts) {
    const l = p.logits;
    const lp = p.logprobs;
    const maxAbs = l ? Math.max(l.prefill.unionMaxAbs ?? l.prefill.maxAbs, l.decode.unionMaxAbs ?? l.decode.maxAbs) : lp ? Math.max(lp.prefill?.maxAbs ?? 0, lp.decode.maxAbs) : NaN;
    const maxKl = l?.prefill.maxKl !== undefined && l.decode.maxKl !== undefined ? Math.max(l.prefill.maxKl, l.decode.maxKl) : lp ? Math.max(lp.prefill?.maxKl ?? 0, lp.decode.maxKl) : undefined;
    const meanKl = l ? l.decode.meanKl : lp?.decode.meanKl;
    lines.push(`${String(p.index).padStart(6)}  ${p.verdict.padEnd(10)}  ${String(p.firstDivergence ?? '-').padStart(10)}  ${(p.similarity * 100).toFixed(1).padStart(9)}%  ${e(maxAbs, 11)}  ${e(maxKl, 9)}  ${meanKl !== undefined ? e(meanKl, 0) : 'n/a'}`);
  }
  const s = report.summary;
  const t = report.tolerance;
  const bounds =
    compared === 'tokens'
      ? 'tokens only'
      : lpt
        ? `tolerance |dlogprob| ${lpt.maxAbs} over both sides' top-${lpt.topK}, KL ${lpt.maxKl} over their mass, top-1 agreement ${lpt.minTop1Agreement}`
        : `tolerance atol ${t.atol} rtol ${t.rtol} over both sides' top-10${t.maxKl !== undefined ? `, KL ${t.maxKl} over the full vocabulary` : ''}`;
  lines.push(`summary: ${s.matches} match, ${s.tolerated} tolerated, ${s.mismatches} mismatch, ${s.errored} errored (${report.settings.dtype}, ${report.settings.device}, ${bounds})`);
  if (remote && !report.speed) lines.push('speed: not measured: a served side answers each request whole, without per-token timings');
  if (report.speed) {
    const { reference: r, candidate: c } = report.speed;
    const row = (x: PipelineSpeed) => `${x.pipeline.padEnd(10)} TTFT ${x.ttftMs.toFixed(2)} ms | per token ${x.tpotMedianMs.toFixed(3)} ms (p90 ${x.tpotP90Ms.toFixed(3)}) | decode ${x.decodeTokensPerSec.toFixed(1)} tok/s | prefill ${x.prefillTokensPerSec.toFixed(1)} tok/s`;
    lines.push(row(r), row(c), speedupLine(report.speed));
  }
  const b = report.gate.baseline;
  if (b?.speedRatio) lines.push(`against the baseline: decode speed ${ratioText(b.speedRatio)} (${b.file}; the gate fails on a significant slowdown of more than ${b.maxRegressionPct}%)`);
  for (const t of report.prompts.filter((p) => p.triage)) lines.push(`triage prompt ${t.index}${t.triage!.backend ? ` (reran on ${t.triage!.backend === 'wgsl' ? 'the WGSL engine' : 'ONNX Runtime'})` : ''}: ${t.triage!.blame}`);
  lines.push(report.gate.exitCode === 0 ? 'gate: pass' : `gate: FAIL (${report.gate.reasons.join('; ')})`);
  return lines;
}

/** A prompt's result before its verdict: both sides' tokens and texts, where they part, their diff. */
function promptBase(index: number, prompt: string, r: SequenceResult, c: SequenceResult, parting: TokenVerdict, tokenizer: Awaited<ReturnType<typeof loadTokenizer>>): PromptResult {
  const tokens = (ids: number[]) => ids.map((id) => tokenizer.decode([id], { skip_special_tokens: false }));
  return {
    index,
    prompt,
    verdict: 'match',
    reason: '',
    reference: { ids: r.newIds, tokens: tokens(r.newIds), text: r.text },
    candidate: { ids: c.newIds, tokens: tokens(c.newIds), text: c.text },
    firstDivergence: parting.status === 'match' ? null : parting.position,
    similarity: similarity(r.text, c.text),
    diff: tokenDiff(tokens(r.newIds), tokens(c.newIds)),
    logits: null,
  };
}
