/**
 * How llama.cpp names each architecture fusegen reads (issue 27): its GGUF `general.architecture`,
 * the hyperparameters it reads under that name, and its tensors, each made of the spec's weight
 * views in the torch layout ([out, in] for linears: GGUF lists dimensions fastest first, so
 * `[in, out]` there is the same bytes). The writer (src/graph/gguf.ts) knows no architecture; this
 * table knows no file format. A model_type llama.cpp lacks (OPT) or that is not mapped here is
 * refused with one line.
 *
 * Learned from llama.cpp's gguf-py constants, convert_hf_to_gguf.py and its model loaders
 * (src/models/llama.cpp, gpt2.cpp, qwen2.cpp) at the release node-llama-cpp 3.21.1 bundles.
 */
import { optionalBool, type RawConfig } from '../checkpoint/config.js';
import { UnsupportedError } from '../errors.js';
import { ropeInvFreq, type Rope } from './positions.js';
import type { ArchSpec, ModelDims, WeightView } from './spec.js';

/** A GGUF metadata value: its GGUF type and value (arrays of one element type). */
export type GgufValue =
  | { type: 'u32'; value: number }
  | { type: 'i32'; value: number }
  | { type: 'u64'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'str'; value: string }
  | { type: 'str[]'; value: string[] }
  | { type: 'f32[]'; value: number[] }
  | { type: 'i32[]'; value: number[] };

/**
 * What a GGUF tensor holds and so which types it may take: `matrix` (a projection: block-quantized
 * in int8/int4), `head` (the LM head: quantized as the projections are), `embedding` (token and
 * position tables: kept float, as fusegen's dtypes keep them), `vector` (norms, biases, rotary
 * factors: always float32, as llama.cpp's converter keeps 1-D tensors).
 */
export type GgufRole = 'matrix' | 'head' | 'embedding' | 'vector';

export interface GgufTensorPlan {
  /** llama.cpp's name (`blk.0.attn_q.weight`). */
  name: string;
  role: GgufRole;
  /** Views read in the torch layout ([rows, cols], rows the output dimension) and stacked by rows. */
  parts?: WeightView[];
  /** A tensor computed here rather than read (llama3's rotary factors). */
  values?: Float32Array;
  /**
   * The rows are `heads` heads in rotate-half order (dimension i paired with i + D/2, as Hugging
   * Face's llama lays q and k out); llama.cpp's LLM_ARCH_LLAMA ropes adjacent pairs (2i, 2i + 1),
   * so each head's rows are interleaved as its converter does (`permute`).
   */
  interleaveHeads?: number;
  /** Rows are token ids (token_embd, output): the writer may append a row (the logit anchor, src/graph/gguf.ts). */
  vocabRows?: boolean;
}

/** Tokenizer models llama.cpp knows: SentencePiece-style (scores, byte tokens) or GPT-2 byte-level BPE (merges). */
export const GGUF_TOKENIZER_MODEL = { sentencepiece: 'llama', byteLevel: 'gpt2' } as const;
export type GgufTokenizerKind = keyof typeof GGUF_TOKENIZER_MODEL;

export interface GgufLayout {
  /** `general.architecture`, and the prefix of the hyperparameter keys. */
  architecture: string;
  /** `{arch}.*` hyperparameters, without the prefix (`context_length`). */
  hparams: Array<[string, GgufValue]>;
  tensors: GgufTensorPlan[];
  /**
   * The LM head is the token embedding: its `output.weight` plan (role `head`) is written only
   * where the dtype quantizes the head and keeps the embedding float; llama.cpp otherwise reads
   * token_embd for both.
   */
  tiedHead: boolean;
  /** Writes `{arch}.vocab_size` (llama.cpp's llama reads it; others count the token list). */
  writesVocabSize: boolean;
}

/** What the layout reads of an opened checkpoint. */
export interface GgufSource {
  modelType: string;
  config: RawConfig;
  configPath: string;
  spec: ArchSpec;
  dims: ModelDims;
}

const u32 = (value: number): GgufValue => ({ type: 'u32', value });
const f32 = (value: number): GgufValue => ({ type: 'f32', value });

/** model_type -> llama.cpp architecture; `null`: llama.cpp has none. */
const ARCHITECTURES: Record<string, string | null> = {
  llama: 'llama',
  mistral: 'llama',
  qwen2: 'qwen2',
  gpt2: 'gpt2',
  bloom: 'bloom',
  opt: null,
};

/** The model types this table maps, for messages and the README. */
export const GGUF_MODEL_TYPES = Object.keys(ARCHITECTURES).filter((t) => ARCHITECTURES[t] !== null);

/** The GGUF layout of a checkpoint, or one line saying why llama.cpp cannot run it. */
export function ggufLayout(c: GgufSource): GgufLayout {
  const arch = ARCHITECTURES[c.modelType];
  if (arch === null) throw new UnsupportedError(`${c.configPath}: model_type`, `"${c.modelType}": llama.cpp has no ${c.modelType} architecture, so there is no GGUF export or llamacpp pipeline for it`);
  if (arch === undefined) throw new UnsupportedError(`${c.configPath}: model_type`, `"${c.modelType}": the GGUF export maps ${GGUF_MODEL_TYPES.join(', ')} to llama.cpp's architectures, not ${c.modelType} yet`);
  return arch === 'gpt2' || arch === 'bloom' ? fusedQkvLayout(c, arch) : llamaLayout(c, arch);
}

/** llama (and mistral, as llama.cpp's converter maps it) and qwen2: RMSNorm, rotary, GQA, SwiGLU. */
function llamaLayout(c: GgufSource, arch: string): GgufLayout {
  const { dims, spec, config } = c;
  const rope = dims.rope!;
  // llama's loader interleaves q/k pairs and so needs whole heads; qwen2 ropes rotate-half (NEOX) as HF does.
  const interleave = arch === 'llama';
  const g = spec.globals(dims, config);
  const tied = optionalBool(config, c.configPath, 'tie_word_embeddings', false);
  const hparams: Array<[string, GgufValue]> = [
    ['context_length', u32(dims.maxPositions)],
    ['embedding_length', u32(dims.hiddenSize)],
    ['block_count', u32(dims.numLayers)],
    ['feed_forward_length', u32(dims.intermediateSize)],
    ['attention.head_count', u32(dims.numHeads)],
    ['attention.head_count_kv', u32(dims.numKvHeads)],
    ['attention.layer_norm_rms_epsilon', f32(dims.normEps)],
    ['rope.freq_base', f32(rope.theta)],
    ['rope.dimension_count', u32(dims.headDim)],
  ];
  if (dims.headDim * dims.numHeads !== dims.hiddenSize) hparams.push(['attention.key_length', u32(dims.headDim)], ['attention.value_length', u32(dims.headDim)]);
  const tensors: GgufTensorPlan[] = [];
  hparams.push(...ropeScaling(rope, c, tensors));
  tensors.push({ name: 'token_embd.weight', role: 'embedding', parts: [g.embedTokens], vocabRows: true });
  tensors.push({ name: 'output_norm.weight', role: 'vector', parts: [g.finalNorm!.weight] });
  tensors.push({ name: 'output.weight', role: 'head', parts: [torchLayout(g.lmHead)], vocabRows: true });
  for (let i = 0; i < dims.numLayers; i++) {
    const l = spec.layer(i, dims, config);
    const b = `blk.${i}`;
    const linear = (name: string, w: { weight: WeightView; bias?: WeightView }, heads?: number) => {
      const inter = interleave && heads ? { interleaveHeads: heads } : {};
      tensors.push({ name: `${b}.${name}.weight`, role: 'matrix', parts: [torchLayout(w.weight)], ...inter });
      if (w.bias) tensors.push({ name: `${b}.${name}.bias`, role: 'vector', parts: [w.bias], ...inter });
    };
    tensors.push({ name: `${b}.attn_norm.weight`, role: 'vector', parts: [l.inputNorm!.weight] });
    linear('attn_q', l.q, dims.numHeads);
    linear('attn_k', l.k, dims.numKvHeads);
    linear('attn_v', l.v);
    linear('attn_output', l.o);
    tensors.push({ name: `${b}.ffn_norm.weight`, role: 'vector', parts: [l.postAttentionNorm.weight] });
    linear('ffn_gate', l.gate!);
    linear('ffn_up', l.up);
    linear('ffn_down', l.down);
  }
  return { architecture: arch, hparams, tensors, tiedHead: tied, writesVocabSize: arch === 'llama' };
}

/**
 * Rotary scaling as llama.cpp reads it: linear as `rope.scaling.type/factor`; llama3 as the
 * `rope_freqs.weight` factors its converter computes (each pair's frequency is divided by its
 * factor); dynamic NTK is the default within max_position_embeddings, which fusegen's runs keep to.
 */
function ropeScaling(rope: Rope, c: GgufSource, tensors: GgufTensorPlan[]): Array<[string, GgufValue]> {
  switch (rope.type) {
    case 'default':
    case 'dynamic':
      return [];
    case 'linear':
      return [['rope.scaling.type', { type: 'str', value: 'linear' }], ['rope.scaling.factor', f32(rope.factor!)]];
    case 'llama3': {
      const base = ropeInvFreq({ ...rope, type: 'default' }, c.dims.headDim);
      const scaled = ropeInvFreq(rope, c.dims.headDim);
      tensors.push({ name: 'rope_freqs.weight', role: 'vector', values: base.map((f, i) => Math.fround(f / scaled[i]!)) });
      return [];
    }
  }
}

/**
 * GPT-2 and BLOOM: LayerNorm with biases, q/k/v fused as llama.cpp's loaders require (`attn_qkv`:
 * all q rows, then k, then v; the spec's views already take BLOOM's per-head interleaved rows
 * apart, as llama.cpp's converter does), a GELU MLP. GPT-2 adds learned positions; BLOOM a norm
 * after the embedding and ALiBi (llama.cpp's bloom: max bias 8, HF's slopes).
 */
function fusedQkvLayout(c: GgufSource, arch: 'gpt2' | 'bloom'): GgufLayout {
  const { dims, spec, config } = c;
  if (dims.attentionScaleByLayer) throw new UnsupportedError(`${c.configPath}: scale_attn_by_inverse_layer_idx`, "llama.cpp's gpt2 scales attention by 1/sqrt(head_dim) in every layer");
  if (dims.attentionScale !== 1 / Math.sqrt(dims.headDim)) throw new UnsupportedError(`${c.configPath}: scale_attn_weights`, "false: llama.cpp's gpt2 always scales attention by 1/sqrt(head_dim)");
  if (dims.residualFromNorm) throw new UnsupportedError(`${c.configPath}: apply_residual_connection_post_layernorm`, "true: llama.cpp's bloom adds each block's input to its output, never the norm's");
  const g = spec.globals(dims, config);
  const tied = optionalBool(config, c.configPath, 'tie_word_embeddings', true);
  // BLOOM's ALiBi has no position limit; llama.cpp still reads a training context (its converter writes seq_length).
  const seq = config['seq_length'];
  const context = Number.isFinite(dims.maxPositions) ? dims.maxPositions : typeof seq === 'number' && seq > 0 ? seq : 2048;
  const hparams: Array<[string, GgufValue]> = [
    ['context_length', u32(context)],
    ['embedding_length', u32(dims.hiddenSize)],
    ['block_count', u32(dims.numLayers)],
    ['feed_forward_length', u32(dims.intermediateSize)],
    ['attention.head_count', u32(dims.numHeads)],
    ...(arch === 'bloom' ? [['attention.head_count_kv', u32(dims.numKvHeads)] as [string, GgufValue]] : []),
    ['attention.layer_norm_epsilon', f32(dims.normEps)],
  ];
  const norm = (name: string, n: { weight: WeightView; bias?: WeightView }): GgufTensorPlan[] => [
    { name: `${name}.weight`, role: 'vector', parts: [n.weight] },
    { name: `${name}.bias`, role: 'vector', parts: [n.bias!] },
  ];
  const tensors: GgufTensorPlan[] = [
    { name: 'token_embd.weight', role: 'embedding', parts: [g.embedTokens], vocabRows: true },
    ...(g.embedPositions ? [{ name: 'position_embd.weight', role: 'embedding', parts: [g.embedPositions] } as GgufTensorPlan] : []),
    ...(g.embedNorm ? norm('token_embd_norm', g.embedNorm) : []),
    ...norm('output_norm', g.finalNorm!),
  ];
  tensors.push({ name: 'output.weight', role: 'head', parts: [torchLayout(g.lmHead)], vocabRows: true });
  for (let i = 0; i < dims.numLayers; i++) {
    const l = spec.layer(i, dims, config);
    const b = `blk.${i}`;
    const linear = (name: string, ws: Array<{ weight: WeightView; bias?: WeightView }>) => {
      tensors.push({ name: `${b}.${name}.weight`, role: 'matrix', parts: ws.map((w) => torchLayout(w.weight)) });
      tensors.push({ name: `${b}.${name}.bias`, role: 'vector', parts: ws.map((w) => w.bias!) });
    };
    tensors.push(...norm(`${b}.attn_norm`, l.inputNorm!));
    linear('attn_qkv', [l.q, l.k, l.v]);
    linear('attn_output', [l.o]);
    tensors.push(...norm(`${b}.ffn_norm`, l.postAttentionNorm));
    linear('ffn_up', [l.up]);
    linear('ffn_down', [l.down]);
  }
  return { architecture: arch, hparams, tensors, tiedHead: tied, writesVocabSize: false };
}

/** A spec's linear view ([in, out], as the graphs multiply) in the torch layout [out, in] that GGUF stores. */
function torchLayout(v: WeightView): WeightView {
  return { ...v, transpose: !v.transpose };
}

/**
 * `tokenizer.ggml.pre`: the name of llama.cpp's pre-tokenizer for a byte-level BPE tokenizer,
 * from its tokenizer.json `pre_tokenizer`: GPT-2's regex (a plain ByteLevel with use_regex), or a
 * Split whose regex is one llama.cpp names. Another one gets `default`, llama.cpp's generic split:
 * the model still loads and runs, only llama.cpp's own tokenization of text may differ (fusegen's
 * llamacpp pipeline gives it token ids from the checkpoint's tokenizer, never text).
 */
export function ggufPreTokenizer(pre: unknown): string {
  const node = (pre ?? {}) as { type?: string; use_regex?: boolean; pretokenizers?: unknown[]; pattern?: { Regex?: string } };
  const parts = node.type === 'Sequence' ? ((node.pretokenizers ?? []) as Array<typeof node>) : [node];
  const split = parts.find((p) => p.type === 'Split')?.pattern?.Regex;
  if (split !== undefined) return SPLIT_PRE[split] ?? 'default';
  if (parts.some((p) => p.type === 'ByteLevel' && p.use_regex !== false)) return 'gpt-2';
  return 'default';
}

/** Split regexes of byte-level tokenizers and llama.cpp's names for them (llama-vocab.cpp). */
const SPLIT_PRE: Record<string, string> = {
  ' ?[^(\\s|[.,!?…。，、।۔،])]+': 'bloom',
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": 'llama-bpe',
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": 'qwen2',
};
