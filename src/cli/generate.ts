/**
 * `fusegen generate`: the seed's inference-test.py. Loads a pipeline, runs the seed's
 * prompts, prints the seed's lines, and with --test_performance the seed's statistics
 * beside correctly defined ones.
 */
import { weightBytes, type Checkpoint } from '../arch/checkpoint.js';
import { UnsupportedError, UsageError } from '../errors.js';
import { checkWeightShapes } from '../graph/export.js';
import { checkCapacity } from '../pipeline/common.js';
import { backendFor, createPipeline, engineOf, type Backend, type ReferenceKind } from '../pipeline/ds-pipeline.js';
import { defaultDtype, defaultKernelsHelp, type DType, type Device, type GenerateResult, type Kernels } from '../pipeline/types.js';
import { ensureDefaultModel } from '../../fixtures/checkpoints.js';
import { seedBatch } from '../../fixtures/prompts.js';
import { accuracyLevelOption, allowNonfiniteOption, checkAccuracyLevel, checkDtype, checkKvBudget, dtypeOption, intAtLeast, oneOf, text, type Engine, type OptionTable } from './options.js';
import { checkpointPathOption, checkWorldSize, localRankOption, openModel, otherRankLine, saveOption, useMetaTensorOption, worldSizeOption } from './load-options.js';
import { checkLlamaCpp } from '../pipeline/llamacpp.js';
import { checkSavedRun, checkSaveTarget, savedLine, saveInjected } from '../pipeline/saved.js';
import { checkDevice, checkPrompts } from './validate.js';
import { decodeStats, seedPerfLines, type RunTiming } from '../report/perf.js';
import { loadLine, measureLoad } from '../report/load.js';

export interface GenerateOptions {
  model: string | undefined;
  checkpoint_path: string | undefined;
  save_mp_checkpoint_path: string | undefined;
  batch_size: number;
  dtype: DType | undefined;
  hf_baseline: boolean;
  reference: ReferenceKind | undefined;
  use_kernel: boolean;
  max_tokens: number;
  max_new_tokens: number;
  greedy: boolean;
  use_meta_tensor: boolean;
  test_performance: boolean;
  local_rank: number;
  world_size: number;
  trust_remote_code: boolean;
  device: Device;
  kernels: Kernels | undefined;
  accuracy_level: 0 | 4 | undefined;
  seed: number;
  allow_nonfinite: boolean;
  engine: 'llamacpp' | undefined;
}

export const generateOptions: OptionTable<GenerateOptions> = {
  model: { flag: 'model', arg: 'dir', help: 'Hugging Face checkpoint directory', defaultHelp: 'the embedded tiny OPT with random weights, generated on first use', parse: text },
  checkpoint_path: checkpointPathOption,
  save_mp_checkpoint_path: saveOption,
  batch_size: { flag: 'batch_size', arg: 'n', help: 'batch size: the 8 seed prompts repeated to fill it', default: 1, parse: intAtLeast(1) },
  dtype: dtypeOption(['transformersjs', 'hf', 'ort', 'wgsl', 'llamacpp'], 'default: float16 as in the seed on gpu devices, float32 on cpu, where ONNX Runtime lacks most fp16 kernels'),
  hf_baseline: { flag: 'hf_baseline', help: 'the reference pipeline: transformers.js on the plain graph, or Hugging Face transformers with --reference hf (default: fusegen\'s loop on the plain graph)', default: false },
  reference: { flag: 'reference', arg: 'library', help: "with --hf_baseline: transformersjs or hf (Hugging Face transformers itself, PyTorch in python3 or $FUSEGEN_PYTHON, on cuda where torch sees a GPU, else cpu)", defaultHelp: 'transformersjs', parse: oneOf<ReferenceKind>(['transformersjs', 'hf']) },
  use_kernel: { flag: 'use_kernel', help: 'kernel injection: fused ONNX Runtime ops (GroupQueryAttention, SkipLayerNorm, FastGelu, packed projections)', default: false },
  max_tokens: { flag: 'max_tokens', arg: 'n', help: 'KV-cache capacity: prompt plus new tokens must fit', default: 1024, parse: intAtLeast(1) },
  max_new_tokens: { flag: 'max_new_tokens', arg: 'n', help: 'tokens to generate per prompt', default: 50, parse: intAtLeast(1) },
  greedy: { flag: 'greedy', help: 'greedy decoding (default: sampling, as in the seed)', default: false },
  use_meta_tensor: useMetaTensorOption,
  test_performance: { flag: 'test_performance', help: 'run 30 iterations (3 warm-up) and print latency, bandwidth and FLOP/s', default: false },
  local_rank: localRankOption,
  world_size: worldSizeOption,
  trust_remote_code: { flag: 'trust_remote_code', help: 'accepted for compatibility: fusegen never runs code from a checkpoint', default: false },
  device: { flag: 'device', arg: 'name', help: 'cpu | webgpu | cuda', default: 'cpu', parse: oneOf<Device>(['cpu', 'webgpu', 'cuda']) },
  kernels: { flag: 'kernels', arg: 'backend', help: 'with --use_kernel: ort (fused ONNX Runtime ops) or wgsl (fusegen\'s own WGSL kernels on Dawn)', defaultHelp: defaultKernelsHelp(), parse: oneOf<Kernels>(['ort', 'wgsl']) },
  accuracy_level: accuracyLevelOption,
  seed: { flag: 'seed', arg: 'n', help: 'seed for sampling', default: 42, parse: intAtLeast(0) },
  allow_nonfinite: allowNonfiniteOption,
  engine: { flag: 'engine', arg: 'name', help: "llamacpp: run the prompts on llama.cpp through node-llama-cpp's prebuilt binaries (--device cpu: its CPU build; --device webgpu: its Vulkan build, every layer on the GPU) on fusegen's GGUF export (float32 F32, float16 F16, int8 Q8_0, int4 Q4_0), as compare's --candidate llamacpp; a flag of its own, not a --kernels backend, since llama.cpp replaces fusegen's whole forward pass instead of injecting kernels into its graph", defaultHelp: "fusegen's pipelines, as the seed's flags pick them", parse: oneOf(['llamacpp'] as const) },
};

/**
 * --engine llamacpp replaces fusegen's pipelines: the flags that pick or build those are refused
 * (backendFor names them; saving has no llama.cpp form), before anything else, another rank's line included.
 */
function refuseEngineFlags(o: GenerateOptions): void {
  if (o.engine === undefined) return;
  backendOf(o);
  if (o.save_mp_checkpoint_path !== undefined) throw new UsageError('--save_mp_checkpoint_path', "does not apply to --engine llamacpp: it saves fusegen's kernel-injected model, and llama.cpp runs fusegen's GGUF export, which is cached already");
}

/** Flags the seed has that later work implements: refused, never silently ignored. */
function refuseUnavailable(o: GenerateOptions): void {
  refuseEngineFlags(o);
  otherRankLine(o.local_rank, o.world_size);
  if (o.checkpoint_path !== undefined && o.hf_baseline && o.reference === 'hf') throw new UsageError('--checkpoint_path', "the hf reference loads the weights of --model's directory with from_pretrained; drop --checkpoint_path or --reference hf");
  if (o.kernels && !o.use_kernel) throw new UsageError('--kernels', 'picks the kernel-injection backend: add --use_kernel');
  if (o.reference && !o.hf_baseline) throw new UsageError('--reference', 'picks the library of the --hf_baseline pipeline: add --hf_baseline');
  if (o.hf_baseline && o.use_kernel) throw new UsageError('--hf_baseline', 'runs the reference pipeline without kernel injection; drop --use_kernel or --hf_baseline');
}

type BackendFlags = Pick<GenerateOptions, 'hf_baseline' | 'reference' | 'use_kernel' | 'device' | 'kernels'> & Partial<Pick<GenerateOptions, 'accuracy_level' | 'world_size' | 'engine'>>;

/** What runs the prompts, as the one factory takes it: a reference library (--hf_baseline), the WGSL engine, fusegen's loop on ONNX Runtime, or llama.cpp (--engine llamacpp). */
export function backendOf(o: BackendFlags): Backend {
  return backendFor({
    device: o.device, hfBaseline: o.hf_baseline, reference: o.reference, useKernel: o.use_kernel, kernels: o.kernels,
    ...(o.accuracy_level !== undefined ? { accuracyLevel: o.accuracy_level } : {}), ...(o.world_size !== undefined ? { worldSize: o.world_size } : {}),
    ...(o.engine !== undefined ? { engine: o.engine } : {}),
  });
}

/** The engine that runs the prompts (the dtype table's column). */
export function engineFor(o: BackendFlags): Engine {
  return engineOf(backendOf(o));
}

/** The figures' label: the pipeline that actually ran. */
export function pipelineLabel(o: BackendFlags): string {
  switch (engineFor(o)) {
    case 'transformersjs':
      return 'reference pipeline (transformers.js)';
    case 'hf':
      return 'reference pipeline (Hugging Face transformers)';
    case 'wgsl':
      return 'WGSL engine';
    case 'ort':
      return o.use_kernel ? 'ORT-injected pipeline' : "plain pipeline (fusegen's loop, no kernel injection)";
    case 'llamacpp':
      return 'llamacpp pipeline (llama.cpp through node-llama-cpp)';
  }
}

export function resolveDtype(o: GenerateOptions): DType {
  return o.dtype ?? defaultDtype(o.device);
}

/**
 * The one validation pass, before any export or run: every flag, then the checkpoint (config,
 * weight headers), the KV cache against memory, the tokenizer on the seed's prompts, and the
 * lengths against --max_tokens and the model. Returns the opened checkpoint.
 */
export async function validateGenerate(o: GenerateOptions): Promise<{ ckpt: Checkpoint; dtype: DType }> {
  refuseUnavailable(o);
  const dtype = resolveDtype(o);
  const engine = engineFor(o);
  checkDtype(dtype, engine);
  checkAccuracyLevel(o.accuracy_level, dtype, engine === 'ort');
  checkDevice(o.device, [engine]);
  const ckpt = openModel(o.model, o.checkpoint_path, o.allow_nonfinite, ensureDefaultModel);
  checkWeightShapes(ckpt);
  if (engine === 'llamacpp') checkLlamaCpp(ckpt, dtype, o.device); // an architecture llama.cpp lacks, before the export
  checkSavedRun(ckpt, backendOf(o), { device: o.device, dtype, maxTokens: o.max_tokens });
  if (o.save_mp_checkpoint_path !== undefined) checkSaveTarget(o.save_mp_checkpoint_path, backendOf(o));
  checkWorldSize(o.world_size, ckpt);
  checkKvBudget(o.batch_size, o.max_tokens, ckpt.dims);
  const { lengths } = await checkPrompts(ckpt, seedBatch(Math.min(o.batch_size, 8)));
  checkCapacity(ckpt, o.max_tokens, Math.max(...lengths), o.max_new_tokens);
  return { ckpt, dtype };
}

export interface Io {
  out: (line: string) => void;
  /** Set when the user interrupts; loops stop at the next iteration boundary. */
  interrupted: () => boolean;
}

const DASHES = '-'.repeat(60);

export async function runGenerate(o: GenerateOptions, io: Io): Promise<number> {
  const t0 = performance.now();
  refuseEngineFlags(o);
  const other = otherRankLine(o.local_rank, o.world_size);
  if (other) {
    io.out(other);
    return 0;
  }
  const { ckpt, dtype } = await validateGenerate(o);
  const { value: pipe, load } = await measureLoad(() => createPipeline(ckpt, backendOf(o), { device: o.device, dtype, maxTokens: o.max_tokens }));
  const initMs = performance.now() - t0;
  try {
    // Saved before the runs: an interrupted run keeps it. Its line follows the seed's output.
    const notes: string[] = [];
    if (o.save_mp_checkpoint_path !== undefined) notes.push(savedLine(o.save_mp_checkpoint_path, await saveInjected(pipe, ckpt, o.save_mp_checkpoint_path)));
    const prompts = seedBatch(o.batch_size);
    const request = { prompts, maxNewTokens: o.max_new_tokens, doSample: !o.greedy, seed: o.seed };
    pipe.validate(request); // capacity errors before any output

    // The seed runs twice (the first is warm-up) and reports the second; 30 with --test_performance.
    const iterations = o.test_performance ? 30 : 2;
    const runs: RunTiming[] = [];
    let last: GenerateResult | undefined;
    for (let i = 0; i < iterations && !io.interrupted(); i++) {
      const t = performance.now();
      last = await pipe.generate(request);
      runs.push({ totalMs: performance.now() - t, result: last });
    }
    if (!last) {
      for (const line of notes) io.out(line);
      return 130;
    }

    io.out(`initialization time: ${initMs.toFixed(2)}ms`);
    io.out(`generation time is ${(runs[Math.min(1, runs.length - 1)]!.totalMs / 1000).toFixed(4)} sec`);
    for (const s of last.sequences) io.out(`\nin=${s.prompt}\nout=${s.text}\n${DASHES}`);
    if (o.test_performance) {
      for (const line of seedPerfLines(runs, o.max_new_tokens, ckpt.dims, dtype, o.batch_size)) io.out(line);
      for (const line of decodeStats(runs, pipe.info, o.batch_size, pipelineLabel(o))) io.out(line);
      io.out(loadLine(load, weightBytes(ckpt)));
    }
    // Where each rank ran, after the seed's lines (which parsers of its output expect first).
    if (o.world_size > 1) for (const ep of pipe.info.executionProviders) io.out(`world_size ${o.world_size}: ${ep}`);
    // Which llama.cpp build ran, and on what (its CPU build, or its Vulkan build on the named GPU).
    if (pipe.info.name === 'llamacpp') io.out(`llamacpp: ${pipe.info.executionProviders.join('; ')}`);
    for (const line of notes) io.out(line);
    if (io.interrupted()) {
      io.out(`interrupted: ${runs.length} of ${iterations} iterations finished; figures above cover those`);
      return 130;
    }
    io.out('Done !');
    return 0;
  } finally {
    await pipe.dispose();
  }
}
