/** BLOOM: ALiBi instead of positions, embedding LayerNorm, gelu (tanh), QKV fused per head. */
import { optionalBool, positiveInt, positiveNumber, type RawConfig } from '../checkpoint/config.js';
import { USED, type KeyTable } from './config-keys.js';
import { lmHeadView, linear, norm, tiedHead, type ArchSpec, type LinearWeights, type ModelDims } from './spec.js';

/**
 * query_key_value.weight is [H * 3 * D, E]: for head h, rows h*3D .. h*3D+D are q, the next
 * D are k, then v. `part` picks q (0), k (1) or v (2) across all heads.
 */
function qkvPart(name: string, part: number, d: ModelDims): LinearWeights {
  const rows: Array<[number, number]> = [];
  for (let h = 0; h < d.numHeads; h++) rows.push([(h * 3 + part) * d.headDim, d.headDim]);
  return { weight: { source: `${name}.weight`, rows, transpose: true }, bias: { source: `${name}.bias`, rows } };
}

/** Settings of the Megatron-DeepSpeed run that trained BLOOM, kept in its configs. */
const TRAINING_RUN = { harmless: 'a setting of the Megatron-DeepSpeed training run: kernels and fusions of the same math' };

const configKeys: KeyTable = {
  vocab_size: USED,
  hidden_size: USED,
  n_embed: USED,
  n_layer: USED,
  num_hidden_layers: USED,
  n_head: USED,
  num_attention_heads: USED,
  layer_norm_epsilon: USED,
  apply_residual_connection_post_layernorm: USED,
  tie_word_embeddings: USED,
  hidden_dropout: { harmless: 'dropout is off at inference' },
  attention_dropout: { harmless: 'dropout is off at inference' },
  slow_but_exact: { harmless: "chooses between two orders of the same tensor-parallel sum in Hugging Face's BLOOM" },
  unk_token_id: { harmless: 'the tokenizer maps unknown text; the model config only records the id' },
  seq_length: TRAINING_RUN,
  n_inner: { harmless: "Hugging Face's BLOOM ignores it: the MLP is always 4 x hidden_size" },
  offset_alibi: TRAINING_RUN,
  attention_softmax_in_fp32: TRAINING_RUN,
  bias_dropout_fusion: TRAINING_RUN,
  masked_softmax_fusion: TRAINING_RUN,
  skip_bias_add: TRAINING_RUN,
  skip_bias_add_qkv: TRAINING_RUN,
};

export const bloom: ArchSpec = {
  modelTypes: ['bloom'],
  configKeys,
  support: {
    variants: ['any head count (ALiBi slopes for non-powers of 2)', 'apply_residual_connection_post_layernorm', 'tied or untied head'],
    refused: [],
    wgslLacks: ['apply_residual_connection_post_layernorm'],
  },
  weightPrefixes: ['transformer.'],
  traits: {
    norm: 'layernorm',
    activation: 'gelu_tanh',
    gatedMlp: false,
    position: 'alibi',
    positionOffset: 0,
  },

  dims(config: RawConfig, path: string): ModelDims {
    const hiddenSize = positiveInt(config, path, 'hidden_size', 'n_embed');
    const numHeads = positiveInt(config, path, 'n_head', 'num_attention_heads');
    tiedHead(config, path, true);
    return {
      vocabSize: positiveInt(config, path, 'vocab_size'),
      hiddenSize,
      numLayers: positiveInt(config, path, 'n_layer', 'num_hidden_layers'),
      numHeads,
      numKvHeads: numHeads,
      headDim: hiddenSize / numHeads,
      intermediateSize: 4 * hiddenSize,
      maxPositions: Infinity,
      normEps: positiveNumber(config, path, 'layer_norm_epsilon', 1e-5),
      embedDim: hiddenSize,
      attentionScale: 1 / Math.sqrt(hiddenSize / numHeads),
      attentionScaleByLayer: false,
      residualFromNorm: optionalBool(config, path, 'apply_residual_connection_post_layernorm', false),
      parallelResidual: false,
    };
  },

  globals(_d, config) {
    return {
      embedTokens: { source: 'word_embeddings.weight' },
      embedNorm: norm('word_embeddings_layernorm', true),
      finalNorm: norm('ln_f', true),
      lmHead: lmHeadView(tiedHead(config, '', true), 'word_embeddings.weight'),
    };
  },

  layer(i, d) {
    const p = `h.${i}`;
    const qkv = `${p}.self_attention.query_key_value`;
    return {
      inputNorm: norm(`${p}.input_layernorm`, true),
      q: qkvPart(qkv, 0, d),
      k: qkvPart(qkv, 1, d),
      v: qkvPart(qkv, 2, d),
      o: linear(`${p}.self_attention.dense`, true),
      postAttentionNorm: norm(`${p}.post_attention_layernorm`, true),
      up: linear(`${p}.mlp.dense_h_to_4h`, true),
      down: linear(`${p}.mlp.dense_4h_to_h`, true),
    };
  },
};
