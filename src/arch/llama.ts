/**
 * Llama family (llama, mistral, qwen2): RMSNorm, rotary positions (rotate-half form, every
 * scaling type of positions.ts), grouped-query attention, SwiGLU. qwen2 adds q/k/v biases;
 * Mistral's and Qwen2's sliding windows are exact while a run fits them (checkCapacity).
 */
import { optionalBool, optionalPositiveInt, positiveInt, positiveNumber, type RawConfig } from '../checkpoint/config.js';
import { InputError, UnsupportedError } from '../errors.js';
import { USED, type KeyTable } from './config-keys.js';
import { readRope, rotaryDim } from './positions.js';
import { linear, lmHeadView, norm, tiedHead, type ArchSpec, type ModelDims } from './spec.js';

const configKeys: KeyTable = {
  vocab_size: USED,
  hidden_size: USED,
  intermediate_size: USED,
  num_hidden_layers: USED,
  num_attention_heads: USED,
  num_key_value_heads: USED,
  head_dim: USED,
  hidden_act: USED,
  max_position_embeddings: USED,
  rms_norm_eps: USED,
  tie_word_embeddings: USED,
  rope_parameters: USED,
  rope_theta: USED,
  rope_scaling: USED,
  attention_bias: USED,
  mlp_bias: USED,
  sliding_window: USED,
  use_sliding_window: USED,
  max_window_layers: USED,
  layer_types: USED,
  attention_dropout: { harmless: 'dropout is off at inference' },
  use_mrope: { only: false, why: "multimodal rotary sections (Qwen2-VL's) are not supported" },
};

/** Qwen2 always has q/k/v biases (and none on o_proj); llama follows attention_bias. */
function hasAttentionBias(config: RawConfig, path: string): boolean {
  return config['model_type'] === 'qwen2' || optionalBool(config, path, 'attention_bias', false);
}

/**
 * The smallest attention window of any layer, or undefined when every layer sees the whole
 * context: Mistral windows every layer; Qwen2 only with use_sliding_window, from layer
 * max_window_layers on (transformers 5 writes the result as `layer_types`).
 */
function slidingWindow(config: RawConfig, path: string, numLayers: number): number | undefined {
  const window = optionalPositiveInt(config, path, 'sliding_window');
  const types = config['layer_types'];
  if (types !== undefined && types !== null) {
    if (!Array.isArray(types) || types.length !== numLayers || types.some((t) => t !== 'full_attention' && t !== 'sliding_attention')) {
      throw new InputError(`${path}: layer_types`, `expected ${numLayers} entries of "full_attention" or "sliding_attention"`);
    }
    if (!types.includes('sliding_attention')) return undefined;
    if (window === undefined) throw new InputError(`${path}: sliding_window`, 'layer_types has sliding_attention layers but no window');
    return window;
  }
  if (config['model_type'] === 'qwen2') {
    if (!optionalBool(config, path, 'use_sliding_window', false)) return undefined;
    const from = optionalPositiveInt(config, path, 'max_window_layers') ?? numLayers;
    return from < numLayers ? window : undefined;
  }
  return window;
}

/** The SwiGLU MLP's activation: llama's and phi3's hidden_act must be silu. */
export function requireSilu(config: RawConfig, path: string): void {
  const act = config['hidden_act'] ?? 'silu';
  if (act !== 'silu') throw new UnsupportedError(`${path}: hidden_act`, `"${String(act)}" is not supported (silu only)`);
}

/**
 * Dimensions of a llama-shaped config (llama, mistral, qwen2; phi3 and gemma2 read them too, each
 * checking its own activation; with `partialRotary`: Hugging Face's llama rotates whole heads, so
 * a partial factor is refused there).
 */
export function llamaDims(config: RawConfig, path: string, partialRotary = false): ModelDims {
  const hiddenSize = positiveInt(config, path, 'hidden_size');
  const numHeads = positiveInt(config, path, 'num_attention_heads');
  const numKvHeads = optionalPositiveInt(config, path, 'num_key_value_heads') ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    throw new InputError(`${path}: num_key_value_heads`, `${numKvHeads} does not divide num_attention_heads ${numHeads}`);
  }
  const numLayers = positiveInt(config, path, 'num_hidden_layers');
  const rope = readRope(config, path);
  // Rotary has no table, but the model was trained to this length and the fused op's cos/sin
  // caches are sized by it; dynamic NTK scaling equals the default only up to it.
  let maxPositions = positiveInt(config, path, 'max_position_embeddings');
  if (rope.type === 'dynamic' && rope.originalMaxPositions) maxPositions = Math.min(maxPositions, rope.originalMaxPositions);
  const headDim = optionalPositiveInt(config, path, 'head_dim') ?? hiddenSize / numHeads;
  const rotary = rotaryDim(rope, headDim);
  if (rotary !== headDim && !partialRotary) throw new UnsupportedError(`${path}: rope_parameters.partial_rotary_factor`, `${rope.partialFactor}: ${String(config['model_type'])} rotates whole heads`);
  if (rotary % 2 !== 0) throw new InputError(`${path}: partial_rotary_factor`, `rotates ${rotary} of ${headDim} head dimensions: an odd count`);
  const window = slidingWindow(config, path, numLayers);
  // Read here so that a malformed value is blamed on its key before globals/layer read it.
  tiedHead(config, path, false);
  hasAttentionBias(config, path);
  optionalBool(config, path, 'mlp_bias', false);
  return {
    vocabSize: positiveInt(config, path, 'vocab_size'),
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: positiveInt(config, path, 'intermediate_size'),
    maxPositions,
    normEps: positiveNumber(config, path, 'rms_norm_eps', 1e-6),
    rope,
    embedDim: hiddenSize,
    attentionScale: 1 / Math.sqrt(headDim),
    attentionScaleByLayer: false,
    residualFromNorm: false,
    parallelResidual: false,
    ...(window !== undefined ? { slidingWindow: window } : {}),
  };
}

export const llama: ArchSpec = {
  modelTypes: ['llama', 'mistral', 'qwen2'],
  configKeys,
  support: {
    variants: ['MHA, GQA and MQA', 'explicit head_dim', 'tied or untied head', 'attention_bias (qwen2: q/k/v biases)', 'mlp_bias', 'rope: default, linear, dynamic, llama3 (4.x and 5.x layouts)', 'sliding_window while runs fit it'],
    refused: ['rope types yarn, longrope and others', 'rope settings per layer type', 'hidden_act other than silu', 'runs longer than sliding_window'],
  },
  weightPrefixes: ['model.'],
  traits: {
    norm: 'rmsnorm',
    activation: 'silu',
    gatedMlp: true,
    position: 'rotary',
    positionOffset: 0,
  },

  dims(config, path) {
    requireSilu(config, path);
    return llamaDims(config, path);
  },

  globals(_d, config) {
    return {
      embedTokens: { source: 'embed_tokens.weight' },
      finalNorm: norm('norm', false),
      lmHead: lmHeadView(tiedHead(config, '', false), 'embed_tokens.weight'),
    };
  },

  layer(i, _d, config) {
    const p = `layers.${i}`;
    const bias = hasAttentionBias(config, '');
    const mlpBias = optionalBool(config, '', 'mlp_bias', false);
    return {
      inputNorm: norm(`${p}.input_layernorm`, false),
      q: linear(`${p}.self_attn.q_proj`, bias),
      k: linear(`${p}.self_attn.k_proj`, bias),
      v: linear(`${p}.self_attn.v_proj`, bias),
      o: linear(`${p}.self_attn.o_proj`, bias && config['model_type'] !== 'qwen2'),
      postAttentionNorm: norm(`${p}.post_attention_layernorm`, false),
      gate: linear(`${p}.mlp.gate_proj`, mlpBias),
      up: linear(`${p}.mlp.up_proj`, mlpBias),
      down: linear(`${p}.mlp.down_proj`, mlpBias),
    };
  },
};
