/**
 * The bench suite: pipelines measured side by side in one process on the same checkpoint,
 * swept over batch sizes and prompt lengths, fixed output length (end-of-sequence ignored),
 * warm-up excluded. Metrics as the field defines them (vLLM, optimum-benchmark, GenAI-Perf).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { COMPARE_PROMPTS } from '../fixtures/prompts.js';
import { environment } from '../src/report/environment.js';
import { measureLoad } from '../src/report/load.js';
import type { Checkpoint } from '../src/arch/checkpoint.js';
import type { InjectedPipeline } from '../src/pipeline/injected.js';
import type { ReferencePipeline } from '../src/pipeline/reference.js';
import { createPipeline, type Backend } from '../src/pipeline/ds-pipeline.js';
import { referenceDtype } from '../src/pipeline/dtypes.js';
import { encode, loadTokenizer } from '../src/pipeline/tokenizer.js';
import type { DType, Device, TextGenerationPipeline } from '../src/pipeline/types.js';
import { WgslPipeline } from '../src/pipeline/wgsl.js';
import { LlamaCppPipeline } from '../src/pipeline/llamacpp.js';
import { decodeFigures, median, percentile, type RunTiming } from '../src/report/perf.js';
import type { GenerateRequest } from '../src/pipeline/types.js';
import { readJsonObject } from '../src/checkpoint/config.js';
import { InputError } from '../src/errors.js';
import { BENCH_SCHEMA, pointName, type BaselineRow, type BenchGate, type BenchPipeline, type BenchReport, type BenchRow, type Stats } from '../src/report/bench-report.js';
import { validateBenchReport } from '../src/report/bench-validate.js';
import { bootstrapRatio, decodeSteps, ratioText, regression, runSamples } from '../src/report/speed-stats.js';
import { saveInjected } from '../src/pipeline/saved.js';
import { summarizeRuns } from './op-profile.js';

// The report's types live in src/report (bench-report.ts), below bench: re-exported for bench's users.
export type { BenchPipeline, BenchReport, BenchRow, Stats };

export interface BenchOptions {
  ckpt: Checkpoint;
  device: Device;
  dtype: DType;
  pipelines: BenchPipeline[];
  batchSizes: number[];
  promptLengths: number[];
  maxNewTokens: number;
  repeats: number;
  /** After the measured runs, profile each point of the ONNX Runtime pipelines per op (a second, profiled instance). */
  profile?: boolean;
  /** ORT-injected int8/int4: MatMulNBits' accuracy_level (default the plan's). */
  accuracyLevel?: 0 | 4;
  /** The WGSL engine's layers split across this many devices (--world_size). */
  worldSize?: number;
  /** Save this injected pipeline's model once loaded (--save_mp_checkpoint_path), then tell `done`. */
  save?: { pipeline: BenchPipeline; dir: string; done: (s: { bytes: number; ms: number }) => void };
  /** An earlier bench report (readBenchBaseline) to gate each row's speed on, and the largest slowdown accepted (percent). */
  baseline?: { file: string; report: BenchReport };
  maxRegression?: number;
}

/** The WGSL engine's step profile of the measured runs, then its GPU time, whole and per kernel. */
async function wgslProfile(pipe: WgslPipeline): Promise<Pick<BenchRow, 'stepProfile' | 'stepGpuUs' | 'kernelProfile' | 'prefillGpuUs' | 'prefillKernelProfile'>> {
  const stepProfile = pipe.takeStepProfile();
  const decode = await pipe.profileKernels('decode');
  const prefill = await pipe.profileKernels('prefill');
  return {
    stepProfile,
    ...(decode ? { stepGpuUs: decode.stepUs, kernelProfile: decode.kernels } : {}),
    ...(prefill ? { prefillGpuUs: prefill.stepUs, prefillKernelProfile: prefill.kernels } : {}),
  };
}

export function stats(xs: number[]): Stats {
  return { mean: xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length), median: median(xs), p90: percentile(xs, 90), p99: percentile(xs, 99) };
}

/** Prompt ids of exactly `length` tokens, cut from the seed's compare prompts (repeated as needed). */
export function promptOfLength(source: number[], length: number, offset: number): number[] {
  return Array.from({ length }, (_, i) => source[(offset + i) % source.length]!);
}

/** A bench pipeline as the one factory takes it: transformers.js, the ORT-injected graph, or the WGSL engine. */
export function benchBackend(name: BenchPipeline, o: Pick<BenchOptions, 'accuracyLevel' | 'worldSize'>, profile = false): Backend {
  switch (name) {
    case 'reference':
      return { kind: 'reference', reference: 'transformersjs', ...(profile ? { profile } : {}) };
    case 'ort':
      return { kind: 'ort', ...(o.accuracyLevel !== undefined ? { accuracyLevel: o.accuracyLevel } : {}), ...(profile ? { profile } : {}) };
    case 'wgsl':
      return { kind: 'wgsl', ...((o.worldSize ?? 1) > 1 ? { worldSize: o.worldSize } : {}) };
    case 'llamacpp':
      return { kind: 'llamacpp' };
  }
}

/** The reference runs what the dtype table pairs with the sweep's dtype; fusegen's pipelines run the dtype itself. */
function create(name: BenchPipeline, o: BenchOptions, maxTokens: number, profile = false): Promise<TextGenerationPipeline> {
  return createPipeline(o.ckpt, benchBackend(name, o, profile), { device: o.device, dtype: name === 'reference' ? referenceDtype(o.dtype) : o.dtype, maxTokens });
}

/**
 * Profiles each of a pipeline's rows per op with a fresh, profiled instance: every point runs
 * twice (the first compiles the shapes' kernels) and the second run's steps are kept.
 */
async function profileRows(name: 'ort' | 'reference', o: BenchOptions, maxTokens: number, rows: BenchRow[], requestFor: (r: BenchRow) => GenerateRequest, tick: (point: number, what: string, step: BenchProgress['step']) => void): Promise<void> {
  const pipe = (await create(name, o, maxTokens, true)) as InjectedPipeline | ReferencePipeline;
  try {
    const steps: number[] = [];
    for (const [p, r] of rows.entries()) {
      for (let i = 0; i < 2; i++) {
        tick(p, `${name} batch ${r.batch} prompt ${r.promptLength}`, i ? 'profiled' : 'profile warm-up');
        steps.push((await pipe.generate(requestFor(r))).steps);
      }
    }
    const runs = await pipe.takeProfile();
    if (runs.length !== steps.reduce((a, b) => a + b, 0)) throw new Error(`--profile: ${name} ran ${runs.length} session runs for ${steps.join('+')} steps`);
    rows.forEach((row, i) => {
      const from = steps.slice(0, 2 * i + 1).reduce((a, b) => a + b, 0);
      const kept = runs.slice(from, from + steps[2 * i + 1]!);
      row.opProfile = { prefill: summarizeRuns(kept.slice(0, 1)), decode: summarizeRuns(kept.slice(1)) };
    });
  } finally {
    await pipe.dispose();
  }
}

/**
 * Where a sweep is, before each generate run: the run's number of all the sweep's (warm-ups
 * and profiled runs counted), its point (pipeline, batch, prompt) and its step there.
 */
export interface BenchProgress {
  run: number;
  runs: number;
  point: number;
  points: number;
  what: string;
  step: 'warm-up' | `run ${number}/${number}` | 'profile warm-up' | 'profiled';
}

/** `live` gets the report as soon as it exists; its rows grow as points finish (a second Ctrl-C writes it as it stands). */
export async function runBench(o: BenchOptions, progress: (p: BenchProgress) => void, interrupted: () => boolean, live?: (report: BenchReport) => void): Promise<BenchReport> {
  if (o.baseline) checkBaseline(o.baseline, o);
  const tokenizer = await loadTokenizer(o.ckpt);
  const source = encode(tokenizer, COMPARE_PROMPTS.join(' '));
  const maxTokens = Math.max(...o.promptLengths) + o.maxNewTokens;
  const report: BenchReport = {
    schema: BENCH_SCHEMA,
    status: 'complete',
    createdAt: new Date().toISOString(),
    model: { dir: o.ckpt.dir, modelType: o.ckpt.modelType, parameters: 0 },
    device: o.device,
    dtype: o.dtype,
    environment: environment(),
    rows: [],
  };
  live?.(report);
  const points = o.pipelines.length * o.batchSizes.length * o.promptLengths.length;
  const profiled = o.profile ? o.pipelines.filter((p) => p === 'ort' || p === 'reference').length * o.batchSizes.length * o.promptLengths.length : 0;
  // llamacpp: one more run a point, for llama.cpp's own timings.
  const llamaTimed = o.pipelines.includes('llamacpp') ? o.batchSizes.length * o.promptLengths.length : 0;
  let run = 0;
  const totalRuns = points * (o.repeats + 1) + 2 * profiled + llamaTimed;
  const tick = (point: number, what: string, step: BenchProgress['step']) => progress({ run: ++run, runs: totalRuns, point: point + 1, points, what, step });
  const requestFor = ({ batch, promptLength }: Pick<BenchRow, 'batch' | 'promptLength'>): GenerateRequest => {
    const promptTokens = Array.from({ length: batch }, (_, b) => promptOfLength(source, promptLength, b * 7));
    return { prompts: promptTokens.map((_, b) => `prompt ${b}`), promptTokens, maxNewTokens: o.maxNewTokens, doSample: false, ignoreEos: true };
  };
  for (const name of o.pipelines) {
    if (interrupted()) break;
    const first = report.rows.length;
    const { value: pipe, load } = await measureLoad(() => create(name, o, maxTokens));
    report.model.parameters = pipe.info.parameters;
    try {
      if (o.save?.pipeline === name) o.save.done(await saveInjected(pipe, o.ckpt, o.save.dir));
      for (const batch of o.batchSizes) {
        for (const promptLength of o.promptLengths) {
          if (interrupted()) break;
          const request = requestFor({ batch, promptLength });
          const runs: RunTiming[] = [];
          let peakRss = 0;
          for (let i = 0; i <= o.repeats; i++) {
            tick(report.rows.length, `${name} batch ${batch} prompt ${promptLength}`, i ? `run ${i}/${o.repeats}` : 'warm-up');
            if (i === 1) {
              if (pipe instanceof WgslPipeline) pipe.takeStepProfile(); // measure after the warm-up
              collectGarbage();
            }
            const t = performance.now();
            const result = await pipe.generate(request);
            runs.push({ totalMs: performance.now() - t, result });
            peakRss = Math.max(peakRss, process.memoryUsage().rss);
          }
          const m = runs.slice(1); // the first run is the warm-up
          // After the measured runs: reading llama.cpp's counters costs the run about a millisecond.
          let llamaCppTimings: BenchRow['llamaCppTimings'];
          if (pipe instanceof LlamaCppPipeline) {
            tick(report.rows.length, `${name} batch ${batch} prompt ${promptLength}`, 'profiled');
            llamaCppTimings = (await pipe.timedGenerate(request)).timings;
          }
          const f = decodeFigures(runs, pipe.info, batch, 1);
          const byPosition = new Map<number, number[]>();
          for (const r of m) r.result.timings.decodeStepMs.forEach((ms, i) => byPosition.set(promptLength + i + 1, [...(byPosition.get(promptLength + i + 1) ?? []), ms]));
          const perPosition = [...byPosition].map(([p, xs]): [number, number] => [p, median(xs)]);
          report.rows.push({
            pipeline: name,
            batch,
            promptLength,
            maxNewTokens: o.maxNewTokens,
            loadMs: pipe.info.loadMs,
            load,
            executionProviders: pipe.info.executionProviders,
            ...(pipe.info.accuracyLevel !== undefined ? { accuracyLevel: pipe.info.accuracyLevel } : {}),
            ttftMs: stats(m.map((r) => r.result.timings.firstTokenMs)),
            tpotMs: stats(m.flatMap((r) => r.result.timings.decodeStepMs)),
            e2eMs: stats(m.map((r) => r.totalMs)),
            decodeTokensPerSec: f.decodeTokensPerSec,
            prefillTokensPerSec: f.prefillTokensPerSec,
            bandwidthGBps: f.bandwidthGBps,
            tflops: f.tflops,
            peakRssMB: peakRss / 2 ** 20,
            perPosition,
            outlierPositions: perPosition.filter(([, ms]) => ms > 3 * f.tpotMs).map(([p]) => p),
            samples: runSamples(m),
            ...(pipe instanceof WgslPipeline ? await wgslProfile(pipe) : {}),
            ...(llamaCppTimings ? { llamaCppTimings } : {}),
          });
        }
      }
    } finally {
      await pipe.dispose();
    }
    if (o.profile && (name === 'ort' || name === 'reference') && !interrupted()) {
      await profileRows(name, o, maxTokens, report.rows.slice(first), requestFor, (p, what, step) => tick(first + p, what, step));
    }
  }
  if (interrupted()) report.status = 'interrupted';
  addVersus(report.rows);
  if (o.baseline) report.gate = baselineGate(report.rows, o.baseline, o.maxRegression ?? 10);
  return report;
}

/**
 * Each row of a later pipeline against the sweep's first pipeline at the same point: the ratio of
 * their median times per output token (above 1: this row faster), with its bootstrap interval.
 */
export function addVersus(rows: BenchRow[]): void {
  const first = rows[0]?.pipeline;
  for (const row of rows) {
    if (row.pipeline === first || !row.samples) continue;
    const base = rows.find((r) => r.pipeline === first && r.batch === row.batch && r.promptLength === row.promptLength && r.samples);
    if (base) row.versus = { pipeline: first!, tpotSpeedup: bootstrapRatio(decodeSteps(base.samples!), decodeSteps(row.samples), 'median') };
  }
}

/** Reads `--baseline`: a bench report (validated), or an InputError naming the file. */
export function readBenchBaseline(file: string): { file: string; report: BenchReport } {
  const raw: unknown = readJsonObject(file);
  try {
    validateBenchReport(raw);
  } catch (e) {
    throw new InputError(file, `not a bench report: ${(e as Error).message}`);
  }
  return { file, report: raw };
}

/** A baseline of another model type, device or dtype measures something else: refused before any work. */
function checkBaseline(baseline: NonNullable<BenchOptions['baseline']>, o: BenchOptions): void {
  const b = baseline.report;
  const want = `${o.ckpt.modelType} on ${o.device} in ${o.dtype}`;
  const have = `${b.model.modelType} on ${b.device} in ${b.dtype}`;
  if (want !== have) throw new InputError(baseline.file, `a bench of ${have}; this run is ${want}`);
}

/**
 * The regression gate: each row against the baseline's row of the same point (pipeline, batch,
 * prompt length, new tokens), as the ratio of median times per output token, the baseline's over
 * this run's, with a bootstrap interval over both runs' steps and runs (a baseline row without
 * samples is held at its recorded median). A row fails only on a significant slowdown (the whole
 * interval below 1) whose estimate is more than `maxRegression` percent.
 */
export function baselineGate(rows: BenchRow[], baseline: NonNullable<BenchOptions['baseline']>, maxRegression: number): BenchGate {
  const checked: BaselineRow[] = [];
  const unmatched: string[] = [];
  const reasons: string[] = [];
  for (const row of rows) {
    const base = baseline.report.rows.find((b) => b.pipeline === row.pipeline && b.batch === row.batch && b.promptLength === row.promptLength && b.maxNewTokens === row.maxNewTokens);
    if (!base || !row.samples) {
      unmatched.push(pointName(row));
      continue;
    }
    const speedRatio = bootstrapRatio(base.samples ? decodeSteps(base.samples) : base.tpotMs.median, decodeSteps(row.samples), 'median');
    const r = regression(speedRatio, maxRegression);
    checked.push({ pipeline: row.pipeline, batch: row.batch, promptLength: row.promptLength, baselineTpotMs: base.tpotMs.median, tpotMs: row.tpotMs.median, speedRatio, regressionPct: r.regressionPct, significant: r.significant, fails: r.fails });
    if (r.fails) reasons.push(`${pointName(row)}: decode speed is ${r.regressionPct.toFixed(1)}% below the baseline's (median time per output token ${row.tpotMs.median.toFixed(3)} ms against ${base.tpotMs.median.toFixed(3)} ms; speed ratio ${ratioText(speedRatio)}): a significant regression of more than ${maxRegression}%`);
  }
  return { exitCode: reasons.length ? 1 : 0, reasons, baseline: { file: baseline.file, maxRegressionPct: maxRegression, rows: checked, unmatched } };
}

/** The console's lines for the statistics: each row against the first pipeline, then the gate. */
export function statsLines(report: BenchReport): string[] {
  const lines = report.rows.filter((r) => r.versus).map((r) => `${pointName(r)} vs ${r.versus!.pipeline}: time per output token ${ratioText(r.versus!.tpotSpeedup)}`);
  const g = report.gate;
  if (g) {
    for (const b of g.baseline.rows) lines.push(`${pointName(b)} against the baseline: decode speed ${ratioText(b.speedRatio)}${b.fails ? ' FAIL' : ''}`);
    if (g.baseline.unmatched.length) lines.push(`not in the baseline: ${g.baseline.unmatched.join(', ')}`);
    lines.push(g.exitCode === 0 ? `gate: pass (no significant regression of more than ${g.baseline.maxRegressionPct}% against ${g.baseline.file})` : `gate: FAIL (${g.reasons.join('; ')})`);
  }
  return lines;
}

// github-action-benchmark's custom tool formats (one file per direction) are built in src/report, beside the other readers of the report.
export { actionBenchmark } from '../src/report/action-benchmark.js';

/** Bencher Metric Format: benchmark -> measure -> value. */
export function bencherBmf(report: BenchReport): Record<string, Record<string, { value: number }>> {
  return Object.fromEntries(
    report.rows.map((r) => [
      `${report.model.modelType}/${report.device}/${report.dtype}/${r.pipeline}/b${r.batch}/p${r.promptLength}`,
      { 'time-per-output-token-ms': { value: r.tpotMs.median }, 'time-to-first-token-ms': { value: r.ttftMs.median }, 'decode-tokens-per-s': { value: r.decodeTokensPerSec } },
    ]),
  );
}

let gc: (() => void) | undefined;

/**
 * A full garbage collection, so that the measured runs do not pay for what loading and the
 * warm-up left behind: on the H200 the first configuration of a process had 16 ms stalls the
 * later ones did not (bench/results/2026-12-02-h200-short-prompts), which a collection of the
 * gigabytes a load frees would explain.
 */
function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}
