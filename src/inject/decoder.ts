/**
 * The injected decoder: the model's forward pass with blocks replaced by fused ONNX Runtime
 * ops as the architecture's policy says, each fusion switchable. Its I/O contract serves
 * fusegen's own generate loop, with the KV cache in one buffer allocated per run:
 *
 *   input_ids [B,S], position_ids [B,S]          right-padded rows; positions 0.. per row
 *   seqlens_k [B] int32                          tokens in each row's cache after this step, - 1
 *   total_sequence_length [] int32               max over rows of (seqlens_k + 1)
 *   logits_index [B,L]                           which of the S positions get logits
 *   past_key_values.{i}.key|value [B,Hkv,M,D]    the cache (M = capacity) -> present.{i}.key|value
 *   -> logits [B,L,V] float32
 *
 *   ids ── embed (+ positions) ── (embed norm) ── norm ─┐
 *   for each layer:   attention ── SkipNorm(+residual) ── MLP ── SkipNorm(+residual, next norm)
 *   gather logits_index ── lm head ── logits
 */
import { alibiSlopes, ropeInvFreq } from '../arch/positions.js';
import { layerAttentionScale, type ArchSpec, type LayerWeights, type ModelDims, type NormKind } from '../arch/spec.js';
import type { RawConfig } from '../checkpoint/config.js';
import { activate, embed, lmHead, logitsEpilogue, mergeHeads, normalize, projectOut, repeatKv, rotary, rotaryTables, softcap, splitHeads, weightName } from '../graph/blocks.js';
import { kvNames } from '../graph/decoder.js';
import { float, Graph, int, ints } from '../graph/ir.js';
import type { WeightSource } from '../graph/weights.js';
import { addNorm, biasGelu, biasInitializer, cacheRowIndices, countFusion, MS, projection, splitLast, type InjectContext, type LinearSource } from './blocks.js';
import type { FusionCounts, InjectionPlan } from './plan.js';
import { policyFor, type InjectionPolicy } from './policy.js';

export const IO = {
  inputIds: 'input_ids',
  positionIds: 'position_ids',
  seqlensK: 'seqlens_k',
  totalSequenceLength: 'total_sequence_length',
  logitsIndex: 'logits_index',
  logits: 'logits',
} as const;

export interface InjectedDecoderOptions {
  spec: ArchSpec;
  dims: ModelDims;
  config: RawConfig;
  weights: WeightSource;
  plan: InjectionPlan;
}

/** Per-model tensors every attention block reads. */
interface AttentionInputs {
  /** GQA's rotary caches [maxPos, D/2], or the plain path's cos/sin [B,1,S,D]. */
  rope?: { cos: string; sin: string };
  /** Additive bias: ALiBi [B,H,S,T] (fused), or causal mask (+ ALiBi) [B,1|H,S,M] (plain). */
  bias?: string;
  /** Plain path: cache rows the new tokens go to, [B,Hkv,S,D]. */
  cacheRows?: string;
}

export function buildInjectedDecoder(o: InjectedDecoderOptions): { graph: Graph; fused: FusionCounts } {
  const { spec, dims, plan } = o;
  const policy = policyFor(spec.traits);
  const g = new Graph(`fusegen-${spec.modelTypes[0]}-injected`);
  const ctx: InjectContext = { g, w: o.weights, dtype: plan.dtype, dims, plan, fused: {} };
  const cacheShape = ['batch_size', dims.numKvHeads, 'max_cache_length', dims.headDim];

  const ids = g.input(IO.inputIds, 'int64', ['batch_size', 'sequence_length']);
  const pos = g.input(IO.positionIds, 'int64', ['batch_size', 'sequence_length']);
  g.input(IO.seqlensK, 'int32', ['batch_size']);
  g.input(IO.totalSequenceLength, 'int32', []);
  const logitsIndex = g.input(IO.logitsIndex, 'int64', ['batch_size', 'logits_length']);
  for (let i = 0; i < dims.numLayers; i++) {
    g.input(kvNames(i).pastKey, plan.dtype, cacheShape);
    g.input(kvNames(i).pastValue, plan.dtype, cacheShape);
  }

  const globals = spec.globals(dims, o.config);
  let h = embed(ctx, ids, pos, globals.embedTokens, globals.embedPositions, spec.traits.positionOffset, globals.projectIn);
  if (globals.embedNorm) h = normalize(ctx, '/model/embed_norm', h, spec.traits.norm, globals.embedNorm);
  const att = attentionInputs(ctx, pos, policy);

  const norm: NormKind = spec.traits.norm;
  const layers = Array.from({ length: dims.numLayers }, (_, i) => spec.layer(i, dims, o.config));
  let normed = normalize(ctx, '/model/layers.0/input_layernorm', h, norm, layers[0]!.inputNorm);
  // The residual stream: each sum, or with residualFromNorm each norm's output.
  let residual = dims.residualFromNorm ? normed : h;
  const addNormed = (scope: string, delta: { y: string; bias?: string }, nw: LayerWeights['inputNorm']) => {
    const r = addNorm(ctx, scope, residual, delta.y, delta.bias, norm, nw);
    normed = r.normed;
    residual = dims.residualFromNorm ? r.normed : r.sum;
  };
  const fold = plan.fusions.skipNorm;
  // A block whose output is normed before its add (Gemma 2) keeps its bias to itself.
  const outNormed = (scope: string, delta: { y: string; bias?: string }, nw: LayerWeights['attnOutNorm']) => (nw ? { y: normalize(ctx, scope, delta.y, norm, nw) } : delta);
  layers.forEach((lw, i) => {
    const scope = `/model/layers.${i}`;
    const next = layers[i + 1];
    const nextNorm = next ? `/model/layers.${i + 1}/input_layernorm` : '/model/norm';
    if (dims.parallelResidual) {
      // x + attn(n1(x)) + mlp(n2(x)): both deltas summed, then one add into the stream.
      const mlpIn = normalize(ctx, `${scope}/post_attention_layernorm`, residual, norm, lw.postAttentionNorm);
      const a = attention(ctx, `${scope}/attn`, normed, lw, i, att, policy, false).y;
      const m = mlp(ctx, `${scope}/mlp`, mlpIn, lw, policy, spec, false).y;
      addNormed(nextNorm, { y: g.op1('Add', [a, m], `${scope}/parallel_add`) }, next ? next.inputNorm : globals.finalNorm);
      return;
    }
    const a = attention(ctx, `${scope}/attn`, normed, lw, i, att, policy, fold && !lw.attnOutNorm);
    addNormed(`${scope}/post_attention_layernorm`, outNormed(`${scope}/attn_out_norm`, a, lw.attnOutNorm), lw.postAttentionNorm);
    const m = mlp(ctx, `${scope}/mlp`, normed, lw, policy, spec, fold && !lw.mlpOutNorm);
    addNormed(nextNorm, outNormed(`${scope}/mlp_out_norm`, m, lw.mlpOutNorm), next ? next.inputNorm : globals.finalNorm);
  });
  normed = projectOut(ctx, normed, globals.projectOut);

  // Only the requested positions reach the LM head: [B,S,E] -> [B,L,E].
  const idx = g.op1('Expand', [g.op1('Unsqueeze', [logitsIndex, g.constInt64([-1])], '/model/logits_gather/Unsqueeze'), g.constInt64([1, 1, dims.embedDim])], '/model/logits_gather/Expand');
  const picked = g.op1('GatherElements', [normed, idx], '/model/logits_gather/GatherElements', { axis: int(1) });
  // int8/int4 quantize the LM head too (its own packed copy; the embedding gather keeps the float table).
  const logits = plan.quant.bits
    ? logitsEpilogue(ctx, projection(ctx, '/lm_head', picked, { weights: [globals.lmHead], biases: [undefined], outDims: [dims.vocabSize] }, dims.embedDim).y, globals.lmHeadBias)
    : lmHead(ctx, picked, globals.lmHead, globals.embedTokens, globals.lmHeadBias);
  g.op('Cast', [logits], { to: int(1) }, { name: '/lm_head/Cast', outputNames: [IO.logits] });
  g.output(IO.logits, 'float32', ['batch_size', 'logits_length', dims.vocabSize]);
  for (let i = 0; i < dims.numLayers; i++) {
    g.output(kvNames(i).presentKey, plan.dtype, cacheShape);
    g.output(kvNames(i).presentValue, plan.dtype, cacheShape);
  }
  return { graph: g, fused: ctx.fused };
}

function attentionInputs(ctx: InjectContext, pos: string, policy: InjectionPolicy): AttentionInputs {
  const { g, dims, plan } = ctx;
  const fused = plan.fusions.attention;
  const out: AttentionInputs = {};
  if (policy.attention.positions === 'rotary') out.rope = fused ? rotaryCaches(ctx) : rotaryTables(ctx, pos);
  // Keys the bias spans: GQA wants total_sequence_length, the plain path the whole cache.
  const keys = fused
    ? g.op1('Cast', [IO.totalSequenceLength], '/model/attn_bias/Cast_total', { to: int(7) })
    : g.op1('Squeeze', [g.op1('Shape', [kvNames(0).pastKey], '/model/attn_bias/Shape', { start: int(2), end: int(3) }), g.constInt64([0])], '/model/attn_bias/Squeeze');
  if (policy.attention.positions === 'alibi') out.bias = alibiBias(ctx, pos, keys);
  if (!fused) {
    const mask = causalMask(ctx, pos, keys);
    out.bias = out.bias ? g.op1('Add', [out.bias, mask], '/model/attn_bias/Add') : mask;
    out.cacheRows = cacheRowIndices(ctx, pos);
  }
  return out;
}

/** cos/sin of position x inverse frequency for every position, [maxPos, D/2], as GQA expects. */
function rotaryCaches(ctx: InjectContext): { cos: string; sin: string } {
  const { dims } = ctx;
  const half = dims.headDim / 2;
  const table = (fn: (x: number) => number) => () => {
    const inv = ropeInvFreq(dims.rope!, dims.headDim);
    const out = new Float32Array(dims.maxPositions * half);
    for (let p = 0; p < dims.maxPositions; p++) {
      for (let i = 0; i < half; i++) out[p * half + i] = fn(Math.fround(p * inv[i]!));
    }
    return out;
  };
  const mk = (name: string, fn: (x: number) => number) => ctx.g.initializer({ name, type: ctx.dtype, dims: [dims.maxPositions, half], data: table(fn) });
  return { cos: mk('model.rotary_emb.cos_cache', Math.cos), sin: mk('model.rotary_emb.sin_cache', Math.sin) };
}

/**
 * ALiBi relative to each query's position, which softmax cannot tell from BLOOM's absolute
 * form and keeps float16 exact at long contexts:
 *   bias [B,H,S,T] = slope[h] * (key j - position[b,s])
 */
function alibiBias(ctx: InjectContext, pos: string, keys: string): string {
  const { g, dims } = ctx;
  const s = '/model/alibi';
  const slopes = g.initializer({ name: 'model.alibi.slopes', type: 'float32', dims: [1, dims.numHeads, 1, 1], data: () => Float32Array.from(alibiSlopes(dims.numHeads)) });
  const j = g.op1('Cast', [g.op1('Range', [g.constInt64([0], true), keys, g.constInt64([1], true)], `${s}/Range`)], `${s}/Cast`, { to: int(1) }); // [T]
  const p = g.op1('Unsqueeze', [g.op1('Cast', [pos], `${s}/Cast_1`, { to: int(1) }), g.constInt64([1, 3])], `${s}/Unsqueeze`); // [B,1,S,1]
  const bias = g.op1('Mul', [slopes, g.op1('Sub', [j, p], `${s}/Sub`)], `${s}/Mul`); // [B,H,S,T]
  return ctx.dtype === 'float16' ? g.op1('Cast', [bias], `${s}/Cast_2`, { to: int(10) }) : bias;
}

/** Plain path: key j is visible to a query at position p iff j <= p. [B,1,S,M] */
function causalMask(ctx: InjectContext, pos: string, keys: string): string {
  const { g } = ctx;
  const s = '/model/attn_mask';
  const j = g.op1('Range', [g.constInt64([0], true), keys, g.constInt64([1], true)], `${s}/Range`);
  const visible = g.op1('LessOrEqual', [j, g.op1('Unsqueeze', [pos, g.constInt64([1, 3])], `${s}/Unsqueeze`)], `${s}/LessOrEqual`);
  const min = ctx.dtype === 'float16' ? -65504 : -3.4028234663852886e38;
  return g.op1('Where', [visible, g.constFloat([0], ctx.dtype, true), g.constFloat([min], ctx.dtype, true)], `${s}/Where`);
}

function qkvSource(lw: LayerWeights, dims: ModelDims): LinearSource {
  const D = dims.headDim;
  return {
    weights: [lw.q.weight, lw.k.weight, lw.v.weight],
    biases: [lw.q.bias, lw.k.bias, lw.v.bias],
    outDims: [dims.numHeads * D, dims.numKvHeads * D, dims.numKvHeads * D],
  };
}

function single(lw: { weight: LinearSource['weights'][number]; bias?: LinearSource['weights'][number] }, outDim: number): LinearSource {
  return { weights: [lw.weight], biases: [lw.bias], outDims: [outDim] };
}

/**
 *   fused:  x ── QKV (packed) ── GroupQueryAttention(past, seqlens_k, total, rotary caches, ALiBi) ── o_proj
 *   plain:  x ── q, k, v ── heads ── (rotary) ── k, v scattered into the cache at their positions
 *                ── Softmax(q k^T / sqrt(D) + mask (+ ALiBi)) v ── merge heads ── o_proj
 * The o_proj bias is left for the following SkipLayerNorm to add when that fusion is on.
 */
function attention(ctx: InjectContext, scope: string, x: string, lw: LayerWeights, layer: number, att: AttentionInputs, policy: InjectionPolicy, foldBias: boolean): { y: string; bias?: string } {
  const { g, dims, plan } = ctx;
  const E = dims.hiddenSize;
  const D = dims.headDim;
  const n = kvNames(layer);
  const qkv = qkvSource(lw, dims);
  let q: string, k: string, v: string;
  let packed: string | undefined;
  if (plan.fusions.packedQkv) {
    packed = projection(ctx, `${scope}/qkv_proj`, x, qkv, E).y;
    countFusion(ctx, 'PackedQKV');
  }
  const split = () => (packed ? splitLast(g, `${scope}/qkv_split`, packed, qkv.outDims) : ['q_proj', 'k_proj', 'v_proj'].map((p, i) => projection(ctx, `${scope}/${p}`, x, { weights: [qkv.weights[i]!], biases: [qkv.biases[i]], outDims: [qkv.outDims[i]!] }, E).y));

  let out: string;
  if (plan.fusions.attention) {
    const [qi, ki, vi] = packed ? [packed, '', ''] : split();
    const inputs = [qi!, ki!, vi!, n.pastKey, n.pastValue, IO.seqlensK, IO.totalSequenceLength, att.rope?.cos ?? '', att.rope?.sin ?? '', '', att.bias ?? ''];
    while (inputs[inputs.length - 1] === '') inputs.pop();
    out = g.op('GroupQueryAttention', inputs, {
      num_heads: int(dims.numHeads),
      kv_num_heads: int(dims.numKvHeads),
      scale: float(plan.attentionScale ?? layerAttentionScale(dims, layer)),
      do_rotary: int(policy.attention.positions === 'rotary' ? 1 : 0),
      rotary_interleaved: int(0),
      local_window_size: int(-1),
      ...(dims.attnSoftcap ? { softcap: float(dims.attnSoftcap) } : {}),
    }, { name: `${scope}/GroupQueryAttention`, domain: MS, outputNames: [`${scope}/GroupQueryAttention/output_0`, n.presentKey, n.presentValue] })[0]!;
    countFusion(ctx, 'GroupQueryAttention');
  } else {
    [q, k, v] = split() as [string, string, string];
    q = splitHeads(ctx, `${scope}/q_heads`, q, dims.numHeads);
    k = splitHeads(ctx, `${scope}/k_heads`, k, dims.numKvHeads);
    v = splitHeads(ctx, `${scope}/v_heads`, v, dims.numKvHeads);
    if (att.rope) {
      q = rotary(ctx, `${scope}/q_rotary`, q, att.rope.cos, att.rope.sin);
      k = rotary(ctx, `${scope}/k_rotary`, k, att.rope.cos, att.rope.sin);
    }
    const kAll = g.op('ScatterElements', [n.pastKey, att.cacheRows!, k], { axis: int(2) }, { name: `${scope}/k_cache/ScatterElements`, outputNames: [n.presentKey] })[0]!;
    const vAll = g.op('ScatterElements', [n.pastValue, att.cacheRows!, v], { axis: int(2) }, { name: `${scope}/v_cache/ScatterElements`, outputNames: [n.presentValue] })[0]!;
    const kT = g.op1('Transpose', [repeatKv(ctx, `${scope}/k_repeat`, kAll)], `${scope}/k_transpose`, { perm: ints([0, 1, 3, 2]) });
    let scores = g.op1('Mul', [g.op1('MatMul', [q, kT], `${scope}/qk/MatMul`), g.constFloat([plan.attentionScale ?? layerAttentionScale(dims, layer)], ctx.dtype, true)], `${scope}/qk/Mul`);
    if (dims.attnSoftcap) scores = softcap(ctx, `${scope}/qk/softcap`, scores, dims.attnSoftcap);
    const probs = g.op1('Softmax', [g.op1('Add', [scores, att.bias!], `${scope}/qk/Add`)], `${scope}/Softmax`, { axis: int(-1) });
    out = mergeHeads(ctx, `${scope}/merge_heads`, g.op1('MatMul', [probs, repeatKv(ctx, `${scope}/v_repeat`, vAll)], `${scope}/pv/MatMul`));
  }
  return projection(ctx, `${scope}/o_proj`, out, single(lw.o, E), dims.numHeads * D, foldBias);
}

/**
 *   single:  x ── up (+ bias, act: FastGelu/BiasGelu fused) ── down
 *   gated:   x ── gate|up (packed) ── Split ── SiLU(gate) * up ── down
 */
function mlp(ctx: InjectContext, scope: string, x: string, lw: LayerWeights, policy: InjectionPolicy, spec: ArchSpec, foldBias: boolean): { y: string; bias?: string } {
  const { g, dims, plan } = ctx;
  const E = dims.hiddenSize;
  const I = dims.intermediateSize;
  let hidden: string;
  if (policy.mlp === 'gated' && lw.gate) {
    let gate: string, up: string;
    if (plan.fusions.packedGateUp) {
      const gu = projection(ctx, `${scope}/gate_up_proj`, x, { weights: [lw.gate.weight, lw.up.weight], biases: [lw.gate.bias, lw.up.bias], outDims: [I, I] }, E).y;
      [gate, up] = splitLast(g, `${scope}/gate_up_split`, gu, [I, I]) as [string, string];
      countFusion(ctx, 'PackedGateUp');
    } else {
      gate = projection(ctx, `${scope}/gate_proj`, x, single(lw.gate, I), E).y;
      up = projection(ctx, `${scope}/up_proj`, x, single(lw.up, I), E).y;
    }
    hidden = g.op1('Mul', [activate(ctx, `${scope}/act`, gate, spec.traits.activation), up], `${scope}/Mul`);
  } else if (plan.splitMlp && !plan.quant.bits && mlpSlices(E, I) > 1) {
    return slicedMlp(ctx, scope, x, lw, policy, spec, foldBias);
  } else if (policy.activation) {
    const up = projection(ctx, `${scope}/up_proj`, x, single(lw.up, I), E, true);
    hidden = biasGelu(ctx, `${scope}/act`, up.y, up.bias, policy.activation);
  } else {
    hidden = activate(ctx, `${scope}/act`, projection(ctx, `${scope}/up_proj`, x, single(lw.up, I), E).y, spec.traits.activation);
  }
  return projection(ctx, `${scope}/down_proj`, hidden, single(lw.down, E), I, foldBias);
}

/**
 * Slices of the intermediate dimension for the sliced MLP: up to 8, fewer once the down
 * projection's E outputs times the slices reach 8,192 columns (256 of ORT's 32-column
 * workgroups), each slice a multiple of 32 wide.
 */
export function mlpSlices(E: number, I: number): number {
  let s = 8;
  while (s > 1 && (E * (s / 2) >= 8192 || I % (32 * s) !== 0)) s /= 2;
  return s;
}

/**
 * An ungated MLP as s independent slices of its intermediate dimension, summed at the end:
 *   x [B,S,E] ── MatMul(W_up [s,1,E,I/s]) (+ bias [s,1,1,I/s]) ── act ── MatMul(W_down [s,1,I/s,E]) ── ReduceSum(axis 0)
 * ONNX Runtime's WebGPU MatMul gives each 32 output columns one workgroup and loops over all
 * of K: bloom-560m's down projection (4096 -> 1024) got 32 workgroups and ran at 65 GB/s
 * against its up projection's 210 GB/s (bench/results/2026-12-04-h200-bloom-profile). Sliced,
 * each of the s x B batched products loops over I/s. The down bias is left to the next norm.
 */
function slicedMlp(ctx: InjectContext, scope: string, x: string, lw: LayerWeights, policy: InjectionPolicy, spec: ArchSpec, foldBias: boolean): { y: string; bias?: string } {
  const { g, dims, plan } = ctx;
  const E = dims.hiddenSize;
  const I = dims.intermediateSize;
  const s = mlpSlices(E, I);
  const c = I / s;
  ctx.w.shape(lw.up.weight, [E, I]);
  ctx.w.shape(lw.down.weight, [I, E]);
  const up = weightName(`${scope}/up_proj`);
  const down = weightName(`${scope}/down_proj`);
  const wUp = g.initializer({
    name: `${up}.weight`,
    type: ctx.dtype,
    dims: [s, 1, E, c],
    data: () => {
      const w = ctx.w.read(lw.up.weight);
      const out = new Float32Array(E * I);
      for (let j = 0; j < s; j++) for (let e = 0; e < E; e++) out.set(w.subarray(e * I + j * c, e * I + (j + 1) * c), (j * E + e) * c);
      return out;
    },
  });
  // Row slices of [I, E] and the bias's slices are already contiguous: new dims, same data.
  const wDown = g.initializer({ name: `${down}.weight`, type: ctx.dtype, dims: [s, 1, c, E], data: () => ctx.w.read(lw.down.weight) });
  let h = g.op1('MatMul', [x, wUp], `${scope}/up_proj/MatMul`);
  if (lw.up.bias) {
    ctx.w.shape(lw.up.bias, [I]);
    const b = lw.up.bias;
    h = g.op1('Add', [h, g.initializer({ name: `${up}.bias`, type: ctx.dtype, dims: [s, 1, 1, c], data: () => ctx.w.read(b) })], `${scope}/up_proj/Add`);
  }
  if (policy.activation) {
    h = biasGelu(ctx, `${scope}/act`, h, undefined, policy.activation);
  } else h = activate(ctx, `${scope}/act`, h, spec.traits.activation);
  const parts = g.op1('MatMul', [h, wDown], `${scope}/down_proj/MatMul`);
  const y = g.op1('ReduceSum', [parts, g.constInt64([0])], `${scope}/down_proj/ReduceSum`, { keepdims: int(0) });
  countFusion(ctx, 'SlicedMlp');
  const bias = biasInitializer(ctx, `${down}.bias`, single(lw.down, E));
  if (!bias) return { y };
  if (foldBias) return { y, bias };
  return { y: g.op1('Add', [y, bias], `${scope}/down_proj/Add`) };
}
