/**
 * Emitters for the injected decoder. Each has a fused form (an ONNX Runtime contrib op) and
 * a plain form in standard ops with the same inputs, outputs and names, chosen by the
 * plan's switches. Shapes: B batch, S new tokens, M cache capacity, T total tokens,
 * E hidden, H heads, Hkv KV heads, D head dim, I intermediate.
 */
import type { NormKind, NormWeights, WeightView } from '../arch/spec.js';
import { normalize, weight, weightName, type EmitContext } from '../graph/blocks.js';
import { int, ints, type Graph } from '../graph/ir.js';
import type { FusionCounts, InjectionPlan } from './plan.js';
import { quantizeBlockwise, type QuantizedWeight } from './quantize.js';

export const MS = 'com.microsoft';

export interface InjectContext extends EmitContext {
  plan: InjectionPlan;
  fused: FusionCounts;
}

export function countFusion(ctx: InjectContext, op: string): void {
  ctx.fused[op] = (ctx.fused[op] ?? 0) + 1;
}

/** One linear layer, or several packed side by side (QKV, gate/up): W = [W_0 | W_1 | ...]. */
export interface LinearSource {
  weights: WeightView[];
  biases: Array<WeightView | undefined>;
  outDims: number[];
}

/** Columns of several [in, out_i] views interleaved row by row into one [in, sum(out)] matrix. */
function packedData(ctx: InjectContext, src: LinearSource, inDim: number): () => Float32Array {
  return () => {
    if (src.weights.length === 1) return ctx.w.read(src.weights[0]!);
    const total = src.outDims.reduce((a, b) => a + b, 0);
    const out = new Float32Array(inDim * total);
    let col = 0;
    src.weights.forEach((view, i) => {
      const w = ctx.w.read(view);
      const n = src.outDims[i]!;
      for (let r = 0; r < inDim; r++) out.set(w.subarray(r * n, (r + 1) * n), r * total + col);
      col += n;
    });
    return out;
  };
}

/** Concatenated biases (zeros where a packed part has none), or undefined when none has one. */
export function biasInitializer(ctx: InjectContext, name: string, src: LinearSource): string | undefined {
  if (src.biases.every((b) => !b)) return undefined;
  const total = src.outDims.reduce((a, b) => a + b, 0);
  src.biases.forEach((b, i) => b && ctx.w.shape(b, [src.outDims[i]!]));
  return ctx.g.initializer({
    name,
    type: ctx.dtype,
    dims: [total],
    data: () => {
      const out = new Float32Array(total);
      let off = 0;
      src.biases.forEach((b, i) => {
        if (b) out.set(ctx.w.read(b), off);
        off += src.outDims[i]!;
      });
      return out;
    },
  });
}

/**
 *   x [B,S,in] ── MatMul(W [in,out]) | MatMulNBits(W quantized) ──(+ bias)── [B,S,out]
 * With `foldBias` the bias is returned instead of added, for a following SkipLayerNorm.
 */
export function projection(ctx: InjectContext, scope: string, x: string, src: LinearSource, inDim: number, foldBias = false): { y: string; bias?: string } {
  const { g, plan } = ctx;
  const outDim = src.outDims.reduce((a, b) => a + b, 0);
  src.weights.forEach((v, i) => ctx.w.shape(v, [inDim, src.outDims[i]!]));
  const name = weightName(scope);
  const bias = biasInitializer(ctx, `${name}.bias`, src);
  const addBias = bias && !foldBias;
  let y: string;
  if (plan.quant.bits) {
    const { bits, blockSize } = plan.quant;
    const q = lazyQuantized(packedData(ctx, src, inDim), inDim, outDim, bits, blockSize);
    const nBlocks = Math.ceil(inDim / blockSize);
    const packed = g.initializer({ name: `${name}.weight_q${bits}`, type: 'uint8', dims: [outDim, nBlocks, (blockSize * bits) / 8], data: () => q().packed });
    const scales = g.initializer({ name: `${name}.weight_scales`, type: ctx.dtype, dims: [outDim * nBlocks], data: () => q().scales });
    y = g.op('MatMulNBits', addBias ? [x, packed, scales, '', '', bias] : [x, packed, scales], { K: int(inDim), N: int(outDim), bits: int(bits), block_size: int(blockSize), accuracy_level: int(plan.accuracyLevel) }, { name: `${scope}/MatMulNBits`, domain: MS })[0]!;
    countFusion(ctx, 'MatMulNBits');
    return foldBias && bias ? { y, bias } : { y };
  }
  const w = g.initializer({ name: `${name}.weight`, type: ctx.dtype, dims: [inDim, outDim], data: packedData(ctx, src, inDim) });
  y = g.op1('MatMul', [x, w], `${scope}/MatMul`);
  if (addBias) y = g.op1('Add', [y, bias], `${scope}/Add`);
  return foldBias && bias ? { y, bias } : { y };
}

/** Quantizes once and serves both initializers (packed weights, scales) from one result. */
function lazyQuantized(data: () => Float32Array, K: number, N: number, bits: 4 | 8, blockSize: number): () => QuantizedWeight {
  let q: QuantizedWeight | undefined;
  return () => (q ??= quantizeBlockwise(data(), K, N, bits, blockSize));
}

/**
 * Residual add followed by the next norm, returning both the normed value and the new
 * residual stream:
 *   fused: SkipLayerNormalization(delta, residual, gamma, beta, bias) -> outputs 0 (normed), 3 (sum)
 *   plain: sum = residual + (delta + bias); normed = Norm(sum)
 */
export function addNorm(ctx: InjectContext, scope: string, residual: string, delta: string, deltaBias: string | undefined, kind: NormKind, nw: NormWeights | undefined): { normed: string; sum: string } {
  const { g, dims } = ctx;
  if (ctx.plan.fusions.skipNorm && nw) {
    const E = dims.hiddenSize;
    const name = weightName(scope);
    const gamma = weight(ctx, `${name}.weight`, nw.weight, [E]);
    const beta = kind === 'layernorm' && nw.bias ? weight(ctx, `${name}.bias`, nw.bias, [E]) : '';
    const op = kind === 'layernorm' ? 'SkipLayerNormalization' : 'SkipSimplifiedLayerNormalization';
    const inputs = kind === 'layernorm' ? [delta, residual, gamma, beta, deltaBias ?? ''] : [delta, residual, gamma, deltaBias ?? ''];
    while (inputs[inputs.length - 1] === '') inputs.pop();
    const [normed, , , sum] = g.op(op, inputs, { epsilon: { kind: 'float', value: dims.normEps } }, { name: `${scope}/${op}`, domain: MS, outputNames: [`${scope}/output_0`, '', '', `${scope}/output_3`] });
    countFusion(ctx, op);
    return { normed: normed!, sum: sum! };
  }
  const d = deltaBias ? g.op1('Add', [delta, deltaBias], `${scope}/BiasAdd`) : delta;
  const sum = g.op1('Add', [residual, d], `${scope}/ResidualAdd`);
  return { normed: normalize(ctx, scope, sum, kind, nw), sum };
}

/**
 *   fused: FastGelu(x, bias) (tanh) | BiasGelu(x, bias) (erf)
 *   plain: Gelu(x + bias)
 */
export function biasGelu(ctx: InjectContext, scope: string, x: string, bias: string | undefined, op: 'FastGelu' | 'BiasGelu'): string {
  const g = ctx.g;
  // BiasGelu insists on its bias input; without one the standard Gelu is the same op.
  if (ctx.plan.fusions.biasGelu && (bias || op === 'FastGelu')) {
    countFusion(ctx, op);
    return g.op(op, bias ? [x, bias] : [x], {}, { name: `${scope}/${op}`, domain: MS })[0]!;
  }
  const xb = bias ? g.op1('Add', [x, bias], `${scope}/BiasAdd`) : x;
  return g.op1('Gelu', [xb], `${scope}/Gelu`, op === 'FastGelu' ? { approximate: { kind: 'string', value: 'tanh' } } : {});
}

/** Splits the last axis into the given sizes. */
export function splitLast(g: Graph, scope: string, x: string, sizes: number[]): string[] {
  return g.op('Split', [x, g.constInt64(sizes)], { axis: int(-1) }, { name: `${scope}/Split`, outputs: sizes.length });
}

/** [B,Hkv,S,D] indices of each new token's cache row (its position), for ScatterElements on axis 2. */
export function cacheRowIndices(ctx: InjectContext, positionIds: string): string {
  const { g, dims } = ctx;
  const s = '/model/cache_rows';
  const u = g.op1('Unsqueeze', [positionIds, g.constInt64([1, 3])], `${s}/Unsqueeze`); // [B,1,S,1]
  return g.op1('Expand', [u, g.constInt64([1, dims.numKvHeads, 1, dims.headDim])], `${s}/Expand`);
}

export { ints };
