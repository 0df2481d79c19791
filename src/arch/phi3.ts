/**
 * Phi-3: the llama block with q/k/v fused into qkv_proj and gate/up into gate_up_proj, split
 * here by rows; partial rotary (partial_rotary_factor) in rotate-half form. longrope (the
 * 128k-context checkpoints) is refused.
 */
import { headRows, rotaryDim, rotaryHeadOrder } from './positions.js';
import { USED, type KeyTable } from './config-keys.js';
import { llama, llamaDims, requireSilu } from './llama.js';
import { linear, norm, type ArchSpec, type LinearWeights, type ModelDims } from './spec.js';

const DROPOUT = { harmless: 'dropout is off at inference' };

const configKeys: KeyTable = {
  vocab_size: USED,
  hidden_size: USED,
  intermediate_size: USED,
  num_hidden_layers: USED,
  num_attention_heads: USED,
  num_key_value_heads: USED,
  hidden_act: USED,
  max_position_embeddings: USED,
  rms_norm_eps: USED,
  tie_word_embeddings: USED,
  rope_parameters: USED,
  rope_theta: USED,
  rope_scaling: USED,
  partial_rotary_factor: USED,
  sliding_window: USED,
  original_max_position_embeddings: { harmless: 'read only by longrope scaling, which is refused' },
  resid_pdrop: DROPOUT,
  embd_pdrop: DROPOUT,
  attention_dropout: DROPOUT,
};

/** Rows [start, start + heads * D) of a fused projection, in rotary order for q and k. */
function part(name: string, d: ModelDims, start: number, heads: number, rotary: boolean): LinearWeights {
  const D = d.headDim;
  const order = rotary ? rotaryHeadOrder(D, rotaryDim(d.rope!, D), false) : undefined;
  return { weight: { source: `${name}.weight`, rows: headRows(heads, D, (h) => start + h * D, order), transpose: true } };
}

export const phi3: ArchSpec = {
  modelTypes: ['phi3'],
  configKeys,
  support: {
    variants: ['fused qkv_proj and gate_up_proj', 'GQA', 'partial_rotary_factor', 'tied or untied head', 'sliding_window while runs fit it'],
    refused: ['rope type longrope (128k checkpoints) and others', 'hidden_act other than silu', 'runs longer than sliding_window'],
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
    return llamaDims(config, path, true);
  },

  // The llama model's embedding, final norm and head, by the same names.
  globals: llama.globals,

  layer(i, d) {
    const p = `layers.${i}`;
    const qkv = `${p}.self_attn.qkv_proj`;
    const qRows = d.numHeads * d.headDim;
    const kvRows = d.numKvHeads * d.headDim;
    const gateUp = `${p}.mlp.gate_up_proj`;
    const I = d.intermediateSize;
    return {
      inputNorm: norm(`${p}.input_layernorm`, false),
      q: part(qkv, d, 0, d.numHeads, true),
      k: part(qkv, d, qRows, d.numKvHeads, true),
      v: part(qkv, d, qRows + kvRows, d.numKvHeads, false),
      o: linear(`${p}.self_attn.o_proj`, false),
      postAttentionNorm: norm(`${p}.post_attention_layernorm`, false),
      gate: { weight: { source: `${gateUp}.weight`, rows: [[0, I]], transpose: true } },
      up: { weight: { source: `${gateUp}.weight`, rows: [[I, I]], transpose: true } },
      down: linear(`${p}.mlp.down_proj`, false),
    };
  },
};
