/**
 * A checkpoint's weights in GPU buffers, in the layouts the WGSL kernels read: linear
 * weights [out, in] (each output's inputs contiguous, the GEMV-friendly layout), norm
 * parameters and biases f32, matrices f32, f16 or bf16, or block-quantized (int8/int4) in
 * MatMulNBits' layout. Streamed from the checkpoint a chunk of rows at a time (uploadWeights).
 */
import type { LinearWeights, NormWeights, WeightView } from '../arch/spec.js';
import type { Checkpoint } from '../arch/checkpoint.js';
import { openWeights } from '../arch/checkpoint.js';
import { WeightSource, type HalfFormat } from '../graph/weights.js';
import type { Quantization } from '../inject/plan.js';
import { quantizeRows } from '../inject/quantize.js';
import { storageBuffer, type GpuContext } from './device.js';

export type MatrixType = 'f32' | 'f16' | 'bf16';

/** The 16-bit matrix types, by the checkpoint format they are read in. */
const HALF: Partial<Record<MatrixType, HalfFormat>> = { f16: 'F16', bf16: 'BF16' };

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

/**
 * The part of the model one device holds: layers [from, to), with the embedding where it is the
 * first part and the final norm and LM head where it is the last (--world_size splits layers).
 */
export interface WeightSlice {
  from: number;
  to: number;
  first: boolean;
  last: boolean;
}

/**
 * `n` contiguous layer ranges, as even as whole layers allow; the extra layers go to the
 * earlier parts, since the last one also holds the LM head.
 */
export function layerSlices(numLayers: number, n: number): WeightSlice[] {
  const base = Math.floor(numLayers / n);
  const extra = numLayers % n;
  let from = 0;
  return Array.from({ length: n }, (_, r) => {
    const to = from + base + (r < extra ? 1 : 0);
    const slice = { from, to, first: r === 0, last: r === n - 1 };
    from = to;
    return slice;
  });
}

export interface GpuWeights {
  slice: WeightSlice;
  /** First part only. */
  embed?: GpuMatrix;
  positions?: GpuMatrix;
  embedNorm?: GpuNorm;
  /** Layers slice.from .. slice.to - 1. */
  layers: GpuLayer[];
  /** Last part only. */
  finalNorm?: GpuNorm;
  lmHead?: GpuMatrix;
  lmHeadBias?: GPUBuffer;
  /** Bytes held in GPU buffers. */
  bytes: number;
}

/** The view read as [out, in]: the arch specs view linears as [in, out], so flip the transpose. */
function outIn(view: WeightView): WeightView {
  return { ...view, transpose: !view.transpose };
}

/** Bytes of checkpoint data read, converted and written to the GPU at a time. */
export const CHUNK_BYTES = 8 << 20;
/** Bytes of each mapped staging buffer the stream fills; STAGING_SLOTS of them take turns. */
export const STAGING_BYTES = 8 << 20;
const STAGING_SLOTS = 4;

const MAP_WRITE = 0x2;
const COPY_SRC = 0x4;

/** One staging buffer: mapped while the host fills it, then copied to its destinations on the GPU. */
interface Slot {
  buffer: GPUBuffer;
  /** Resolves once the buffer is mapped again (its previous copies done). */
  ready: Promise<void> | undefined;
  view: Uint8Array | undefined;
  fill: number;
  copies: Array<[dst: GPUBuffer, dstOffset: number, srcOffset: number, size: number]>;
}

/**
 * Streams bytes into GPU buffers through a ring of mapped staging buffers (MAP_WRITE): each
 * chunk is copied into the current one, which, once full, is unmapped and copied to its
 * destinations by the GPU while the host fills the next. Host memory stays at the ring
 * (STAGING_SLOTS x STAGING_BYTES) however large the model. Measured against queue.writeBuffer
 * (which copies into Dawn's own staging on every call): 8-10x the rate on lavapipe
 * (bench/probes/upload.ts).
 */
export class GpuStream {
  private readonly slots: Slot[];
  private current = 0;
  /** Bytes of weights written (unpadded). */
  bytes = 0;

  constructor(
    readonly ctx: GpuContext,
    private readonly stagingBytes: number = STAGING_BYTES,
  ) {
    this.slots = Array.from({ length: STAGING_SLOTS }, () => ({
      buffer: ctx.device.createBuffer({ label: 'upload staging', size: stagingBytes, usage: MAP_WRITE | COPY_SRC, mappedAtCreation: true }),
      ready: undefined,
      view: undefined,
      fill: 0,
      copies: [],
    }));
  }

  /** Copies `bytes` (whole words) to `buffer` at `offset`, through the staging ring. */
  async write(buffer: GPUBuffer, offset: number, bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length; ) {
      const slot = await this.slot();
      const n = Math.min(bytes.length - at, this.stagingBytes - slot.fill);
      slot.view!.set(bytes.subarray(at, at + n), slot.fill);
      slot.copies.push([buffer, offset + at, slot.fill, n]);
      slot.fill += n;
      at += n;
      if (slot.fill === this.stagingBytes) this.submit(slot);
    }
  }

  /** The slot being filled, mapped (waiting for its last copies if it is in use). */
  private async slot(): Promise<Slot> {
    const slot = this.slots[this.current]!;
    if (!slot.view) {
      await slot.ready;
      slot.view = new Uint8Array(slot.buffer.getMappedRange());
    }
    return slot;
  }

  /** Unmaps the slot, copies its bytes to their destinations and maps it again for later; the next slot takes over. */
  private submit(slot: Slot): void {
    slot.view = undefined;
    slot.buffer.unmap();
    const enc = this.ctx.device.createCommandEncoder();
    for (const [dst, dstOffset, srcOffset, size] of slot.copies) enc.copyBufferToBuffer(slot.buffer, srcOffset, dst, dstOffset, size);
    this.ctx.device.queue.submit([enc.finish()]);
    slot.copies = [];
    slot.fill = 0;
    slot.ready = slot.buffer.mapAsync(MAP_WRITE);
    slot.ready.catch(() => undefined); // a load that fails destroys the ring with maps in flight: whoever awaits sees it, no one else
    this.current = (this.current + 1) % this.slots.length;
  }

  /** Sends what is staged and waits until every copy is done (each slot maps again only once its copies ran). */
  async flush(): Promise<void> {
    const slot = this.slots[this.current]!;
    if (slot.fill > 0) this.submit(slot);
    await Promise.all(this.slots.map((s) => s.ready));
  }

  /** Releases the staging ring (after flush). */
  destroy(): void {
    for (const s of this.slots) s.buffer.destroy();
  }

  /** A storage buffer of `size` bytes, filled in order by pushes; copies take whole words, so a byte tail waits for the next push or the end. */
  open(size: number, label: string): GpuWriter {
    this.bytes += size;
    return new GpuWriter(this, storageBuffer(this.ctx, size, label));
  }
}

class GpuWriter {
  private offset = 0;
  private carry: Uint8Array | undefined;

  constructor(
    private readonly stream: GpuStream,
    readonly buffer: GPUBuffer,
  ) {}

  async push(data: ArrayBufferView): Promise<void> {
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (this.carry) {
      const merged = new Uint8Array(this.carry.length + bytes.length);
      merged.set(this.carry);
      merged.set(bytes, this.carry.length);
      bytes = merged;
      this.carry = undefined;
    }
    const whole = bytes.length - (bytes.length % 4);
    if (whole > 0) await this.stream.write(this.buffer, this.offset, bytes.subarray(0, whole));
    this.offset += whole;
    if (whole < bytes.length) this.carry = bytes.slice(whole);
  }

  async end(): Promise<GPUBuffer> {
    if (this.carry) {
      const word = new Uint8Array(4);
      word.set(this.carry);
      await this.stream.write(this.buffer, this.offset, word);
      this.carry = undefined;
    }
    return this.buffer;
  }
}

const NO_QUANT: Quantization = { bits: 0, blockSize: 32 };

export interface StreamOptions {
  /** Bytes read and written at a time (default CHUNK_BYTES; at least one row). */
  chunkBytes?: number;
  /** Bytes of each staging buffer (default STAGING_BYTES; a multiple of 4). */
  stagingBytes?: number;
  /** The part of the model to upload (default all of it). */
  slice?: WeightSlice;
}

/**
 * The checkpoint's weights into GPU buffers, streamed: each matrix is read from the safetensors
 * files a chunk of rows at a time (CHUNK_BYTES), converted (f16 or bf16, rounding to nearest even,
 * or block-quantized, which works row by row; a checkpoint's own F16 or BF16 bytes are copied as
 * they are) and written to its buffer at its offset; parts stacked by rows (packed QKV,
 * gate/up) go to their rows of one buffer. Only views the checkpoint stores transposed (GPT-2's
 * Conv1D) are read whole, one tensor at a time. No whole-model copy ever sits in host memory.
 */
export async function uploadWeights(ctx: GpuContext, ckpt: Checkpoint, type: MatrixType, quant: Quantization, o: StreamOptions = {}): Promise<GpuWeights> {
  const store = openWeights(ckpt);
  const w = new WeightSource(store, ckpt.spec.weightPrefixes, ckpt.dir);
  const { dims, spec, config } = ckpt;
  const stream = new GpuStream(ctx, o.stagingBytes ?? STAGING_BYTES);
  const chunkBytes = o.chunkBytes ?? CHUNK_BYTES;
  const whole = async (data: ArrayBufferView, label: string): Promise<GPUBuffer> => {
    const out = stream.open(data.byteLength, label);
    await out.push(data);
    return out.end();
  };
  const f32 = (view: WeightView, label: string) => whole(w.read(view), label);
  // One set of chunk buffers for the whole load: writeBuffer copies what it is given, so a chunk's
  // buffer is free again once pushed (and nothing is left for the garbage collector or malloc to hold).
  const scratch: { f32?: Float32Array; u16?: Uint16Array; packed?: Uint8Array; scales?: Float32Array } = {};
  const f32Scratch = (n: number) => (scratch.f32 = scratch.f32 && scratch.f32.length >= n ? scratch.f32 : new Float32Array(n));
  const u16Scratch = (n: number) => (scratch.u16 = scratch.u16 && scratch.u16.length >= n ? scratch.u16 : new Uint16Array(n));
  const quantScratch = (packedBytes: number, scales: number) => ({
    packed: (scratch.packed = scratch.packed && scratch.packed.length >= packedBytes ? scratch.packed : new Uint8Array(packedBytes)),
    scales: (scratch.scales = scratch.scales && scratch.scales.length >= scales ? scratch.scales : new Float32Array(scales)),
  });
  /** A part's rows [out, in], a chunk at a time: straight from the file, or from the tensor read whole where it is stored transposed. */
  async function* rowChunks(view: WeightView, n: number, k: number, half: HalfFormat | undefined): AsyncGenerator<{ rows: number; data: Float32Array | Uint16Array }> {
    const step = Math.max(1, Math.floor(chunkBytes / (k * 4)));
    const all = w.streamable(view) ? undefined : half ? w.readHalf(view, half) : w.read(view);
    for (let r = 0; r < n; r += step) {
      const rows = Math.min(step, n - r);
      const data = all ? all.subarray(r * k, (r + rows) * k) : half ? w.readRowsHalf(view, r, rows, u16Scratch(rows * k), half) : w.readRows(view, r, rows, f32Scratch(rows * k));
      yield { rows, data };
    }
  }
  const matrix = async (views: WeightView[], label: string, q: Quantization = NO_QUANT): Promise<GpuMatrix> => {
    const parts = views.map((v) => ({ view: outIn(v), shape: w.shape(outIn(v)) }));
    const k = parts[0]!.shape[1]!;
    const n = parts.reduce((a, p) => a + p.shape[0]!, 0);
    if (q.bits) {
      const nBlocks = Math.ceil(k / q.blockSize);
      const packed = stream.open((n * nBlocks * q.blockSize * q.bits) / 8, label);
      const scales = stream.open(n * nBlocks * 4, `${label}.scales`);
      for (const p of parts) {
        for await (const chunk of rowChunks(p.view, p.shape[0]!, k, undefined)) {
          const qz = quantizeRows(chunk.data as Float32Array, k, chunk.rows, q.bits, q.blockSize, quantScratch((chunk.rows * nBlocks * q.blockSize * q.bits) / 8, chunk.rows * nBlocks));
          await packed.push(qz.packed);
          await scales.push(qz.scales);
        }
      }
      return { buffer: await packed.end(), n, k, type, quant: { bits: q.bits, blockSize: q.blockSize, scales: await scales.end() } };
    }
    // f16 / bf16 straight from the checkpoint's bytes of that format where it has them; parts stacked by rows.
    const half = HALF[type];
    const out = stream.open(n * k * (half ? 2 : 4), label);
    for (const p of parts) for await (const chunk of rowChunks(p.view, p.shape[0]!, k, half)) await out.push(chunk.data);
    return { buffer: await out.end(), n, k, type };
  };
  const biasOf = async (views: Array<WeightView | undefined>, outs: number[], label: string): Promise<GPUBuffer | undefined> => {
    if (views.every((v) => !v)) return undefined;
    const data = new Float32Array(outs.reduce((a, b) => a + b, 0));
    let off = 0;
    views.forEach((v, i) => {
      if (v) data.set(w.read(v), off);
      off += outs[i]!;
    });
    return whole(data, label);
  };
  /** Several linears of one input as one, their rows (and biases) stacked in order. */
  const stacked = async (lws: LinearWeights[], outs: number[], label: string): Promise<GpuLinear> => {
    const m = await matrix(lws.map((lw) => lw.weight), label, quant);
    const bias = await biasOf(lws.map((lw) => lw.bias), outs, `${label}.bias`);
    return bias ? { w: m, bias } : { w: m };
  };
  const linear = (lw: LinearWeights, out: number, label: string): Promise<GpuLinear> => stacked([lw], [out], label);
  async function norm(nw: NormWeights, label: string): Promise<GpuNorm>;
  async function norm(nw: NormWeights | undefined, label: string): Promise<GpuNorm | undefined>;
  async function norm(nw: NormWeights | undefined, label: string): Promise<GpuNorm | undefined> {
    if (!nw) return undefined;
    return nw.bias ? { gamma: await f32(nw.weight, label), beta: await f32(nw.bias, `${label}.beta`) } : { gamma: await f32(nw.weight, label) };
  }

  try {
    const g = spec.globals(dims, config);
    const D = dims.headDim;
    const slice = o.slice ?? layerSlices(dims.numLayers, 1)[0]!;
    const weights: GpuWeights = { slice, layers: [], bytes: 0 };
    if (slice.first) {
      // Embedding tables are gathered by row, never quantized: the token table as [V, E] is a plain view.
      weights.embed = await matrix([{ ...g.embedTokens, transpose: true }], 'embed');
      if (g.embedPositions) weights.positions = await matrix([{ ...g.embedPositions, transpose: true }], 'positions');
      if (g.embedNorm) weights.embedNorm = await norm(g.embedNorm, 'embed_norm');
    }
    for (let i = slice.from; i < slice.to; i++) {
      const lw = spec.layer(i, dims, config);
      const gated = spec.traits.gatedMlp && lw.gate;
      const inputNorm = await norm(lw.inputNorm, `l${i}.ln1`);
      const attnOutNorm = await norm(lw.attnOutNorm, `l${i}.attn_out_norm`);
      const mlpOutNorm = await norm(lw.mlpOutNorm, `l${i}.mlp_out_norm`);
      const qkv = await stacked([lw.q, lw.k, lw.v], [dims.numHeads * D, dims.numKvHeads * D, dims.numKvHeads * D], `l${i}.qkv`);
      const o = await linear(lw.o, dims.hiddenSize, `l${i}.o`);
      const postAttentionNorm = await norm(lw.postAttentionNorm, `l${i}.ln2`);
      const up = gated ? await stacked([lw.gate!, lw.up], [dims.intermediateSize, dims.intermediateSize], `l${i}.gate_up`) : await linear(lw.up, dims.intermediateSize, `l${i}.up`);
      const down = await linear(lw.down, dims.hiddenSize, `l${i}.down`);
      weights.layers.push({ inputNorm, attnOutNorm, mlpOutNorm, qkv, o, postAttentionNorm, up, down });
    }
    if (slice.last) {
      const tied = g.lmHead.source === g.embedTokens.source && !!g.lmHead.transpose;
      weights.finalNorm = await norm(g.finalNorm, 'final_norm');
      // int8/int4 quantize the LM head too (its own copy when tied: the gather keeps the float
      // table); a tied float head shares the table where this part holds it.
      weights.lmHead = quant.bits ? await matrix([g.lmHead], 'lm_head', quant) : tied && weights.embed ? weights.embed : await matrix([g.lmHead], 'lm_head');
      const lmHeadBias = await biasOf([g.lmHeadBias], [dims.vocabSize], 'lm_head.bias');
      if (lmHeadBias) weights.lmHeadBias = lmHeadBias;
    }
    await stream.flush();
    weights.bytes = stream.bytes;
    return weights;
  } finally {
    stream.destroy();
    store.close();
  }
}
