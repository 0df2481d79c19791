/**
 * `fusegen bench`: pipelines side by side over batch sizes and prompt lengths; writes the
 * JSON report, github-action-benchmark files (customSmallerIsBetter / customBiggerIsBetter)
 * and a Bencher BMF file, and prints a table.
 *
 * `fusegen bench --url URL`: a load test of an OpenAI-compatible server instead (bench/serve-load.ts,
 * vllm bench serve's modes and metrics), with a report of its own kind (`-bench-serve.json`).
 * The flags of one side are refused on the other. So that a flag given is told apart from one left
 * out, the table gives the in-process flags no default (IN_PROCESS_SPECS holds them, applied when
 * --url is absent); bench --url's own numeric flags keep theirs (SERVE_DEFAULTS) and count as given
 * without --url only at another value.
 */
import { existsSync, statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { profileLine } from '../../bench/op-profile.js';
import { benchBackend, bencherBmf, readBenchBaseline, runBench, statsLines, type BenchPipeline, type BenchReport, type BenchRow } from '../../bench/run.js';
import { comparePromptSet, fixedLengthPromptSet, loadServeTokenizer, probe, readPromptsFile, runServeBench, summaryLines, type ServeBenchOptions, type ServeBenchReport, type ServeLoad, type ServePromptSet, type ServeSlo } from '../../bench/serve-load.js';
import { validateBenchReport } from '../report/bench-validate.js';
import { ensureDefaultModel, fixtureModelsDir, PRESETS, writePresetCheckpoint, type PresetName } from '../../fixtures/checkpoints.js';
import type { Checkpoint } from '../arch/checkpoint.js';
import { CapacityError, UsageError } from '../errors.js';
import { checkWeightShapes } from '../graph/export.js';
import { checkCapacity } from '../pipeline/common.js';
import { engineOf } from '../pipeline/ds-pipeline.js';
import { checkLlamaCpp, llamaCppBackendFor, type LlamaCppPhase } from '../pipeline/llamacpp.js';
import { pointName } from '../report/bench-report.js';
import { referenceDtype } from '../pipeline/dtypes.js';
import { checkSavedRun, checkSaveTarget, savedLine } from '../pipeline/saved.js';
import { COMPARE_PROMPTS } from '../../fixtures/prompts.js';
import { listModels, errorKey } from '../remote/stream.js';
import { normalizeServerUrl } from '../remote/completions.js';
import { renderBenchHtml } from '../report/bench-html.js';
import { renderServeBenchHtml } from '../report/serve-bench-html.js';
import { validateServeBenchReport } from '../report/serve-bench-validate.js';
import { defaultDtype, type DType, type Device } from '../pipeline/types.js';
import { modelBasename, prepareOutputDir, prepareOutputFile, reportTimestamp, writeReportFiles, writeTextAtomic } from '../report/write.js';
import { actionBenchmark } from '../report/action-benchmark.js';
import { benchSummaryMd, serveBenchSummaryMd } from '../report/summary-md.js';
import { accuracyLevelOption, allowNonfiniteOption, checkAccuracyLevel, checkDtype, checkKvBudget, decimalAtLeast, dtypeOption, intAtLeast, listOf, oneOf, text, type AbortWriter, type Engine, type OptionSpec, type OptionTable } from './options.js';
import { checkpointPathOption, localRankOption, openModel, otherRankLine, checkWorldSize, saveOption, useMetaTensorOption, worldSizeOption } from './load-options.js';
import { checkDevice, checkPrompts } from './validate.js';
import { progressSink } from './progress.js';
import { prepareSummaryTargets, summaryMdOption, writeSummary, type SummaryTargets } from './summary.js';

/** The in-process bench's options, every default applied. */
export interface InProcessBenchOptions {
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

/** `bench --url`'s own flags, as parsed. */
export interface ServeFlags {
  url: string | undefined;
  served_model: string | undefined;
  api_key: string | undefined;
  concurrency: number[] | undefined;
  request_rate: Array<number | 'inf'> | undefined;
  burstiness: number;
  num_prompts: number;
  max_seconds: number;
  timeout_s: number;
  slo: ServeSlo | undefined;
  tokenizer: string | undefined;
  prompts_file: string | undefined;
  seed: number;
  ignore_eos: boolean | undefined;
}

/** Flags that only the in-process bench takes: parsed without their defaults (IN_PROCESS_SPECS has them). */
type InProcessOnly = Exclude<keyof InProcessBenchOptions, 'max_new_tokens' | 'report_dir' | 'world_size' | 'local_rank'>;

/** The flags as parsed: shared ones with their defaults, one side's own without. */
export type BenchCliOptions = { [K in InProcessOnly]: InProcessBenchOptions[K] | undefined } & Pick<InProcessBenchOptions, 'max_new_tokens' | 'report_dir' | 'world_size' | 'local_rank'> & ServeFlags;

/** The specs of the in-process-only flags, with their defaults; the table lists them without (undefaulted). */
const IN_PROCESS_SPECS: OptionTable<Pick<InProcessBenchOptions, InProcessOnly>> = {
  model: { flag: 'model', arg: 'dir', help: 'checkpoint directory', defaultHelp: 'the embedded tiny OPT with random weights', parse: text },
  preset: { flag: 'preset', arg: 'name', help: `a random-weight checkpoint of real shape, generated under fixtures/models on first use: ${PRESETS.join(', ')}`, parse: oneOf<PresetName>(PRESETS) },
  device: { flag: 'device', arg: 'name', help: 'cpu | webgpu | cuda', default: 'cpu', parse: oneOf<Device>(['cpu', 'webgpu', 'cuda']) },
  dtype: dtypeOption(['ort', 'wgsl'], 'the reference runs float16 for float16, else float32; default: float32 on cpu, float16 on gpu'),
  batch_sizes: { flag: 'batch_sizes', arg: 'list', help: 'batch sizes to sweep', default: [1], parse: listOf(intAtLeast(1)) },
  prompt_lengths: { flag: 'prompt_lengths', arg: 'list', help: "prompt lengths in tokens to sweep (with --url: prompts of these lengths built with --tokenizer, each length a sweep of its own; without, the seed's compare prompts)", default: [16], parse: listOf(intAtLeast(1)) },
  pipelines: { flag: 'pipelines', arg: 'list', help: 'reference (transformers.js), ort (ORT-injected), wgsl (WGSL engine, webgpu), llamacpp (llama.cpp through node-llama-cpp on fusegen\'s GGUF export: its CPU build on cpu, its Vulkan build on webgpu)', default: ['reference', 'ort'], parse: listOf(oneOf<BenchPipeline>(['reference', 'ort', 'wgsl', 'llamacpp'])) },
  repeats: { flag: 'repeats', arg: 'n', help: 'measured runs per point, after one warm-up', default: 3, parse: intAtLeast(1) },
  profile: { flag: 'profile', help: 'then profile the ORT and reference pipelines per op (host and GPU time per node), in a second instance', default: false },
  accuracy_level: accuracyLevelOption,
  summary_md: summaryMdOption,
  benchmark_json: { flag: 'benchmark_json', arg: 'file', help: "github-action-benchmark's customSmallerIsBetter JSON at this fixed path (its output-file-path), replaced each run: time per output token and time to first token per point, ms, with the 95% interval of the median as range (the same entries as the report's -smaller-is-better.json)", parse: text },
  allow_nonfinite: allowNonfiniteOption,
  baseline: { flag: 'baseline', arg: 'file', help: 'an earlier bench JSON report of the same model, device and dtype: fail on a point whose decode speed fell significantly (95% bootstrap interval below 1) by more than --max_regression', parse: text },
  max_regression: { flag: 'max_regression', arg: 'pct', help: 'largest accepted drop in decode speed against --baseline, percent', default: 10, parse: decimalAtLeast(0) },
  checkpoint_path: checkpointPathOption,
  use_meta_tensor: useMetaTensorOption,
  save_mp_checkpoint_path: { ...saveOption, help: `the one injected pipeline of --pipelines (wgsl or ort): ${saveOption.help}` },
};

/**
 * bench --url's own flags that have a default in the table (--help shows it): one given without
 * --url is told apart only by a value other than this default.
 */
const SERVE_DEFAULTS = { num_prompts: 100, max_seconds: 30, timeout_s: 30, burstiness: 1, seed: 0 } as const;

/** A spec without its default (shown in --help as before), so that a flag left out parses as undefined. */
function undefaulted<T>(spec: OptionSpec<T>): OptionSpec<T | undefined> {
  const { default: d, ...rest } = spec;
  const shown = d === undefined || !spec.arg || spec.defaultHelp !== undefined ? {} : { defaultHelp: Array.isArray(d) ? d.join(',') : String(d) };
  return { ...rest, ...shown };
}

/** A decimal number above 0 (2, 0.5; no sign, no exponent). */
function positiveDecimal(raw: string, flag: string): number {
  const n = decimalAtLeast(0)(raw, flag);
  if (n <= 0) throw new UsageError(`--${flag}`, `must be above 0, got ${raw}`);
  return n;
}

/** A request rate: requests per second above 0, or inf (all at once). */
function requestRate(raw: string, flag: string): number | 'inf' {
  return raw.trim() === 'inf' ? 'inf' : positiveDecimal(raw, flag);
}

const SLO_KEYS: Record<string, keyof ServeSlo> = { ttft: 'ttftMs', tpot: 'tpotMs', e2e: 'e2eMs', e2el: 'e2eMs' };

/** `--slo ttft=500,tpot=50,e2e=2000` (ms each; any of the three; vLLM's e2el accepted for e2e). */
export function parseSlo(raw: string, flag: string): ServeSlo {
  const slo: ServeSlo = {};
  for (const item of raw.split(',').map((s) => s.trim())) {
    const m = /^(\w+)=(.*)$/.exec(item);
    if (!m) throw new UsageError(`--${flag}`, `"${item}" is not NAME=MS (expected e.g. ttft=500,tpot=50,e2e=2000)`);
    const key = SLO_KEYS[m[1]!.toLowerCase()];
    if (!key) throw new UsageError(`--${flag}`, `unknown objective "${m[1]}" (expected ttft, tpot or e2e)`);
    if (slo[key] !== undefined) throw new UsageError(`--${flag}`, `${m[1]} is given twice in "${raw}"`);
    slo[key] = positiveDecimal(m[2]!, flag);
  }
  return slo;
}

export const benchOptions: OptionTable<BenchCliOptions> = {
  model: undefaulted(IN_PROCESS_SPECS.model),
  preset: undefaulted(IN_PROCESS_SPECS.preset),
  device: undefaulted(IN_PROCESS_SPECS.device),
  dtype: undefaulted(IN_PROCESS_SPECS.dtype),
  batch_sizes: undefaulted(IN_PROCESS_SPECS.batch_sizes),
  prompt_lengths: undefaulted(IN_PROCESS_SPECS.prompt_lengths),
  max_new_tokens: { flag: 'max_new_tokens', arg: 'n', help: 'tokens generated per run (end-of-sequence ignored); with --url, max_tokens of each request', default: 32, parse: intAtLeast(2) },
  pipelines: undefaulted(IN_PROCESS_SPECS.pipelines),
  repeats: undefaulted(IN_PROCESS_SPECS.repeats),
  profile: undefaulted(IN_PROCESS_SPECS.profile),
  accuracy_level: undefaulted(IN_PROCESS_SPECS.accuracy_level),
  report_dir: { flag: 'report_dir', arg: 'dir', help: 'where reports go', default: 'reports', parse: text },
  summary_md: undefaulted(IN_PROCESS_SPECS.summary_md),
  benchmark_json: undefaulted(IN_PROCESS_SPECS.benchmark_json),
  allow_nonfinite: undefaulted(IN_PROCESS_SPECS.allow_nonfinite),
  baseline: undefaulted(IN_PROCESS_SPECS.baseline),
  max_regression: undefaulted(IN_PROCESS_SPECS.max_regression),
  checkpoint_path: undefaulted(IN_PROCESS_SPECS.checkpoint_path),
  use_meta_tensor: undefaulted(IN_PROCESS_SPECS.use_meta_tensor),
  world_size: worldSizeOption,
  local_rank: localRankOption,
  save_mp_checkpoint_path: undefaulted(IN_PROCESS_SPECS.save_mp_checkpoint_path),
  url: { flag: 'url', arg: 'url', help: "load-test the OpenAI-compatible server at this base URL (streamed POST /v1/completions; vLLM, TGI, SGLang, llama.cpp's server...) instead of running pipelines here: vllm bench serve's modes and metrics, a -bench-serve.json report", parse: (raw) => normalizeServerUrl(raw, '--url') },
  served_model: { flag: 'served_model', arg: 'name', help: 'with --url: the model field sent', defaultHelp: 'the one model GET /v1/models lists', parse: text },
  api_key: { flag: 'api_key', arg: 'key', help: 'with --url: sent as Authorization: Bearer KEY (never written to a report)', parse: text },
  concurrency: { flag: 'concurrency', arg: 'list', help: 'with --url: a concurrency sweep, e.g. 1,8,32,64: that many requests in flight, each client sending its next as soon as one finishes (neither this nor --request_rate: synchronous, one at a time)', parse: listOf(intAtLeast(1)) },
  request_rate: { flag: 'request_rate', arg: 'list', help: 'with --url: a request-rate sweep in requests/s, e.g. 2,8,inf: gamma-distributed arrivals of shape --burstiness (inf: all at once)', parse: listOf(requestRate) },
  burstiness: { flag: 'burstiness', arg: 'x', help: "with --request_rate: the arrivals' gamma shape, as vLLM defines it: 1 is Poisson, below 1 burstier, above 1 steadier", default: SERVE_DEFAULTS.burstiness, parse: positiveDecimal },
  num_prompts: { flag: 'num_prompts', arg: 'n', help: 'with --url: requests per point (at most)', default: SERVE_DEFAULTS.num_prompts, parse: intAtLeast(1) },
  max_seconds: { flag: 'max_seconds', arg: 's', help: 'with --url: seconds a point sends for (at most); its requests in flight then finish', default: SERVE_DEFAULTS.max_seconds, parse: positiveDecimal },
  timeout_s: { flag: 'timeout_s', arg: 's', help: 'with --url: the most a request may take, its whole answer streamed; then it fails as a timeout', default: SERVE_DEFAULTS.timeout_s, parse: positiveDecimal },
  slo: { flag: 'slo', arg: 'list', help: 'with --url: goodput objectives in ms, e.g. ttft=500,tpot=50,e2e=2000: goodput counts the requests per second that meet every one given', parse: parseSlo },
  tokenizer: { flag: 'tokenizer', arg: 'dir', help: "with --url: a checkpoint directory whose tokenizer.json counts output tokens on the returned text (the server's usage reported beside it) and builds --prompt_lengths prompts", defaultHelp: "the server's usage", parse: text },
  prompts_file: { flag: 'prompts_file', arg: 'file', help: 'with --url: JSON Lines, one {"prompt": "...", "max_tokens"?: n} a line, sent in turn', parse: text },
  seed: { flag: 'seed', arg: 'n', help: "with --url: the seed of --request_rate's arrival times", default: SERVE_DEFAULTS.seed, parse: intAtLeast(0) },
  ignore_eos: { flag: 'ignore_eos', help: 'with --url: send ignore_eos (vLLM, SGLang) so every request generates its max_tokens' },
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

/**
 * A llamacpp row's llama.cpp timings in one line: per phase (the prompt's step, the decode steps)
 * fusegen's wall time, llama.cpp's own time, and its counters as llama.cpp keeps them (prompt eval:
 * tokens of decode calls of several tokens, so batched decode steps count there; eval: calls of one).
 */
export function llamaCppTimingsLine(r: BenchRow): string | undefined {
  const t = r.llamaCppTimings;
  if (!t) return undefined;
  const phase = (p: LlamaCppPhase): string => {
    const counters = [
      ...(p.promptEvalTokens ? [`prompt eval ${p.promptEvalMs.toFixed(2)} ms / ${p.promptEvalTokens} tokens`] : []),
      ...(p.evalRuns ? [`eval ${p.evalMs.toFixed(2)} ms / ${p.evalRuns} runs`] : []),
      `${p.graphsReused} graphs reused`,
    ];
    return `${p.wallMs.toFixed(2)} ms wall, llama.cpp ${(p.promptEvalMs + p.evalMs).toFixed(2)} ms (${counters.join(', ')})`;
  };
  const where = t.backend === 'vulkan' ? `vulkan on ${t.devices.join(', ')}` : 'cpu';
  return `${pointName(r)} llama.cpp's own timings (${where}, one run): prompt step ${phase(t.prefill)}; decode steps ${phase(t.decode)}`;
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
    const llama = llamaCppTimingsLine(r);
    if (llama) lines.push(llama);
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
export async function validateBench(o: InProcessBenchOptions): Promise<{ ckpt: Checkpoint; reportDir: string; outputs: BenchOutputs }> {
  if (o.model && o.preset) throw new UsageError('--preset', 'give --model or --preset, not both');
  if (o.preset && o.checkpoint_path !== undefined) throw new UsageError('--checkpoint_path', 'a --preset writes its own weights; give --model (or nothing) with --checkpoint_path');
  if (o.pipelines.includes('wgsl') && o.device !== 'webgpu') throw new UsageError('--pipelines', 'wgsl runs on --device webgpu');
  if (o.pipelines.includes('llamacpp')) llamaCppBackendFor(o.device); // cpu: llama.cpp's CPU build; webgpu: its Vulkan build; cuda refused
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
  if (o.pipelines.includes('llamacpp')) checkLlamaCpp(ckpt, dtype, o.device);
  // Every point's length, as runBench sizes the KV cache: the longest prompt plus the new tokens.
  const maxTokens = Math.max(...o.prompt_lengths) + o.max_new_tokens;
  const backends = o.pipelines.map((p) => [p, benchBackend(p, { ...(o.accuracy_level !== undefined ? { accuracyLevel: o.accuracy_level } : {}), ...(o.world_size > 1 ? { worldSize: o.world_size } : {}) })] as const);
  for (const [p, b] of backends) checkSavedRun(ckpt, b, { device: o.device, dtype: p === 'reference' ? referenceDtype(dtype) : dtype, maxTokens });
  if (o.save_mp_checkpoint_path !== undefined) {
    const injected = backends.filter(([p]) => p === 'ort' || p === 'wgsl');
    if (injected.length !== 1) throw new UsageError('--save_mp_checkpoint_path', `saves one injected model: give exactly one of wgsl, ort in --pipelines (there are ${injected.length})`);
    checkSaveTarget(o.save_mp_checkpoint_path, injected[0]![1]);
  }
  if (1 + o.max_new_tokens > ckpt.dims.maxPositions) throw new CapacityError('--max_new_tokens', `${o.max_new_tokens} new tokens after even a 1-token prompt exceed the model's ${ckpt.dims.maxPositions} positions (${ckpt.configPath})`);
  for (const p of o.prompt_lengths) checkCapacity(ckpt, maxTokens, p, o.max_new_tokens, '--prompt_lengths');
  for (const b of o.batch_sizes) checkKvBudget(b, maxTokens, ckpt.dims, totalmem(), { batch: '--batch_sizes', tokens: '--prompt_lengths' });
  await checkPrompts(ckpt, COMPARE_PROMPTS);
  return { ckpt, reportDir, outputs };
}

export interface BenchIo {
  out: (l: string) => void;
  err: (l: string) => void;
  interrupted: () => boolean;
  terminal?: NodeJS.WritableStream;
  onAbort?: (write: AbortWriter) => void;
}

/** The flags of `bench --url` that the in-process bench refuses: given exactly when not undefined, or (those with a table default) when not at it. */
function givenServeFlags(o: BenchCliOptions): string[] {
  const given = (Object.keys(o) as Array<keyof BenchCliOptions>).filter((k) => {
    if (!(k in SERVE_FLAG_NAMES)) return false;
    const d = (SERVE_DEFAULTS as Record<string, unknown>)[k];
    return d === undefined ? o[k] !== undefined : o[k] !== d;
  });
  return given.map((k) => `--${k}`);
}

/** bench --url's own flags (the keys of ServeFlags), for the refusals. */
const SERVE_FLAG_NAMES: Record<keyof ServeFlags, true> = { url: true, served_model: true, api_key: true, concurrency: true, request_rate: true, burstiness: true, num_prompts: true, max_seconds: true, timeout_s: true, slo: true, tokenizer: true, prompts_file: true, seed: true, ignore_eos: true };

/** Every in-process flag given with --url, refused (--prompt_lengths is shared: it sweeps prompt lengths either way). */
function refuseInProcessFlags(o: BenchCliOptions): void {
  for (const k of Object.keys(IN_PROCESS_SPECS) as InProcessOnly[]) {
    if (k === 'prompt_lengths' || k === 'summary_md' || o[k] === undefined) continue;
    throw new UsageError(`--${k}`, 'applies to the pipelines bench runs in this process, not to --url (the server there runs the model)');
  }
  if (o.world_size !== 1) throw new UsageError('--world_size', 'applies to the pipelines bench runs in this process, not to --url (the server there runs the model)');
  if (o.local_rank !== 0) throw new UsageError('--local_rank', 'applies to the pipelines bench runs in this process, not to --url (run one bench --url, not one per rank)');
}

/** The in-process options: each in-process flag left out takes its default (IN_PROCESS_SPECS). */
function inProcessOptions(o: BenchCliOptions): InProcessBenchOptions {
  const serve = givenServeFlags(o);
  if (serve.length) throw new UsageError(serve[0]!, 'applies to a load test of a server: give --url URL (without it, bench runs pipelines in this process)');
  const resolved: Record<string, unknown> = { max_new_tokens: o.max_new_tokens, report_dir: o.report_dir, world_size: o.world_size, local_rank: o.local_rank };
  for (const [k, spec] of Object.entries(IN_PROCESS_SPECS) as Array<[InProcessOnly, OptionSpec<unknown>]>) resolved[k] = o[k] ?? spec.default;
  return resolved as unknown as InProcessBenchOptions;
}

export async function runBenchCommand(raw: BenchCliOptions, io: BenchIo): Promise<number> {
  if (raw.url !== undefined) return runServeBenchCommand({ ...raw, url: raw.url }, io);
  const o = inProcessOptions(raw);
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

/** The one model `GET {url}/v1/models` lists; several are refused naming --served_model. */
async function onlyModel(url: string, apiKey: string | undefined, timeoutS: number): Promise<string> {
  const ids = await listModels(url, apiKey, timeoutS * 1000);
  if (ids.length === 1) return ids[0]!;
  if (ids.length === 0) throw new UsageError('--served_model', `GET ${url}/v1/models lists no model; name the model with --served_model`);
  const shown = ids.slice(0, 5).join(', ');
  throw new UsageError('--served_model', `${url} serves ${ids.length} models (${shown}${ids.length > 5 ? ', ...' : ''}): name one with --served_model`);
}

/**
 * `bench --url`: a load test of an OpenAI-compatible server (bench/serve-load.ts). Checked before
 * any request: the flags, the report directory, the tokenizer and the prompts; then the model's
 * name (GET /v1/models, unless --served_model) and one request that is not measured (vLLM's
 * initial test run), which must answer with text, and with usage unless --tokenizer counts the
 * tokens. Only then the sweep: every prompt set at every load, a summary per point, one report.
 */
async function runServeBenchCommand(o: BenchCliOptions & { url: string }, io: BenchIo): Promise<number> {
  refuseInProcessFlags(o);
  if (o.prompts_file !== undefined && o.prompt_lengths !== undefined) throw new UsageError('--prompt_lengths', 'give --prompt_lengths or --prompts_file, not both');
  if (o.prompt_lengths !== undefined && o.tokenizer === undefined) throw new UsageError('--prompt_lengths', "with --url, prompts of these lengths are built with the model's tokenizer: give --tokenizer DIR");
  if (o.burstiness !== SERVE_DEFAULTS.burstiness && o.request_rate === undefined) throw new UsageError('--burstiness', 'shapes the arrivals of --request_rate: give --request_rate too');
  const reportDir = prepareOutputDir('--report_dir', o.report_dir);
  const summaryTargets = prepareSummaryTargets(o.summary_md);
  if (o.tokenizer !== undefined && !(existsSync(o.tokenizer) && statSync(o.tokenizer).isDirectory())) throw new UsageError('--tokenizer', `${o.tokenizer}: no such directory (expected a checkpoint directory holding tokenizer.json)`);
  const tokenizer = o.tokenizer !== undefined ? await loadServeTokenizer(o.tokenizer) : undefined;
  const sets: ServePromptSet[] =
    o.prompts_file !== undefined
      ? [readPromptsFile(o.prompts_file, o.max_new_tokens, tokenizer)]
      : o.prompt_lengths !== undefined
        ? o.prompt_lengths.map((n) => fixedLengthPromptSet(tokenizer!, n, o.num_prompts, o.max_new_tokens))
        : [comparePromptSet(o.max_new_tokens, tokenizer)];
  const loads: ServeLoad[] = [
    ...(o.concurrency ?? []).map((concurrency): ServeLoad => ({ mode: 'concurrency', concurrency })),
    ...(o.request_rate ?? []).map((requestRate): ServeLoad => ({ mode: 'rate', requestRate, burstiness: o.burstiness })),
  ];
  if (loads.length === 0) loads.push({ mode: 'synchronous' });
  const model = o.served_model ?? (await onlyModel(o.url, o.api_key, o.timeout_s));
  const options: ServeBenchOptions = {
    url: o.url,
    model,
    ...(o.api_key !== undefined ? { apiKey: o.api_key } : {}),
    sets,
    loads,
    numPrompts: o.num_prompts,
    maxSeconds: o.max_seconds,
    timeoutS: o.timeout_s,
    seed: o.seed,
    ignoreEos: o.ignore_eos ?? false,
    maxTokens: o.max_new_tokens,
    ...(o.slo ? { slo: o.slo } : {}),
    ...(tokenizer ? { tokenizer } : {}),
    prompts: o.prompts_file !== undefined ? 'file' : o.prompt_lengths !== undefined ? 'fixed-length' : 'compare-prompts',
    ...(o.prompts_file !== undefined ? { promptsFile: o.prompts_file } : {}),
  };
  const test = await probe(options);
  if (test.error) {
    const culprit = test.error.status === 404 && o.served_model !== undefined ? '--served_model' : '--url';
    throw new UsageError(culprit, `the first request (a test, not measured) to ${o.url}/v1/completions for model "${model}" failed: ${errorKey(test.error)}: ${test.error.message}`);
  }
  if (!tokenizer && test.usage?.completionTokens === undefined) {
    throw new UsageError('--tokenizer', `${o.url} sent no usage with its stream (asked for with stream_options.include_usage), so output tokens cannot be counted: give --tokenizer DIR, the model's checkpoint directory`);
  }

  const progress = progressSink(io.err, io.terminal);
  // A second Ctrl-C stops at once: the points that finished are still written, marked interrupted.
  let live: ServeBenchReport | undefined;
  io.onAbort?.(() => {
    if (!live) return;
    progress.stop();
    const partial: ServeBenchReport = { ...live, status: 'interrupted', points: [...live.points] };
    const written = writeServeBenchReports(partial, reportDir);
    writeSummary(summaryTargets, serveBenchSummaryMd(partial, written));
    io.err(`interrupted: ${partial.points.length} finished point${partial.points.length === 1 ? '' : 's'} written to ${written.json}`);
  });
  const runs = options.sets.length * options.loads.length * options.numPrompts;
  let before = 0;
  let lastPoint = 0;
  const report = await runServeBench(
    options,
    (p) => {
      if (p.point !== lastPoint) {
        // Requests a point planned but did not send (--max_seconds, Ctrl-C) leave the count.
        before = (p.point - 1) * options.numPrompts;
        lastPoint = p.point;
      }
      progress.update({ run: Math.min(runs, before + p.answered), runs, point: p.point, points: p.points, what: p.what, step: p.answered === 0 ? 'warm-up' : `run ${p.answered}/${p.planned}` });
    },
    io.interrupted,
    (r) => (live = r),
  ).finally(() => {
    io.onAbort?.(undefined);
    progress.stop();
  });
  for (const p of report.points) for (const line of summaryLines(p, report)) io.out(line);
  const written = writeServeBenchReports(report, reportDir);
  io.out(`reports: ${written.json}, ${written.html}`);
  const summary = writeSummary(summaryTargets, serveBenchSummaryMd(report, written));
  if (summary) io.out(`summary: ${summary}`);
  return report.status === 'interrupted' ? 130 : 0;
}

/** Writes `<timestamp>-<random>-<served model>-bench-serve.json` and its `.html` into `dir` (which exists), both new files. */
export function writeServeBenchReports(report: ServeBenchReport, dir: string): { json: string; html: string } {
  validateServeBenchReport(report);
  // Render before touching the disk: a rendering error leaves nothing behind.
  const json = `${JSON.stringify(report, null, 2)}\n`;
  const html = renderServeBenchHtml(report);
  const out = writeReportFiles(dir, reportTimestamp(report.createdAt), `${modelBasename(report.target.model)}-bench-serve`, [
    { suffix: '.json', text: json },
    { suffix: '.html', text: html },
  ]);
  return { json: out['.json']!, html: out['.html']! };
}
