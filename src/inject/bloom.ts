/** BLOOM: ALiBi enters attention as an additive bias; tanh GELU becomes FastGelu. */
import type { InjectionPolicy } from './policy.js';

export const bloomPolicy: InjectionPolicy = {
  attention: { op: 'GroupQueryAttention', positions: 'alibi' },
  residualNorm: 'SkipLayerNormalization',
  activation: 'FastGelu',
  mlp: 'single',
};
