/**
 * The plain decoder graph: standard ONNX ops only, with the I/O contract transformers.js
 * expects of a decoder (`input_ids`, `attention_mask`, `position_ids` where positions are
 * used, `past_key_values.{i}.key|value` -> `logits`, `present.{i}.key|value`).
 *
 *   input_ids ──Gather(embed)──(+ learned positions)──(embedding norm)── h
 *   attention_mask ── causal & padding bias [B,1,S,T] (+ ALiBi [B,H,1,T])
 *   position_ids ── rotary cos/sin [B,1,S,D]
 *   for each layer:  h = h + attention(norm(h));  h = h + mlp(norm(h))
 *     (with residualFromNorm the residual stream carries norm(h) instead of h)
 *   norm ── (project_out) ── lm head ── logits [B,S,V] (float32)
 */
import { alibiSlopes } from '../arch/positions.js';
import { layerAttentionScale, type ArchSpec, type LayerWeights, type ModelDims } from '../arch/spec.js';
import type { RawConfig } from '../checkpoint/config.js';
import { activate, embed, linear, lmHead, mergeHeads, normalize, projectOut, repeatKv, rotary, rotaryTables, softcap, splitHeads, type EmitContext, type FloatType } from './blocks.js';
import { Graph, int, ints } from './ir.js';
import type { WeightSource } from './weights.js';

export interface DecoderGraphOptions {
  spec: ArchSpec;
  dims: ModelDims;
  config: RawConfig;
  weights: WeightSource;
  dtype: FloatType;
}

/** Symbolic dimension names, as transformers.js resolves them for the empty cache. */
export const DIM = { batch: 'batch_size', seq: 'sequence_length', past: 'past_sequence_length', total: 'total_sequence_length' };

export function kvNames(layer: number) {
  return {
    pastKey: `past_key_values.${layer}.key`,
    pastValue: `past_key_values.${layer}.value`,
    presentKey: `present.${layer}.key`,
    presentValue: `present.${layer}.value`,
  };
}

export function usesPositionIds(spec: ArchSpec): boolean {
  return spec.traits.position !== 'alibi';
}

export function buildReferenceDecoder(o: DecoderGraphOptions): Graph {
  const { spec, dims } = o;
  const g = new Graph(`fusegen-${spec.modelTypes[0]}-reference`);
  const ctx: EmitContext = { g, w: o.weights, dtype: o.dtype, dims };

  const inputIds = g.input('input_ids', 'int64', [DIM.batch, DIM.seq]);
  const mask = g.input('attention_mask', 'int64', [DIM.batch, DIM.total]);
  const positionIds = usesPositionIds(spec) ? g.input('position_ids', 'int64', [DIM.batch, DIM.seq]) : '';
  for (let i = 0; i < dims.numLayers; i++) {
    const n = kvNames(i);
    g.input(n.pastKey, o.dtype, [DIM.batch, dims.numKvHeads, DIM.past, dims.headDim]);
    g.input(n.pastValue, o.dtype, [DIM.batch, dims.numKvHeads, DIM.past, dims.headDim]);
  }

  const globals = spec.globals(dims, o.config);
  let h = embed(ctx, inputIds, positionIds, globals.embedTokens, globals.embedPositions, spec.traits.positionOffset, globals.projectIn);
  if (globals.embedNorm) h = normalize(ctx, '/model/embed_norm', h, spec.traits.norm, globals.embedNorm);

  const bias = attentionBias(ctx, inputIds, mask, spec.traits.position === 'alibi');
  const rope = spec.traits.position === 'rotary' ? rotaryTables(ctx, positionIds) : undefined;

  // x: the next block's input; res: the residual stream it is added back to.
  const layers = Array.from({ length: dims.numLayers }, (_, i) => spec.layer(i, dims, o.config));
  let x = normalize(ctx, '/model/layers.0/input_layernorm', h, spec.traits.norm, layers[0]!.inputNorm);
  let res = dims.residualFromNorm ? x : h;
  const addNorm = (sum: string, scope: string, nw: LayerWeights['inputNorm']) => {
    x = normalize(ctx, scope, sum, spec.traits.norm, nw);
    res = dims.residualFromNorm ? x : sum;
  };
  layers.forEach((lw, i) => {
    const scope = `/model/layers.${i}`;
    const next = layers[i + 1];
    const nextNorm = next ? `/model/layers.${i + 1}/input_layernorm` : '/model/norm';
    const a = normalize(ctx, `${scope}/attn_out_norm`, attention(ctx, `${scope}/attn`, x, lw, i, bias, rope), spec.traits.norm, lw.attnOutNorm);
    if (dims.parallelResidual) {
      // x + attn(n1(x)) + mlp(n2(x)), summed as Hugging Face does: (attn + mlp) + x.
      const m = mlp(ctx, `${scope}/mlp`, normalize(ctx, `${scope}/post_attention_layernorm`, res, spec.traits.norm, lw.postAttentionNorm), lw, spec);
      addNorm(g.op1('Add', [res, g.op1('Add', [a, m], `${scope}/parallel_add`)], `${scope}/residual_add`), nextNorm, next ? next.inputNorm : globals.finalNorm);
      return;
    }
    addNorm(g.op1('Add', [res, a], `${scope}/residual_add`), `${scope}/post_attention_layernorm`, lw.postAttentionNorm);
    const m = normalize(ctx, `${scope}/mlp_out_norm`, mlp(ctx, `${scope}/mlp`, x, lw, spec), spec.traits.norm, lw.mlpOutNorm);
    addNorm(g.op1('Add', [res, m], `${scope}/residual_add_1`), nextNorm, next ? next.inputNorm : globals.finalNorm);
  });

  const logits = lmHead(ctx, projectOut(ctx, x, globals.projectOut), globals.lmHead, globals.embedTokens, globals.lmHeadBias);
  g.op('Cast', [logits], { to: int(1) }, { name: '/lm_head/Cast', outputNames: ['logits'] });
  g.output('logits', 'float32', [DIM.batch, DIM.seq, dims.vocabSize]);
  for (let i = 0; i < dims.numLayers; i++) {
    const n = kvNames(i);
    g.output(n.presentKey, o.dtype, [DIM.batch, dims.numKvHeads, DIM.total, dims.headDim]);
    g.output(n.presentValue, o.dtype, [DIM.batch, dims.numKvHeads, DIM.total, dims.headDim]);
  }
  return g;
}

/**
 * Additive attention bias shared by all layers:
 *   key k is visible to query q iff k <= P + q (causal) and attention_mask[b, k] == 1
 *   bias [B,1,S,T] = 0 where visible, float min elsewhere
 * With ALiBi (BLOOM), plus slope[h] * key position, where positions count only unpadded
 * tokens: pos = (cumsum(mask) - 1) * mask, giving [B,H,S,T].
 */
function attentionBias(ctx: EmitContext, ids: string, mask: string, alibi: boolean): string {
  const { g } = ctx;
  const s = '/model/attn_mask';
  const S = g.op1('Shape', [ids], `${s}/Shape`, { start: int(1), end: int(2) });
  const T = g.op1('Shape', [mask], `${s}/Shape_1`, { start: int(1), end: int(2) });
  const scalar = (x: string, n: string) => g.op1('Squeeze', [x, g.constInt64([0])], `${s}/${n}`);
  const zero = g.constInt64([0], true);
  const one = g.constInt64([1], true);
  const Ts = scalar(T, 'Squeeze');
  const P = g.op1('Sub', [Ts, scalar(S, 'Squeeze_1')], `${s}/Sub`);
  const kpos = g.op1('Range', [zero, Ts, one], `${s}/Range`); // [T]
  const qpos = g.op1('Range', [P, Ts, one], `${s}/Range_1`); // [S]
  const causal = g.op1('LessOrEqual', [
    g.op1('Unsqueeze', [kpos, g.constInt64([0])], `${s}/Unsqueeze`), // [1,T]
    g.op1('Unsqueeze', [qpos, g.constInt64([1])], `${s}/Unsqueeze_1`), // [S,1]
  ], `${s}/LessOrEqual`); // [S,T]
  const pad = g.op1('Unsqueeze', [g.op1('Cast', [mask], `${s}/Cast`, { to: int(9) }), g.constInt64([1, 2])], `${s}/Unsqueeze_2`); // [B,1,1,T]
  const visible = g.op1('And', [causal, pad], `${s}/And`); // [B,1,S,T]
  const min = ctx.dtype === 'float16' ? -65504 : -3.4028234663852886e38;
  const bias = g.op1('Where', [visible, g.constFloat([0], ctx.dtype, true), g.constFloat([min], ctx.dtype, true)], `${s}/Where`);
  if (!alibi) return bias;

  const a = '/model/alibi';
  const cum = g.op1('CumSum', [mask, g.constInt64([1], true)], `${a}/CumSum`);
  const pos = g.op1('Mul', [g.op1('Sub', [cum, one], `${a}/Sub`), mask], `${a}/Mul`); // [B,T]
  const posF = g.op1('Cast', [pos], `${a}/Cast`, { to: int(ctx.dtype === 'float16' ? 10 : 1) });
  const slopes = g.initializer({
    name: 'model.alibi.slopes',
    type: ctx.dtype,
    dims: [ctx.dims.numHeads, 1, 1],
    data: () => Float32Array.from(alibiSlopes(ctx.dims.numHeads)),
  });
  const bias4 = g.op1('Mul', [slopes, g.op1('Unsqueeze', [posF, g.constInt64([1, 2])], `${a}/Unsqueeze`)], `${a}/Mul_1`); // [B,H,1,T]
  return g.op1('Add', [bias, bias4], `${a}/Add`);
}

/**
 *   x ─┬─ q_proj ─ heads ─(rotary)────────────────────────── q [B,H,S,D]
 *      ├─ k_proj ─ heads ─(rotary)─ Concat(past_key) ─ present_key ─ repeat ─ k [B,H,T,D]
 *      └─ v_proj ─ heads ────────── Concat(past_value) ─ present_value ─ repeat ─ v
 *   Softmax(q k^T * scale + bias) v ─ merge heads ─ o_proj      (scale: 1/sqrt(D) unless the config says otherwise)
 */
function attention(ctx: EmitContext, scope: string, x: string, lw: LayerWeights, layer: number, bias: string, rope?: { cos: string; sin: string }): string {
  const { g, dims } = ctx;
  const E = dims.hiddenSize;
  const D = dims.headDim;
  const n = kvNames(layer);
  let q = splitHeads(ctx, `${scope}/q_heads`, linear(ctx, `${scope}/q_proj`, x, lw.q, E, dims.numHeads * D), dims.numHeads);
  let k = splitHeads(ctx, `${scope}/k_heads`, linear(ctx, `${scope}/k_proj`, x, lw.k, E, dims.numKvHeads * D), dims.numKvHeads);
  const v = splitHeads(ctx, `${scope}/v_heads`, linear(ctx, `${scope}/v_proj`, x, lw.v, E, dims.numKvHeads * D), dims.numKvHeads);
  if (rope) {
    q = rotary(ctx, `${scope}/q_rotary`, q, rope.cos, rope.sin);
    k = rotary(ctx, `${scope}/k_rotary`, k, rope.cos, rope.sin);
  }
  const kAll = g.op('Concat', [n.pastKey, k], { axis: int(2) }, { name: `${scope}/k_cache/Concat`, outputNames: [n.presentKey] })[0]!;
  const vAll = g.op('Concat', [n.pastValue, v], { axis: int(2) }, { name: `${scope}/v_cache/Concat`, outputNames: [n.presentValue] })[0]!;
  const kT = g.op1('Transpose', [repeatKv(ctx, `${scope}/k_repeat`, kAll)], `${scope}/k_transpose`, { perm: ints([0, 1, 3, 2]) });
  const scores = g.op1('MatMul', [q, kT], `${scope}/qk/MatMul`);
  let scaled = g.op1('Mul', [scores, g.constFloat([layerAttentionScale(dims, layer)], ctx.dtype, true)], `${scope}/qk/Mul`);
  if (dims.attnSoftcap) scaled = softcap(ctx, `${scope}/qk/softcap`, scaled, dims.attnSoftcap);
  const probs = g.op1('Softmax', [g.op1('Add', [scaled, bias], `${scope}/qk/Add`)], `${scope}/Softmax`, { axis: int(-1) });
  const ctxOut = g.op1('MatMul', [probs, repeatKv(ctx, `${scope}/v_repeat`, vAll)], `${scope}/pv/MatMul`);
  return linear(ctx, `${scope}/o_proj`, mergeHeads(ctx, `${scope}/merge_heads`, ctxOut), lw.o, dims.numHeads * D, E);
}

/**
 *   plain:  x ─ up ─ act ─ down
 *   gated:  x ─┬─ gate ─ act ─┐
 *              └─ up ─────────Mul ─ down
 */
function mlp(ctx: EmitContext, scope: string, x: string, lw: LayerWeights, spec: ArchSpec): string {
  const { g, dims } = ctx;
  const E = dims.hiddenSize;
  const I = dims.intermediateSize;
  const up = linear(ctx, `${scope}/up_proj`, x, lw.up, E, I);
  let hidden: string;
  if (spec.traits.gatedMlp && lw.gate) {
    const gate = activate(ctx, `${scope}/act`, linear(ctx, `${scope}/gate_proj`, x, lw.gate, E, I), spec.traits.activation);
    hidden = g.op1('Mul', [gate, up], `${scope}/Mul`);
  } else {
    hidden = activate(ctx, `${scope}/act`, up, spec.traits.activation);
  }
  return linear(ctx, `${scope}/down_proj`, hidden, lw.down, I, E);
}

