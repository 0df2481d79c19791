/**
 * An injection policy names, per architecture, which fused ONNX Runtime op replaces which
 * block (DeepSpeed's replace policies as data). The decoder builder reads only the policy.
 */

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
  /** The op that fuses the up projection's bias with its activation, if the activation has one. */
  activation: 'FastGelu' | 'BiasGelu' | null;
  /** `gated`: gate and up projections packed into one MatMul (SwiGLU). */
  mlp: 'single' | 'gated';
}
