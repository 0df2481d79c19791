/**
 * An architecture spec is plain data plus two small functions: how to read the model's
 * dimensions from config.json, and where each typed weight slot lives in the checkpoint.
 * Graph emitters see only slots, never Hugging Face names, so one decoder builder serves
 * every architecture (DeepSpeed v2's container/policy idea, without positional tuples).
 */
import { optionalBool, type RawConfig } from '../checkpoint/config.js';
import type { KeyTable } from './config-keys.js';
import type { Rope } from './positions.js';

export type NormKind = 'layernorm' | 'rmsnorm';
/** `gelu_tanh` is GPT-2's gelu_new and BLOOM's bloom_gelu; `silu` is gated (SwiGLU) in llama. */
export type Activation = 'gelu_tanh' | 'gelu_erf' | 'relu' | 'silu';
export type PositionKind = 'learned' | 'rotary' | 'alibi';

export interface ArchTraits {
  norm: NormKind;
  activation: Activation;
  /** MLP is act(gate(x)) * up(x) -> down, as in llama's SwiGLU. */
  gatedMlp: boolean;
  position: PositionKind;
  /** OPT's learned position table starts at index 2. */
  positionOffset: number;
}

export interface ModelDims {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  /** Fewer than numHeads for grouped-query attention. */
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  /** Longest sequence the position encoding supports (learned tables); Infinity otherwise. */
  maxPositions: number;
  normEps: number;
  /** Rotary settings (rotary architectures only); frequencies from positions.ts. */
  rope?: Rope;
  /** Width of the token embedding: hiddenSize, or OPT's word_embed_proj_dim (projected in and out). */
  embedDim: number;
  /** Softmax scale of q.k: 1/sqrt(headDim) unless the config says otherwise (GPT-2's scale_attn_weights). */
  attentionScale: number;
  /** GPT-2's scale_attn_by_inverse_layer_idx: layer i divides the scale by i + 1. */
  attentionScaleByLayer: boolean;
  /**
   * The residual stream carries each norm's output rather than its input (BLOOM's
   * apply_residual_connection_post_layernorm; post-LayerNorm OPT, whose norms the spec maps so
   * that this one rule describes it).
   */
  residualFromNorm: boolean;
  /** Attention sees at most this many keys (Mistral, Qwen2): runs longer than it are refused. */
  slidingWindow?: number;
  /**
   * Attention and MLP both read the layer's input and are added to it together
   * (x + attn(n1(x)) + mlp(n2(x)): GPT-NeoX's use_parallel_residual, GPT-J, whose one norm the
   * spec names twice); otherwise the MLP reads the stream after attention's add.
   */
  parallelResidual: boolean;
  /** The token embedding is multiplied by this (Gemma's sqrt(hidden), rounded to the compute dtype). */
  embedScale?: number;
  /** Attention scores become cap * tanh(scores / cap) before the mask (Gemma 2's attn_logit_softcapping). */
  attnSoftcap?: number;
  /** Logits become cap * tanh(logits / cap) (Gemma 2's final_logit_softcapping). */
  logitSoftcap?: number;
}

/** The softmax scale of layer `layer`'s attention. */
export function layerAttentionScale(dims: ModelDims, layer: number): number {
  return dims.attentionScaleByLayer ? dims.attentionScale / (layer + 1) : dims.attentionScale;
}

/**
 * Where a weight slot's data comes from, in the layout the graph wants: linear weights
 * as [in, out] so that MatMul(x, W) needs no Transpose node.
 * `rows` keeps only the listed [start, length] row ranges of the source before any
 * transpose (how fused QKV tensors are split); `cols` does the same for columns.
 */
export interface WeightView {
  source: string;
  /** Added to every value as read (Gemma's norms store w and scale by 1 + w). */
  offset?: number;
  rows?: Array<[number, number]>;
  cols?: Array<[number, number]>;
  transpose?: boolean;
}

export interface NormWeights { weight: WeightView; bias?: WeightView }
export interface LinearWeights { weight: WeightView; bias?: WeightView }

export interface LayerWeights {
  /** Absent: no norm before attention (post-LayerNorm OPT's first layer). */
  inputNorm?: NormWeights;
  q: LinearWeights;
  k: LinearWeights;
  v: LinearWeights;
  o: LinearWeights;
  /** The norm in front of the MLP (Gemma 2: pre_feedforward_layernorm). */
  postAttentionNorm: NormWeights;
  /** Norms of each block's output before its residual add (Gemma 2's sandwich norms). */
  attnOutNorm?: NormWeights;
  mlpOutNorm?: NormWeights;
  up: LinearWeights;
  /** Gated MLPs only. */
  gate?: LinearWeights;
  down: LinearWeights;
}

export interface GlobalWeights {
  embedTokens: WeightView;
  embedPositions?: WeightView;
  embedNorm?: NormWeights;
  /** OPT's project_in [embedDim, hidden] and project_out [hidden, embedDim], where embedDim != hidden. */
  projectIn?: WeightView;
  projectOut?: WeightView;
  /** Absent: no norm before the head (OPT's _remove_final_layer_norm). */
  finalNorm?: NormWeights;
  /** [embedDim, vocab] as every other linear; tied models view the embedding transposed. */
  lmHead: WeightView;
  /** GPT-J's lm_head.bias [vocab]. */
  lmHeadBias?: WeightView;
}


export interface ArchSpec {
  /** The `model_type` values this spec serves. */
  modelTypes: readonly string[];
  /** Every config.json key of these model types that fusegen reads or knows to be harmless (over COMMON_KEYS). */
  configKeys: KeyTable;
  /** For the README's table of supported checkpoints: the config variants read, what is refused, and what the WGSL engine lacks. */
  support: { variants: readonly string[]; refused: readonly string[]; wgslLacks?: readonly string[] };
  /** Checkpoints name weights with or without these prefixes (`transformer.h.0...` or `h.0...`). */
  weightPrefixes: readonly string[];
  traits: ArchTraits;
  /** Reads and checks dimensions; throws InputError/UnsupportedError naming the field. */
  dims(config: RawConfig, configPath: string): ModelDims;
  globals(dims: ModelDims, config: RawConfig): GlobalWeights;
  layer(index: number, dims: ModelDims, config: RawConfig): LayerWeights;
}

/** Linear weight stored [out, in] (torch nn.Linear): view it transposed. */
export function linear(name: string, bias: boolean): LinearWeights {
  return bias
    ? { weight: { source: `${name}.weight`, transpose: true }, bias: { source: `${name}.bias` } }
    : { weight: { source: `${name}.weight`, transpose: true } };
}

export function norm(name: string, bias: boolean): NormWeights {
  return bias ? { weight: { source: `${name}.weight` }, bias: { source: `${name}.bias` } } : { weight: { source: `${name}.weight` } };
}

/** The head shares the token embedding: tie_word_embeddings, or the model type's Hugging Face default where absent. */
export function tiedHead(config: RawConfig, path: string, hfDefault: boolean): boolean {
  return optionalBool(config, path, 'tie_word_embeddings', hfDefault);
}

/** The LM head: the embedding viewed transposed when tied, else `lm_head.weight`. */
export function lmHeadView(tied: boolean, embedTokens: string): WeightView {
  return tied ? { source: embedTokens, transpose: true } : { source: 'lm_head.weight', transpose: true };
}
