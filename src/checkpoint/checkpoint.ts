/**
 * A Hugging Face causal-LM checkpoint directory, opened: config, generation config,
 * architecture spec and dimensions, and a lazy view of its weights.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { archFor } from '../arch/index.js';
import type { ArchSpec, ModelDims } from '../arch/spec.js';
import { InputError } from '../errors.js';
import { readGenerationConfig, readJsonObject, readModelConfig, tokenIds, type RawConfig } from './config.js';
import { openCheckpointTensors, type TensorStore } from './safetensors.js';

export interface Checkpoint {
  dir: string;
  config: RawConfig;
  configPath: string;
  generationConfig: RawConfig;
  modelType: string;
  spec: ArchSpec;
  dims: ModelDims;
  /** End-of-sequence ids from generation_config.json, else config.json. */
  eosTokenIds: number[];
}

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'] as const;

/** Reads and checks everything but the weights, which `openWeights` opens lazily. */
export function openCheckpoint(dirArg: string): Checkpoint {
  const dir = resolve(dirArg);
  const { config, path: configPath } = readModelConfig(dir);
  const modelType = config['model_type'] as string;
  const spec = archFor(modelType, `${configPath}: model_type`);
  const dims = spec.dims(config, configPath);
  const needsEven = spec.traits.position === 'rotary'; // rotate-half splits each head in two
  if (!Number.isInteger(dims.headDim) || (needsEven && dims.headDim % 2 !== 0)) {
    const field = ['num_attention_heads', 'n_head'].find((k) => config[k] !== undefined) ?? 'num_attention_heads';
    throw new InputError(`${configPath}: ${field}`, `hidden size ${dims.hiddenSize} / ${dims.numHeads} heads gives head dim ${dims.headDim}, expected ${needsEven ? 'an even' : 'an'} integer`);
  }
  for (const f of TOKENIZER_FILES) {
    if (!existsSync(join(dir, f))) throw new InputError(join(dir, f), 'file not found (fusegen needs the fast tokenizer files)');
    readJsonObject(join(dir, f));
  }
  const generationConfig = readGenerationConfig(dir);
  const eos = tokenIds(generationConfig, 'eos_token_id');
  return {
    dir,
    config,
    configPath,
    generationConfig,
    modelType,
    spec,
    dims,
    eosTokenIds: eos.length > 0 ? eos : tokenIds(config, 'eos_token_id'),
  };
}

export function openWeights(ckpt: Checkpoint): TensorStore {
  return openCheckpointTensors(ckpt.dir);
}
