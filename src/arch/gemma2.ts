/**
 * Gemma 2: the llama block with GeGLU (gelu_pytorch_tanh), RMSNorms that scale by (1 + w),
 * norms before and after each block (sandwich), the embedding scaled by sqrt(hidden), soft
 * capping of attention scores and of the logits, query_pre_attn_scalar for the attention scale,
 * and sliding-window attention on alternating layers (exact while a run fits the window).
 */
import { optionalString, positiveNumber, type RawConfig } from '../checkpoint/config.js';
import { UnsupportedError } from '../errors.js';
import { USED, type KeyTable } from './config-keys.js';
import { llamaDims } from './llama.js';
import { linear, lmHeadView, tiedHead, type ArchSpec, type ModelDims, type NormWeights } from './spec.js';

const configKeys: KeyTable = {
  vocab_size: USED,
  hidden_size: USED,
  intermediate_size: USED,
  num_hidden_layers: USED,
  num_attention_heads: USED,
  num_key_value_heads: USED,
  head_dim: USED,
  hidden_activation: USED,
  hidden_act: USED,
  max_position_embeddings: USED,
  rms_norm_eps: USED,
  tie_word_embeddings: USED,
  rope_parameters: USED,
  rope_theta: USED,
  rope_scaling: USED,
  attention_bias: USED,
  query_pre_attn_scalar: USED,
  sliding_window: USED,
  layer_types: USED,
  final_logit_softcapping: USED,
  attn_logit_softcapping: USED,
  attention_dropout: { harmless: 'dropout is off at inference' },
  use_bidirectional_attention: { only: false, why: 'bidirectional attention (EmbeddingGemma) is not a causal LM' },
  cache_implementation: { harmless: "Hugging Face's hybrid cache layout; the same keys and values" },
};

/** Gemma's RMSNorm multiplies by (1 + w): the view adds the 1. */
function gemmaNorm(name: string): NormWeights {
  return { weight: { source: `${name}.weight`, offset: 1 } };
}

function optionalCap(config: RawConfig, path: string, key: string): number | undefined {
  const v = config[key];
  return v === undefined || v === null ? undefined : positiveNumber(config, path, key);
}

export const gemma2: ArchSpec = {
  modelTypes: ['gemma2'],
  configKeys,
  support: {
    variants: ['GQA', 'head_dim', 'attention and final logit soft capping', 'query_pre_attn_scalar', 'sliding window on alternating layers while runs fit it', 'tied or untied head'],
    refused: ['hidden_activation other than gelu_pytorch_tanh', 'runs longer than sliding_window'],
  },
  weightPrefixes: ['model.'],
  traits: {
    norm: 'rmsnorm',
    activation: 'gelu_tanh',
    gatedMlp: true,
    position: 'rotary',
    positionOffset: 0,
  },

  dims(config: RawConfig, path: string): ModelDims {
    const act = optionalString(config, path, 'hidden_activation') ?? optionalString(config, path, 'hidden_act') ?? 'gelu_pytorch_tanh';
    if (act !== 'gelu_pytorch_tanh') throw new UnsupportedError(`${path}: hidden_activation`, `"${act}" is not supported for gemma2 (gelu_pytorch_tanh only)`);
    const d = llamaDims(config, path);
    tiedHead(config, path, true);
    const attnSoftcap = optionalCap(config, path, 'attn_logit_softcapping');
    const logitSoftcap = optionalCap(config, path, 'final_logit_softcapping');
    return {
      ...d,
      attentionScale: 1 / Math.sqrt(positiveNumber(config, path, 'query_pre_attn_scalar', 256)),
      // Hugging Face multiplies by sqrt(hidden) as a tensor of the activations' dtype.
      embedScale: Math.fround(Math.sqrt(d.hiddenSize)),
      ...(attnSoftcap ? { attnSoftcap } : {}),
      ...(logitSoftcap ? { logitSoftcap } : {}),
    };
  },

  globals(_d, config) {
    return {
      embedTokens: { source: 'embed_tokens.weight' },
      finalNorm: gemmaNorm('norm'),
      lmHead: lmHeadView(tiedHead(config, '', true), 'embed_tokens.weight'),
    };
  },

  layer(i, _d, config) {
    const p = `layers.${i}`;
    const bias = config['attention_bias'] === true;
    return {
      inputNorm: gemmaNorm(`${p}.input_layernorm`),
      q: linear(`${p}.self_attn.q_proj`, bias),
      k: linear(`${p}.self_attn.k_proj`, bias),
      v: linear(`${p}.self_attn.v_proj`, bias),
      o: linear(`${p}.self_attn.o_proj`, bias),
      attnOutNorm: gemmaNorm(`${p}.post_attention_layernorm`),
      postAttentionNorm: gemmaNorm(`${p}.pre_feedforward_layernorm`),
      gate: linear(`${p}.mlp.gate_proj`, false),
      up: linear(`${p}.mlp.up_proj`, false),
      mlpOutNorm: gemmaNorm(`${p}.post_feedforward_layernorm`),
      down: linear(`${p}.mlp.down_proj`, false),
    };
  },
};
