/**
 * OPT: learned positions offset by 2, ReLU, separate q/k/v projections. Pre-LayerNorm, or
 * post-LayerNorm (opt-350m: do_layer_norm_before false), whose norms are mapped so that the
 * shared rule `residualFromNorm` describes it:
 *   HF:   h = LN_sa(h + attn(h));  h = LN_fl(h + mlp(h))      (no final norm)
 *   here: layer i's input norm is layer i-1's final_layer_norm (none for layer 0), its
 *         post-attention norm its own self_attn_layer_norm, the final norm the last layer's
 *         final_layer_norm; the residual stream carries each norm's output.
 * opt-350m also embeds tokens in word_embed_proj_dim and projects in and out of hidden_size.
 */
import { optionalBool, optionalPositiveInt, optionalString, positiveInt, type RawConfig } from '../checkpoint/config.js';
import { UnsupportedError } from '../errors.js';
import { USED, type KeyTable } from './config-keys.js';
import { linear, lmHeadView, norm, tiedHead, type ArchSpec, type ModelDims } from './spec.js';

const configKeys: KeyTable = {
  vocab_size: USED,
  hidden_size: USED,
  num_hidden_layers: USED,
  num_attention_heads: USED,
  ffn_dim: USED,
  max_position_embeddings: USED,
  do_layer_norm_before: USED,
  _remove_final_layer_norm: USED,
  word_embed_proj_dim: USED,
  activation_function: USED,
  enable_bias: USED,
  tie_word_embeddings: USED,
  layer_norm_elementwise_affine: { only: true, why: 'LayerNorms without weights are not supported' },
  dropout: { harmless: 'dropout is off at inference' },
  attention_dropout: { harmless: 'dropout is off at inference' },
  activation_dropout: { harmless: 'dropout is off at inference' },
  layerdrop: { harmless: 'layers are dropped only in training' },
};

function preNorm(config: RawConfig, path: string): boolean {
  return optionalBool(config, path, 'do_layer_norm_before', true);
}

export const opt: ArchSpec = {
  modelTypes: ['opt'],
  configKeys,
  support: {
    variants: ['pre- or post-LayerNorm (do_layer_norm_before)', 'word_embed_proj_dim (project_in/out, opt-350m)', '_remove_final_layer_norm', 'enable_bias', 'tied or untied head'],
    refused: ['activation_function other than relu', 'layer_norm_elementwise_affine false'],
    wgslLacks: ['post-LayerNorm', 'word_embed_proj_dim'],
  },
  weightPrefixes: ['model.decoder.', 'decoder.'],
  traits: {
    norm: 'layernorm',
    activation: 'relu',
    gatedMlp: false,
    position: 'learned',
    positionOffset: 2,
  },

  dims(config: RawConfig, path: string): ModelDims {
    const hiddenSize = positiveInt(config, path, 'hidden_size');
    const act = optionalString(config, path, 'activation_function') ?? 'relu';
    if (act !== 'relu') throw new UnsupportedError(`${path}: activation_function`, `"${act}" is not supported for opt (relu only)`);
    const numHeads = positiveInt(config, path, 'num_attention_heads');
    optionalBool(config, path, 'enable_bias', true);
    optionalBool(config, path, '_remove_final_layer_norm', false);
    tiedHead(config, path, true);
    return {
      vocabSize: positiveInt(config, path, 'vocab_size'),
      hiddenSize,
      numLayers: positiveInt(config, path, 'num_hidden_layers'),
      numHeads,
      numKvHeads: numHeads,
      headDim: hiddenSize / numHeads,
      intermediateSize: positiveInt(config, path, 'ffn_dim'),
      maxPositions: positiveInt(config, path, 'max_position_embeddings'),
      normEps: 1e-5,
      embedDim: optionalPositiveInt(config, path, 'word_embed_proj_dim') ?? hiddenSize,
      attentionScale: 1 / Math.sqrt(hiddenSize / numHeads),
      attentionScaleByLayer: false,
      residualFromNorm: !preNorm(config, path),
      parallelResidual: false,
    };
  },

  globals(d, config) {
    const projected = d.embedDim !== d.hiddenSize;
    const last = `layers.${d.numLayers - 1}.final_layer_norm`;
    const finalNorm = !preNorm(config, '') ? norm(last, true) : config['_remove_final_layer_norm'] === true ? undefined : norm('final_layer_norm', true);
    return {
      embedTokens: { source: 'embed_tokens.weight' },
      embedPositions: { source: 'embed_positions.weight' },
      ...(projected ? { projectIn: { source: 'project_in.weight', transpose: true }, projectOut: { source: 'project_out.weight', transpose: true } } : {}),
      ...(finalNorm ? { finalNorm } : {}),
      lmHead: lmHeadView(tiedHead(config, '', true), 'embed_tokens.weight'),
    };
  },

  layer(i, _d, config) {
    const p = `layers.${i}`;
    const bias = optionalBool(config, '', 'enable_bias', true);
    const pre = preNorm(config, '');
    const inputNorm = pre ? norm(`${p}.self_attn_layer_norm`, true) : i > 0 ? norm(`layers.${i - 1}.final_layer_norm`, true) : undefined;
    return {
      ...(inputNorm ? { inputNorm } : {}),
      q: linear(`${p}.self_attn.q_proj`, bias),
      k: linear(`${p}.self_attn.k_proj`, bias),
      v: linear(`${p}.self_attn.v_proj`, bias),
      o: linear(`${p}.self_attn.out_proj`, bias),
      postAttentionNorm: norm(pre ? `${p}.final_layer_norm` : `${p}.self_attn_layer_norm`, true),
      up: linear(`${p}.fc1`, bias),
      down: linear(`${p}.fc2`, bias),
    };
  },
};
