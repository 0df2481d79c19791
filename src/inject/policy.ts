/**
 * An injection policy says which fused ONNX Runtime op replaces which block (DeepSpeed's
 * replace policies as data). It is derived from the architecture's traits, never written per
 * architecture: a new spec gets its fusions from what it is.
 */
import type { ArchTraits } from '../arch/spec.js';

export interface InjectionPolicy {
  attention: {
    op: 'GroupQueryAttention';
    /**
     * How positions reach attention: `rotary` inside the op (cos/sin caches), `alibi` as an
     * additive attention_bias, `none` when learned positions were added to the embeddings.
     */
    positions: 'rotary' | 'alibi' | 'none';
  };
  /** The op that folds each residual add into the following norm. */
  residualNorm: 'SkipLayerNormalization' | 'SkipSimplifiedLayerNormalization';
  /** The op that fuses an ungated up projection's bias with its activation, if the activation has one. */
  activation: 'FastGelu' | 'BiasGelu' | null;
  /** `gated`: gate and up projections packed into one MatMul. */
  mlp: 'single' | 'gated';
}

/** Bias+activation ops of com.microsoft, by activation (ReLU and SiLU have none). */
const BIAS_ACTIVATION: Record<ArchTraits['activation'], InjectionPolicy['activation']> = {
  gelu_tanh: 'FastGelu',
  gelu_erf: 'BiasGelu',
  relu: null,
  silu: null,
};

export function policyFor(traits: ArchTraits): InjectionPolicy {
  return {
    attention: { op: 'GroupQueryAttention', positions: traits.position === 'learned' ? 'none' : traits.position },
    residualNorm: traits.norm === 'layernorm' ? 'SkipLayerNormalization' : 'SkipSimplifiedLayerNormalization',
    activation: traits.gatedMlp ? null : BIAS_ACTIVATION[traits.activation],
    mlp: traits.gatedMlp ? 'gated' : 'single',
  };
}
