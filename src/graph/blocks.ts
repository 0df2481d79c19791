/**
 * Block emitters for the plain (standard-ops) decoder. Each takes the emit context, a name
 * scope and its input tensor name, adds its nodes, and returns its output name.
 * Shapes: B batch, S new tokens, P past tokens, T = P + S, E hidden, H heads, Hkv KV heads,
 * D head dim, I intermediate, V vocab.
 */
import { ropeInvFreq } from '../arch/positions.js';
import type { Activation, ModelDims, NormKind } from '../arch/spec.js';
import type { LinearWeights, NormWeights, WeightView } from '../arch/spec.js';
import { float, int, ints, str, type Graph } from './ir.js';
import type { WeightSource } from './weights.js';

export type FloatType = 'float32' | 'float16';

export interface EmitContext {
  g: Graph;
  w: WeightSource;
  /** Activations and weights. Inputs ids/masks are int64; logits are always float32. */
  dtype: FloatType;
  dims: ModelDims;
}

/** Adds a weight initializer checked against the shape the config implies. */
export function weight(ctx: EmitContext, name: string, view: WeightView, shape: number[]): string {
  ctx.w.shape(view, shape);
  return ctx.g.initializer({ name, type: ctx.dtype, dims: shape, data: () => ctx.w.read(view) });
}

/**
 *   x [B,S,in] -> MatMul(W [in,out]) -> Add(b [out]) -> [B,S,out]
 */
export function linear(ctx: EmitContext, scope: string, x: string, lw: LinearWeights, inDim: number, outDim: number): string {
  const w = weight(ctx, `${weightName(scope)}.weight`, lw.weight, [inDim, outDim]);
  const y = ctx.g.op1('MatMul', [x, w], `${scope}/MatMul`);
  if (!lw.bias) return y;
  const b = weight(ctx, `${weightName(scope)}.bias`, lw.bias, [outDim]);
  return ctx.g.op1('Add', [y, b], `${scope}/Add`);
}

/**
 * LayerNorm:  x -> LayerNormalization(scale, bias, eps)
 * RMSNorm:    x -> x * 1/sqrt(mean(x^2) + eps) * scale      (decomposed: no standard op before opset 23)
 */
export function normalize(ctx: EmitContext, scope: string, x: string, kind: NormKind, nw: NormWeights | undefined): string {
  const { g, dims } = ctx;
  if (!nw) return x; // the spec has no norm here
  const E = dims.hiddenSize;
  const scale = weight(ctx, `${weightName(scope)}.weight`, nw.weight, [E]);
  if (kind === 'layernorm') {
    const bias = nw.bias ? weight(ctx, `${weightName(scope)}.bias`, nw.bias, [E]) : '';
    return g.op1('LayerNormalization', bias ? [x, scale, bias] : [x, scale], `${scope}/LayerNorm`, {
      axis: int(-1),
      epsilon: float(dims.normEps),
    });
  }
  const sq = g.op1('Mul', [x, x], `${scope}/Pow`);
  const mean = g.op1('ReduceMean', [sq, g.constInt64([-1])], `${scope}/ReduceMean`, { keepdims: int(1) });
  const eps = g.op1('Add', [mean, g.constFloat([dims.normEps], ctx.dtype, true)], `${scope}/Add`);
  const rms = g.op1('Sqrt', [eps], `${scope}/Sqrt`);
  const inv = g.op1('Reciprocal', [rms], `${scope}/Reciprocal`);
  const normed = g.op1('Mul', [x, inv], `${scope}/Mul`);
  return g.op1('Mul', [normed, scale], `${scope}/Mul_1`);
}

export function activate(ctx: EmitContext, scope: string, x: string, act: Activation): string {
  const g = ctx.g;
  switch (act) {
    case 'gelu_tanh':
      return g.op1('Gelu', [x], `${scope}/Gelu`, { approximate: str('tanh') });
    case 'gelu_erf':
      return g.op1('Gelu', [x], `${scope}/Gelu`);
    case 'relu':
      return g.op1('Relu', [x], `${scope}/Relu`);
    case 'silu':
      return g.op1('Mul', [x, g.op1('Sigmoid', [x], `${scope}/Sigmoid`)], `${scope}/Mul`);
  }
}

/** cap * tanh(x / cap): Gemma 2's soft capping of attention scores and logits. */
export function softcap(ctx: EmitContext, scope: string, x: string, cap: number): string {
  const g = ctx.g;
  const t = g.op1('Tanh', [g.op1('Div', [x, g.constFloat([cap], ctx.dtype, true)], `${scope}/Div`)], `${scope}/Tanh`);
  return g.op1('Mul', [t, g.constFloat([cap], ctx.dtype, true)], `${scope}/Mul`);
}

/** [B,S,heads*D] -> [B,heads,S,D] */
export function splitHeads(ctx: EmitContext, scope: string, x: string, heads: number): string {
  const r = ctx.g.op1('Reshape', [x, ctx.g.constInt64([0, 0, heads, ctx.dims.headDim])], `${scope}/Reshape`);
  return ctx.g.op1('Transpose', [r], `${scope}/Transpose`, { perm: ints([0, 2, 1, 3]) });
}

/** [B,H,S,D] -> [B,S,H*D] */
export function mergeHeads(ctx: EmitContext, scope: string, x: string): string {
  const t = ctx.g.op1('Transpose', [x], `${scope}/Transpose`, { perm: ints([0, 2, 1, 3]) });
  return ctx.g.op1('Reshape', [t, ctx.g.constInt64([0, 0, ctx.dims.numHeads * ctx.dims.headDim])], `${scope}/Reshape`);
}

/**
 * Rotary embedding, rotate-half form (HF llama):
 *   x [B,H,S,D] --Split(D/2)--> x1, x2 ; rot = Concat(-x2, x1)
 *   out = x * cos [B,1,S,D] + rot * sin [B,1,S,D]
 */
export function rotary(ctx: EmitContext, scope: string, x: string, cos: string, sin: string): string {
  const g = ctx.g;
  const half = ctx.dims.headDim / 2;
  const [x1, x2] = g.op('Split', [x, g.constInt64([half, half])], { axis: int(-1) }, { name: `${scope}/Split`, outputs: 2 });
  const rot = g.op1('Concat', [g.op1('Neg', [x2!], `${scope}/Neg`), x1!], `${scope}/Concat`, { axis: int(-1) });
  return g.op1('Add', [g.op1('Mul', [x, cos], `${scope}/Mul`), g.op1('Mul', [rot, sin], `${scope}/Mul_1`)], `${scope}/Add`);
}

/** [B,Hkv,T,D] -> [B,H,T,D] by repeating each KV head H/Hkv times (grouped-query attention). */
export function repeatKv(ctx: EmitContext, scope: string, x: string): string {
  const { g, dims } = ctx;
  const rep = dims.numHeads / dims.numKvHeads;
  if (rep === 1) return x;
  const u = g.op1('Unsqueeze', [x, g.constInt64([2])], `${scope}/Unsqueeze`);
  const e = g.op1('Expand', [u, g.constInt64([1, 1, rep, 1, 1])], `${scope}/Expand`);
  return g.op1('Reshape', [e, g.constInt64([0, dims.numHeads, -1, dims.headDim])], `${scope}/Reshape`);
}

/** `model.layers.0.attn.q_proj` from `/model/layers.0/attn/q_proj`. */
export function weightName(scope: string): string {
  return scope.replace(/^\//, '').replaceAll('/', '.');
}

/**
 * Token embeddings (projected to the hidden size where the spec embeds narrower, as OPT's
 * project_in), plus learned positions where the architecture has them.
 */
export function embed(ctx: EmitContext, ids: string, positionIds: string, tokens: WeightView, positions: WeightView | undefined, offset: number, projectIn?: WeightView): string {
  const { g, dims } = ctx;
  const table = weight(ctx, 'model.embed_tokens.weight', tokens, [dims.vocabSize, dims.embedDim]);
  let h = g.op1('Gather', [table, ids], '/model/embed_tokens/Gather');
  if (dims.embedScale) h = g.op1('Mul', [h, g.constFloat([dims.embedScale], ctx.dtype, true)], '/model/embed_tokens/Mul');
  if (projectIn) h = g.op1('MatMul', [h, weight(ctx, 'model.project_in.weight', projectIn, [dims.embedDim, dims.hiddenSize])], '/model/project_in/MatMul');
  if (!positions) return h;
  // The table must cover every position the config promises, or long runs would index past it.
  const posTable = weight(ctx, 'model.embed_positions.weight', positions, [dims.maxPositions + offset, dims.hiddenSize]);
  const idx = offset ? g.op1('Add', [positionIds, g.constInt64([offset], true)], '/model/embed_positions/Add') : positionIds;
  const p = g.op1('Gather', [posTable, idx], '/model/embed_positions/Gather');
  return g.op1('Add', [h, p], '/model/embed_positions/Add_1');
}

/** OPT's project_out before the head, where the spec has one: [.., hidden] -> [.., embedDim]. */
export function projectOut(ctx: EmitContext, h: string, view: WeightView | undefined): string {
  if (!view) return h;
  return ctx.g.op1('MatMul', [h, weight(ctx, 'model.project_out.weight', view, [ctx.dims.hiddenSize, ctx.dims.embedDim])], '/model/project_out/MatMul');
}

/**
 *   position_ids [B,S] -> float -> * inv_freq [D/2] -> freqs [B,S,D/2] -> Concat(freqs, freqs) [B,S,D]
 *   cos, sin -> Unsqueeze(1) -> [B,1,S,D]
 */
export function rotaryTables(ctx: EmitContext, positionIds: string): { cos: string; sin: string } {
  const { g, dims } = ctx;
  const s = '/model/rotary_emb';
  const half = dims.headDim / 2;
  const invFreq = g.initializer({
    name: 'model.rotary_emb.inv_freq',
    type: 'float32',
    dims: [half],
    data: () => ropeInvFreq(dims.rope!, dims.headDim),
  });
  const pos = g.op1('Unsqueeze', [g.op1('Cast', [positionIds], `${s}/Cast`, { to: int(1) }), g.constInt64([-1])], `${s}/Unsqueeze`);
  const freqs = g.op1('Mul', [pos, invFreq], `${s}/Mul`);
  const emb = g.op1('Unsqueeze', [g.op1('Concat', [freqs, freqs], `${s}/Concat`, { axis: int(-1) }), g.constInt64([1])], `${s}/Unsqueeze_1`);
  const to = (x: string, n: string) => (ctx.dtype === 'float16' ? g.op1('Cast', [x], `${s}/${n}/Cast`, { to: int(10) }) : x);
  return { cos: to(g.op1('Cos', [emb], `${s}/Cos`), 'Cos'), sin: to(g.op1('Sin', [emb], `${s}/Sin`), 'Sin') };
}

/**
 * The LM head (plus GPT-J's bias). Tied heads reuse the embedding table through Gemm(transB)
 * instead of storing a transposed copy:  h [B,S,E] -> [B*S,E] -> Gemm(embed^T) -> [B*S,V] -> [B,S,V]
 */
export function lmHead(ctx: EmitContext, h: string, head: WeightView, tokens: WeightView, bias?: WeightView): string {
  return logitsEpilogue(ctx, lmHeadMatMul(ctx, h, head, tokens), bias);
}

/** What follows the head's product: GPT-J's bias, Gemma 2's soft cap. */
export function logitsEpilogue(ctx: EmitContext, logits: string, bias?: WeightView): string {
  let y = bias ? ctx.g.op1('Add', [logits, weight(ctx, 'lm_head.bias', bias, [ctx.dims.vocabSize])], '/lm_head/Add') : logits;
  if (ctx.dims.logitSoftcap) y = softcap(ctx, '/lm_head/softcap', y, ctx.dims.logitSoftcap);
  return y;
}

function lmHeadMatMul(ctx: EmitContext, h: string, head: WeightView, tokens: WeightView): string {
  const { g, dims } = ctx;
  const s = '/lm_head';
  const tied = head.source === tokens.source && head.transpose && !head.rows && !head.cols;
  if (!tied) {
    const w = weight(ctx, 'lm_head.weight', head, [dims.embedDim, dims.vocabSize]);
    return g.op1('MatMul', [h, w], `${s}/MatMul`);
  }
  const table = weight(ctx, 'model.embed_tokens.weight', tokens, [dims.vocabSize, dims.embedDim]);
  const flat = g.op1('Reshape', [h, g.constInt64([-1, dims.embedDim])], `${s}/Reshape`);
  const y = g.op1('Gemm', [flat, table], `${s}/Gemm`, { transB: int(1) });
  const outShape = g.op1('Concat', [g.op1('Shape', [h], `${s}/Shape`, { start: int(0), end: int(2) }), g.constInt64([dims.vocabSize])], `${s}/Concat`, { axis: int(0) });
  return g.op1('Reshape', [y, outShape], `${s}/Reshape_1`);
}
