/**
 * The linear layer on our WGSL kernels: Y[T, nOut] = act(X[T, K] . W[N, K]^T + bias[N]).
 *
 *   X, Y, bias  f32, row-major; W row-major [N, K] (torch nn.Linear's [out, in]) as f32, f16,
 *               bf16 (widened to f32 as loaded; accumulation f32 for every type), or block-quantized int8 / int4 in quantizeBlockwise's layout
 *               (src/inject/quantize.ts) with f32 scales [N * nBlocks]
 *   act         none | gelu_tanh | gelu_erf | relu | swiglu | geglu; for the gated two W is
 *               [2I, K] (gate rows first, then up rows), bias likewise [2I], and Y[T, I] =
 *               silu(gate) * up (swiglu) or gelu_tanh(gate) * up (geglu, Gemma's GeGLU)
 *   softcap     optional: each output becomes cap * tanh(output / cap) (Gemma 2's final logits)
 *
 *   norm        optional LayerNorm / RMSNorm of X's rows before the product (the norm that
 *               precedes a projection); accumulate: Y += result (the residual add after one)
 *
 * Two paths behind one call: a GEMV for T <= 32 (decode and short prompts: each dispatch
 * streams the weights once for up to 8 rows; linear_gemv.wgsl, which for one row also
 * normalizes X as it loads it) and a tiled GEMM (longer prefill; linear_gemm.wgsl). For more
 * rows than the GEMV normalizes itself, a norm kernel writes a normalized copy of X first.
 * Pipelines are compiled on first use and kept; bind groups and uniform buffers are cached by
 * (buffers, shape), so encoding the same op every step allocates nothing.
 */
import { Kernel, loadWgsl, params, storageBuffer, uniform, type GpuContext } from './device.js';
import { ElementwiseKernels } from './elementwise.js';

export type LinearWeight = 'f32' | 'f16' | 'bf16' | 'q8' | 'q4';

/**
 * The weight reader each type pastes in (linear_w_*.wgsl), with its defines: f16 and bf16 share
 * the 16-bit reader, which widens them with unpack2x16float or a shift (UNPACK).
 */
const WEIGHT_READER: Readonly<Record<LinearWeight, { file: string; defines?: Record<string, string> }>> = {
  f32: { file: 'linear_w_f32.wgsl' },
  f16: { file: 'linear_w_16.wgsl', defines: { UNPACK: 'unpack2x16float' } },
  bf16: { file: 'linear_w_16.wgsl', defines: { UNPACK: 'unpack2x16bf' } },
  q8: { file: 'linear_w_q8.wgsl' },
  q4: { file: 'linear_w_q4.wgsl' },
};

/** W's elements are 16-bit floats (f16, bf16): read 8 to a 16-byte word. */
export function isHalfWeight(weight: LinearWeight): boolean {
  return weight === 'f16' || weight === 'bf16';
}
export type LinearActivation = 'none' | 'gelu_tanh' | 'gelu_erf' | 'relu' | 'swiglu' | 'geglu';
export type LinearPath = 'gemv' | 'gemm';

export const LINEAR_ACT: Readonly<Record<LinearActivation, number>> = { none: 0, gelu_tanh: 1, gelu_erf: 2, relu: 3, swiglu: 4, geglu: 5 };

/** The gated activations: W stacks gate rows over up rows, and Y has half as many columns. */
export function isGated(act: LinearActivation | undefined): boolean {
  return act === 'swiglu' || act === 'geglu';
}

/** Largest T whose GEMV normalizes its input itself; above it a norm pass writes a normalized copy first. */
export const NORM_FUSED_MAX_T = 1;

/** What the GEMV reads as X: X itself, or X through a LayerNorm or RMSNorm fused in (at most NORM_FUSED_MAX_T rows). */
export type GemvInput = 'plain' | 'layer' | 'rms';

/**
 * The input of an op of T rows on `path` with the norm `norm` before it (if any): the norm fused
 * into the GEMV, or 'plain' where there is none or a norm pass writes a normalized copy first.
 */
export function gemvInput(norm: LinearNorm['kind'] | undefined, path: LinearPath, T: number): GemvInput {
  return norm && path === 'gemv' && T <= NORM_FUSED_MAX_T ? norm : 'plain';
}

/** The INPUT part pasted into linear_gemv.wgsl for each, and its partial sums of X's own a row (XM). */
const GEMV_INPUT: Readonly<Record<GemvInput, { wgsl: string[]; moments: number }>> = {
  plain: { wgsl: ['linear_gemv_in.wgsl'], moments: 0 },
  layer: { wgsl: ['linear_gemv_gamma.wgsl', 'linear_gemv_norm.wgsl'], moments: 2 },
  rms: { wgsl: ['linear_gemv_gamma.wgsl', 'linear_gemv_rms.wgsl'], moments: 1 },
};

/** Most rows one GEMV dispatch takes (its T is a compile-time constant, 1..GEMV_MAX_T). */
export const GEMV_MAX_T = 8;

/**
 * Most rows the GEMV path takes, as dispatches of up to GEMV_MAX_T rows each (W streamed once
 * per dispatch). From the H200 micro-benchmark (2026-12-02-h200-tuning), per opt-1.3b layer at
 * T = 16: two T = 8 GEMVs about 320 us against 900 for the 64 x 64 GEMM, which computes 64 rows
 * whatever T is; the two meet near T = 48.
 */
export const GEMV_PATH_MAX_T = 32;

export function chooseLinearPath(T: number): LinearPath {
  return T <= GEMV_PATH_MAX_T ? 'gemv' : 'gemm';
}

/**
 * GEMM workgroups to aim for (the H200 has 132 SMs): with fewer output tiles, K is split and
 * a second kernel adds the splits. Measured there (2026-12-03-h200-gpu-step), opt-1.3b's
 * 128-token prompt: the N = 2048 GEMMs (64 tiles) ran at 9 TFLOP/s against 23 for N = 8192.
 */
export const GEMM_MIN_WORKGROUPS = 256;
/** Fewest K elements a GEMM split takes (8 tile steps). */
export const GEMM_MIN_SPLIT_K = 256;

/** Splits of K for a GEMM of `tiles` output tiles. */
export function gemmKSplits(tiles: number, K: number): number {
  if (tiles >= GEMM_MIN_WORKGROUPS) return 1;
  return Math.max(1, Math.min(Math.ceil(GEMM_MIN_WORKGROUPS / tiles), Math.floor(K / GEMM_MIN_SPLIT_K)));
}

export interface LinearBuffers {
  x: GPUBuffer;
  w: GPUBuffer;
  y: GPUBuffer;
  bias?: GPUBuffer;
  /** f32 [N * nBlocks], for q8 / q4. */
  scales?: GPUBuffer;
  /** Normalize X's rows first (over K): gamma and beta f32 [K]. */
  norm?: LinearNorm;
}

export interface LinearNorm {
  kind: 'layer' | 'rms';
  gamma: GPUBuffer;
  /** LayerNorm only; absent = 0. */
  beta?: GPUBuffer;
  eps: number;
}

export interface LinearShape {
  T: number;
  K: number;
  /** Rows of W: outputs, or 2I for a gated act. */
  N: number;
  weight: LinearWeight;
  act?: LinearActivation;
  /** q8 / q4: a power of two >= 16 (quantizeBlockwise's blockSize). */
  blockSize?: number;
  /** Default chooseLinearPath(T); 'gemv' needs T <= GEMV_PATH_MAX_T. */
  path?: LinearPath;
  /** Y += result instead of Y = result (Y must not be X). */
  accumulate?: boolean;
  /** GEMM: splits of K (default gemmKSplits); more than one adds a second dispatch. */
  kSplits?: number;
  /** Each output becomes softcap * tanh(output / softcap) before it is stored (or added); absent: none. */
  softcap?: number;
}

export interface LinearTuning {
  /** GEMV: W rows per workgroup (even). */
  gemvRows: number;
  /** GEMV: threads per workgroup splitting K, a power of two >= 32. */
  gemvThreads: number;
  /**
   * GEMV: at most this many threads sum one output's gemvThreads partial sums in the reduction's
   * first stage (a power of two), before one thread adds their sums. Default: all of them,
   * gemvThreads / (gemvRows * T) each, where that divides (see linear_gemv.wgsl).
   */
  gemvReducers?: number;
}

/** Threads per output in the GEMV reduction's first stage, for O = rows x T partial sums a thread. */
export function gemvReducers(O: number, tuning: LinearTuning): number {
  const KT = tuning.gemvThreads;
  const all = O < KT && KT % O === 0 ? KT / O : 1;
  return Math.min(all, tuning.gemvReducers ?? all);
}

/**
 * The GEMV's shape for T rows of X and a [N, K] W, from bench/kernels-linear.ts on the H200
 * with the models' own shapes streamed from memory (bench/results/2026-12-02-h200-tuning):
 * - up to 4 rows: 8 W rows x 128 threads, but 4 x 256 where W has few rows (N <= 4096) or a
 *   long K (>= 4096): 10-25% faster there (o, fc2 / down, llama's qkv), slower elsewhere;
 * - more rows: 4 x 64 for f32 / f16 (10-45% faster than 4 x 128 at T = 8: fewer registers a
 *   thread); int8 / int4 keep 4 x 128, as measured end to end. bf16 (not measured) takes f16's
 *   shapes: the same loads, a shift for a conversion.
 * A norm fused in does not change the choice now that it takes no statistics pass first: with
 * a LayerNorm, opt-1.3b's qkv (6144 x 2048) took 10.6 us at 8 x 128 against 11.3 at 16 x 128,
 * fc1 (8192) 12.5 against 13.2 (2026-12-03-h200-rms-deferred, r3-kernels-linear.txt).
 */
export function defaultLinearTuning(T: number, N = 0, K = 0, weight: LinearWeight = 'f16'): LinearTuning {
  if (T <= 4) return N <= 4096 || K >= 4096 ? { gemvRows: 4, gemvThreads: 256 } : { gemvRows: 8, gemvThreads: 128 };
  return isHalfWeight(weight) || weight === 'f32' ? { gemvRows: 4, gemvThreads: 64 } : { gemvRows: 4, gemvThreads: 128 };
}

/**
 * A tuning that overrides the defaults for every linear op of the engine, from
 * `FUSEGEN_LINEAR_TUNING` (JSON, e.g. `{"gemvRows":4,"gemvThreads":64}`):
 * for trying shapes end to end in a benchmark; LinearKernels checks it like any other.
 */
export function linearTuningFromEnv(): Partial<LinearTuning> {
  const text = process.env['FUSEGEN_LINEAR_TUNING'];
  if (!text) return {};
  try {
    return JSON.parse(text) as Partial<LinearTuning>;
  } catch {
    throw new Error(`FUSEGEN_LINEAR_TUNING is not JSON: ${text}`);
  }
}

/** Columns of Y: N, or N / 2 for a gated act. */
export function linearOutColumns(shape: Pick<LinearShape, 'N' | 'act'>): number {
  return isGated(shape.act) ? shape.N / 2 : shape.N;
}

/** Byte sizes of the buffers a shape needs (W and scales as quantizeBlockwise makes them). */
export function linearBufferBytes(shape: LinearShape): { x: number; w: number; y: number; bias: number; scales: number } {
  const { T, K, N, weight } = shape;
  const nBlocks = weight === 'q8' || weight === 'q4' ? Math.ceil(K / (shape.blockSize ?? 0)) : 0;
  const w =
    weight === 'f32' ? N * K * 4
    : isHalfWeight(weight) ? N * K * 2
    : (N * nBlocks * (shape.blockSize ?? 0) * (weight === 'q8' ? 8 : 4)) / 8;
  return { x: T * K * 4, w, y: T * linearOutColumns(shape) * 4, bias: N * 4, scales: N * nBlocks * 4 };
}

export interface Encoded {
  /** The dispatches, in order: one, or for a GEMV of more than GEMV_MAX_T rows one per 8 rows. */
  parts: EncodedPart[];
  /** A norm that is not fused into the GEMV: its pass into the normalized copy goes first. */
  before?: (pass: GPUComputePassEncoder) => void;
}

export interface EncodedPart {
  kernel: Kernel;
  group: GPUBindGroup;
  paramsBuf: GPUBuffer;
  dispatch: [number, number, number];
}

/** The compiled linear kernels of one device, with their bind-group cache. */
export class LinearKernels {
  private readonly kernels = new Map<string, Kernel>();
  private readonly encoded = new Map<string, Encoded>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private readonly dummy: GPUBuffer;

  /**
   * `tuning` fixes the GEMV's shape for every op (default: defaultLinearTuning, by T and W's shape);
   * `elementwise` encodes the norm pass before a GEMM (an engine passes its own, whose cache it clears).
   */
  constructor(
    readonly ctx: GpuContext,
    readonly tuning: Partial<LinearTuning> = {},
    private readonly elementwise: ElementwiseKernels = ElementwiseKernels.for(ctx),
  ) {
    this.tuningAt(1, 0, 0, 'f16'); // validates the shape (workgroup memory is checked per T, on first use)
    this.dummy = storageBuffer(ctx, 16, 'linear: no bias');
  }

  /** The GEMV's rows per workgroup and threads for T rows of X and a [N, K] W. */
  tuningAt(T: number, N: number, K: number, weight: LinearWeight, input: GemvInput = 'plain'): LinearTuning {
    const t = { ...defaultLinearTuning(T, N, K, weight), ...this.tuning };
    const { gemvRows: R, gemvThreads: KT } = t;
    if (!(Number.isInteger(R) && R >= 2 && R % 2 === 0)) throw new Error(`linear: gemvRows ${R} must be even and >= 2`);
    if (!(KT >= 32 && (KT & (KT - 1)) === 0)) throw new Error(`linear: gemvThreads ${KT} must be a power of two >= 32`);
    const G = t.gemvReducers;
    if (G !== undefined && !(Number.isInteger(G) && G >= 1 && (G & (G - 1)) === 0)) throw new Error(`linear: gemvReducers ${G} must be a power of two`);
    const rows = Math.min(T, GEMV_MAX_T);
    const XM = GEMV_INPUT[input].moments;
    const shared = (R + XM) * rows * KT * 4; // linear_gemv.wgsl's red: ROWS + XM partial sums a thread per row of X
    const limit = this.ctx.device.limits.maxComputeWorkgroupStorageSize;
    if (shared > limit) throw new Error(`linear: (gemvRows + ${XM}) * T * gemvThreads * 4 = ${shared} bytes of workgroup memory (T=${T}), over the device's ${limit}`);
    return t;
  }

  /** Encodes Y = act(X . W^T + bias) into `pass`. Cached per (buffers, shape) after the first call. */
  encode(pass: GPUComputePassEncoder, bufs: LinearBuffers, shape: LinearShape): void {
    const e = this.prepare(bufs, shape);
    e.before?.(pass);
    for (const p of e.parts) p.kernel.encode(pass, p.group, ...p.dispatch);
  }

  /** The pipelines, bind groups and dispatch sizes `encode` uses, made (and checked) once. */
  prepare(bufs: LinearBuffers, shape: LinearShape): Encoded {
    const path = shape.path ?? chooseLinearPath(shape.T);
    const act = shape.act ?? 'none';
    const key = [
      path, shape.weight, act, shape.T, shape.K, shape.N, shape.blockSize ?? 0, shape.accumulate ? 1 : 0, shape.kSplits ?? 0, shape.softcap ?? 0,
      this.id(bufs.x), this.id(bufs.w), this.id(bufs.y), bufs.bias ? this.id(bufs.bias) : 0, bufs.scales ? this.id(bufs.scales) : 0,
      bufs.norm ? `${bufs.norm.kind}:${this.id(bufs.norm.gamma)}:${bufs.norm.beta ? this.id(bufs.norm.beta) : 0}:${bufs.norm.eps}` : '',
    ].join(',');
    let e = this.encoded.get(key);
    if (!e) {
      e = this.build(bufs, { ...shape, act, path }, path);
      this.encoded.set(key, e);
    }
    return e;
  }

  /** Number of cached ops (a bind group and a uniform buffer per dispatch of each). */
  get cacheSize(): number {
    return this.encoded.size;
  }

  /** Drops cached bind groups and their uniform buffers (pipelines and the LayerNorm folds stay). */
  clearCache(): void {
    for (const e of this.encoded.values()) for (const p of e.parts) p.paramsBuf.destroy();
    this.encoded.clear();
    for (const b of [...this.normed.values(), ...this.partials.values()]) b.destroy();
    this.normed.clear();
    this.partials.clear();
  }

  destroy(): void {
    this.clearCache();
    for (const f of this.folds.values()) for (const b of f.owned) b.destroy();
    this.folds.clear();
    this.dummy.destroy();
  }

  /**
   * The GEMM path's normalized copies of X, one per size, shared by the ops of that size
   * (dispatches run in order). Kept until clearCache: cached bind groups refer to them.
   */
  private readonly normed = new Map<number, GPUBuffer>();

  private normedScratch(bytes: number): GPUBuffer {
    let b = this.normed.get(bytes);
    if (!b) this.normed.set(bytes, (b = storageBuffer(this.ctx, bytes, 'linear: normalized input')));
    return b;
  }

  /**
   * A fused LayerNorm's W . gamma and bias + W . beta per (W, norm, bias). They depend on the
   * weights only, so clearCache (a new run's buffers) keeps them; destroy frees them.
   */
  private readonly folds = new Map<string, { wg: GPUBuffer; bias?: GPUBuffer; owned: GPUBuffer[] }>();

  /**
   * W . gamma and bias + W . beta (just bias where there is no beta) for a GEMV with a LayerNorm
   * fused in, computed now on the device by the plain GEMV from W as stored (quantized or not):
   * W, gamma, beta and bias must keep the values they hold at an op's first encode.
   */
  private foldLayerNorm(bufs: LinearBuffers, shape: LinearShape): { wg: GPUBuffer; bias?: GPUBuffer } {
    const norm = bufs.norm!;
    const key = [this.id(bufs.w), this.id(norm.gamma), norm.beta ? this.id(norm.beta) : 0, bufs.bias ? this.id(bufs.bias) : 0, shape.K, shape.N].join(',');
    let f = this.folds.get(key);
    if (f) return f;
    const plain: LinearShape = { T: 1, K: shape.K, N: shape.N, weight: shape.weight, path: 'gemv', ...(shape.blockSize ? { blockSize: shape.blockSize } : {}) };
    const w = { w: bufs.w, ...(bufs.scales ? { scales: bufs.scales } : {}) };
    const wg = storageBuffer(this.ctx, shape.N * 4, 'linear: W . gamma');
    const bias = norm.beta ? storageBuffer(this.ctx, shape.N * 4, 'linear: bias + W . beta') : undefined;
    const enc = this.ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    this.encode(pass, { ...w, x: norm.gamma, y: wg }, plain);
    if (bias) this.encode(pass, { ...w, x: norm.beta!, y: bias, ...(bufs.bias ? { bias: bufs.bias } : {}) }, plain);
    pass.end();
    this.ctx.device.queue.submit([enc.finish()]);
    const folded = bias ?? bufs.bias;
    f = { wg, ...(folded ? { bias: folded } : {}), owned: bias ? [wg, bias] : [wg] };
    this.folds.set(key, f);
    return f;
  }

  /** Split-K partial sums, one buffer per size, shared the same way. */
  private readonly partials = new Map<number, GPUBuffer>();

  private partialScratch(bytes: number): GPUBuffer {
    let b = this.partials.get(bytes);
    if (!b) this.partials.set(bytes, (b = storageBuffer(this.ctx, bytes, 'linear: split-K partial sums')));
    return b;
  }

  private id(buf: GPUBuffer): number {
    let id = this.bufferIds.get(buf);
    if (id === undefined) {
      id = this.nextBufferId++;
      this.bufferIds.set(buf, id);
    }
    return id;
  }

  private build(bufs: LinearBuffers, shape: LinearShape, path: LinearPath): Encoded {
    const { T, K, N, weight } = shape;
    const act = shape.act ?? 'none';
    const where = `linear(${path}, ${weight}, T=${T}, K=${K}, N=${N}, ${act})`;
    const int = (v: number) => Number.isInteger(v) && v >= 1;
    if (!int(T) || !int(K) || !int(N)) throw new Error(`${where}: T, K, N must be positive integers`);
    if (path === 'gemv' && T > GEMV_PATH_MAX_T) throw new Error(`${where}: the GEMV path takes T <= ${GEMV_PATH_MAX_T}`);
    if (isGated(act) && N % 2 !== 0) throw new Error(`${where}: ${act} needs an even N (gate and up rows)`);
    const softcap = shape.softcap ?? 0;
    if (shape.softcap !== undefined && !(Number.isFinite(softcap) && softcap > 0)) throw new Error(`${where}: softcap ${shape.softcap} must be a positive number`);
    const quantized = weight === 'q8' || weight === 'q4';
    let nBlocks = 0;
    let bsShift = 0;
    if (quantized) {
      const bs = shape.blockSize ?? 0;
      if (!(bs >= 16 && (bs & (bs - 1)) === 0)) throw new Error(`${where}: blockSize ${bs} must be a power of two >= 16`);
      if (!bufs.scales) throw new Error(`${where}: quantized weights need scales`);
      nBlocks = Math.ceil(K / bs);
      bsShift = Math.log2(bs);
    }
    const need = linearBufferBytes(shape);
    const check = (name: string, buf: GPUBuffer | undefined, bytes: number) => {
      if (buf && buf.size < bytes) throw new Error(`${where}: ${name} has ${buf.size} bytes, needs ${bytes}`);
    };
    check('x', bufs.x, need.x);
    check('w', bufs.w, need.w);
    check('y', bufs.y, need.y);
    check('bias', bufs.bias, need.bias);
    if (quantized) check('scales', bufs.scales, need.scales);

    const nOut = linearOutColumns(shape);
    const aligned = K % 4 === 0 && (!isHalfWeight(weight) || K % 8 === 0);
    // Fused for one row only: when every GEMV workgroup still took the norm's statistics first,
    // fusing at batch 8 cost opt-1.3b 13.6 ms a step against 3.0 apart (H200). Not measured
    // again since the statistics are deferred.
    const input = gemvInput(bufs.norm?.kind, path, T);
    const fused = input !== 'plain';
    if (shape.accumulate && bufs.y === bufs.x) throw new Error(`${where}: accumulating into X`);
    const norm = bufs.norm;
    if (norm?.kind === 'rms' && norm.beta) throw new Error(`${where}: RMSNorm takes no beta`);
    // A fused GEMV normalizes as it loads X; otherwise the kernel reads a normalized copy made just before.
    let x = bufs.x;
    let before: Encoded['before'];
    if (norm && !fused) {
      const out = this.normedScratch(T * K * 4);
      const elementwise = this.elementwise;
      before = (pass) => elementwise.norm(pass, { kind: norm.kind, x: bufs.x, gamma: norm.gamma, ...(norm.beta ? { beta: norm.beta } : {}), out, T, E: K, eps: norm.eps });
      x = out;
    }
    // A fused LayerNorm's beta rides in the bias (see linear_gemv_norm.wgsl).
    const folded = input === 'layer' ? this.foldLayerNorm(bufs, shape) : undefined;
    const bias = folded ? folded.bias : bufs.bias;
    const storage: Array<GPUBuffer | undefined> = [x, bufs.w, bias ?? this.dummy, bufs.y, quantized ? bufs.scales! : undefined];
    if (input !== 'plain') storage.push(norm!.gamma);
    if (folded) storage.push(folded.wg);
    // The GEMM's split over K: K elements per split, a multiple of its 32-element step.
    const tileColumns = Math.ceil(nOut / (isGated(act) ? 32 : 64)); // the GEMM's, over nOut
    let kSplit = K;
    let splits = 1;
    let part: GPUBuffer | undefined;
    if (path === 'gemm') {
      const tiles = tileColumns * Math.ceil(T / 64);
      const want = shape.kSplits ?? gemmKSplits(tiles, K);
      if (!(Number.isInteger(want) && want >= 1)) throw new Error(`${where}: kSplits ${want} must be a positive integer`);
      kSplit = Math.ceil(Math.ceil(K / want) / 32) * 32;
      splits = Math.ceil(K / kSplit);
      if (splits > this.ctx.device.limits.maxComputeWorkgroupsPerDimension) throw new Error(`${where}: ${splits} splits of K exceed the dispatch limit`);
      // Unsplit, the GEMM never writes part: any buffer other than the (read-only) dummy does.
      part = this.partialScratch(splits > 1 ? splits * T * N * 4 : 16);
      storage.push(part);
    }

    // One dispatch of `rows` rows from row0: the GEMM takes all T, a GEMV at most GEMV_MAX_T.
    const dispatchOf = (row0: number, rows: number): EncodedPart[] => {
      const tuning = this.tuningAt(path === 'gemv' ? rows : 1, N, K, weight, input);
      const kernel = this.kernel(path, weight, aligned, rows, tuning, input);
      const paramsBuf = uniform(
        this.ctx,
        params(
          { u32: rows }, { u32: K }, { u32: N }, { u32: nOut }, { u32: LINEAR_ACT[act] }, { u32: bias ? 1 : 0 }, { u32: nBlocks }, { u32: bsShift },
          { u32: shape.accumulate ? 1 : 0 }, { f32: norm?.eps ?? 0 }, { u32: row0 }, { u32: kSplit }, { f32: softcap },
        ),
        where,
      );
      const group = kernel.bind(paramsBuf, storage, where); // profiles tell the shapes apart
      let dispatch: [number, number, number];
      if (path === 'gemv') {
        const perGroup = isGated(act) ? tuning.gemvRows / 2 : tuning.gemvRows;
        dispatch = this.spread(Math.ceil(nOut / perGroup));
      } else {
        dispatch = [tileColumns, Math.ceil(rows / 64), splits];
      }
      if (splits === 1) return [{ kernel, group, paramsBuf, dispatch }];
      // The splits' sum, with the epilogue: bias, activation, soft cap, the residual add.
      const finish = this.splitKernel(splits);
      return [
        { kernel, group, paramsBuf, dispatch },
        { kernel: finish, group: finish.bind(paramsBuf, [undefined, undefined, bufs.bias ?? this.dummy, bufs.y, undefined, part!], `${where} split-K sum`), paramsBuf, dispatch: this.spread(Math.ceil((rows * nOut) / 256)) },
      ];
    };
    const parts: EncodedPart[] = [];
    const step = path === 'gemv' ? GEMV_MAX_T : T;
    for (let row0 = 0; row0 < T; row0 += step) parts.push(...dispatchOf(row0, Math.min(step, T - row0)));
    return before ? { parts, before } : { parts };
  }

  /** `groups` workgroups as an (x, y) dispatch within the per-dimension limit; kernels number them wid.y * num_workgroups.x + wid.x. */
  private spread(groups: number): [number, number, number] {
    const gx = Math.min(groups, this.ctx.device.limits.maxComputeWorkgroupsPerDimension);
    return [gx, Math.ceil(groups / gx), 1];
  }

  private splitKernel(splits: number): Kernel {
    const key = `splitk:${splits}`;
    let k = this.kernels.get(key);
    if (!k) {
      k = new Kernel(this.ctx, `linear ${key}`, 'linear_splitk.wgsl', { COMMON: common({ ALIGNED: 'true' }), SPLITS: splits });
      this.kernels.set(key, k);
    }
    return k;
  }

  private kernel(path: LinearPath, weight: LinearWeight, aligned: boolean, T: number, tuning: LinearTuning, input: GemvInput): Kernel {
    const G = gemvReducers(tuning.gemvRows * T, tuning);
    const key = path === 'gemv' ? `gemv:${weight}:${aligned}:${T}:${tuning.gemvRows}x${tuning.gemvThreads}x${G}:${input}` : `gemm:${weight}:${aligned}`;
    let k = this.kernels.get(key);
    if (!k) {
      const flag = { ALIGNED: aligned ? 'true' : 'false' };
      const defines: Record<string, string | number> = {
        COMMON: common(flag),
        WEIGHTS: loadWgsl(WEIGHT_READER[weight].file, { ...flag, ...WEIGHT_READER[weight].defines }),
      };
      if (path === 'gemv') {
        Object.assign(defines, {
          T,
          ROWS: tuning.gemvRows,
          KT: tuning.gemvThreads,
          G,
          // Pasted as code, not a runtime flag: a shader that never normalizes compiles without it.
          INPUT: GEMV_INPUT[input].wgsl.map((f) => loadWgsl(f, flag)).join('\n'),
        });
      }
      k = new Kernel(this.ctx, `linear ${key}`, `linear_${path}.wgsl`, defines);
      this.kernels.set(key, k);
    }
    return k;
  }
}

/** linear_common.wgsl with what its store() calls (softcap.wgsl). */
function common(flag: Record<string, string>): string {
  return `${loadWgsl('linear_common.wgsl', flag)}\n${loadWgsl('softcap.wgsl')}`;
}
