/**
 * GPT-NeoX (Pythia): LayerNorm, parallel residual (or sequential with use_parallel_residual
 * false), partial rotary (rotate-half over the first rotary_pct of each head), fused
 * query_key_value laid out per head as [q | k | v], untied embed_out, exact (erf) GELU.
 */
import { optionalBool, optionalString, positiveInt, positiveNumber, type RawConfig } from '../checkpoint/config.js';
import { InputError, UnsupportedError } from '../errors.js';
import { USED, type KeyTable } from './config-keys.js';
import { headRows, readRope, rotaryDim, rotaryHeadOrder } from './positions.js';
import { linear, lmHeadView, norm, tiedHead, type ArchSpec, type LinearWeights, type ModelDims } from './spec.js';

const configKeys: KeyTable = {
  vocab_size: USED,
  hidden_size: USED,
  num_hidden_layers: USED,
  num_attention_heads: USED,
  intermediate_size: USED,
  hidden_act: USED,
  max_position_embeddings: USED,
  layer_norm_eps: USED,
  tie_word_embeddings: USED,
  use_parallel_residual: USED,
  rope_parameters: USED,
  rope_scaling: USED,
  rotary_pct: USED,
  rotary_emb_base: USED,
  attention_bias: USED,
  attention_dropout: { harmless: 'dropout is off at inference' },
  hidden_dropout: { harmless: 'dropout is off at inference' },
  classifier_dropout: { harmless: 'belongs to the sequence-classification head' },
};

/** q, k or v (part 0, 1, 2) of the fused [H, 3, D] rows, q and k in rotary order. */
function qkvPart(name: string, part: number, d: ModelDims, bias: boolean): LinearWeights {
  const D = d.headDim;
  const order = part < 2 ? rotaryHeadOrder(D, rotaryDim(d.rope!, D), false) : undefined;
  const rows = headRows(d.numHeads, D, (h) => (3 * h + part) * D, order);
  const w = { weight: { source: `${name}.weight`, rows, transpose: true } };
  return bias ? { ...w, bias: { source: `${name}.bias`, rows } } : w;
}

export const gptNeox: ArchSpec = {
  modelTypes: ['gpt_neox'],
  configKeys,
  support: {
    variants: ['parallel or sequential residual', 'partial rotary (rotary_pct / partial_rotary_factor)', 'rope: default, linear, dynamic, llama3 (4.x and 5.x layouts)', 'attention_bias', 'tied or untied head'],
    refused: ['hidden_act other than gelu', 'rope types yarn, longrope and others'],
  },
  weightPrefixes: ['gpt_neox.'],
  traits: {
    norm: 'layernorm',
    activation: 'gelu_erf',
    gatedMlp: false,
    position: 'rotary',
    positionOffset: 0,
  },

  dims(config: RawConfig, path: string): ModelDims {
    const act = optionalString(config, path, 'hidden_act') ?? 'gelu';
    if (act !== 'gelu') throw new UnsupportedError(`${path}: hidden_act`, `"${act}" is not supported for gpt_neox (gelu only)`);
    const hiddenSize = positiveInt(config, path, 'hidden_size');
    const numHeads = positiveInt(config, path, 'num_attention_heads');
    if (hiddenSize % numHeads !== 0) throw new InputError(`${path}: num_attention_heads`, `${numHeads} does not divide hidden_size ${hiddenSize}`);
    const headDim = hiddenSize / numHeads;
    const rope = readRope(config, path, { thetaKey: 'rotary_emb_base', partialKey: 'rotary_pct', defaultPartial: 0.25 });
    if (rotaryDim(rope, headDim) % 2 !== 0) throw new InputError(`${path}: rotary_pct`, `rotates ${rotaryDim(rope, headDim)} of ${headDim} head dimensions: an odd count`);
    let maxPositions = positiveInt(config, path, 'max_position_embeddings');
    if (rope.type === 'dynamic' && rope.originalMaxPositions) maxPositions = Math.min(maxPositions, rope.originalMaxPositions);
    tiedHead(config, path, false);
    optionalBool(config, path, 'attention_bias', true);
    return {
      vocabSize: positiveInt(config, path, 'vocab_size'),
      hiddenSize,
      numLayers: positiveInt(config, path, 'num_hidden_layers'),
      numHeads,
      numKvHeads: numHeads,
      headDim,
      intermediateSize: positiveInt(config, path, 'intermediate_size'),
      maxPositions,
      normEps: positiveNumber(config, path, 'layer_norm_eps', 1e-5),
      rope,
      embedDim: hiddenSize,
      attentionScale: 1 / Math.sqrt(headDim),
      attentionScaleByLayer: false,
      residualFromNorm: false,
      parallelResidual: optionalBool(config, path, 'use_parallel_residual', true),
    };
  },

  globals(_d, config) {
    const tied = tiedHead(config, '', false);
    return {
      embedTokens: { source: 'embed_in.weight' },
      finalNorm: norm('final_layer_norm', true),
      lmHead: tied ? lmHeadView(true, 'embed_in.weight') : { source: 'embed_out.weight', transpose: true },
    };
  },

  layer(i, d, config) {
    const p = `layers.${i}`;
    const bias = optionalBool(config, '', 'attention_bias', true);
    const qkv = `${p}.attention.query_key_value`;
    return {
      inputNorm: norm(`${p}.input_layernorm`, true),
      q: qkvPart(qkv, 0, d, bias),
      k: qkvPart(qkv, 1, d, bias),
      v: qkvPart(qkv, 2, d, bias),
      o: linear(`${p}.attention.dense`, bias),
      postAttentionNorm: norm(`${p}.post_attention_layernorm`, true),
      up: linear(`${p}.mlp.dense_h_to_4h`, true),
      down: linear(`${p}.mlp.dense_4h_to_h`, true),
    };
  },
};
