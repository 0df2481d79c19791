/** OPT: learned positions offset by 2, pre-LayerNorm, ReLU, separate q/k/v projections. */
import { optionalBool, optionalPositiveInt, optionalString, positiveInt, type RawConfig } from '../checkpoint/config.js';
import { UnsupportedError } from '../errors.js';
import { linear, norm, type ArchSpec, type ModelDims } from './spec.js';

export const opt: ArchSpec = {
  modelTypes: ['opt'],
  hfClass: 'OPTForCausalLM',
  weightPrefixes: ['model.decoder.', 'decoder.'],
  traits: {
    norm: 'layernorm',
    activation: 'relu',
    gatedMlp: false,
    position: 'learned',
    positionOffset: 2,
    embeddingNorm: false,
  },

  dims(config: RawConfig, path: string): ModelDims {
    const hiddenSize = positiveInt(config, path, 'hidden_size');
    const projDim = optionalPositiveInt(config, path, 'word_embed_proj_dim');
    if (projDim !== undefined && projDim !== hiddenSize) {
      throw new UnsupportedError(`${path}: word_embed_proj_dim`, `${projDim} != hidden_size ${hiddenSize} (opt-350m style projections) is not supported`);
    }
    if (!optionalBool(config, path, 'do_layer_norm_before', true)) {
      throw new UnsupportedError(`${path}: do_layer_norm_before`, 'post-LayerNorm OPT (opt-350m) is not supported');
    }
    const act = optionalString(config, path, 'activation_function') ?? 'relu';
    if (act !== 'relu') throw new UnsupportedError(`${path}: activation_function`, `"${act}" is not supported for opt (relu only)`);
    const numHeads = positiveInt(config, path, 'num_attention_heads');
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
      ropeTheta: 0,
    };
  },

  globals() {
    return {
      embedTokens: { source: 'embed_tokens.weight' },
      embedPositions: { source: 'embed_positions.weight' },
      finalNorm: norm('final_layer_norm', true),
      lmHead: { source: 'embed_tokens.weight', transpose: true },
    };
  },

  layer(i) {
    const p = `layers.${i}`;
    return {
      inputNorm: norm(`${p}.self_attn_layer_norm`, true),
      q: linear(`${p}.self_attn.q_proj`, true),
      k: linear(`${p}.self_attn.k_proj`, true),
      v: linear(`${p}.self_attn.v_proj`, true),
      o: linear(`${p}.self_attn.out_proj`, true),
      postAttentionNorm: norm(`${p}.final_layer_norm`, true),
      up: linear(`${p}.fc1`, true),
      down: linear(`${p}.fc2`, true),
    };
  },
};
