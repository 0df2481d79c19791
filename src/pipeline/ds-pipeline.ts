/**
 * The seed's DSPipeline, for library users: one object that loads a checkpoint and is called
 * like a Hugging Face pipeline.
 *
 *   const pipe = await DSPipeline.create({ model: 'path/to/ckpt', dtype: 'float16', device: 'webgpu', useKernel: true });
 *   const texts = await pipe(['DeepSpeed is'], { numTokens: 50, doSample: false });
 *   await pipe.dispose();
 */
import { openCheckpoint, type Checkpoint } from '../arch/checkpoint.js';
import { UsageError } from '../errors.js';
import { ALL_FUSIONS, NO_FUSIONS } from '../inject/plan.js';
import type { Backend, PipelineRun, ReferenceKind } from './backend.js';
import type { Engine } from './dtypes.js';
import { HfPipeline } from './hf.js';
import { InjectedPipeline } from './injected.js';
import { llamaCppBackendFor, LlamaCppPipeline } from './llamacpp.js';
import { ReferencePipeline } from './reference.js';
import { defaultDtype, kernelsFor, type DType, type Device, type Kernels, type TextGenerationPipeline } from './types.js';
import { checkSavedRun } from './saved.js';
import { WgslPipeline } from './wgsl.js';

export type { Backend, PipelineRun, ReferenceKind } from './backend.js';

/** The engine a backend runs on (the dtype table's column). */
export function engineOf(b: Backend): Engine {
  return b.kind === 'reference' ? (b.reference ?? 'transformersjs') : b.kind;
}

/** The one constructor of pipelines: reference, ORT (injected or plain), WGSL, llama.cpp. */
export async function createPipeline(ckpt: Checkpoint, b: Backend, run: PipelineRun): Promise<TextGenerationPipeline> {
  const { device, dtype, maxTokens } = run;
  checkSavedRun(ckpt, b, run);
  switch (b.kind) {
    case 'reference':
      if (b.reference === 'hf') return HfPipeline.create(ckpt, { dtype, maxTokens });
      return ReferencePipeline.create(ckpt, { device, dtype, maxTokens, ...(b.profile ? { profile: true } : {}) });
    case 'ort':
      return InjectedPipeline.create(ckpt, {
        device,
        dtype,
        maxTokens,
        fusions: b.fusions ?? ALL_FUSIONS,
        ...(b.accuracyLevel !== undefined ? { accuracyLevel: b.accuracyLevel } : {}),
        ...(b.profile ? { profile: true } : {}),
        ...(b.fusedAttentionScale ? { fusedAttentionScale: b.fusedAttentionScale } : {}),
      });
    case 'wgsl':
      if (device !== 'webgpu') throw new UsageError('--kernels', 'wgsl runs on --device webgpu');
      return WgslPipeline.create(ckpt, { dtype, maxTokens, ...(b.worldSize ? { worldSize: b.worldSize } : {}) });
    case 'llamacpp':
      return LlamaCppPipeline.create(ckpt, { device, dtype, maxTokens });
  }
}

/** The seed's choice of pipeline, as generate's flags and DSPipeline's options say it. */
export interface PipelineChoice {
  device: Device;
  dtype: DType;
  maxTokens: number;
  /** The plain library, as the seed's --hf_baseline: transformers.js, or with reference 'hf' Hugging Face transformers itself. */
  hfBaseline?: boolean;
  reference?: ReferenceKind;
  useKernel?: boolean;
  /** The injected backend; default kernelsFor's (wgsl on webgpu, ort elsewhere). */
  kernels?: Kernels;
  /** ORT-injected int8/int4: MatMulNBits' accuracy_level (see InjectionPlan). */
  accuracyLevel?: 0 | 4;
  /** The seed's --world_size: the WGSL engine splits the layers across this many devices. */
  worldSize?: number;
  /** generate's --engine: llamacpp runs llama.cpp on fusegen's GGUF export (CPU build, or Vulkan on webgpu) in place of fusegen's pipelines; the flags above that pick or build those are refused with it. */
  engine?: 'llamacpp';
}

/** --engine llamacpp: llama.cpp replaces fusegen's pipelines, so the flags that pick or build those are refused, one line naming the flag. */
function llamaCppBackend(o: Omit<PipelineChoice, 'dtype' | 'maxTokens'>): Backend {
  const why = "does not apply to --engine llamacpp (llama.cpp through node-llama-cpp on fusegen's GGUF export, in place of fusegen's pipelines)";
  llamaCppBackendFor(o.device); // cpu: llama.cpp's CPU build; webgpu: its Vulkan build; cuda refused
  const other = ([['--hf_baseline', o.hfBaseline], ['--reference', o.reference !== undefined], ['--use_kernel', o.useKernel], ['--kernels', o.kernels !== undefined], ['--accuracy_level', o.accuracyLevel !== undefined], ['--world_size', (o.worldSize ?? 1) > 1]] as const).find(([, on]) => on);
  if (other) throw new UsageError(other[0], why);
  return { kind: 'llamacpp' };
}

/** As the seed: --hf_baseline is the plain library; otherwise fusegen's engine, injected (ORT or WGSL) or not; beyond the seed, --engine llamacpp is llama.cpp. */
export function backendFor(o: Omit<PipelineChoice, 'dtype' | 'maxTokens'>): Backend {
  if (o.engine === 'llamacpp') return llamaCppBackend(o);
  if (o.hfBaseline && o.useKernel) throw new UsageError('--hf_baseline', 'runs the reference pipeline without kernel injection; drop --use_kernel or --hf_baseline');
  if (o.kernels === 'wgsl' && o.device !== 'webgpu') throw new UsageError('--kernels', 'wgsl runs on --device webgpu');
  const wgsl = !o.hfBaseline && o.useKernel && kernelsFor(o.device, o.kernels) === 'wgsl';
  if ((o.worldSize ?? 1) > 1 && !wgsl) throw new UsageError('--world_size', `${o.worldSize} splits the layers across WebGPU devices, which only the WGSL engine does (--use_kernel --device webgpu); the other pipelines run on one device`);
  if (o.hfBaseline) return { kind: 'reference', reference: o.reference ?? 'transformersjs' };
  if (wgsl) return { kind: 'wgsl', ...((o.worldSize ?? 1) > 1 ? { worldSize: o.worldSize } : {}) };
  return { kind: 'ort', fusions: o.useKernel ? ALL_FUSIONS : NO_FUSIONS, ...(o.accuracyLevel !== undefined ? { accuracyLevel: o.accuracyLevel } : {}) };
}

export interface DSPipelineOptions extends Partial<PipelineChoice> {
  model: string;
}

export interface DSPipeline {
  (inputs: string | string[], o?: { numTokens?: number; doSample?: boolean; seed?: number }): Promise<string[]>;
  readonly pipeline: TextGenerationPipeline;
  dispose(): Promise<void>;
}

export const DSPipeline = {
  async create(o: DSPipelineOptions): Promise<DSPipeline> {
    const device = o.device ?? 'cpu';
    const pipeline = await createPipeline(openCheckpoint(o.model), backendFor({ ...o, device }), { device, dtype: o.dtype ?? defaultDtype(device), maxTokens: o.maxTokens ?? 1024 });
    const call = async (inputs: string | string[], c: { numTokens?: number; doSample?: boolean; seed?: number } = {}) => {
      const r = await pipeline.generate({ prompts: typeof inputs === 'string' ? [inputs] : inputs, maxNewTokens: c.numTokens ?? 100, doSample: c.doSample ?? false, seed: c.seed ?? 0 });
      return r.sequences.map((s) => s.text);
    };
    return Object.assign(call, { pipeline, dispose: () => pipeline.dispose() });
  },
};
