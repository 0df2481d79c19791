/** Llama family: rotary inside GroupQueryAttention, RMSNorm with skip, SwiGLU with packed gate/up. */
import type { InjectionPolicy } from './policy.js';

export const llamaPolicy: InjectionPolicy = {
  attention: { op: 'GroupQueryAttention', positions: 'rotary' },
  residualNorm: 'SkipSimplifiedLayerNormalization',
  activation: null,
  mlp: 'gated',
};
