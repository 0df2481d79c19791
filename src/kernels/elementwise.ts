/**
 * Row-wise kernels around the matmuls: embedding gather, fused residual add + LayerNorm/RMSNorm,
 * greedy argmax (with HF min_new_tokens suppression) and top-k. WGSL in src/kernels/wgsl/
 * (embed.wgsl, norm.wgsl, argmax.wgsl, topk.wgsl); each file's header gives layout and dispatch.
 *
 * Pipelines compile on first use and are shared by every `ElementwiseKernels` of a GpuContext; the
 * cached entries below are an instance's own, so each WGSL engine has its own instance (an engine's
 * clearCache must not destroy the uniforms another engine's recorded steps still bind: compare's
 * triage runs a second engine beside the candidate). `ElementwiseKernels.for(ctx)` is one shared
 * instance for callers without an owner of their own. Every method encodes into a caller's compute pass. Uniform buffers, bind groups and
 * scratch (argmax/top-k partials) are cached under a key made of the buffers' identities and
 * every parameter value, so re-encoding the same op every decode step allocates nothing, and two
 * encodings with different parameters in one submit never share a uniform (no writeBuffer after
 * creation). Steps whose T varies (prefill) add one entry per distinct T: call `clearCache()`
 * between requests if that grows (only when no encoded work that uses them is still unsubmitted).
 *
 * Activations are f32, row-major [T, E]; T (rows per dispatch) is at most 65535.
 */
import { type GpuContext, Kernel, loadWgsl, params, storageBuffer, uniform } from './device.js';

export type TableDtype = 'f32' | 'f16' | 'bf16';

/** embed.wgsl's element i of a table bound as `buf`: f32 as it is, f16 and bf16 as u32 pairs (low half first) widened to f32. */
const TABLE_READ: Readonly<Record<TableDtype, { W: string; at: (buf: string) => string }>> = {
  f32: { W: 'f32', at: (buf) => `return ${buf}[i];` },
  f16: { W: 'u32', at: (buf) => `return unpack2x16float(${buf}[i >> 1u])[i & 1u];` },
  // bf16 is an f32's top half: the wanted half moved to the top, the other cleared.
  bf16: { W: 'u32', at: (buf) => `return bitcast<f32>(select(${buf}[i >> 1u] << 16u, ${buf}[i >> 1u] & 0xFFFF0000u, (i & 1u) == 1u));` },
};

export interface EmbedArgs {
  /** u32 [T] token ids. Ids >= vocab embed as zeros (never read out of bounds). */
  ids: GPUBuffer;
  /** f32, f16 or bf16 [vocab, E]. */
  table: GPUBuffer;
  dtype: TableDtype;
  /** f32 [T, E]. */
  out: GPUBuffer;
  T: number;
  E: number;
  vocab: number;
  /** Multiplies the token term only (default 1). */
  scale?: number;
  /** Learned positions: out += posTable[positions[t] + posOffset] (same dtype as `table`). */
  positions?: GPUBuffer;
  posTable?: GPUBuffer;
  /** OPT: 2. Default 0. */
  posOffset?: number;
  /** Rows in posTable; positions[t] + posOffset >= posRows adds zeros. */
  posRows?: number;
}

export interface NormArgs {
  kind: 'layer' | 'rms';
  /** f32 [T, E]. */
  x: GPUBuffer;
  /** f32 [T, E]: S = x + residual (S = x when absent). */
  residual?: GPUBuffer;
  /**
   * f32 [T, E]: receives S. A separate buffer from x, out (and residual), or `residual` itself to
   * update the residual stream in place (residual += x). Absent: S is not stored.
   */
  residualOut?: GPUBuffer;
  /** f32 [E]; absent = 1. */
  gamma?: GPUBuffer;
  /** f32 [E] (LayerNorm only); absent = 0. */
  beta?: GPUBuffer;
  /** f32 [T, E]: norm(S). Must not be x. */
  out: GPUBuffer;
  /** out += norm(S) instead of out = norm(S) (a block's output normalized into the residual stream). */
  accumulate?: boolean;
  T: number;
  E: number;
  eps: number;
}

export interface Suppression {
  /** u32 [count] token ids treated as -inf. */
  ids: GPUBuffer;
  count: number;
  /** The flag: false encodes the op without suppression (e.g. after min_new_tokens). Default true. */
  enabled?: boolean;
}

export interface ArgmaxArgs {
  /** f32 [T, rowStride]. */
  logits: GPUBuffer;
  /** u32 [T] output. */
  ids: GPUBuffer;
  T: number;
  V: number;
  /** Elements between rows of `logits` (default V). */
  rowStride?: number;
  suppress?: Suppression;
}

export interface TopKArgs extends Omit<ArgmaxArgs, 'ids'> {
  K: number;
  /** u32 [T, K]: descending by value, ties by lower index. */
  outIds: GPUBuffer;
  /** f32 [T, K]: the values (suppressed ids read -inf). */
  outVals: GPUBuffer;
}

const MAX_ROWS = 65535;
const WG = 256;
/** norm keeps a row in registers: E / 256 values per invocation. */
export const NORM_MAX_E = 16384;
/** Top-k: elements (and final-pass candidates) per workgroup = WG * TOPK_PER. */
const TOPK_PER = 16;
export const TOPK_MAX_K = 64;

interface Entry {
  kernel: Kernel;
  groups: GPUBindGroup[];
  owned: GPUBuffer[];
}

export class ElementwiseKernels {
  private static readonly perCtx = new WeakMap<GpuContext, ElementwiseKernels>();

  /** The instance for `ctx` (created on first call). */
  static for(ctx: GpuContext): ElementwiseKernels {
    let k = ElementwiseKernels.perCtx.get(ctx);
    if (!k) {
      k = new ElementwiseKernels(ctx);
      ElementwiseKernels.perCtx.set(ctx, k);
    }
    return k;
  }

  /** Compiled pipelines by name, per context: they hold no buffers, so every instance shares them. */
  private static readonly compiled = new WeakMap<GpuContext, Map<string, Kernel>>();
  private readonly kernels: Map<string, Kernel>;
  private readonly entries = new Map<string, Entry>();
  private readonly bufIds = new WeakMap<GPUBuffer, number>();
  private nextBufId = 1;
  /** Never-touched stand-ins for absent writable bindings (one per slot, so they never alias). */
  private readonly dummyR: GPUBuffer;
  private readonly dummyResOut: GPUBuffer;

  constructor(readonly ctx: GpuContext) {
    let kernels = ElementwiseKernels.compiled.get(ctx);
    if (!kernels) ElementwiseKernels.compiled.set(ctx, (kernels = new Map()));
    this.kernels = kernels;
    this.dummyR = storageBuffer(ctx, 16, 'elementwise.dummyR');
    this.dummyResOut = storageBuffer(ctx, 16, 'elementwise.dummyResOut');
  }

  /** Encodes out = embed(ids) (+ positions). Dispatch (ceil(E/256), T). */
  embed(pass: GPUComputePassEncoder, a: EmbedArgs): void {
    checkRows('embed', a.T);
    const hasPos = a.posTable !== undefined;
    if (hasPos !== (a.positions !== undefined)) throw new Error('embed: positions and posTable go together');
    if (hasPos && a.posRows === undefined) throw new Error('embed: posRows is required with posTable');
    const pv = [a.T, a.E, a.vocab, hasPos ? 1 : 0, a.posOffset ?? 0, a.posRows ?? 0, a.scale ?? 1];
    const storage = [a.ids, a.positions ?? a.ids, a.table, a.posTable ?? a.table, a.out];
    const e = this.entry(`embed.${a.dtype}`, storage, pv, () => {
      const read = TABLE_READ[a.dtype];
      const kernel = this.kernel(`embed.${a.dtype}`, 'embed.wgsl', { W: read.W, TABLE_AT: read.at('table'), POS_AT: read.at('posTable') });
      const u = this.uniform(params(...pv.slice(0, 6).map((u32) => ({ u32 })), { f32: pv[6]! }, { u32: 0 }));
      return { kernel, groups: [kernel.bind(u, storage)], owned: [u] };
    });
    e.kernel.encode(pass, e.groups[0]!, Math.ceil(a.E / WG), a.T);
  }

  /** Encodes residualOut = x + residual; out = norm(that) (out += with `accumulate`). Dispatch (T), one workgroup per row. */
  norm(pass: GPUComputePassEncoder, a: NormArgs): void {
    checkRows('norm', a.T);
    if (!(a.E >= 1 && a.E <= NORM_MAX_E)) throw new Error(`norm: E must be in 1..${NORM_MAX_E}, got ${a.E}`);
    if (a.kind === 'rms' && a.beta) throw new Error('norm: RMSNorm takes no beta');
    const inPlace = a.residualOut !== undefined && a.residualOut === a.residual;
    const writeRes = a.residualOut !== undefined && !inPlace;
    const distinct = [a.x, a.out, a.residual, writeRes ? a.residualOut : undefined].filter((b) => b !== undefined);
    if (new Set(distinct).size !== distinct.length) throw new Error('norm: x, out, residual and residualOut (unless == residual) must be distinct buffers');
    const flags = (a.residual ? 1 : 0) | (writeRes ? 2 : 0) | (inPlace ? 4 : 0) | (a.gamma ? 8 : 0) | (a.beta ? 16 : 0) | (a.accumulate ? 32 : 0);
    const storage = [a.x, a.residual ?? this.dummyR, a.gamma ?? a.x, a.beta ?? a.x, writeRes ? a.residualOut! : this.dummyResOut, a.out];
    // One pipeline per (kind, registers per invocation): a model compiles two at most.
    const per = Math.ceil(a.E / WG);
    const name = `norm.${a.kind}.${per}`;
    const e = this.entry(name, storage, [a.T, a.E, a.eps, flags], () => {
      const kernel = this.kernel(name, 'norm.wgsl', { PER: per, RMS: a.kind === 'rms' ? 'true' : 'false' });
      const u = this.uniform(params({ u32: a.T }, { u32: a.E }, { f32: a.eps }, { u32: flags }));
      return { kernel, groups: [kernel.bind(u, storage)], owned: [u] };
    });
    e.kernel.encode(pass, e.groups[0]!, a.T);
  }

  /** Encodes ids[t] = argmax logits[t]. Two dispatches: (nChunks, T) then (T). */
  argmax(pass: GPUComputePassEncoder, a: ArgmaxArgs): void {
    checkRows('argmax', a.T);
    const stride = a.rowStride ?? a.V;
    const { chunk, nChunks } = argmaxChunks(a.T, a.V);
    const sup = suppression(a.suppress);
    const storage = [a.logits, a.suppress?.ids ?? a.logits];
    const pv = [a.T, a.V, stride, chunk, nChunks, sup.on, sup.count];
    const e = this.entry('argmax', [...storage, a.ids], pv, () => {
      const kernel = this.kernel('argmax', 'argmax.wgsl', { ORDER_KEY: loadWgsl('order_key.wgsl') });
      const partials = storageBuffer(this.ctx, a.T * nChunks * 8, 'argmax.partials');
      const u = [0, 1].map((mode) => this.uniform(params(...[...pv, mode].map((u32) => ({ u32 })))));
      return { kernel, groups: u.map((b) => kernel.bind(b, [...storage, partials, a.ids])), owned: [...u, partials] };
    });
    e.kernel.encode(pass, e.groups[0]!, nChunks, a.T);
    e.kernel.encode(pass, e.groups[1]!, a.T);
  }

  /** Encodes the top K (value, id) of each row. Two dispatches: (nChunks, T) then (T). */
  topk(pass: GPUComputePassEncoder, a: TopKArgs): void {
    checkRows('topk', a.T);
    if (!(a.K >= 1 && a.K <= TOPK_MAX_K)) throw new Error(`topk: K must be in 1..${TOPK_MAX_K}`);
    const stride = a.rowStride ?? a.V;
    const cap = WG * TOPK_PER;
    // Fewest chunks that fit, more when few rows (parallelism), at most cap / K (final pass capacity).
    const maxChunks = Math.floor(cap / a.K);
    let nChunks = Math.max(Math.ceil(a.V / cap), Math.min(maxChunks, Math.ceil(128 / a.T), Math.ceil(a.V / 1024)));
    if (nChunks > maxChunks) throw new Error(`topk: V ${a.V} too large for K ${a.K}`);
    const chunk = Math.ceil(a.V / nChunks);
    nChunks = Math.ceil(a.V / chunk);
    const sup = suppression(a.suppress);
    const storage = [a.logits, a.suppress?.ids ?? a.logits];
    const pv = [a.T, a.V, stride, chunk, nChunks, sup.on, sup.count];
    const e = this.entry('topk', [...storage, a.outIds, a.outVals], [...pv, a.K], () => {
      const kernel = this.kernel('topk', 'topk.wgsl', { PER: TOPK_PER, ORDER_KEY: loadWgsl('order_key.wgsl') });
      const partials = storageBuffer(this.ctx, a.T * nChunks * a.K * 8, 'topk.partials');
      const u = [0, 1].map((mode) => this.uniform(params(...[...pv, mode, a.K, 0, 0, 0].map((u32) => ({ u32 })))));
      return { kernel, groups: u.map((b) => kernel.bind(b, [...storage, partials, a.outIds, a.outVals])), owned: [...u, partials] };
    });
    e.kernel.encode(pass, e.groups[0]!, nChunks, a.T);
    e.kernel.encode(pass, e.groups[1]!, a.T);
  }

  /** Drops cached uniforms, bind groups and scratch (pipelines stay). */
  clearCache(): void {
    for (const e of this.entries.values()) for (const b of e.owned) b.destroy();
    this.entries.clear();
  }

  dispose(): void {
    this.clearCache();
    this.dummyR.destroy();
    this.dummyResOut.destroy();
    if (ElementwiseKernels.perCtx.get(this.ctx) === this) ElementwiseKernels.perCtx.delete(this.ctx);
  }

  /** Number of cached (buffers, params) entries: for tests and leak checks. */
  get cacheSize(): number {
    return this.entries.size;
  }

  private kernel(name: string, file: string, defines: Record<string, string | number> = {}): Kernel {
    let k = this.kernels.get(name);
    if (!k) {
      k = new Kernel(this.ctx, name, file, defines);
      this.kernels.set(name, k);
    }
    return k;
  }

  private uniform(words: ArrayBuffer): GPUBuffer {
    return uniform(this.ctx, words);
  }

  private bufId(b: GPUBuffer): number {
    let id = this.bufIds.get(b);
    if (id === undefined) {
      id = this.nextBufId++;
      this.bufIds.set(b, id);
    }
    return id;
  }

  private entry(op: string, buffers: GPUBuffer[], values: number[], make: () => Entry): Entry {
    const key = `${op}|${buffers.map((b) => this.bufId(b)).join(',')}|${values.join(',')}`;
    let e = this.entries.get(key);
    if (!e) {
      e = make();
      this.entries.set(key, e);
    }
    return e;
  }
}

function checkRows(op: string, T: number): void {
  if (!(Number.isInteger(T) && T >= 1 && T <= MAX_ROWS)) throw new Error(`${op}: T must be an integer in 1..${MAX_ROWS}, got ${T}`);
}

function suppression(s: Suppression | undefined): { on: number; count: number } {
  const on = s !== undefined && (s.enabled ?? true) && s.count > 0;
  return { on: on ? 1 : 0, count: on ? s!.count : 0 };
}

/** Argmax split: about 256 workgroups in all (>= 2 per SM on an H200), chunks of at least 1024. */
export function argmaxChunks(T: number, V: number): { chunk: number; nChunks: number } {
  const perRow = Math.max(1, Math.ceil(256 / T));
  const chunk = Math.max(1024, Math.ceil(V / perRow / WG) * WG);
  return { chunk, nChunks: Math.max(1, Math.ceil(V / chunk)) };
}
