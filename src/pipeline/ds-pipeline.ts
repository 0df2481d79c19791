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
import { HfPipeline } from './hf.js';
import { InjectedPipeline } from './injected.js';
import { ReferencePipeline } from './reference.js';
import { defaultDtype, type DType, type Device, type TextGenerationPipeline } from './types.js';
import { WgslPipeline } from './wgsl.js';

export interface PipelineChoice {
  device: Device;
  dtype: DType;
  maxTokens: number;
  /** The plain library, as the seed's --hf_baseline: transformers.js, or with reference 'hf' Hugging Face transformers itself. */
  hfBaseline?: boolean;
  reference?: ReferenceKind;
  useKernel?: boolean;
  /** The injected backend; default wgsl on webgpu, ort elsewhere. */
  kernels?: 'ort' | 'wgsl';
  /** ORT-injected int8/int4: MatMulNBits' accuracy_level (see InjectionPlan). */
  accuracyLevel?: 0 | 4;
}

/** Which library runs the reference: transformers.js on fusegen's plain export, or Hugging Face transformers (PyTorch) in Python. */
export type ReferenceKind = 'transformersjs' | 'hf';

/** The reference pipeline: the one place that picks its library (generate --hf_baseline, compare). */
export function createReference(kind: ReferenceKind, ckpt: Checkpoint, o: { device: Device; dtype: DType; maxTokens: number }): Promise<TextGenerationPipeline> {
  return kind === 'hf' ? HfPipeline.create(ckpt, { dtype: o.dtype, maxTokens: o.maxTokens }) : ReferencePipeline.create(ckpt, o);
}

/** As the seed: --hf_baseline is the plain library; otherwise fusegen's engine, injected or not. */
export async function createPipeline(ckpt: Checkpoint, o: PipelineChoice): Promise<TextGenerationPipeline> {
  if (o.hfBaseline && o.useKernel) throw new UsageError('--hf_baseline', 'runs the reference pipeline without kernel injection; drop --use_kernel or --hf_baseline');
  if (o.kernels === 'wgsl' && o.device !== 'webgpu') throw new UsageError('--kernels', 'wgsl runs on --device webgpu');
  if (o.hfBaseline) return createReference(o.reference ?? 'transformersjs', ckpt, o);
  if (o.useKernel && (o.kernels ?? (o.device === 'webgpu' ? 'wgsl' : 'ort')) === 'wgsl') return WgslPipeline.create(ckpt, o);
  return InjectedPipeline.create(ckpt, { ...o, fusions: o.useKernel ? ALL_FUSIONS : NO_FUSIONS });
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
    const pipeline = await createPipeline(openCheckpoint(o.model), { ...o, device, dtype: o.dtype ?? defaultDtype(device), maxTokens: o.maxTokens ?? 1024 });
    const call = async (inputs: string | string[], c: { numTokens?: number; doSample?: boolean; seed?: number } = {}) => {
      const r = await pipeline.generate({ prompts: typeof inputs === 'string' ? [inputs] : inputs, maxNewTokens: c.numTokens ?? 100, doSample: c.doSample ?? false, seed: c.seed ?? 0 });
      return r.sequences.map((s) => s.text);
    };
    return Object.assign(call, { pipeline, dispose: () => pipeline.dispose() });
  },
};
