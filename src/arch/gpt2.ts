/** GPT-2: learned positions, pre-LayerNorm, gelu_new, Conv1D projections ([in, out]). */
import { optionalBool, optionalPositiveInt, optionalString, positiveInt, positiveNumber, type RawConfig } from '../checkpoint/config.js';
import { UnsupportedError } from '../errors.js';
import { USED, type KeyTable } from './config-keys.js';
import { lmHeadView, norm, tiedHead, type ArchSpec, type LinearWeights, type ModelDims } from './spec.js';

/** Conv1D weights are already [in, out]; a fused c_attn is split by columns. */
function conv1d(name: string, cols?: [number, number]): LinearWeights {
  return cols
    ? { weight: { source: `${name}.weight`, cols: [cols] }, bias: { source: `${name}.bias`, rows: [cols] } }
    : { weight: { source: `${name}.weight` }, bias: { source: `${name}.bias` } };
}

const SUMMARY = { harmless: "the sequence-summary head of GPT2DoubleHeadsModel, not in the causal LM" };

const configKeys: KeyTable = {
  vocab_size: USED,
  n_embd: USED,
  hidden_size: USED,
  n_layer: USED,
  num_hidden_layers: USED,
  n_head: USED,
  num_attention_heads: USED,
  n_inner: USED,
  n_positions: USED,
  max_position_embeddings: USED,
  activation_function: USED,
  layer_norm_epsilon: USED,
  scale_attn_weights: USED,
  scale_attn_by_inverse_layer_idx: USED,
  tie_word_embeddings: USED,
  reorder_and_upcast_attn: { harmless: 'computes q.k in float32 with the scale applied first: the same product, and fusegen accumulates attention in float32' },
  n_ctx: { harmless: "GPT-2's old name for the context length; Hugging Face's model reads n_positions" },
  resid_pdrop: { harmless: 'dropout is off at inference' },
  embd_pdrop: { harmless: 'dropout is off at inference' },
  attn_pdrop: { harmless: 'dropout is off at inference' },
  summary_type: SUMMARY,
  summary_use_proj: SUMMARY,
  summary_activation: SUMMARY,
  summary_first_dropout: SUMMARY,
  summary_proj_to_labels: SUMMARY,
};

export const gpt2: ArchSpec = {
  modelTypes: ['gpt2'],
  configKeys,
  support: {
    variants: ['tied or untied head', 'n_inner', 'scale_attn_weights', 'scale_attn_by_inverse_layer_idx', 'reorder_and_upcast_attn'],
    refused: ['activation_function other than gelu_new / gelu_pytorch_tanh / gelu_fast', 'add_cross_attention'],
  },
  weightPrefixes: ['transformer.'],
  traits: {
    norm: 'layernorm',
    activation: 'gelu_tanh',
    gatedMlp: false,
    position: 'learned',
    positionOffset: 0,
  },

  dims(config: RawConfig, path: string): ModelDims {
    const act = optionalString(config, path, 'activation_function') ?? 'gelu_new';
    if (!['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'].includes(act)) {
      throw new UnsupportedError(`${path}: activation_function`, `"${act}" is not supported for gpt2 (gelu_new only)`);
    }
    const hiddenSize = positiveInt(config, path, 'n_embd', 'hidden_size');
    const numHeads = positiveInt(config, path, 'n_head', 'num_attention_heads');
    const headDim = hiddenSize / numHeads;
    tiedHead(config, path, true);
    return {
      vocabSize: positiveInt(config, path, 'vocab_size'),
      hiddenSize,
      numLayers: positiveInt(config, path, 'n_layer', 'num_hidden_layers'),
      numHeads,
      numKvHeads: numHeads,
      headDim,
      intermediateSize: optionalPositiveInt(config, path, 'n_inner') ?? 4 * hiddenSize,
      maxPositions: positiveInt(config, path, 'n_positions', 'max_position_embeddings'),
      normEps: positiveNumber(config, path, 'layer_norm_epsilon', 1e-5),
      embedDim: hiddenSize,
      attentionScale: optionalBool(config, path, 'scale_attn_weights', true) ? 1 / Math.sqrt(headDim) : 1,
      attentionScaleByLayer: optionalBool(config, path, 'scale_attn_by_inverse_layer_idx', false),
      residualFromNorm: false,
      parallelResidual: false,
    };
  },

  globals(_d, config) {
    return {
      embedTokens: { source: 'wte.weight' },
      embedPositions: { source: 'wpe.weight' },
      finalNorm: norm('ln_f', true),
      lmHead: lmHeadView(tiedHead(config, '', true), 'wte.weight'),
    };
  },

  layer(i, d) {
    const p = `h.${i}`;
    const e = d.hiddenSize;
    return {
      inputNorm: norm(`${p}.ln_1`, true),
      q: conv1d(`${p}.attn.c_attn`, [0, e]),
      k: conv1d(`${p}.attn.c_attn`, [e, e]),
      v: conv1d(`${p}.attn.c_attn`, [2 * e, e]),
      o: conv1d(`${p}.attn.c_proj`),
      postAttentionNorm: norm(`${p}.ln_2`, true),
      up: conv1d(`${p}.mlp.c_fc`),
      down: conv1d(`${p}.mlp.c_proj`),
    };
  },
};
