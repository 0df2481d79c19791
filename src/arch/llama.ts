/**
 * Llama family (llama, mistral, qwen2): RMSNorm, rotary positions (rotate-half form),
 * grouped-query attention, SwiGLU. qwen2 adds q/k/v biases; mistral's sliding window is
 * only accepted when it covers the whole context.
 */
import { optionalBool, optionalPositiveInt, positiveInt, positiveNumber, type RawConfig } from '../checkpoint/config.js';
import { InputError, UnsupportedError } from '../errors.js';
import { linear, norm, type ArchSpec, type ModelDims } from './spec.js';

function hasAttentionBias(config: RawConfig): boolean {
  return config['model_type'] === 'qwen2' || config['attention_bias'] === true;
}

export const llama: ArchSpec = {
  modelTypes: ['llama', 'mistral', 'qwen2'],
  hfClass: 'LlamaForCausalLM',
  weightPrefixes: ['model.'],
  traits: {
    norm: 'rmsnorm',
    activation: 'silu',
    gatedMlp: true,
    position: 'rotary',
    positionOffset: 0,
    embeddingNorm: false,
  },

  dims(config: RawConfig, path: string): ModelDims {
    const act = config['hidden_act'] ?? 'silu';
    if (act !== 'silu') throw new UnsupportedError(`${path}: hidden_act`, `"${String(act)}" is not supported (silu only)`);
    const scaling = config['rope_scaling'];
    if (scaling !== undefined && scaling !== null) {
      const type = (scaling as Record<string, unknown>)['rope_type'] ?? (scaling as Record<string, unknown>)['type'];
      if (type !== 'default') throw new UnsupportedError(`${path}: rope_scaling`, `rope type "${String(type)}" is not supported yet`);
    }
    if (optionalBool(config, path, 'mlp_bias', false)) throw new UnsupportedError(`${path}: mlp_bias`, 'true is not supported');
    const hiddenSize = positiveInt(config, path, 'hidden_size');
    const numHeads = positiveInt(config, path, 'num_attention_heads');
    const numKvHeads = optionalPositiveInt(config, path, 'num_key_value_heads') ?? numHeads;
    if (numHeads % numKvHeads !== 0) {
      throw new InputError(`${path}: num_key_value_heads`, `${numKvHeads} does not divide num_attention_heads ${numHeads}`);
    }
    const maxPositions = positiveInt(config, path, 'max_position_embeddings');
    const window = optionalPositiveInt(config, path, 'sliding_window');
    if (window !== undefined && window < maxPositions && config['use_sliding_window'] !== false) {
      throw new UnsupportedError(`${path}: sliding_window`, `a window of ${window} < max_position_embeddings ${maxPositions} is not supported yet`);
    }
    return {
      vocabSize: positiveInt(config, path, 'vocab_size'),
      hiddenSize,
      numLayers: positiveInt(config, path, 'num_hidden_layers'),
      numHeads,
      numKvHeads,
      headDim: optionalPositiveInt(config, path, 'head_dim') ?? hiddenSize / numHeads,
      intermediateSize: positiveInt(config, path, 'intermediate_size'),
      // Rotary has no table, but the model was trained to this length and the fused op's
      // cos/sin caches are sized by it.
      maxPositions,
      normEps: positiveNumber(config, path, 'rms_norm_eps', 1e-6),
      ropeTheta: positiveNumber(config, path, 'rope_theta', 10000),
    };
  },

  globals(_d, config) {
    const tied = config['tie_word_embeddings'] === true;
    return {
      embedTokens: { source: 'embed_tokens.weight' },
      finalNorm: norm('norm', false),
      lmHead: tied ? { source: 'embed_tokens.weight', transpose: true } : { source: 'lm_head.weight', transpose: true },
    };
  },

  layer(i, _d, config) {
    const p = `layers.${i}`;
    const bias = hasAttentionBias(config);
    return {
      inputNorm: norm(`${p}.input_layernorm`, false),
      q: linear(`${p}.self_attn.q_proj`, bias),
      k: linear(`${p}.self_attn.k_proj`, bias),
      v: linear(`${p}.self_attn.v_proj`, bias),
      o: linear(`${p}.self_attn.o_proj`, false),
      postAttentionNorm: norm(`${p}.post_attention_layernorm`, false),
      gate: linear(`${p}.mlp.gate_proj`, false),
      up: linear(`${p}.mlp.up_proj`, false),
      down: linear(`${p}.mlp.down_proj`, false),
    };
  },
};
