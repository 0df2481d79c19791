/**
 * A Hugging Face causal-LM checkpoint directory, opened: config, generation config,
 * architecture spec and dimensions, and a lazy view of its weights.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { archFor } from './index.js';
import { checkConfigKeys, COMMON_KEYS, GENERATION_KEYS } from './config-keys.js';
import type { ArchSpec, ModelDims, WeightView } from './spec.js';
import { InputError } from '../errors.js';
import { positiveNumber, readGenerationConfig, readJsonObject, readModelConfig, tokenIds, type RawConfig } from '../checkpoint/config.js';
import { openWeightFiles, readWeightFiles, type WeightFiles } from '../checkpoint/description.js';
import { INDEX_NAME, openCheckpointTensors, SINGLE_WEIGHTS_NAME, type OpenOptions, type TensorStore } from '../checkpoint/safetensors.js';
import { readSavedManifest, SAVED_MANIFEST, type SavedManifest } from '../checkpoint/saved.js';

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
  /** NaN/Inf weights are read as they are instead of refused (--allow_nonfinite). */
  allowNonfinite: boolean;
  /** Where the weights are when not in `dir` (--checkpoint_path): the listing and its shards. */
  weights?: WeightFiles;
  /** A saved injected model (--save_mp_checkpoint_path): only the engine that saved it reads its weights. */
  saved?: SavedManifest;
}

export interface OpenCheckpointOptions {
  allowNonfinite?: boolean;
  /** --checkpoint_path: a checkpoint description or safetensors index listing the weight shards (config and tokenizer stay in the checkpoint directory). */
  checkpointPath?: string;
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
export function openCheckpoint(dirArg: string, opts: OpenCheckpointOptions = {}): Checkpoint {
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
  const saved = readSavedManifest(dir);
  if (saved && opts.checkpointPath !== undefined) throw new InputError('--checkpoint_path', `${dir} holds a saved injected model (${SAVED_MANIFEST}) with weights of its own; drop --checkpoint_path`);
  const weights = opts.checkpointPath !== undefined ? readWeightFiles(opts.checkpointPath) : undefined;
  if (weights) {
    // Listed shards: every tensor the model reads is in one of them (named with the listing), then as below.
    const store = openWeightFiles(weights);
    try {
      checkListedWeights(store, weights, config, spec, dims);
      checkWeightsCoverConfig(store, config, configPath, spec, dims);
    } finally {
      store.close();
    }
  } else if (existsSync(join(dir, SINGLE_WEIGHTS_NAME)) || existsSync(join(dir, INDEX_NAME))) {
    // Without weight files there is nothing to hold the config against yet: openWeights refuses it.
    const store = openCheckpointTensors(dir);
    try {
      checkWeightsCoverConfig(store, config, configPath, spec, dims);
    } finally {
      store.close();
    }
  }
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
    allowNonfinite: opts.allowNonfinite ?? false,
    ...(weights ? { weights } : {}),
    ...(saved ? { saved } : {}),
  };
}

/** Every weight view of the model (globals, then each layer's), walked from the spec's tables. */
function weightSources(value: unknown, out: string[] = []): string[] {
  if (typeof value !== 'object' || value === null) return out;
  const source = (value as { source?: unknown }).source;
  if (typeof source === 'string') out.push(source);
  else for (const v of Object.values(value)) weightSources(v, out);
  return out;
}

/**
 * With --checkpoint_path, a tensor the model reads that no listed shard holds is the listing's
 * fault (a shard left out), not config.json's: refused naming the listing and the tensor.
 * Bounded as checkWeightsCoverConfig is: a config promising more layers than there are tensors
 * is left to it.
 */
function checkListedWeights(store: TensorStore, w: WeightFiles, config: RawConfig, spec: ArchSpec, dims: ModelDims): void {
  const names = new Set(store.names());
  if (dims.numLayers > names.size) return;
  const found = (s: string) => [s, ...spec.weightPrefixes.map((p) => p + s)].some((n) => names.has(n));
  const views = [spec.globals(dims, config), ...Array.from({ length: dims.numLayers }, (_, i) => spec.layer(i, dims, config))];
  for (const s of weightSources(views)) {
    if (!found(s)) {
      const also = spec.weightPrefixes.map((p) => `"${p}${s}"`).join(', ');
      throw new InputError(w.source, `no listed shard holds tensor "${s}"${also ? ` (nor ${also})` : ''}; the ${w.files.length} shard(s) listed hold ${names.size} tensors`);
    }
  }
}

/** The config.json field a dimension came from (the first of `keys` present), for refusals. */
function fieldOf(config: RawConfig, configPath: string, keys: string[]): string {
  return `${configPath}: ${keys.find((k) => config[k] !== undefined && config[k] !== null) ?? keys[0]!}`;
}

/**
 * The dimensions config.json promises, held against the tensors the safetensors headers list,
 * before anything is sized from them (graphs, KV caches, GPU buffers): every layer's weights
 * exist, and the token embedding is [vocab_size, hidden]. Headers only: no tensor data is read,
 * and the layer walk is bounded by the number of tensors, so `num_hidden_layers: 1e9` is
 * refused at once, naming the field.
 */
function checkWeightsCoverConfig(store: TensorStore, config: RawConfig, configPath: string, spec: ArchSpec, dims: ModelDims): void {
  const names = new Set(store.names());
  const resolve = (view: WeightView): string | undefined =>
    [view.source, ...spec.weightPrefixes.map((p) => p + view.source)].find((n) => names.has(n));
  const layerField = fieldOf(config, configPath, ['n_layer', 'num_hidden_layers']);
  // Every layer owns at least one tensor of its own.
  const held = (i: number): string | undefined => {
    const lw = spec.layer(i, dims, config);
    for (const v of [lw.q.weight, lw.o.weight, lw.up.weight, lw.down.weight, lw.postAttentionNorm.weight]) {
      if (!resolve(v)) return v.source;
    }
    return undefined;
  };
  if (dims.numLayers > names.size) {
    let n = 0;
    while (n < names.size && !held(n)) n++;
    throw new InputError(layerField, `promises ${dims.numLayers} layers, but the weights hold ${names.size} tensors in all (${n} layers' worth)`);
  }
  for (let i = 0; i < dims.numLayers; i++) {
    const missing = held(i);
    if (missing) throw new InputError(layerField, `promises ${dims.numLayers} layers, but the weights have no tensor "${missing}" (layer ${i})`);
  }
  const embed = spec.globals(dims, config).embedTokens;
  const name = resolve(embed);
  if (!name) return; // named by the export/upload, with the prefixes tried
  const shape = store.info(name).shape;
  if (shape.length !== 2) return; // named by the export/upload
  if (shape[0] !== dims.vocabSize) {
    throw new InputError(fieldOf(config, configPath, ['vocab_size']), `is ${dims.vocabSize}, but "${name}" has ${shape[0]} rows (shape [${shape.join(', ')}])`);
  }
  if (shape[1] !== dims.embedDim) {
    const keys = dims.embedDim !== dims.hiddenSize ? ['word_embed_proj_dim'] : ['n_embd', 'hidden_size', 'n_embed'];
    throw new InputError(fieldOf(config, configPath, keys), `is ${dims.embedDim}, but "${name}" has ${shape[1]} columns (shape [${shape.join(', ')}])`);
  }
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

/** The weights, held against the config again (headers only: cheap), since the files may have changed since openCheckpoint. */
export function openWeights(ckpt: Checkpoint): TensorStore {
  if (ckpt.saved) throw notCheckpointWeights(ckpt);
  const opts: OpenOptions = { allowNonfinite: ckpt.allowNonfinite };
  const store = ckpt.weights ? openWeightFiles(ckpt.weights, opts) : openCheckpointTensors(ckpt.dir, opts);
  try {
    checkWeightsCoverConfig(store, ckpt.config, ckpt.configPath, ckpt.spec, ckpt.dims);
  } catch (e) {
    store.close();
    throw e;
  }
  return store;
}

/** What a saved injected model answers to anything that wants the checkpoint's own tensors (a reference pipeline, an export). */
export function notCheckpointWeights(ckpt: Checkpoint): InputError {
  const s = ckpt.saved!;
  return new InputError(ckpt.dir, `holds ${s.engine === 'wgsl' ? "the WGSL engine's" : "the ORT-injected pipeline's"} saved ${s.dtype} model (${SAVED_MANIFEST}), not a checkpoint's tensors: only that pipeline runs it (the reference needs the source checkpoint, ${s.source.dir})`);
}

/** Bytes of tensor data the checkpoint's weights hold on disk (headers only are read); a saved model's source's. */
export function weightBytes(ckpt: Checkpoint): number {
  if (ckpt.saved) return ckpt.saved.sourceWeightBytes;
  const store = openWeights(ckpt);
  try {
    return store.names().reduce((a, n) => a + store.info(n).byteLength, 0);
  } finally {
    store.close();
  }
}
