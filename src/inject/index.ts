/** Injection policies by model_type. */
import { bloomPolicy } from './bloom.js';
import { gpt2Policy } from './gpt2.js';
import { llamaPolicy } from './llama.js';
import { optPolicy } from './opt.js';
import type { InjectionPolicy } from './policy.js';

const policies: Record<string, InjectionPolicy> = {
  gpt2: gpt2Policy,
  opt: optPolicy,
  bloom: bloomPolicy,
  llama: llamaPolicy,
  mistral: llamaPolicy,
  qwen2: llamaPolicy,
};

export function policyFor(modelType: string): InjectionPolicy {
  const p = policies[modelType];
  if (!p) throw new Error(`no injection policy for model_type ${modelType}`);
  return p;
}
