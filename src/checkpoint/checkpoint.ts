/**
 * A Hugging Face causal-LM checkpoint directory, opened: config, generation config,
 * architecture spec and dimensions, and a lazy view of its weights.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { archFor } from '../arch/index.js';
import { checkConfigKeys, COMMON_KEYS, GENERATION_KEYS } from '../arch/config-keys.js';
import type { ArchSpec, ModelDims } from '../arch/spec.js';
import { InputError } from '../errors.js';
import { positiveNumber, readGenerationConfig, readJsonObject, readModelConfig, tokenIds, type RawConfig } from './config.js';
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
  /** How sampled runs sample (generation_config.json, else Hugging Face's defaults); greedy runs ignore it. */
  sampling: Sampling;
}

export interface Sampling {
  temperature: number;
  /** 0: no top-k cut. */
  topK: number;
  topP: number;
}

/** Hugging Face's generate defaults: temperature 1, top-k 50, top-p 1. */
function readSampling(gen: RawConfig, path: string): Sampling {
  const temperature = positiveNumber(gen, path, 'temperature', 1);
  const topP = positiveNumber(gen, path, 'top_p', 1);
  if (topP > 1) throw new InputError(`${path}: top_p`, `expected at most 1, got ${topP}`);
  const k = gen['top_k'];
  if (k !== undefined && k !== null && (typeof k !== 'number' || !Number.isSafeInteger(k) || k < 0)) throw new InputError(`${path}: top_k`, `expected a non-negative integer, got ${JSON.stringify(k)}`);
  return { temperature, topK: typeof k === 'number' ? k : 50, topP };
}

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'] as const;

/** Reads and checks everything but the weights, which `openWeights` opens lazily. */
export function openCheckpoint(dirArg: string): Checkpoint {
  const dir = resolve(dirArg);
  const { config, path: configPath } = readModelConfig(dir);
  misreadForTests(config);
  const modelType = config['model_type'] as string;
  const spec = archFor(modelType, `${configPath}: model_type`);
  checkConfigKeys(config, configPath, { ...COMMON_KEYS, ...spec.configKeys });
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
  const generationPath = join(dir, 'generation_config.json');
  checkConfigKeys(generationConfig, generationPath, GENERATION_KEYS, 'generation config key');
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
    sampling: readSampling(generationConfig, generationPath),
  };
}

/**
 * FUSEGEN_TEST_MISREAD=<key>: drops a config.json key after reading, so that fusegen misreads
 * the checkpoint the way a bug would (the 5.x `rope_parameters` falling back to defaults). A
 * test switch for proving that an independent reference (`--reference hf`) catches what the
 * default reference, which shares fusegen's reading, cannot.
 */
function misreadForTests(config: RawConfig): void {
  const key = process.env['FUSEGEN_TEST_MISREAD'];
  if (key) delete config[key];
}

export function openWeights(ckpt: Checkpoint): TensorStore {
  return openCheckpointTensors(ckpt.dir);
}
