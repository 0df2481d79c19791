/**
 * GPT-J: one LayerNorm feeding attention and MLP in parallel, interleaved rotary
 * (rotate_every_two over the first rotary_dim dimensions of each head), no attention biases,
 * gelu_new, an untied head with a bias.
 */
import { optionalPositiveInt, optionalString, positiveInt, positiveNumber, type RawConfig } from '../checkpoint/config.js';
import { InputError, UnsupportedError } from '../errors.js';
import { USED, type KeyTable } from './config-keys.js';
import { headRows, rotaryDim, rotaryHeadOrder } from './positions.js';
import { linear, norm, tiedHead, type ArchSpec, type LinearWeights, type ModelDims } from './spec.js';

const DROPOUT = { harmless: 'dropout is off at inference' };

const configKeys: KeyTable = {
  vocab_size: USED,
  n_embd: USED,
  n_layer: USED,
  n_head: USED,
  n_inner: USED,
  n_positions: USED,
  rotary_dim: USED,
  activation_function: USED,
  layer_norm_epsilon: USED,
  tie_word_embeddings: USED,
  n_ctx: { harmless: "GPT-J's old name for the context length; Hugging Face's model reads n_positions" },
  resid_pdrop: DROPOUT,
  embd_pdrop: DROPOUT,
  attn_pdrop: DROPOUT,
  scale_attn_weights: { harmless: "GPT-J's attention always divides by sqrt(head_dim); Hugging Face's model never reads it" },
};

/** q or k rows in rotary order (rotate_every_two pairs moved to rotate-half pairs). */
function rotated(name: string, d: ModelDims): LinearWeights {
  const D = d.headDim;
  const order = rotaryHeadOrder(D, rotaryDim(d.rope!, D), true);
  return { weight: { source: `${name}.weight`, rows: headRows(d.numHeads, D, (h) => h * D, order), transpose: true } };
}

export const gptj: ArchSpec = {
  modelTypes: ['gptj'],
  configKeys,
  support: {
    variants: ['rotary_dim below head_dim', 'n_inner', 'tied or untied head'],
    refused: ['activation_function other than gelu_new / gelu_pytorch_tanh / gelu_fast', 'rotary_dim null'],
  },
  weightPrefixes: ['transformer.'],
  traits: {
    norm: 'layernorm',
    activation: 'gelu_tanh',
    gatedMlp: false,
    position: 'rotary',
    positionOffset: 0,
  },

  dims(config: RawConfig, path: string): ModelDims {
    const act = optionalString(config, path, 'activation_function') ?? 'gelu_new';
    if (!['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'].includes(act)) {
      throw new UnsupportedError(`${path}: activation_function`, `"${act}" is not supported for gptj (gelu_new only)`);
    }
    const hiddenSize = positiveInt(config, path, 'n_embd');
    const numHeads = positiveInt(config, path, 'n_head');
    if (hiddenSize % numHeads !== 0) throw new InputError(`${path}: n_head`, `${numHeads} does not divide n_embd ${hiddenSize}`);
    const headDim = hiddenSize / numHeads;
    // Hugging Face sizes its sin/cos table by n_embd when rotary_dim is null, which only fits one head.
    const rotary = optionalPositiveInt(config, path, 'rotary_dim');
    if (rotary === undefined) throw new UnsupportedError(`${path}: rotary_dim`, 'null rotary_dim is not supported (Hugging Face rotates by n_embd then)');
    if (rotary > headDim || rotary % 2 !== 0) throw new InputError(`${path}: rotary_dim`, `${rotary} must be even and at most the head dimension ${headDim}`);
    tiedHead(config, path, false);
    return {
      vocabSize: positiveInt(config, path, 'vocab_size'),
      hiddenSize,
      numLayers: positiveInt(config, path, 'n_layer'),
      numHeads,
      numKvHeads: numHeads,
      headDim,
      intermediateSize: optionalPositiveInt(config, path, 'n_inner') ?? 4 * hiddenSize,
      maxPositions: positiveInt(config, path, 'n_positions'),
      normEps: positiveNumber(config, path, 'layer_norm_epsilon', 1e-5),
      rope: { type: 'default', theta: 10000, partialFactor: rotary / headDim, dims: rotary },
      embedDim: hiddenSize,
      attentionScale: 1 / Math.sqrt(headDim),
      attentionScaleByLayer: false,
      residualFromNorm: false,
      parallelResidual: true,
    };
  },

  globals(_d, config) {
    const tied = tiedHead(config, '', false);
    return {
      embedTokens: { source: 'wte.weight' },
      finalNorm: norm('ln_f', true),
      lmHead: tied ? { source: 'wte.weight', transpose: true } : { source: 'lm_head.weight', transpose: true },
      ...(tied ? {} : { lmHeadBias: { source: 'lm_head.bias' } }),
    };
  },

  layer(i, d) {
    const p = `h.${i}`;
    // One norm feeds both branches: the spec names ln_1 for the MLP too.
    return {
      inputNorm: norm(`${p}.ln_1`, true),
      q: rotated(`${p}.attn.q_proj`, d),
      k: rotated(`${p}.attn.k_proj`, d),
      v: linear(`${p}.attn.v_proj`, false),
      o: linear(`${p}.attn.out_proj`, false),
      postAttentionNorm: norm(`${p}.ln_1`, true),
      up: linear(`${p}.mlp.fc_in`, true),
      down: linear(`${p}.mlp.fc_out`, true),
    };
  },
};
