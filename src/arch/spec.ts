/**
 * An architecture spec is plain data plus two small functions: how to read the model's
 * dimensions from config.json, and where each typed weight slot lives in the checkpoint.
 * Graph emitters see only slots, never Hugging Face names, so one decoder builder serves
 * every architecture (DeepSpeed v2's container/policy idea, without positional tuples).
 */
import type { RawConfig } from '../checkpoint/config.js';

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
  /** BLOOM normalizes the token embeddings before the first layer. */
  embeddingNorm: boolean;
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
  ropeTheta: number;
}

/**
 * Where a weight slot's data comes from, in the layout the graph wants: linear weights
 * as [in, out] so that MatMul(x, W) needs no Transpose node.
 * `rows` keeps only the listed [start, length] row ranges of the source before any
 * transpose (how fused QKV tensors are split); `cols` does the same for columns.
 */
export interface WeightView {
  source: string;
  rows?: Array<[number, number]>;
  cols?: Array<[number, number]>;
  transpose?: boolean;
}

export interface NormWeights { weight: WeightView; bias?: WeightView }
export interface LinearWeights { weight: WeightView; bias?: WeightView }

export interface LayerWeights {
  inputNorm: NormWeights;
  q: LinearWeights;
  k: LinearWeights;
  v: LinearWeights;
  o: LinearWeights;
  postAttentionNorm: NormWeights;
  up: LinearWeights;
  /** Gated MLPs only. */
  gate?: LinearWeights;
  down: LinearWeights;
}

export interface GlobalWeights {
  embedTokens: WeightView;
  embedPositions?: WeightView;
  embedNorm?: NormWeights;
  finalNorm: NormWeights;
  /** [hidden, vocab] as every other linear; tied models view the embedding transposed. */
  lmHead: WeightView;
}


export interface ArchSpec {
  /** The `model_type` values this spec serves. */
  modelTypes: readonly string[];
  /** HF class name for generated configs (`architectures`). */
  hfClass: string;
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
