/** The architecture registry: model_type -> spec. */
import { UnsupportedError } from '../errors.js';
import { bloom } from './bloom.js';
import { gemma2 } from './gemma2.js';
import { gpt2 } from './gpt2.js';
import { gptNeox } from './gpt_neox.js';
import { gptj } from './gptj.js';
import { llama } from './llama.js';
import { opt } from './opt.js';
import { phi3 } from './phi3.js';
import type { ArchSpec } from './spec.js';

export const specs: readonly ArchSpec[] = [gpt2, opt, bloom, llama, gptNeox, gptj, phi3, gemma2];

export const supportedModelTypes: readonly string[] = specs.flatMap((s) => s.modelTypes);

export function archFor(modelType: string, culprit: string): ArchSpec {
  const spec = specs.find((s) => s.modelTypes.includes(modelType));
  if (!spec) {
    throw new UnsupportedError(culprit, `model_type "${modelType}" is not supported (supported: ${supportedModelTypes.join(', ')})`);
  }
  return spec;
}

export type { ArchSpec, ArchTraits, ModelDims } from './spec.js';
