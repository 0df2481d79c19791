/**
 * A checkpoint's weights in GPU buffers, in the layouts the WGSL kernels read: linear
 * weights [out, in] (each output's inputs contiguous, the GEMV-friendly layout), norm
 * parameters and biases f32, matrices f32 or f16, or block-quantized (int8/int4) in
 * MatMulNBits' layout. Read one tensor at a time from the checkpoint.
 */
import type { LinearWeights, NormWeights, WeightView } from '../arch/spec.js';
import type { Checkpoint } from '../arch/checkpoint.js';
import { openWeights } from '../arch/checkpoint.js';
import { transpose, WeightSource } from '../graph/weights.js';
import type { Quantization } from '../inject/plan.js';
import { quantizeBlockwise } from '../inject/quantize.js';
import { float32ToFloat16Bits, upload, type GpuContext } from './device.js';

export type MatrixType = 'f32' | 'f16';

export interface GpuMatrix {
  buffer: GPUBuffer;
  /** Rows (outputs) and columns (inputs). */
  n: number;
  k: number;
  type: MatrixType;
  /** Block-quantized: the packed buffer is `buffer`, scales here. */
  quant?: { bits: 4 | 8; blockSize: number; scales: GPUBuffer };
}

export interface GpuLinear {
  w: GpuMatrix;
  bias?: GPUBuffer;
}

export interface GpuNorm {
  gamma: GPUBuffer;
  beta?: GPUBuffer;
}

export interface GpuLayer {
  inputNorm?: GpuNorm;
  /** q, k and v projections stacked by rows, [(H + 2 Hkv) D, E]: one GEMV instead of three. */
  qkv: GpuLinear;
  o: GpuLinear;
  /** Norms of the attention and MLP outputs before their residual adds (Gemma 2's sandwich norms). */
  attnOutNorm?: GpuNorm;
  mlpOutNorm?: GpuNorm;
  postAttentionNorm: GpuNorm;
  /** Up projection; for gated MLPs gate rows then up rows, [2I, E]. */
  up: GpuLinear;
  down: GpuLinear;
}

export interface GpuWeights {
  embed: GpuMatrix;
  positions?: GpuMatrix;
  embedNorm?: GpuNorm;
  layers: GpuLayer[];
  finalNorm?: GpuNorm;
  lmHead: GpuMatrix;
  lmHeadBias?: GPUBuffer;
  /** Bytes held in GPU buffers. */
  bytes: number;
}

/** The view read as [out, in]: the arch specs view linears as [in, out], so flip the transpose. */
function outIn(view: WeightView): WeightView {
  return { ...view, transpose: !view.transpose };
}

export function uploadWeights(ctx: GpuContext, ckpt: Checkpoint, type: MatrixType, quant: Quantization): GpuWeights {
  const store = openWeights(ckpt);
  const w = new WeightSource(store, ckpt.spec.weightPrefixes, ckpt.dir);
  const { dims, spec, config } = ckpt;
  let bytes = 0;
  const buf = (data: ArrayBufferView, label: string) => {
    bytes += data.byteLength;
    return upload(ctx, data, label);
  };
  const f32 = (view: WeightView, label: string) => buf(w.read(view), label);
  const matrixData = (data: Float32Array, n: number, k: number, label: string, q: Quantization): GpuMatrix => {
    if (q.bits) {
      const packed = quantizeBlockwise(transpose(data, n, k), k, n, q.bits, q.blockSize) /* takes W as [K, N] */;
      return { buffer: buf(packed.packed, label), n, k, type, quant: { bits: q.bits, blockSize: q.blockSize, scales: buf(packed.scales, `${label}.scales`) } };
    }
    const out = type === 'f16' ? Uint16Array.from(data, float32ToFloat16Bits) : data;
    return { buffer: buf(out, label), n, k, type };
  };
  const matrix = (views: WeightView[], label: string, q: Quantization = { bits: 0, blockSize: 32 }): GpuMatrix => {
    const shapes = views.map((v) => w.shape(outIn(v)));
    const k = shapes[0]![1]!;
    const n = shapes.reduce((a, sh) => a + sh[0]!, 0);
    if (type === 'f16' && !q.bits) {
      // Straight from the checkpoint's f16 bytes where it has them: parts stacked by rows.
      const data = new Uint16Array(n * k);
      let off = 0;
      for (const v of views) {
        const part = w.readHalf(outIn(v));
        data.set(part, off);
        off += part.length;
      }
      return { buffer: buf(data, label), n, k, type };
    }
    const data = new Float32Array(n * k);
    let off = 0;
    for (const v of views) {
      const part = w.read(outIn(v));
      data.set(part, off);
      off += part.length;
    }
    return matrixData(data, n, k, label, q);
  };
  const biasOf = (views: Array<WeightView | undefined>, outs: number[], label: string): GPUBuffer | undefined => {
    if (views.every((v) => !v)) return undefined;
    const data = new Float32Array(outs.reduce((a, b) => a + b, 0));
    let off = 0;
    views.forEach((v, i) => {
      if (v) data.set(w.read(v), off);
      off += outs[i]!;
    });
    return buf(data, label);
  };
  /** Several linears of one input as one, their rows (and biases) stacked in order. */
  const stacked = (lws: LinearWeights[], outs: number[], label: string): GpuLinear => {
    const m = matrix(lws.map((lw) => lw.weight), label, quant);
    const bias = biasOf(lws.map((lw) => lw.bias), outs, `${label}.bias`);
    return bias ? { w: m, bias } : { w: m };
  };
  const linear = (lw: LinearWeights, out: number, label: string): GpuLinear => stacked([lw], [out], label);
  function norm(nw: NormWeights, label: string): GpuNorm;
  function norm(nw: NormWeights | undefined, label: string): GpuNorm | undefined;
  function norm(nw: NormWeights | undefined, label: string): GpuNorm | undefined {
    if (!nw) return undefined;
    return nw.bias ? { gamma: f32(nw.weight, label), beta: f32(nw.bias, `${label}.beta`) } : { gamma: f32(nw.weight, label) };
  }

  try {
    const g = spec.globals(dims, config);
    const D = dims.headDim;
    // Embedding tables are gathered by row, never quantized: the token table as [V, E] is a plain view.
    const embed = matrix([{ ...g.embedTokens, transpose: true }], 'embed');
    const layers: GpuLayer[] = [];
    for (let i = 0; i < dims.numLayers; i++) {
      const lw = spec.layer(i, dims, config);
      const gated = spec.traits.gatedMlp && lw.gate;
      layers.push({
        inputNorm: norm(lw.inputNorm, `l${i}.ln1`),
        attnOutNorm: norm(lw.attnOutNorm, `l${i}.attn_out_norm`),
        mlpOutNorm: norm(lw.mlpOutNorm, `l${i}.mlp_out_norm`),
        qkv: stacked([lw.q, lw.k, lw.v], [dims.numHeads * D, dims.numKvHeads * D, dims.numKvHeads * D], `l${i}.qkv`),
        o: linear(lw.o, dims.hiddenSize, `l${i}.o`),
        postAttentionNorm: norm(lw.postAttentionNorm, `l${i}.ln2`),
        up: gated ? stacked([lw.gate!, lw.up], [dims.intermediateSize, dims.intermediateSize], `l${i}.gate_up`) : linear(lw.up, dims.intermediateSize, `l${i}.up`),
        down: linear(lw.down, dims.hiddenSize, `l${i}.down`),
      });
    }
    const tied = g.lmHead.source === g.embedTokens.source && !!g.lmHead.transpose;
    const weights: GpuWeights = {
      embed,
      layers,
      finalNorm: norm(g.finalNorm, 'final_norm'),
      // int8/int4 quantize the LM head too (its own copy when tied: the gather keeps the float table).
      lmHead: quant.bits ? matrix([g.lmHead], 'lm_head', quant) : tied ? embed : matrix([g.lmHead], 'lm_head'),
      bytes: 0,
    };
    if (g.embedPositions) weights.positions = matrix([{ ...g.embedPositions, transpose: true }], 'positions');
    if (g.embedNorm) weights.embedNorm = norm(g.embedNorm, 'embed_norm');
    const lmHeadBias = biasOf([g.lmHeadBias], [dims.vocabSize], 'lm_head.bias');
    if (lmHeadBias) weights.lmHeadBias = lmHeadBias;
    weights.bytes = bytes;
    return weights;
  } finally {
    store.close();
  }
}
