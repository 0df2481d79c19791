/** BLOOM: ALiBi instead of positions, embedding LayerNorm, gelu (tanh), QKV fused per head. */
import { optionalBool, positiveInt, positiveNumber, type RawConfig } from '../checkpoint/config.js';
import { UnsupportedError } from '../errors.js';
import { linear, norm, type ArchSpec, type LinearWeights, type ModelDims } from './spec.js';

/**
 * query_key_value.weight is [H * 3 * D, E]: for head h, rows h*3D .. h*3D+D are q, the next
 * D are k, then v. `part` picks q (0), k (1) or v (2) across all heads.
 */
function qkvPart(name: string, part: number, d: ModelDims): LinearWeights {
  const rows: Array<[number, number]> = [];
  for (let h = 0; h < d.numHeads; h++) rows.push([(h * 3 + part) * d.headDim, d.headDim]);
  return { weight: { source: `${name}.weight`, rows, transpose: true }, bias: { source: `${name}.bias`, rows } };
}

export const bloom: ArchSpec = {
  modelTypes: ['bloom'],
  hfClass: 'BloomForCausalLM',
  weightPrefixes: ['transformer.'],
  traits: {
    norm: 'layernorm',
    activation: 'gelu_tanh',
    gatedMlp: false,
    position: 'alibi',
    positionOffset: 0,
    embeddingNorm: true,
  },

  dims(config: RawConfig, path: string): ModelDims {
    if (optionalBool(config, path, 'apply_residual_connection_post_layernorm', false)) {
      throw new UnsupportedError(`${path}: apply_residual_connection_post_layernorm`, 'true is not supported');
    }
    const hiddenSize = positiveInt(config, path, 'hidden_size', 'n_embed');
    const numHeads = positiveInt(config, path, 'n_head', 'num_attention_heads');
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
      ropeTheta: 0,
    };
  },

  globals() {
    return {
      embedTokens: { source: 'word_embeddings.weight' },
      embedNorm: norm('word_embeddings_layernorm', true),
      finalNorm: norm('ln_f', true),
      lmHead: { source: 'word_embeddings.weight', transpose: true },
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
