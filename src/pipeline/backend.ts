/**
 * What runs a model and what it is asked to run, as data (createPipeline in ds-pipeline.ts builds
 * from them; saved.ts checks a saved model against them).
 */
import type { FusionSwitches } from '../inject/plan.js';
import type { DType, Device } from './types.js';

/** Which library runs the reference: transformers.js on fusegen's plain export, or Hugging Face transformers (PyTorch) in Python. */
export type ReferenceKind = 'transformersjs' | 'hf';

/**
 * What runs a model, as data: every pipeline generate, compare (its candidate and its triage
 * reruns) and bench build comes from one of these through createPipeline. A later backend is
 * one more kind here and one more case there.
 */
export type Backend =
  | {
      kind: 'reference';
      /** Default transformersjs. */
      reference?: ReferenceKind;
      /** transformers.js: profile every run (bench --profile). */
      profile?: boolean;
    }
  | {
      /** fusegen's loop on an ONNX Runtime graph: kernel-injected, or plain with every fusion off. */
      kind: 'ort';
      /** Default every fusion on (kernel injection); NO_FUSIONS gives the plain graph. */
      fusions?: FusionSwitches;
      /** int8/int4: MatMulNBits' accuracy_level (default the plan's). */
      accuracyLevel?: 0 | 4;
      /** Profile every run (bench --profile). */
      profile?: boolean;
      /** A deliberate defect for the tests of the gate and of triage: the fused attention op's softmax scale. */
      fusedAttentionScale?: number;
    }
  | {
      /** fusegen's own WGSL kernels on a Dawn WebGPU device (--device webgpu). */
      kind: 'wgsl';
      /** Devices the layers are split across (--world_size; default 1). */
      worldSize?: number;
    }
  | {
      /** llama.cpp through node-llama-cpp on fusegen's GGUF export of the checkpoint (its CPU build on cpu, its Vulkan build on webgpu; compare --candidate llamacpp). */
      kind: 'llamacpp';
    };

/** What every backend is asked to run: the device, the dtype and the KV-cache capacity. */
export interface PipelineRun {
  device: Device;
  dtype: DType;
  maxTokens: number;
}
