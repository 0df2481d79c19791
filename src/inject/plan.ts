/**
 * What kernel injection does to a model, as switches: one per fusion, so each can be turned
 * off to blame it (ONNX Runtime's fusion options idea). All off gives the plain graph: the
 * same inputs, outputs and node names in standard ops only.
 */
import type { ModelDims } from '../arch/spec.js';
import type { FloatType } from '../graph/blocks.js';
import type { InjectionPolicy } from './policy.js';

export interface FusionSwitches {
  /** GroupQueryAttention over a KV cache in one max-length buffer (off: the same contract in standard ops). */
  attention: boolean;
  /** One MatMul for Q, K and V, fed packed to the attention op. */
  packedQkv: boolean;
  /** The residual add folded into the next norm: SkipLayerNormalization / SkipSimplifiedLayerNormalization. */
  skipNorm: boolean;
  /** Projection bias and GELU in one op: FastGelu (tanh) or BiasGelu (erf). */
  biasGelu: boolean;
  /** One MatMul for the gate and up projections of a gated MLP. */
  packedGateUp: boolean;
}

export const ALL_FUSIONS: FusionSwitches = { attention: true, packedQkv: true, skipNorm: true, biasGelu: true, packedGateUp: true };
export const NO_FUSIONS: FusionSwitches = { attention: false, packedQkv: false, skipNorm: false, biasGelu: false, packedGateUp: false };

/** Block-wise weight quantization of the linear layers through MatMulNBits (0: none). */
export interface Quantization {
  bits: 0 | 4 | 8;
  blockSize: number;
}

export interface InjectionPlan {
  fusions: FusionSwitches;
  quant: Quantization;
  dtype: FloatType;
  /**
   * MatMulNBits' accuracy_level: 0 multiplies in the activations' float type; 4 lets the kernel
   * quantize the activations to int8 per block and multiply in integers (ORT's CPU kernels need
   * it to be fast: 8-bit weights otherwise take a dequantizing fallback).
   */
  accuracyLevel: 0 | 4;
  /**
   * Ungated MLPs in column slices of the intermediate dimension, summed at the end (see
   * splitMlp in decoder.ts): split-K for the down projection, whose narrow output leaves ONNX
   * Runtime's WebGPU MatMul too few workgroups.
   */
  splitMlp: boolean;
  /** Softmax scale of attention; default 1/sqrt(head_dim). (compare's tests break it on purpose.) */
  attentionScale?: number;
  /** Whether the runtime's GroupQueryAttention applies its `softcap` attribute (default true). */
  fusedSoftcap?: boolean;
}

/** What the builder fused, counted per fused op type (printed and tested). */
export type FusionCounts = Record<string, number>;

/**
 * The switches a model can take under a plan. The unfused attention (the same contract in
 * standard ops) stands in where GroupQueryAttention would fail or be wrong: it rotates only heads
 * whose size is a multiple of 16 ("head_size shall be a multiple of 16"), and not every runtime
 * applies its softcap.
 */
export function fusionsFor(plan: Pick<InjectionPlan, 'fusions' | 'fusedSoftcap'>, dims: ModelDims, policy: InjectionPolicy): FusionSwitches {
  const { fusions } = plan;
  if (fusions.attention && policy.attention.positions === 'rotary' && dims.headDim % 16 !== 0) return { ...fusions, attention: false };
  if (fusions.attention && dims.attnSoftcap && plan.fusedSoftcap === false) return { ...fusions, attention: false };
  return fusions;
}
