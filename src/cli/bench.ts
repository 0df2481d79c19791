/**
 * `fusegen bench`: pipelines side by side over batch sizes and prompt lengths; writes the
 * JSON report, github-action-benchmark files (customSmallerIsBetter / customBiggerIsBetter)
 * and a Bencher BMF file, and prints a table.
 */
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { profileLine } from '../../bench/op-profile.js';
import { benchBackend, bencherBmf, readBenchBaseline, runBench, statsLines, type BenchPipeline, type BenchReport } from '../../bench/run.js';
import { validateBenchReport } from '../report/bench-validate.js';
import { ensureDefaultModel, fixtureModelsDir, PRESETS, writePresetCheckpoint, type PresetName } from '../../fixtures/checkpoints.js';
import type { Checkpoint } from '../arch/checkpoint.js';
import { CapacityError, UsageError } from '../errors.js';
import { checkWeightShapes } from '../graph/export.js';
import { checkCapacity } from '../pipeline/common.js';
import { engineOf } from '../pipeline/ds-pipeline.js';
import { referenceDtype } from '../pipeline/dtypes.js';
import { checkSavedRun, checkSaveTarget, savedLine } from '../pipeline/saved.js';
import { COMPARE_PROMPTS } from '../../fixtures/prompts.js';
import { renderBenchHtml } from '../report/bench-html.js';
import { defaultDtype, type DType, type Device } from '../pipeline/types.js';
import { modelBasename, prepareOutputDir, prepareOutputFile, reportTimestamp, writeReportFiles, writeTextAtomic } from '../report/write.js';
import { actionBenchmark } from '../report/action-benchmark.js';
import { benchSummaryMd } from '../report/summary-md.js';
import { accuracyLevelOption, allowNonfiniteOption, checkAccuracyLevel, checkDtype, checkKvBudget, decimalAtLeast, dtypeOption, intAtLeast, listOf, oneOf, text, type AbortWriter, type Engine, type OptionTable } from './options.js';
import { checkpointPathOption, localRankOption, openModel, otherRankLine, checkWorldSize, saveOption, useMetaTensorOption, worldSizeOption } from './load-options.js';
import { checkDevice, checkPrompts } from './validate.js';
import { progressSink } from './progress.js';
import { prepareSummaryTargets, summaryMdOption, writeSummary, type SummaryTargets } from './summary.js';

export interface BenchCliOptions {
  model: string | undefined;
  preset: PresetName | undefined;
  device: Device;
  dtype: DType | undefined;
  batch_sizes: number[];
  prompt_lengths: number[];
  max_new_tokens: number;
  pipelines: BenchPipeline[];
  repeats: number;
  profile: boolean;
  accuracy_level: 0 | 4 | undefined;
  report_dir: string;
  summary_md: string | undefined;
  benchmark_json: string | undefined;
  allow_nonfinite: boolean;
  baseline: string | undefined;
  max_regression: number;
  checkpoint_path: string | undefined;
  use_meta_tensor: boolean;
  world_size: number;
  local_rank: number;
  save_mp_checkpoint_path: string | undefined;
}

export const benchOptions: OptionTable<BenchCliOptions> = {
  model: { flag: 'model', arg: 'dir', help: 'checkpoint directory', defaultHelp: 'the embedded tiny OPT with random weights', parse: text },
  preset: { flag: 'preset', arg: 'name', help: `a random-weight checkpoint of real shape, generated under fixtures/models on first use: ${PRESETS.join(', ')}`, parse: oneOf<PresetName>(PRESETS) },
  device: { flag: 'device', arg: 'name', help: 'cpu | webgpu | cuda', default: 'cpu', parse: oneOf<Device>(['cpu', 'webgpu', 'cuda']) },
  dtype: dtypeOption(['ort', 'wgsl'], 'the reference runs float16 for float16, else float32; default: float32 on cpu, float16 on gpu'),
  batch_sizes: { flag: 'batch_sizes', arg: 'list', help: 'batch sizes to sweep', default: [1], parse: listOf(intAtLeast(1)) },
  prompt_lengths: { flag: 'prompt_lengths', arg: 'list', help: 'prompt lengths in tokens to sweep', default: [16], parse: listOf(intAtLeast(1)) },
  max_new_tokens: { flag: 'max_new_tokens', arg: 'n', help: 'tokens generated per run (end-of-sequence ignored)', default: 32, parse: intAtLeast(2) },
  pipelines: { flag: 'pipelines', arg: 'list', help: 'reference (transformers.js), ort (ORT-injected), wgsl (WGSL engine, webgpu)', default: ['reference', 'ort'], parse: listOf(oneOf<BenchPipeline>(['reference', 'ort', 'wgsl'])) },
  repeats: { flag: 'repeats', arg: 'n', help: 'measured runs per point, after one warm-up', default: 3, parse: intAtLeast(1) },
  profile: { flag: 'profile', help: 'then profile the ORT and reference pipelines per op (host and GPU time per node), in a second instance', default: false },
  accuracy_level: accuracyLevelOption,
  report_dir: { flag: 'report_dir', arg: 'dir', help: 'where reports go', default: 'reports', parse: text },
  summary_md: summaryMdOption,
  benchmark_json: { flag: 'benchmark_json', arg: 'file', help: "github-action-benchmark's customSmallerIsBetter JSON at this fixed path (its output-file-path), replaced each run: time per output token and time to first token per point, ms, with the 95% interval of the median as range (the same entries as the report's -smaller-is-better.json)", parse: text },
  allow_nonfinite: allowNonfiniteOption,
  baseline: { flag: 'baseline', arg: 'file', help: 'an earlier bench JSON report of the same model, device and dtype: fail on a point whose decode speed fell significantly (95% bootstrap interval below 1) by more than --max_regression', parse: text },
  max_regression: { flag: 'max_regression', arg: 'pct', help: 'largest accepted drop in decode speed against --baseline, percent', default: 10, parse: decimalAtLeast(0) },
  checkpoint_path: checkpointPathOption,
  use_meta_tensor: useMetaTensorOption,
  world_size: worldSizeOption,
  local_rank: localRankOption,
  save_mp_checkpoint_path: { ...saveOption, help: `the one injected pipeline of --pipelines (wgsl or ort): ${saveOption.help}` },
};

/**
 * The cliffs cell: how many decode steps took over 3x the median step, then the context positions
 * where they were (`2 (at 34,56)`; `0` for none), so a position is never read as a count.
 */
export function cliffsCell(positions: readonly number[]): string {
  if (positions.length === 0) return '0';
  const shown = positions.slice(0, 6).join(',');
  return `${positions.length} (at ${shown}${positions.length > 6 ? ',...' : ''})`;
}

export function table(report: BenchReport): string[] {
  const lines = ['pipeline   batch prompt  TTFT ms   TPOT ms (p90)      decode tok/s  prefill tok/s  GB/s      peak RSS MB  GPU step ms  cliffs (steps > 3x median, at positions)'];
  for (const r of report.rows) {
    lines.push(
      `${r.pipeline.padEnd(10)} ${String(r.batch).padStart(5)} ${String(r.promptLength).padStart(6)}  ${r.ttftMs.median.toFixed(2).padStart(8)}  ${r.tpotMs.median.toFixed(3).padStart(8)} (${r.tpotMs.p90.toFixed(3)})  ${r.decodeTokensPerSec.toFixed(1).padStart(12)}  ${r.prefillTokensPerSec.toFixed(1).padStart(13)}  ${r.bandwidthGBps.toFixed(2).padStart(8)}  ${r.peakRssMB.toFixed(0).padStart(11)}  ${(r.stepGpuUs === undefined ? '-' : (r.stepGpuUs / 1e3).toFixed(3)).padStart(11)}  ${cliffsCell(r.outlierPositions)}`,
    );
  }
  for (const r of report.rows) {
    if (r.opProfile) lines.push(`${r.pipeline} b${r.batch} p${r.promptLength} decode ${profileLine(r.opProfile.decode)}`);
    for (const k of r.stepProfile?.ranks ?? []) {
      lines.push(`${r.pipeline} b${r.batch} p${r.promptLength} rank ${k.rank} (layers ${k.layers[0]}-${k.layers[1] - 1}): ${k.msPerStep.toFixed(3)} ms a step${k.transferBytesPerStep ? `, hands on ${(k.transferBytesPerStep / 1024).toFixed(1)} KiB in ${k.transferMsPerStep.toFixed(3)} ms` : ''}`);
    }
  }
  // Each pipeline loads once per sweep: its rows share one load.
  for (const r of report.rows.filter((row, i, all) => row.load && all.findIndex((x) => x.pipeline === row.pipeline) === i)) {
    const weights = r.load!.weightsMs !== undefined ? ` (weights on the device in ${(r.load!.weightsMs / 1000).toFixed(2)} s)` : '';
    lines.push(`${r.pipeline} load: ${(r.load!.ms / 1000).toFixed(2)} s${weights}, peak RSS during load ${r.load!.peakRssMB.toFixed(0)} MB${r.load!.peakSource === 'process-maxrss' ? " (the process's lifetime peak)" : ''}`);
  }
  return lines;
}

/** What runs a bench pipeline: the engine of the backend bench builds for it (the reference is transformers.js). */
function engineOfPipeline(p: BenchPipeline): Engine {
  return engineOf(benchBackend(p, {}));
}

/**
 * The one validation pass, before any run: every flag, the device, the report directory and the
 * other outputs' places (--summary_md, $GITHUB_STEP_SUMMARY, --benchmark_json), then
 * the checkpoint (a preset is written first), every prompt length plus --max_new_tokens against
 * the model, every batch size's KV cache against memory, and the tokenizer. Nothing is exported
 * or run until all of it passed, so a sweep never stops halfway on a point it could not run.
 */
export async function validateBench(o: BenchCliOptions): Promise<{ ckpt: Checkpoint; reportDir: string; outputs: BenchOutputs }> {
  if (o.model && o.preset) throw new UsageError('--preset', 'give --model or --preset, not both');
  if (o.preset && o.checkpoint_path !== undefined) throw new UsageError('--checkpoint_path', 'a --preset writes its own weights; give --model (or nothing) with --checkpoint_path');
  if (o.pipelines.includes('wgsl') && o.device !== 'webgpu') throw new UsageError('--pipelines', 'wgsl runs on --device webgpu');
  otherRankLine(o.local_rank, o.world_size);
  if (o.world_size > 1 && !o.pipelines.includes('wgsl')) throw new UsageError('--world_size', `${o.world_size} splits the layers across WebGPU devices, which only the WGSL engine does: add wgsl to --pipelines (the other pipelines run on one device)`);
  const dtype = o.dtype ?? defaultDtype(o.device);
  for (const p of o.pipelines) if (p !== 'reference') checkDtype(dtype, engineOfPipeline(p));
  checkAccuracyLevel(o.accuracy_level, dtype, o.pipelines.includes('ort'));
  checkDevice(o.device, o.pipelines.map(engineOfPipeline));
  // A report directory that cannot take the reports fails now, not after the run.
  const reportDir = prepareOutputDir('--report_dir', o.report_dir);
  const outputs: BenchOutputs = { summary: prepareSummaryTargets(o.summary_md), ...(o.benchmark_json !== undefined ? { benchmarkJson: prepareOutputFile('--benchmark_json', o.benchmark_json) } : {}) };
  let dir = o.model;
  if (o.preset) {
    dir = join(fixtureModelsDir(), o.preset);
    writePresetCheckpoint(dir, o.preset);
  }
  const ckpt = openModel(dir, o.checkpoint_path, o.allow_nonfinite, ensureDefaultModel);
  checkWeightShapes(ckpt);
  checkWorldSize(o.world_size, ckpt);
  // Every point's length, as runBench sizes the KV cache: the longest prompt plus the new tokens.
  const maxTokens = Math.max(...o.prompt_lengths) + o.max_new_tokens;
  const backends = o.pipelines.map((p) => [p, benchBackend(p, { ...(o.accuracy_level !== undefined ? { accuracyLevel: o.accuracy_level } : {}), ...(o.world_size > 1 ? { worldSize: o.world_size } : {}) })] as const);
  for (const [p, b] of backends) checkSavedRun(ckpt, b, { device: o.device, dtype: p === 'reference' ? referenceDtype(dtype) : dtype, maxTokens });
  if (o.save_mp_checkpoint_path !== undefined) {
    const injected = backends.filter(([p]) => p !== 'reference');
    if (injected.length !== 1) throw new UsageError('--save_mp_checkpoint_path', `saves one injected model: give exactly one of wgsl, ort in --pipelines (there are ${injected.length})`);
    checkSaveTarget(o.save_mp_checkpoint_path, injected[0]![1]);
  }
  if (1 + o.max_new_tokens > ckpt.dims.maxPositions) throw new CapacityError('--max_new_tokens', `${o.max_new_tokens} new tokens after even a 1-token prompt exceed the model's ${ckpt.dims.maxPositions} positions (${ckpt.configPath})`);
  for (const p of o.prompt_lengths) checkCapacity(ckpt, maxTokens, p, o.max_new_tokens, '--prompt_lengths');
  for (const b of o.batch_sizes) checkKvBudget(b, maxTokens, ckpt.dims, totalmem(), { batch: '--batch_sizes', tokens: '--prompt_lengths' });
  await checkPrompts(ckpt, COMPARE_PROMPTS);
  return { ckpt, reportDir, outputs };
}

export async function runBenchCommand(
  o: BenchCliOptions,
  io: { out: (l: string) => void; err: (l: string) => void; interrupted: () => boolean; terminal?: NodeJS.WritableStream; onAbort?: (write: AbortWriter) => void },
): Promise<number> {
  const other = otherRankLine(o.local_rank, o.world_size);
  if (other) {
    io.out(other);
    return 0;
  }
  const { ckpt, reportDir, outputs } = await validateBench(o);
  const baseline = o.baseline ? readBenchBaseline(o.baseline) : undefined;
  const dir = ckpt.dir;
  const progress = progressSink(io.err, io.terminal);
  // A second Ctrl-C stops at once: the points that finished are still written, marked interrupted.
  let live: BenchReport | undefined;
  io.onAbort?.(() => {
    if (!live) return;
    progress.stop();
    const partial: BenchReport = { ...live, status: 'interrupted', rows: [...live.rows] };
    const written = writeBenchOutputs(partial, reportDir, dir, outputs);
    io.err(`interrupted: ${partial.rows.length} finished point${partial.rows.length === 1 ? '' : 's'} written to ${written.json}`);
  });
  const report = await runBench(
    {
      ckpt,
      device: o.device,
      dtype: o.dtype ?? defaultDtype(o.device),
      pipelines: o.pipelines,
      batchSizes: o.batch_sizes,
      promptLengths: o.prompt_lengths,
      maxNewTokens: o.max_new_tokens,
      repeats: o.repeats,
      profile: o.profile,
      ...(o.accuracy_level !== undefined ? { accuracyLevel: o.accuracy_level } : {}),
      ...(o.world_size > 1 ? { worldSize: o.world_size } : {}),
      ...(o.save_mp_checkpoint_path !== undefined ? { save: { pipeline: o.pipelines.find((p) => p !== 'reference')!, dir: o.save_mp_checkpoint_path, done: (s) => io.out(savedLine(o.save_mp_checkpoint_path!, s)) } } : {}),
      ...(baseline ? { baseline, maxRegression: o.max_regression } : {}),
    },
    (p) => progress.update(p),
    io.interrupted,
    (r) => (live = r),
  ).finally(() => {
    io.onAbort?.(undefined);
    progress.stop();
  });
  for (const line of [...table(report), ...statsLines(report)]) io.out(line);
  const written = writeBenchOutputs(report, reportDir, dir, outputs);
  io.out(`reports: ${written.json}, ${written.html} (+ -smaller-is-better.json, -bigger-is-better.json, -bencher.json)`);
  if (written.benchmarkJson) io.out(`github-action-benchmark: ${written.benchmarkJson}`);
  if (written.summary) io.out(`summary: ${written.summary}`);
  return report.status === 'interrupted' ? 130 : (report.gate?.exitCode ?? 0);
}

/** Outputs at fixed paths beside the reports, proven writable before the run. */
export interface BenchOutputs {
  summary: SummaryTargets;
  /** --benchmark_json, absolute. */
  benchmarkJson?: string;
}

/**
 * The reports (writeBenchReports), then the Markdown summary and --benchmark_json: all of them
 * for every report bench writes, a failed gate, an interrupted run and a second Ctrl-C's partial
 * report alike (the summary is read most when the gate fails).
 */
export function writeBenchOutputs(report: BenchReport, dir: string, modelDir: string, outputs: BenchOutputs): { json: string; html: string; summary?: string; benchmarkJson?: string } {
  const written = writeBenchReports(report, dir, modelDir);
  if (outputs.benchmarkJson) writeTextAtomic(outputs.benchmarkJson, `${JSON.stringify(actionBenchmark(report).smaller, null, 2)}\n`);
  const summary = writeSummary(outputs.summary, benchSummaryMd(report, written));
  return { ...written, ...(summary ? { summary } : {}), ...(outputs.benchmarkJson ? { benchmarkJson: outputs.benchmarkJson } : {}) };
}

/**
 * Writes `<timestamp>-<random>-<model>-bench.json`, its `.html`, the github-action-benchmark files
 * and the Bencher file into `dir` (which exists), all new files: none replaces another report.
 */
export function writeBenchReports(report: BenchReport, dir: string, modelDir: string): { json: string; html: string } {
  validateBenchReport(report);
  const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
  const gab = actionBenchmark(report);
  const out = writeReportFiles(dir, reportTimestamp(report.createdAt), `${modelBasename(modelDir)}-bench`, [
    { suffix: '.json', text: json(report) },
    { suffix: '-smaller-is-better.json', text: json(gab.smaller) },
    { suffix: '-bigger-is-better.json', text: json(gab.bigger) },
    { suffix: '-bencher.json', text: json(bencherBmf(report)) },
    { suffix: '.html', text: renderBenchHtml(report) },
  ]);
  return { json: out['.json']!, html: out['.html']! };
}
