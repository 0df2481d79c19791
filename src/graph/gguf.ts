/**
 * GGUF export (issue 27): a checkpoint as the model file llama.cpp loads, with the metadata it
 * reads for the architecture (src/arch/gguf.ts: names, hyperparameters, tensors and layouts), the
 * tokenizer (tokens, scores or merges, token types, special ids, pre-tokenizer name) and fusegen's
 * own F16 conversion and Q8_0 / Q4_0 quantization (gguf-format.ts). Weights are read through the
 * project's safetensors reader, one tensor at a time. Exports are cached by content, as the ONNX
 * exports are (export.ts): the key is the checkpoint's content key plus the options and the
 * layout; a file is written under a temporary name and renamed when complete.
 *
 * The logit anchor (`logitAnchor`): llama.cpp's binding (node-llama-cpp) gives a position's
 * probabilities over the whole vocabulary, not its logits. The anchored export appends one token
 * whose embedding and LM-head rows are zero, so its logit is exactly 0 and its probability is
 * exp(-logZ): logit_i = ln p_i - ln p_anchor recovers every logit (pipeline/llamacpp.ts). The
 * anchor never enters a prompt and is never chosen; the other rows' arithmetic is unchanged.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Checkpoint } from '../arch/checkpoint.js';
import { openWeights } from '../arch/checkpoint.js';
import { GGUF_TOKENIZER_MODEL, ggufLayout, ggufPreTokenizer, type GgufLayout, type GgufTensorPlan, type GgufTokenizerKind, type GgufValue } from '../arch/gguf.js';
import { readJsonObject } from '../checkpoint/config.js';
import { InputError, UnsupportedError } from '../errors.js';
import { checkpointKey, defaultCacheDir } from './export.js';
import { encodeTensor, GGML_BLOCK, writeGguf, type GgmlTypeName, type GgufTensorInfo } from './gguf-format.js';
import { WeightSource } from './weights.js';

/** Bumped whenever what the writer puts in a file changes: part of every cache key. */
const GGUF_WRITER_VERSION = 1;

export interface GgufExportOptions {
  /** The projections' and LM head's type. */
  weights: 'F32' | 'F16' | 'Q8_0' | 'Q4_0';
  /** Embedding tables, and matrices whose rows are not whole blocks: default F32 (F16 with weights F16). */
  float?: 'F32' | 'F16';
  /** Append the zero-logit anchor token (see above). */
  logitAnchor?: boolean;
  /** Defaults to $FUSEGEN_CACHE, else ~/.cache/fusegen. */
  cacheDir?: string;
}

export interface GgufExport {
  path: string;
  key: string;
  cached: boolean;
  exportMs: number;
  /** The architecture llama.cpp runs it as. */
  architecture: string;
  /** Tokens in the file: the model's vocabulary, plus the anchor where there is one. */
  vocabSize: number;
  /** The anchor's id (the model's vocabulary size), where anchored. */
  anchorId?: number;
  /** How many tensors of each type the file holds. */
  types: Partial<Record<GgmlTypeName, number>>;
}

/** llama.cpp's general.file_type for each weights type (LlamaFileType). */
const FILE_TYPE: Record<GgufExportOptions['weights'], number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 };

/** llama.cpp's token types (llama_token_type). */
const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** The anchor token's text: no tokenizer produces it. */
const ANCHOR_TEXT = '<|fusegen_logit_anchor|>';

/** Writes (or finds in the cache) the GGUF file of `ckpt`. */
export function exportGguf(ckpt: Checkpoint, o: GgufExportOptions): GgufExport {
  const t0 = performance.now();
  if (ckpt.saved) throw new InputError(ckpt.dir, 'holds a saved injected model, not a checkpoint: the GGUF export reads the source checkpoint');
  const layout = ggufLayout(ckpt);
  const tokenizer = readTokenizer(ckpt);
  const cacheDir = o.cacheDir ?? defaultCacheDir();
  const float = o.float ?? (o.weights === 'F16' ? 'F16' : 'F32');
  const anchorId = o.logitAnchor ? ckpt.dims.vocabSize : undefined;
  const vocabSize = ckpt.dims.vocabSize + (o.logitAnchor ? 1 : 0);
  const store = openWeights(ckpt);
  try {
    const ws = new WeightSource(store, ckpt.spec.weightPrefixes, ckpt.dir);
    const quantized = o.weights === 'Q8_0' || o.weights === 'Q4_0';
    // A tied head is the embedding itself unless the head is quantized and the embedding kept float.
    const plans = layout.tensors.filter((t) => !(t.role === 'head' && layout.tiedHead && !quantized));
    const infos = plans.map((p): GgufTensorInfo => {
      const [rows, cols] = planShape(ws, p, o.logitAnchor === true);
      return { name: p.name, dims: cols === undefined ? [rows] : [cols, rows], type: tensorType(p, cols, o.weights, float) };
    });
    const metadata = [...generalMetadata(ckpt, layout, o, vocabSize, anchorId), ...tokenizerMetadata(tokenizer, ckpt, vocabSize, anchorId)];
    const key = cacheKey(ckpt, cacheDir, [GGUF_WRITER_VERSION, o.weights, float, anchorId ?? null, infos, metadata, ckpt.dims, ckpt.allowNonfinite]);
    const dir = join(cacheDir, 'gguf', key);
    const path = join(dir, 'model.gguf');
    const manifest = join(dir, 'fusegen-gguf.json');
    const types: Partial<Record<GgmlTypeName, number>> = {};
    for (const i of infos) types[i.type] = (types[i.type] ?? 0) + 1;
    const result = { path, key, architecture: layout.architecture, vocabSize, ...(anchorId !== undefined ? { anchorId } : {}), types };
    if (existsSync(manifest)) return { ...result, cached: true, exportMs: performance.now() - t0 };
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    try {
      const written = writeGguf(join(tmp, 'model.gguf'), metadata, infos, (i) => encodeTensor(readPlan(ws, plans[i]!, o.logitAnchor === true), infos[i]!.type));
      writeFileSync(join(tmp, 'fusegen-gguf.json'), JSON.stringify({ key, source: ckpt.dir, architecture: layout.architecture, weights: o.weights, float, anchorId: anchorId ?? null, types, ...written }, null, 2));
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    return { ...result, cached: false, exportMs: performance.now() - t0 };
  } finally {
    store.close();
  }
}

/** [rows, cols] of a plan in the torch layout (cols undefined for a vector), with the anchor row where it applies. */
function planShape(ws: WeightSource, p: GgufTensorPlan, anchor: boolean): [number, number | undefined] {
  if (p.values) return [p.values.length, undefined];
  const shapes = p.parts!.map((v) => ws.shape(v));
  const cols = shapes[0]!.length === 2 ? shapes[0]![1] : undefined;
  if (shapes.some((s) => s[1] !== cols)) throw new InputError(ws.resolve(p.parts![0]!.source), `the parts of ${p.name} have different widths`);
  const rows = shapes.reduce((a, s) => a + s[0]!, 0);
  return [rows + (anchor && p.vocabRows ? 1 : 0), cols];
}

/** A tensor's type: vectors F32; matrices and the head in the weights type where their rows are whole blocks; the rest `float`. */
function tensorType(p: GgufTensorPlan, cols: number | undefined, weights: GgufExportOptions['weights'], float: 'F32' | 'F16'): GgmlTypeName {
  if (p.role === 'vector' || cols === undefined) return 'F32';
  if (p.role === 'embedding') return float;
  return cols % GGML_BLOCK[weights].values === 0 ? weights : float;
}

/** A plan's values in the torch layout: its parts stacked by rows, the anchor's zero row appended, q/k heads interleaved. */
function readPlan(ws: WeightSource, p: GgufTensorPlan, anchor: boolean): Float32Array {
  if (p.values) return p.values;
  const parts = p.parts!.map((v) => ws.read(v));
  const width = ws.shape(p.parts![0]!)[1] ?? 1;
  const total = parts.reduce((a, x) => a + x.length, 0) + (anchor && p.vocabRows ? width : 0);
  let out: Float32Array = new Float32Array(total);
  let at = 0;
  for (const x of parts) {
    out.set(x, at);
    at += x.length;
  }
  if (p.interleaveHeads) out = interleaveHeads(out, p.interleaveHeads, width);
  return out;
}

/**
 * Rows of `heads` heads in rotate-half order (row j paired with j + D/2) to adjacent pairs (2i,
 * 2i + 1), as llama.cpp's converter permutes q and k for LLM_ARCH_LLAMA's rotary: within a head,
 * new row 2i is old row i and new row 2i + 1 old row i + D/2.
 */
export function interleaveHeads(x: Float32Array, heads: number, width: number): Float32Array {
  const rows = x.length / width;
  const D = rows / heads;
  if (!Number.isInteger(D) || D % 2 !== 0) throw new Error(`fusegen: ${rows} rows are not ${heads} heads of an even size`);
  const out = new Float32Array(x.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < D / 2; i++) {
      for (const k of [0, 1]) {
        const from = (h * D + k * (D / 2) + i) * width;
        out.set(x.subarray(from, from + width), (h * D + 2 * i + k) * width);
      }
    }
  }
  return out;
}

function generalMetadata(ckpt: Checkpoint, layout: GgufLayout, o: GgufExportOptions, vocabSize: number, anchorId: number | undefined): Array<[string, GgufValue]> {
  const arch = layout.architecture;
  const out: Array<[string, GgufValue]> = [
    ['general.architecture', { type: 'str', value: arch }],
    ['general.name', { type: 'str', value: basename(ckpt.dir) }],
    ['general.file_type', { type: 'u32', value: FILE_TYPE[o.weights] }],
  ];
  if (o.weights === 'Q8_0' || o.weights === 'Q4_0') out.push(['general.quantization_version', { type: 'u32', value: 2 }]);
  out.push(['general.source.url', { type: 'str', value: `file://${ckpt.dir}` }]);
  if (anchorId !== undefined) out.push(['fusegen.logit_anchor_id', { type: 'u32', value: anchorId }]);
  if (layout.writesVocabSize) out.push([`${arch}.vocab_size`, { type: 'u32', value: vocabSize }]);
  for (const [k, v] of layout.hparams) out.push([`${arch}.${k}`, v]);
  return out;
}

/** What the export reads of tokenizer.json and tokenizer_config.json. */
interface TokenizerFiles {
  path: string;
  kind: GgufTokenizerKind;
  /** Tokens by id (model vocabulary and added tokens). */
  byId: Map<number, { text: string; special?: boolean; added: boolean }>;
  merges: Array<[string, string]>;
  pre: string;
  unk?: string;
  addSpacePrefix: boolean;
  config: Record<string, unknown>;
}

/** tokenizer.json as llama.cpp's two tokenizer families need it; other tokenizer models are refused. */
function readTokenizer(ckpt: Checkpoint): TokenizerFiles {
  const path = join(ckpt.dir, 'tokenizer.json');
  const t = readJsonObject(path);
  const model = (t['model'] ?? {}) as { type?: string; vocab?: Record<string, number>; merges?: Array<string | [string, string]>; byte_fallback?: boolean; unk_token?: string | null };
  if (model.type !== 'BPE' || !model.vocab) throw new UnsupportedError(`${path}: model.type`, `"${String(model.type)}": the GGUF export writes BPE tokenizers (SentencePiece-style with byte fallback, or byte-level) only`);
  const pre = (t['pre_tokenizer'] ?? null) as { type?: string; prepend_scheme?: string; add_prefix_space?: boolean; pretokenizers?: Array<{ type?: string }> } | null;
  const preTypes = pre?.type === 'Sequence' ? (pre.pretokenizers ?? []).map((p) => p.type) : [pre?.type];
  let kind: GgufTokenizerKind;
  if (preTypes.includes('ByteLevel')) kind = 'byteLevel';
  else if (model.byte_fallback && preTypes.includes('Metaspace')) kind = 'sentencepiece';
  else throw new UnsupportedError(`${path}: pre_tokenizer`, `${JSON.stringify(preTypes)}: the GGUF export writes SentencePiece-style (Metaspace, byte fallback) or byte-level BPE tokenizers only`);
  const byId = new Map<number, { text: string; special?: boolean; added: boolean }>();
  for (const [text, id] of Object.entries(model.vocab)) byId.set(id, { text, added: false });
  for (const a of (t['added_tokens'] ?? []) as Array<{ id: number; content: string; special?: boolean }>) byId.set(a.id, { text: a.content, special: a.special === true, added: true });
  const merges = (model.merges ?? []).map((m): [string, string] => {
    if (Array.isArray(m)) return [m[0], m[1]];
    const at = m.indexOf(' ', 1);
    return [m.slice(0, at), m.slice(at + 1)];
  });
  const configPath = join(ckpt.dir, 'tokenizer_config.json');
  const config = existsSync(configPath) ? readJsonObject(configPath) : {};
  return {
    path,
    kind,
    byId,
    merges,
    pre: kind === 'byteLevel' ? ggufPreTokenizer(pre) : 'default',
    ...(model.unk_token ? { unk: model.unk_token } : {}),
    addSpacePrefix: kind === 'sentencepiece' && pre?.type === 'Metaspace' && pre.prepend_scheme !== 'never',
    config,
  };
}

/**
 * The tokenizer keys llama.cpp reads: model and pre-tokenizer, tokens with their types, scores
 * (SentencePiece-style: llama.cpp merges the adjacent pair of highest score that is a token, so a
 * token made by merge number r scores -r and merges in Hugging Face's order) or merges (byte-level),
 * special ids and whether BOS is added. Ids past the tokenizer's tokens are `[PAD<id>]`, unused.
 */
function tokenizerMetadata(tok: TokenizerFiles, ckpt: Checkpoint, vocabSize: number, anchorId: number | undefined): Array<[string, GgufValue]> {
  const n = ckpt.dims.vocabSize;
  const maxId = Math.max(...tok.byId.keys());
  if (maxId >= n) throw new InputError(tok.path, `holds token id ${maxId}, beyond the model's vocab_size ${n} (${ckpt.configPath})`);
  const tokens: string[] = [];
  const types: number[] = [];
  const rank = new Map<string, number>();
  tok.merges.forEach(([a, b], r) => {
    const text = a + b;
    if (!rank.has(text)) rank.set(text, r);
  });
  const scores: number[] = [];
  for (let id = 0; id < n; id++) {
    const t = tok.byId.get(id);
    if (!t) {
      tokens.push(`[PAD${id}]`);
      types.push(TOKEN_TYPE.unused);
      scores.push(-1e9);
      continue;
    }
    tokens.push(t.text);
    if (t.added) types.push(t.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined);
    else if (tok.kind === 'sentencepiece' && /^<0x[0-9A-Fa-f]{2}>$/.test(t.text)) types.push(TOKEN_TYPE.byte);
    else types.push(TOKEN_TYPE.normal);
    const r = rank.get(t.text);
    scores.push(r !== undefined ? -r : t.added || [...t.text].length === 1 ? 0 : -1e6 - id);
  }
  if (anchorId !== undefined) {
    tokens.push(ANCHOR_TEXT);
    types.push(TOKEN_TYPE.unused);
    scores.push(-1e9);
  }
  if (tokens.length !== vocabSize) throw new Error(`fusegen: GGUF token list has ${tokens.length} tokens, expected ${vocabSize}`);
  const out: Array<[string, GgufValue]> = [
    ['tokenizer.ggml.model', { type: 'str', value: GGUF_TOKENIZER_MODEL[tok.kind] }],
    ['tokenizer.ggml.pre', { type: 'str', value: tok.pre }],
    ['tokenizer.ggml.tokens', { type: 'str[]', value: tokens }],
  ];
  if (tok.kind === 'sentencepiece') out.push(['tokenizer.ggml.scores', { type: 'f32[]', value: scores }]);
  out.push(['tokenizer.ggml.token_type', { type: 'i32[]', value: types }]);
  if (tok.kind === 'byteLevel') out.push(['tokenizer.ggml.merges', { type: 'str[]', value: tok.merges.map(([a, b]) => `${a} ${b}`) }]);
  const idOf = (text: unknown): number | undefined => {
    const s = typeof text === 'string' ? text : typeof text === 'object' && text !== null ? (text as { content?: unknown }).content : undefined;
    if (typeof s !== 'string') return undefined;
    for (const [id, t] of tok.byId) if (t.text === s) return id;
    return undefined;
  };
  const cfgId = (key: string): number | undefined => {
    const v = ckpt.config[key];
    return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < n ? v : undefined;
  };
  const bos = cfgId('bos_token_id') ?? idOf(tok.config['bos_token']);
  const eos = ckpt.eosTokenIds[0] ?? idOf(tok.config['eos_token']);
  const unk = tok.unk !== undefined ? idOf(tok.unk) : idOf(tok.config['unk_token']);
  const pad = cfgId('pad_token_id') ?? idOf(tok.config['pad_token']);
  for (const [name, id] of [['bos', bos], ['eos', eos], ['unknown', unk], ['padding', pad]] as const) {
    if (id !== undefined) out.push([`tokenizer.ggml.${name}_token_id`, { type: 'u32', value: id }]);
  }
  const addBos = typeof tok.config['add_bos_token'] === 'boolean' ? (tok.config['add_bos_token'] as boolean) : tok.kind === 'sentencepiece';
  out.push(['tokenizer.ggml.add_bos_token', { type: 'bool', value: addBos }]);
  out.push(['tokenizer.ggml.add_eos_token', { type: 'bool', value: tok.config['add_eos_token'] === true }]);
  if (tok.kind === 'sentencepiece') out.push(['tokenizer.ggml.add_space_prefix', { type: 'bool', value: tok.addSpacePrefix }]);
  return out;
}

/** The checkpoint's content key (config, tokenizer and weight files) with everything else that shapes the file. */
function cacheKey(ckpt: Checkpoint, cacheDir: string, options: unknown[]): string {
  const h = createHash('sha256');
  h.update(checkpointKey(ckpt, cacheDir));
  h.update(JSON.stringify(options));
  return `${ckpt.modelType}-${h.digest('hex').slice(0, 20)}`;
}
