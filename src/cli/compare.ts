/**
 * `fusegen compare`: DeepSpeed's ds-hf-compare.py, grown into a gate. Prints the seed's
 * lines, then a summary table; writes JSON and HTML reports; exit 0 when every prompt
 * matches or is tolerated (and throughput holds against --baseline), 1 otherwise.
 */
import { notCheckpointWeights, openCheckpoint } from '../arch/checkpoint.js';
import { checkSavedRun, checkSaveTarget } from '../pipeline/saved.js';
import { descriptionDir } from '../checkpoint/description.js';
import { readJsonObject } from '../checkpoint/config.js';
import { ensureDefaultModel } from '../../fixtures/checkpoints.js';
import { COMPARE_PROMPTS } from '../../fixtures/prompts.js';
import { candidateBackend, candidatePipeline, checkBaseline, interruptedReport, runCompare, summaryTable } from '../../compare/run.js';
import { CapacityError, InputError, UnsupportedError, UsageError } from '../errors.js';
import { checkWeightShapes } from '../graph/export.js';
import { parameterCount } from '../pipeline/common.js';
import { checkLlamaCpp, llamaCppBackendFor } from '../pipeline/llamacpp.js';
import { engineOf, type ReferenceKind } from '../pipeline/ds-pipeline.js';
import { defaultDtype, defaultKernelsHelp, type DType, type Device, type Kernels } from '../pipeline/types.js';
import type { CompareReport } from '../report/compare-report.js';
import { validateCompareReport } from '../report/compare-validate.js';
import { prepareOutputDir, writeCompareReports } from '../report/write.js';
import { compareSummaryMd } from '../report/summary-md.js';
import { accuracyLevelOption, allowNonfiniteOption, checkAccuracyLevel, checkDtype, checkKvBudget, decimalAtLeast, dtypeOption, intAtLeast, kernelsFor, oneOf, text, type AbortWriter, type Engine, type OptionTable } from './options.js';
import { checkpointPathOption, localRankOption, openModel, otherRankLine, checkWorldSize, saveOption, useMetaTensorOption, worldSizeOption } from './load-options.js';
import { checkDevice, checkPrompts } from './validate.js';
import { normalizeServerUrl } from '../remote/completions.js';
import { logprobToleranceFor } from '../../compare/tolerance.js';
import { prepareSummaryTargets, summaryMdOption, writeSummary, type SummaryTargets } from './summary.js';

export interface CompareCliOptions {
  model: string | undefined;
  checkpoint_path: string | undefined;
  use_meta_tensor: boolean;
  candidate_model: string | undefined;
  dtype: DType | undefined;
  num_inputs: number;
  min_length: number;
  max_length: number;
  print_outputs: boolean;
  use_kernel: boolean;
  reference: ReferenceKind;
  kernels: Kernels | undefined;
  accuracy_level: 0 | 4 | undefined;
  device: Device;
  batch_size: number;
  report_dir: string;
  summary_md: string | undefined;
  baseline: string | undefined;
  max_regression: number;
  speed_repeats: number;
  local_rank: number;
  world_size: number;
  save_mp_checkpoint_path: string | undefined;
  allow_nonfinite: boolean;
  reference_url: string | undefined;
  candidate_url: string | undefined;
  served_model: string | undefined;
  api_key: string | undefined;
  candidate: 'llamacpp' | undefined;
}

export const compareOptions: OptionTable<CompareCliOptions> = {
  model: { flag: 'model', arg: 'dir', help: 'checkpoint for the reference', defaultHelp: 'the embedded tiny OPT with random weights', parse: text },
  checkpoint_path: checkpointPathOption,
  use_meta_tensor: useMetaTensorOption,
  candidate_model: { flag: 'candidate_model', arg: 'dir', help: 'run the optimized side on another checkpoint of the same architecture (edited, quantized, fine-tuned)', defaultHelp: '--model', parse: text },
  dtype: dtypeOption(['ort', 'wgsl'], 'the candidate runs it, the reference float32; float16, int8 and int4 are judged against the reference\'s own error at that dtype (its floor: fusegen\'s plain graph on the reference checkpoint); default: float32 on cpu, float16 on gpu devices'),
  num_inputs: { flag: 'num_inputs', arg: 'n', help: "how many of the seed's 43 prompts", default: 1, parse: intAtLeast(1) },
  min_length: { flag: 'min_length', arg: 'n', help: 'minimum total tokens (prompt included), as HF min_length', default: 200, parse: intAtLeast(1) },
  max_length: { flag: 'max_length', arg: 'n', help: 'maximum total tokens (prompt included), as HF max_length', default: 300, parse: intAtLeast(2) },
  print_outputs: { flag: 'print_outputs', help: 'print both outputs, match and similarity per prompt', default: false },
  use_kernel: { flag: 'use_kernel', help: 'the optimized side uses kernel injection (else fusegen on the plain graph)', default: false },
  reference: { flag: 'reference', arg: 'library', help: "what runs the reference side: transformersjs (transformers.js on fusegen's plain ONNX export) or hf (Hugging Face transformers itself, PyTorch in python3 or $FUSEGEN_PYTHON, on cuda where torch sees a GPU, else cpu)", default: 'transformersjs', parse: oneOf<ReferenceKind>(['transformersjs', 'hf']) },
  kernels: { flag: 'kernels', arg: 'backend', help: 'with --use_kernel: ort or wgsl', defaultHelp: defaultKernelsHelp(), parse: oneOf<Kernels>(['ort', 'wgsl']) },
  accuracy_level: accuracyLevelOption,
  device: { flag: 'device', arg: 'name', help: 'cpu | webgpu | cuda', default: 'cpu', parse: oneOf<Device>(['cpu', 'webgpu', 'cuda']) },
  batch_size: { flag: 'batch_size', arg: 'n', help: 'prompts per batch', default: 1, parse: intAtLeast(1) },
  report_dir: { flag: 'report_dir', arg: 'dir', help: 'where the JSON and HTML reports go', default: 'reports', parse: text },
  summary_md: summaryMdOption,
  baseline: { flag: 'baseline', arg: 'file', help: 'an earlier compare JSON report of the same model, dtype, device, pipeline and batch size (another is refused): fail when decode speed fell significantly (95% bootstrap interval below 1) by more than --max_regression', parse: text },
  max_regression: { flag: 'max_regression', arg: 'pct', help: 'largest accepted drop in decode speed (median time per output token) against --baseline, percent (decimals allowed: 2.5)', default: 10, parse: decimalAtLeast(0) },
  speed_repeats: { flag: 'speed_repeats', arg: 'n', help: 'timed runs per pipeline after the correctness pass', default: 3, parse: intAtLeast(1) },
  local_rank: localRankOption,
  world_size: worldSizeOption,
  save_mp_checkpoint_path: { ...saveOption, help: `the candidate: ${saveOption.help}` },
  allow_nonfinite: allowNonfiniteOption,
  reference_url: { flag: 'reference_url', arg: 'url', help: "the reference is a model served over the OpenAI completions API at this base URL (vLLM, TGI, DeepSpeed-MII, llama.cpp's server, fusegen serve); --model still gives the tokenizer and the config, and the server's tokenizer must agree with it", parse: (raw, flag) => normalizeServerUrl(raw, `--${flag}`) },
  candidate_url: { flag: 'candidate_url', arg: 'url', help: 'the candidate is a model served over the OpenAI completions API at this base URL: compared on top-5 log-probabilities (teacher-forced where the server echoes the prompt\'s), or on tokens alone where it returns none', parse: (raw, flag) => normalizeServerUrl(raw, `--${flag}`) },
  served_model: { flag: 'served_model', arg: 'name', help: 'the model name requests to the server(s) carry', defaultHelp: 'the only model GET /v1/models lists', parse: text },
  api_key: { flag: 'api_key', arg: 'key', help: 'sent to the server(s) as Authorization: Bearer; never written to a report', parse: text },
  candidate: { flag: 'candidate', arg: 'engine', help: "llamacpp: the candidate is llama.cpp through node-llama-cpp's prebuilt binaries (--device cpu: its CPU build; --device webgpu: its Vulkan build, every layer on the GPU) on fusegen's GGUF export of --candidate_model or --model (float32 F32, float16 F16, int8 Q8_0, int4 Q4_0): a second opinion fusegen did not write", parse: oneOf(['llamacpp'] as const) },
};

/**
 * A served side replaces a pipeline fusegen would build: the flags that build it are refused
 * with it, as is --baseline (no speed is measured), and --model must be named (tokenizer and
 * config). A dtype without measured log-probability bounds is refused (logprobToleranceFor).
 */
function checkServedFlags(o: CompareCliOptions, dtype: DType): void {
  const urls = [o.reference_url !== undefined ? '--reference_url' : '', o.candidate_url !== undefined ? '--candidate_url' : ''].filter(Boolean);
  if (urls.length === 0) {
    if (o.served_model !== undefined) throw new UsageError('--served_model', 'names the model a server serves: add --reference_url or --candidate_url');
    if (o.api_key !== undefined) throw new UsageError('--api_key', 'is sent to a server: add --reference_url or --candidate_url');
    return;
  }
  const by = urls.join(' and ');
  if (o.model === undefined) throw new UsageError('--model', `is required with ${by}: the tokenizer and the config come from the checkpoint directory`);
  if (o.baseline !== undefined) throw new UsageError('--baseline', `compares decode speed, which is not measured with ${by} (a server answers each request whole)`);
  if (o.candidate_url !== undefined) {
    const local: Array<[string, boolean]> = [
      ['--candidate_model', o.candidate_model !== undefined],
      ['--use_kernel', o.use_kernel],
      ['--kernels', o.kernels !== undefined],
      ['--accuracy_level', o.accuracy_level !== undefined],
      ['--world_size', o.world_size > 1],
      ['--save_mp_checkpoint_path', o.save_mp_checkpoint_path !== undefined],
    ];
    const given = local.find(([, on]) => on);
    if (given) throw new UsageError(given[0], "builds fusegen's candidate pipeline; with --candidate_url the candidate is the served model");
  }
  if (o.reference_url !== undefined) {
    if (o.reference !== 'transformersjs') throw new UsageError('--reference', `picks the library of the in-process reference; with --reference_url the reference is the served model`);
    if (o.checkpoint_path !== undefined) throw new UsageError('--checkpoint_path', "gives the in-process reference's weights; with --reference_url the reference is the served model");
  }
  logprobToleranceFor(dtype);
}

function loadBaseline(file: string): { file: string; report: CompareReport } {
  const raw: unknown = readJsonObject(file);
  try {
    validateCompareReport(raw);
  } catch (e) {
    throw new InputError(file, `not a compare report: ${(e as Error).message}`);
  }
  return { file, report: raw };
}

/**
 * The one validation pass, before any export or run: every flag, the device, the report
 * directory, the summary's places (--summary_md, $GITHUB_STEP_SUMMARY) and the baseline, both
 * checkpoints (config, weight headers), the KV cache against memory, the tokenizer on the
 * prompts, and --max_length against the model.
 */
export async function validateCompare(o: CompareCliOptions): Promise<{ baseline: { file: string; report: CompareReport } | undefined; summary: SummaryTargets }> {
  const dtype = o.dtype ?? defaultDtype(o.device);
  otherRankLine(o.local_rank, o.world_size);
  checkServedFlags(o, dtype);
  if (o.candidate !== undefined) {
    // llama.cpp replaces fusegen's candidate pipeline: the flags that build or time that one do not apply.
    const other = ([['--use_kernel', o.use_kernel], ['--kernels', o.kernels !== undefined], ['--accuracy_level', o.accuracy_level !== undefined], ['--world_size', o.world_size > 1], ['--save_mp_checkpoint_path', o.save_mp_checkpoint_path !== undefined], ['--candidate_url', o.candidate_url !== undefined], ['--baseline', o.baseline !== undefined]] as const).find(([, on]) => on);
    if (other) throw new UsageError(other[0], 'does not apply to --candidate llamacpp (llama.cpp through node-llama-cpp)');
    llamaCppBackendFor(o.device); // cpu: llama.cpp's CPU build; webgpu: its Vulkan build; cuda refused
    if (dtype === 'int4') throw new UnsupportedError('--dtype', "int4: llama.cpp's Q4_0 is not fusegen's int4, so the floor compare judges int4 against does not bound it (compare/tolerance.ts LLAMACPP_TOLERANCE); --candidate llamacpp compares float32, float16 and int8 (Q8_0)");
  }
  const candidate: Engine = engineOf(candidateBackend({ useKernel: o.use_kernel, kernels: kernelsFor(o.device, o.kernels), candidate: o.candidate }));
  if (o.world_size > 1 && candidate !== 'wgsl') throw new UsageError('--world_size', `${o.world_size} splits the candidate's layers across WebGPU devices, which only the WGSL engine does (--use_kernel --device webgpu)`);
  if (o.kernels && !o.use_kernel) throw new UsageError('--kernels', 'picks the kernel-injection backend: add --use_kernel');
  if (candidate === 'wgsl' && o.device !== 'webgpu') throw new UsageError('--kernels', 'wgsl runs on --device webgpu');
  if (o.min_length > o.max_length) throw new UsageError('--min_length', `${o.min_length} is above --max_length ${o.max_length}`);
  // A served side runs elsewhere: only the in-process side's engine is held to the dtype and the device.
  if (o.candidate_url === undefined) checkDtype(dtype, candidate);
  checkAccuracyLevel(o.accuracy_level, dtype, candidate === 'ort');
  checkDevice(o.device, [...(o.candidate_url === undefined ? [candidate] : []), ...(o.reference_url === undefined ? [o.reference] : [])]);
  prepareOutputDir('--report_dir', o.report_dir); // the reports' directory takes files
  const summary = prepareSummaryTargets(o.summary_md);
  const baseline = o.baseline ? loadBaseline(o.baseline) : undefined;
  if (o.checkpoint_path !== undefined && o.reference === 'hf') throw new UsageError('--checkpoint_path', "the hf reference loads the weights of --model's directory with from_pretrained; drop --checkpoint_path or --reference hf");
  const open = { allowNonfinite: o.allow_nonfinite };
  const ckpt = openModel(o.model, o.checkpoint_path, o.allow_nonfinite, ensureDefaultModel);
  const candidateCkpt = o.candidate_model ? openCheckpoint(o.candidate_model, open) : ckpt;
  // Every tensor against the shape its config implies (a config that disagrees with its tensors is bad input, not a failed run).
  checkWeightShapes(ckpt);
  checkWorldSize(o.world_size, candidateCkpt);
  const candidateRun = candidateBackend({ useKernel: o.use_kernel, kernels: kernelsFor(o.device, o.kernels), candidate: o.candidate, ...(o.world_size > 1 ? { worldSize: o.world_size } : {}) });
  if (ckpt.saved) throw notCheckpointWeights(ckpt); // the reference reads the source's tensors
  checkSavedRun(candidateCkpt, candidateRun, { device: o.device, dtype, maxTokens: o.max_length });
  if (o.save_mp_checkpoint_path !== undefined) checkSaveTarget(o.save_mp_checkpoint_path, candidateRun);
  if (candidateCkpt !== ckpt) checkWeightShapes(candidateCkpt);
  if (o.candidate !== undefined) checkLlamaCpp(candidateCkpt, dtype, o.device);
  if (baseline) checkBaseline(baseline, { candidateDir: candidateCkpt.dir, modelType: candidateCkpt.modelType, parameters: parameterCount(candidateCkpt), dtype, device: o.device, pipeline: candidatePipeline({ useKernel: o.use_kernel, kernels: candidate }), batchSize: o.batch_size });
  checkKvBudget(o.batch_size, o.max_length, ckpt.dims, undefined, { batch: '--batch_size', tokens: '--max_length' });
  const { lengths } = await checkPrompts(ckpt, COMPARE_PROMPTS.slice(0, o.num_inputs));
  const longest = Math.max(...lengths);
  if (longest >= o.max_length) throw new CapacityError('--max_length', `the longest prompt has ${longest} tokens; --max_length ${o.max_length} leaves no room to generate`);
  if (o.max_length > ckpt.dims.maxPositions) throw new CapacityError('--max_length', `${o.max_length} exceeds the model's ${ckpt.dims.maxPositions} positions (${ckpt.configPath})`);
  const window = ckpt.dims.slidingWindow;
  if (window !== undefined && o.max_length > window) throw new CapacityError('--max_length', `${o.max_length} tokens exceed the attention window of ${window} tokens (${ckpt.configPath}: sliding_window), which fusegen does not implement (runs must fit the window)`);
  return { baseline, summary };
}

/** The command line as the report records it: --api_key's value is never written. */
function redactKey(argv: string[]): string[] {
  return argv.map((a, i) => (argv[i - 1] === '--api_key' ? '***' : a.startsWith('--api_key=') ? '--api_key=***' : a));
}

export async function runCompareCommand(o: CompareCliOptions, argv: string[], io: { out: (l: string) => void; err: (l: string) => void; interrupted: () => boolean; onAbort?: (write: AbortWriter) => void }): Promise<number> {
  const other = otherRankLine(o.local_rank, o.world_size);
  if (other) {
    io.out(other);
    return 0;
  }
  const { baseline, summary } = await validateCompare(o);
  // A second Ctrl-C stops at once: the prompts that finished are still written, marked interrupted.
  let live: CompareReport | undefined;
  io.onAbort?.(() => {
    if (!live) return;
    const partial = interruptedReport(live, live.settings.numInputs);
    const written = writeCompareReports(partial, o.report_dir);
    writeSummary(summary, compareSummaryMd(partial, written));
    io.err(`interrupted: ${partial.prompts.length} finished prompt${partial.prompts.length === 1 ? '' : 's'} written to ${written.json}`);
  });
  const report = await runCompare(
    {
      model: o.model ?? (o.checkpoint_path !== undefined ? descriptionDir(o.checkpoint_path) : ensureDefaultModel()),
      ...(o.checkpoint_path !== undefined ? { checkpointPath: o.checkpoint_path } : {}),
      candidateModel: o.candidate_model,
      dtype: o.dtype ?? defaultDtype(o.device),
      device: o.device,
      useKernel: o.use_kernel,
      reference: o.reference,
      kernels: kernelsFor(o.device, o.kernels),
      numInputs: o.num_inputs,
      minLength: o.min_length,
      maxLength: o.max_length,
      batchSize: o.batch_size,
      printOutputs: o.print_outputs,
      speedRepeats: o.speed_repeats,
      ...(o.accuracy_level !== undefined ? { accuracyLevel: o.accuracy_level } : {}),
      ...(o.world_size > 1 ? { worldSize: o.world_size } : {}),
      ...(o.save_mp_checkpoint_path !== undefined ? { saveTo: o.save_mp_checkpoint_path } : {}),
      baseline,
      maxRegression: o.max_regression,
      ...(o.allow_nonfinite ? { allowNonfinite: true } : {}),
      ...(o.reference_url !== undefined ? { referenceUrl: o.reference_url } : {}),
      ...(o.candidate_url !== undefined ? { candidateUrl: o.candidate_url } : {}),
      ...(o.served_model !== undefined ? { servedModel: o.served_model } : {}),
      ...(o.api_key !== undefined ? { apiKey: o.api_key } : {}),
      ...(o.candidate !== undefined ? { candidate: o.candidate } : {}),
      command: ['fusegen', 'compare', ...redactKey(argv)],
    },
    { ...io, live: (r) => (live = r) },
  ).finally(() => io.onAbort?.(undefined));
  for (const line of summaryTable(report)) io.out(line);
  const written = writeCompareReports(report, o.report_dir);
  io.out(`reports: ${written.json}\n         ${written.html}`);
  // The summary says the verdict also when the gate fails or the run was interrupted.
  const md = writeSummary(summary, compareSummaryMd(report, written));
  if (md) io.out(`summary: ${md}`);
  if (report.status === 'interrupted') return 130;
  return report.gate.exitCode;
}
