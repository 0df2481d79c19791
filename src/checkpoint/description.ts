/**
 * `--checkpoint_path`: where a model's weights are, as the seed describes them. Either the
 * seed's checkpoint description (DeepSpeed's `checkpoints.json` / `ds_inference_config.json`:
 * `{"type": "ds_model", "checkpoints": [shard files relative to the JSON's directory], "version":
 * 1.0}`) or a Hugging Face `model.safetensors.index.json`, anywhere. Only safetensors shards are
 * read. Everything is checked before any shard is opened, and each refusal is one line naming
 * the file and the culprit: a path that leaves the directory, a missing shard, a shard listed
 * twice, a file that is not safetensors, an unknown key.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { InputError } from '../errors.js';
import { checkJsonBudget, HEADER_LIMITS, INDEX_NAME, openSafetensorsIndex, openShardFiles, repeatedKey, type OpenOptions, type TensorStore } from './safetensors.js';

/** The seed's name for a checkpoint description in a checkpoint directory (DeepSpeedExamples' utils.py). */
export const DESCRIPTION_NAME = 'ds_inference_config.json';

/** What a description's `type` may say: DeepSpeed's names for a Hugging Face state dict in files. */
const STATE_DICT_TYPES = ['ds_model', 'bloom'];
/** The keys of a description fusegen reads; any other is refused (nothing is ignored silently). */
const DESCRIPTION_KEYS = ['type', 'checkpoints', 'version', 'base_dir', 'tp_size', 'mp_size'];
const MAX_LISTING_BYTES = 100_000_000;

export interface WeightFiles {
  /** The file that lists the shards (absolute): a checkpoint description or a safetensors index. */
  source: string;
  kind: 'description' | 'index';
  /** The shard files, absolute, each once, in listed order. */
  files: string[];
}

const q = (s: string): string => JSON.stringify(s);

function statOf(p: string): 'file' | 'dir' | undefined {
  try {
    const st = statSync(p);
    return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : undefined;
  } catch {
    return undefined;
  }
}

/** `rel` inside `dir` (lexically: no absolute path, no `..` out of it), or undefined. */
function inside(dir: string, rel: string): string | undefined {
  if (isAbsolute(rel)) return undefined;
  const full = resolve(dir, rel);
  const back = relative(dir, full);
  return back === '' || back.startsWith('..') || isAbsolute(back) ? undefined : full;
}

/** The directory whose config and tokenizer go with `--checkpoint_path` when no `--model` is given. */
export function descriptionDir(pathArg: string): string {
  const path = resolve(pathArg);
  const kind = statOf(path);
  if (kind === undefined) throw new InputError(path, 'checkpoint description not found');
  return kind === 'dir' ? path : dirname(path);
}

/**
 * Reads `--checkpoint_path`: a description or index file, or a directory holding
 * ds_inference_config.json or model.safetensors.index.json. Checks every listed shard (inside
 * the directory, a .safetensors file that exists, listed once) without opening any.
 */
export function readWeightFiles(pathArg: string): WeightFiles {
  let path = resolve(pathArg);
  const kind = statOf(path);
  if (kind === undefined) throw new InputError(path, 'checkpoint description not found');
  if (kind === 'dir') {
    const found = [DESCRIPTION_NAME, INDEX_NAME].map((f) => join(path, f)).find((f) => statOf(f) === 'file');
    if (!found) throw new InputError(path, `holds neither ${DESCRIPTION_NAME} nor ${INDEX_NAME}: give --checkpoint_path the file that lists the shards`);
    path = found;
  }
  const size = statSync(path).size;
  if (size > MAX_LISTING_BYTES) throw new InputError(path, `is ${size} bytes, over the ${MAX_LISTING_BYTES}-byte limit for a checkpoint description`);
  const bytes = readFileSync(path);
  checkJsonBudget(bytes, path, 'checkpoint description', HEADER_LIMITS);
  const text = bytes.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(path, `malformed JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new InputError(path, 'expected a JSON object');
  const obj = json as Record<string, unknown>;
  const twice = repeatedKey(text);
  if (twice !== undefined) throw new InputError(path, `key ${q(twice)} appears twice`);
  if ('weight_map' in obj) {
    // A Hugging Face index: opening it checks its shards (inside its directory, present, each tensor once).
    const store = openSafetensorsIndex(path);
    try {
      return { source: path, kind: 'index', files: [...new Set(store.names().map((n) => store.info(n).file))] };
    } finally {
      store.close();
    }
  }
  if (!('checkpoints' in obj)) throw new InputError(path, `neither a checkpoint description ({"type", "checkpoints", "version"}) nor a safetensors index ({"weight_map"})`);
  return { source: path, kind: 'description', files: readDescription(obj, path) };
}

function readDescription(obj: Record<string, unknown>, path: string): string[] {
  for (const k of Object.keys(obj)) {
    if (!DESCRIPTION_KEYS.includes(k)) throw new InputError(path, `unknown key ${q(k)} (a checkpoint description has ${DESCRIPTION_KEYS.join(', ')})`);
  }
  const type = obj['type'];
  if (typeof type !== 'string') throw new InputError(path, `type: expected a string such as "ds_model", got ${JSON.stringify(type) ?? 'nothing'}`);
  if (type.toLowerCase() === 'megatron') throw new InputError(path, 'type "Megatron": Megatron-LM checkpoints are not read; fusegen reads Hugging Face state dicts in safetensors shards (type "ds_model" or "BLOOM")');
  if (!STATE_DICT_TYPES.includes(type.toLowerCase())) throw new InputError(path, `type ${q(type)}: expected "ds_model" or "BLOOM" (a Hugging Face state dict in shards)`);
  const version = obj['version'];
  if (version !== undefined && typeof version !== 'number' && typeof version !== 'string') throw new InputError(path, `version: expected a number or a string, got ${JSON.stringify(version)}`);
  for (const k of ['tp_size', 'mp_size']) {
    const v = obj[k];
    if (v !== undefined && v !== 1) throw new InputError(path, `${k}: ${JSON.stringify(v)}: checkpoints pre-sharded for tensor parallelism are not read (only ${k} 1)`);
  }
  const self = dirname(path);
  let base = self;
  const baseDir = obj['base_dir'];
  if (baseDir !== undefined) {
    if (typeof baseDir !== 'string' || baseDir === '') throw new InputError(path, `base_dir: expected a directory relative to ${self}, got ${JSON.stringify(baseDir)}`);
    const b = baseDir === '.' ? self : inside(self, baseDir);
    if (!b) throw new InputError(path, `base_dir ${q(baseDir)} leaves ${self}`);
    base = b;
  }
  const list = obj['checkpoints'];
  if (typeof list === 'object' && list !== null && !Array.isArray(list)) {
    throw new InputError(path, 'checkpoints: an object of tp/non_tp lists is a checkpoint pre-sharded for tensor parallelism, which fusegen does not read; list the safetensors shards');
  }
  if (!Array.isArray(list) || list.length === 0) throw new InputError(path, `checkpoints: expected a non-empty list of shard files, got ${JSON.stringify(list)}`);
  const files: string[] = [];
  const seen = new Map<string, number>();
  list.forEach((entry: unknown, i) => {
    const at = `checkpoints[${i}]`;
    if (typeof entry !== 'string' || entry === '') throw new InputError(path, `${at}: expected a file name, got ${JSON.stringify(entry)}`);
    const file = inside(base, entry);
    if (!file) throw new InputError(path, `${at} ${q(entry)} leaves ${base}: shards are named relative to the description's directory and stay in it`);
    const before = seen.get(file);
    if (before !== undefined) throw new InputError(path, `${at} ${q(entry)} is listed twice (also checkpoints[${before}])`);
    seen.set(file, i);
    if (!file.endsWith('.safetensors')) throw new InputError(path, `${at} ${q(entry)} is not a .safetensors file: fusegen reads safetensors shards only (no pickled .bin or .pt)`);
    if (statOf(file) !== 'file') throw new InputError(path, `${at} ${q(entry)} does not exist in ${base}`);
    files.push(file);
  });
  return files;
}

/** The listed shards as one store; a tensor in two shards is refused naming both. */
export function openWeightFiles(w: WeightFiles, opts: OpenOptions = {}): TensorStore {
  if (w.kind === 'index') return openSafetensorsIndex(w.source, opts);
  const base = dirname(w.source);
  return openShardFiles(w.source, w.source, w.files.map((file) => ({ file, shard: relative(base, file) })), opts);
}
