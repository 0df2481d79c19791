/** GPT-2: learned positions stay in the embeddings; tanh GELU becomes FastGelu. */
import type { InjectionPolicy } from './policy.js';

export const gpt2Policy: InjectionPolicy = {
  attention: { op: 'GroupQueryAttention', positions: 'none' },
  residualNorm: 'SkipLayerNormalization',
  activation: 'FastGelu',
  mlp: 'single',
};
