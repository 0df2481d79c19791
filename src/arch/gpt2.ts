/** GPT-2: learned positions, pre-LayerNorm, gelu_new, Conv1D projections ([in, out]). */
import { optionalPositiveInt, optionalString, positiveInt, positiveNumber, type RawConfig } from '../checkpoint/config.js';
import { UnsupportedError } from '../errors.js';
import { norm, type ArchSpec, type LinearWeights, type ModelDims } from './spec.js';

/** Conv1D weights are already [in, out]; a fused c_attn is split by columns. */
function conv1d(name: string, cols?: [number, number]): LinearWeights {
  return cols
    ? { weight: { source: `${name}.weight`, cols: [cols] }, bias: { source: `${name}.bias`, rows: [cols] } }
    : { weight: { source: `${name}.weight` }, bias: { source: `${name}.bias` } };
}

export const gpt2: ArchSpec = {
  modelTypes: ['gpt2'],
  hfClass: 'GPT2LMHeadModel',
  weightPrefixes: ['transformer.'],
  traits: {
    norm: 'layernorm',
    activation: 'gelu_tanh',
    gatedMlp: false,
    position: 'learned',
    positionOffset: 0,
    embeddingNorm: false,
  },

  dims(config: RawConfig, path: string): ModelDims {
    const act = optionalString(config, path, 'activation_function') ?? 'gelu_new';
    if (!['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'].includes(act)) {
      throw new UnsupportedError(`${path}: activation_function`, `"${act}" is not supported for gpt2 (gelu_new only)`);
    }
    if (config['scale_attn_by_inverse_layer_idx'] === true || config['reorder_and_upcast_attn'] === true) {
      throw new UnsupportedError(`${path}: scale_attn_by_inverse_layer_idx`, 'non-standard GPT-2 attention scaling is not supported');
    }
    const hiddenSize = positiveInt(config, path, 'n_embd', 'hidden_size');
    const numHeads = positiveInt(config, path, 'n_head', 'num_attention_heads');
    return {
      vocabSize: positiveInt(config, path, 'vocab_size'),
      hiddenSize,
      numLayers: positiveInt(config, path, 'n_layer', 'num_hidden_layers'),
      numHeads,
      numKvHeads: numHeads,
      headDim: hiddenSize / numHeads,
      intermediateSize: optionalPositiveInt(config, path, 'n_inner') ?? 4 * hiddenSize,
      maxPositions: positiveInt(config, path, 'n_positions', 'max_position_embeddings'),
      normEps: positiveNumber(config, path, 'layer_norm_epsilon', 1e-5),
      ropeTheta: 0,
    };
  },

  globals() {
    return {
      embedTokens: { source: 'wte.weight' },
      embedPositions: { source: 'wpe.weight' },
      finalNorm: norm('ln_f', true),
      lmHead: { source: 'wte.weight', transpose: true },
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
