/** OPT: learned positions stay in the embeddings; ReLU has no fused bias op. */
import type { InjectionPolicy } from './policy.js';

export const optPolicy: InjectionPolicy = {
  attention: { op: 'GroupQueryAttention', positions: 'none' },
  residualNorm: 'SkipLayerNormalization',
  activation: null,
  mlp: 'single',
};
