/**
 * Attention-side kernels for the WGSL engine: the packed-QKV split (rotary, KV-cache writes)
 * and causal attention (flash-decoding split + combine for few query rows, a tiled
 * online-softmax kernel for prefill). At decode the split kernel can read the packed QKV
 * itself and do the scatter's work (`packedQkv`). Built once per GpuContext; pipelines compile on first use per shape
 * (head dim, query heads per workgroup, packed input, rotary).
 *
 * Every encode method caches its uniform buffer and bind group(s) under the identity of the
 * buffers it is given plus the sizes, so re-encoding the same op every decode step allocates
 * nothing. Per-step values (positions, valid) live in storage buffers the engine rewrites.
 *
 * Shared conventions (all f32 unless said; D % 4 == 0):
 *   qkv [T, (H + 2 Hkv) * D], q, out [T, H*D]       T query rows; row t is batch row b = t / S
 *   positions u32 [T]                               absolute position of row t in its batch row
 *   valid u32 [T]                                   0 = padding row (not written, output zeros)
 *   kCache, vCache [B, Hkv, M, D]                   B = T / S, M = capacity (keys per batch row)
 *     or paged [blocks, Hkv, BS, D]                 with `paged`: row b's block table follows the T
 *                                                   positions (u32 [B, NB], M = NB * BS; kv_slot.wgsl)
 *   slopes f32 [H]                                  ALiBi slopes (only read when alibi is on)
 */
import { UnsupportedError } from '../errors.js';
import { ropeInvFreq } from '../arch/positions.js';
import { Kernel, loadWgsl, params, storageBuffer, uniform, upload, type GpuContext } from './device.js';

export interface QkvScatterBuffers {
  /** [T, (H + 2 Hkv) * D]: the packed q, k, v projection of this step's rows. */
  qkv: GPUBuffer;
  /** [T, H*D] out: q, rotated when rotary. */
  q: GPUBuffer;
  kCache: GPUBuffer;
  vCache: GPUBuffer;
  positions: GPUBuffer;
  valid: GPUBuffer;
  /** Optional f32 [D/2] inverse frequencies (rope scaling variants); default 1 / theta^(2i/D) in f32. */
  invFreq?: GPUBuffer;
}

/**
 * A paged KV cache: the caches are a pool of blocks of `blockSize` positions, and `positions`
 * holds, after the step's T positions, each batch row's table of `blocksPerRow` block ids
 * (block i of the table holds the row's positions i * blockSize ..). M is then blocksPerRow * blockSize.
 */
export interface KvPages {
  blockSize: number;
  blocksPerRow: number;
}

export interface QkvScatterDims {
  T: number;
  S: number;
  H: number;
  Hkv: number;
  D: number;
  M: number;
  paged?: KvPages;
  /** Rotary base; absent: no rotary (learned or ALiBi positions). */
  theta?: number;
}

export interface AttentionBuffers {
  /** [T, H*D] (already rotated), or with `packedQkv` the packed [T, (H + 2 Hkv) * D] projection. */
  q: GPUBuffer;
  /**
   * Decode (S = 1) only: `q` is the packed qkv projection, and the split kernel does the
   * scatter's work itself (rotary when `theta` is given, this step's k and v written into the
   * caches), saving a dispatch per layer.
   */
  packedQkv?: { theta?: number; invFreq?: GPUBuffer };
  kCache: GPUBuffer;
  vCache: GPUBuffer;
  positions: GPUBuffer;
  valid: GPUBuffer;
  /** [T, H*D] */
  out: GPUBuffer;
  /** f32 [H]; required when dims.alibi. */
  slopes?: GPUBuffer;
}

export type AttentionPath = 'split' | 'prefill';

export interface AttentionDims {
  T: number;
  S: number;
  H: number;
  Hkv: number;
  D: number;
  M: number;
  paged?: KvPages;
  /** Multiplies q.k (usually 1/sqrt(D)). */
  scale: number;
  /** Scaled scores become softcap * tanh(score / softcap) before the mask and softmax (Gemma 2's attn_logit_softcapping); absent: none. */
  softcap?: number;
  alibi?: boolean;
  /**
   * Host-side upper bound on keys any valid row sees this step (max position + 1). Only sizes
   * the split path's dispatch (empty splits cost a little); default M. May change every step
   * without new allocations. An underestimate gives wrong results.
   */
  maxKeys?: number;
  /** Force a path; default picks by rows per batch entry, context and parallelism. */
  path?: AttentionPath | 'auto';
}

/** Keys per split in flash-decoding (one workgroup each), and threads per workgroup. */
const SPLIT = 128;
const WG = 128;
const MAX_DISPATCH = 65535;

interface Bound {
  uniform: GPUBuffer;
  groups: GPUBindGroup[];
}

interface PrefillShape {
  BQ: number;
  BK: number;
}


export class AttentionKernels {
  private readonly kernels = new Map<string, Kernel>();
  private readonly bound = new Map<string, Bound>();
  private readonly ids = new WeakMap<GPUBuffer, number>();
  private nextId = 1;
  private readonly invFreqs = new Map<string, GPUBuffer>();
  private readonly dummy: GPUBuffer;
  private scratchO: GPUBuffer | undefined;
  private scratchMl: GPUBuffer | undefined;
  private readonly storageLimit: number;
  /** Loop bounds are compile-time constants (unrolled); off on CPU adapters, see the WGSL `DYN`. */
  readonly unroll: boolean;

  /** Keys per flash-decoding split. */
  readonly split: number;

  constructor(
    readonly ctx: GpuContext,
    opts: { unroll?: boolean; split?: number } = {},
  ) {
    this.split = opts.split ?? SPLIT;
    this.dummy = storageBuffer(ctx, 16, 'attention dummy');
    this.storageLimit = Math.min(ctx.device.limits.maxComputeWorkgroupStorageSize, 32768);
    const cpu = ctx.adapter.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(`${ctx.adapter.device} ${ctx.adapter.description}`);
    this.unroll = opts.unroll ?? !cpu;
  }

  /** Bound (uniform + bind group) sets cached so far; stays constant across re-encodes. */
  get boundCount(): number {
    return this.bound.size;
  }

  /** Forgets cached bind groups (e.g. after the engine frees its buffers). Uniforms are destroyed. */
  clear(): void {
    for (const b of this.bound.values()) b.uniform.destroy();
    this.bound.clear();
  }

  /**
   * Splits the packed qkv rows: q (rotated when `theta` is given) to `q`, k (rotated) and v into
   * the caches at [t / S, h, positions[t], :]; padding rows and positions >= M write no cache.
   */
  encodeQkvScatter(pass: GPUComputePassEncoder, buf: QkvScatterBuffers, dims: QkvScatterDims): void {
    const { T, S, H, Hkv, D, M, theta } = dims;
    checkHeadDim(D);
    const [BS, NB] = pageDims(dims);
    if (T === 0) return;
    const rotary = theta !== undefined;
    const inv = buf.invFreq ?? (rotary ? this.invFreq(D, theta) : this.dummy);
    const kernel = this.kernel(`qkv-scatter${rotary ? ' rotary' : ''}${dims.paged ? ' paged' : ''}`, 'qkv-scatter.wgsl', { ROTARY: String(rotary) }, !!dims.paged);
    const b = this.bind('qkv-scatter', kernel, [buf.qkv, buf.q, buf.kCache, buf.vCache, buf.positions, buf.valid, inv], [T, S, H, Hkv, D, M, BS, NB], () =>
      params({ u32: T }, { u32: S }, { u32: H }, { u32: Hkv }, { u32: D }, { u32: M }, { u32: BS }, { u32: NB }),
    );
    const [y, z] = rows(T);
    kernel.encode(pass, b.groups[0]!, Math.ceil(((H + 2 * Hkv) * D) / 2 / 64), y, z);
  }

  /** Whether encodeAttention can take `packedQkv` for S rows per batch entry of head dim D. */
  readsPackedQkv(S: number, D: number, rotary: boolean): boolean {
    return S === 1 && (!rotary || D % 8 === 0);
  }

  /** The path encodeAttention takes for these sizes. */
  choosePath(dims: AttentionDims): AttentionPath {
    if (dims.path && dims.path !== 'auto') return dims.path;
    const { T, S, Hkv, D } = dims;
    if (S <= 1) return 'split';
    const keys = Math.min(dims.maxKeys ?? dims.M, dims.M);
    const { BQ } = this.prefillShape(D, dims.H / Hkv);
    const prefillGroups = (T / S) * Math.ceil(S / BQ) * Hkv;
    // Prefill shares each key tile across BQ rows; it wins when the new rows are a good part
    // of the context or there are enough workgroups to fill the GPU anyway.
    return S * 4 >= keys || prefillGroups >= 512 ? 'prefill' : 'split';
  }

  /** Causal attention of every query row over its batch row's cached keys 0..positions[t]. */
  encodeAttention(pass: GPUComputePassEncoder, buf: AttentionBuffers, dims: AttentionDims): AttentionPath {
    const { T, S, H, Hkv, D, M, scale } = dims;
    checkHeadDim(D);
    if (H % Hkv !== 0) throw new UnsupportedError('attention', `${H} heads do not split over ${Hkv} KV heads`);
    if (T % S !== 0) throw new UnsupportedError('attention', `${T} rows are not whole batch rows of ${S}`);
    const alibi = dims.alibi === true;
    const softcap = dims.softcap ?? 0;
    if (dims.softcap !== undefined && !(Number.isFinite(softcap) && softcap > 0)) throw new UnsupportedError('attention', `softcap ${dims.softcap} must be a positive number`);
    if (alibi && !buf.slopes) throw new UnsupportedError('attention', 'ALiBi needs a slopes buffer');
    const G = H / Hkv;
    const [BS, NB] = pageDims(dims);
    const paged = !!dims.paged;
    const path = this.choosePath(dims);
    if (T === 0) return path;
    const packed = buf.packedQkv;
    const rotary = packed?.theta !== undefined;
    if (packed) {
      if (path !== 'split' || !this.readsPackedQkv(S, D, rotary)) {
        throw new UnsupportedError('attention', `the packed qkv is read in place only by decode's split path (S = 1; rotary: head dim a multiple of 8), not for S = ${S}, D = ${D} on the ${path} path`);
      }
      if (rotary && alibi) throw new UnsupportedError('attention', 'rotary and ALiBi together');
    }
    // The split kernel's table: ALiBi slopes, or the inverse rotary frequencies when it rotates.
    const slopes = alibi ? buf.slopes! : rotary ? (packed!.invFreq ?? this.invFreq(D, packed!.theta!)) : this.dummy;
    const SPLIT = this.split;
    const NS = Math.ceil(M / SPLIT);
    const words = () => params({ u32: T }, { u32: S }, { u32: H }, { u32: Hkv }, { u32: M }, { u32: NS }, { f32: scale }, { u32: 0 }, { u32: alibi ? 1 : 0 }, { f32: softcap }, { u32: BS }, { u32: NB });
    const common = [buf.q, buf.kCache, buf.vCache, buf.positions, buf.valid, slopes, buf.out];
    const sizes = [T, S, H, Hkv, D, M, scale, alibi ? 1 : 0, softcap, BS, NB];

    if (path === 'prefill') {
      const { BQ, BK } = this.prefillShape(D, G);
      const kernel = this.kernel(`prefill/${D}/${G}${paged ? '/paged' : ''}`, 'attention-prefill.wgsl', { D4: D / 4, G, BQ, BK, WG }, paged);
      const b = this.bind('prefill', kernel, common, sizes, words);
      if (Math.ceil(S / BQ) > MAX_DISPATCH || T / S > MAX_DISPATCH) throw new UnsupportedError('attention', `${T} rows exceed the dispatch limit`);
      kernel.encode(pass, b.groups[0]!, Math.ceil(S / BQ), Hkv, T / S);
      return path;
    }

    if (T > MAX_DISPATCH) throw new UnsupportedError('attention', `${T} rows exceed the split path's dispatch limit`);
    const splits = Math.max(1, Math.min(NS, Math.ceil(Math.min(dims.maxKeys ?? M, M) / SPLIT)));
    const GW = headsPerWorkgroup(G, T * H * splits);
    const splitBytes = 16 * (GW * (D / 4) + WG + 2 * (D / 4)) + 4 * (GW * (SPLIT + WG + 16) + WG) + 4;
    if (splitBytes > this.storageLimit) throw new UnsupportedError('attention', `${GW} heads per workgroup of dim ${D} need more workgroup memory than ${this.storageLimit} bytes`);
    const split = this.kernel(`split/${D}/${GW}${packed ? (rotary ? '/qkv-rotary' : '/qkv') : ''}${paged ? '/paged' : ''}`, 'attention-split.wgsl', {
      D4: D / 4,
      G: GW,
      SPLIT,
      WG,
      FUSED: String(!!packed),
      ROTARY: String(rotary),
      PREFETCH: String(splitPrefetches(D, SPLIT)),
      KV_ACCESS: packed ? 'read_write' : 'read',
      KV_WRITE: packed ? 'kc[i] = k;\n  vc[i] = v;' : '',
    }, paged);
    const wgc = Math.min(64, D / 4);
    const MAXNS = Math.max(512, 2 ** Math.ceil(Math.log2(NS)));
    if (MAXNS * 12 > this.storageLimit) throw new UnsupportedError('attention', `a cache of ${M} keys needs too many flash-decoding splits`);
    const combine = this.kernel(`combine/${D}/${MAXNS}`, 'attention-combine.wgsl', { D4: D / 4, SPLIT, WG: wgc, MAXNS });
    const partBytes = T * H * NS * D * 4;
    if (partBytes > this.ctx.device.limits.maxStorageBufferBindingSize) {
      throw new UnsupportedError('attention', `split partials need ${partBytes} bytes; lower the capacity or use the prefill path`);
    }
    const b = this.bind('split', split, common, sizes, words, (u) => {
      const [po, pml] = this.scratch(partBytes, T * H * NS * 8);
      return [
        split.bind(u, [...common, po, pml]),
        combine.bind(u, [buf.positions, buf.valid, po, pml, buf.out]),
      ];
    });
    split.encode(pass, b.groups[0]!, splits, H / GW, T);
    if (splits > 1) combine.encode(pass, b.groups[1]!, H, T);
    return path;
  }

  /** Query rows per tile (BQ) and keys per tile (BK) for the prefill kernel, within workgroup memory. */
  prefillShape(D: number, G: number): PrefillShape {
    const D4 = D / 4;
    const bytes = (BQ: number, BK: number) => {
      const R = BQ * G;
      return 16 * (R * D4 + BK * (D4 + 1)) + 4 * (R * (BK + 1) + 3 * R + 2 * BQ + G) + 4;
    };
    for (let BQ = Math.max(1, Math.floor(16 / G)); BQ >= 1; BQ = BQ > 1 ? Math.floor(BQ / 2) : 0) {
      for (const BK of [32, 16, 8]) if (bytes(BQ, BK) <= this.storageLimit) return { BQ, BK };
    }
    throw new UnsupportedError('attention', `head dim ${D} with ${G} heads per KV head needs more workgroup memory than ${this.storageLimit} bytes`);
  }

  private invFreq(D: number, theta: number): GPUBuffer {
    const key = `${D}/${theta}`;
    let buf = this.invFreqs.get(key);
    if (!buf) {
      buf = upload(this.ctx, ropeInvFreq({ type: 'default', theta, partialFactor: 1 }, D), `rope inv_freq ${key}`);
      this.invFreqs.set(key, buf);
    }
    return buf;
  }

  private kernel(key: string, file: string, defines: Record<string, string | number>, paged = false): Kernel {
    let k = this.kernels.get(key);
    if (!k) {
      k = new Kernel(this.ctx, key, file, {
        ...defines,
        PARAMS: `${loadWgsl('attention_params.wgsl')}\n${loadWgsl('softcap.wgsl')}`,
        KV_SLOT: loadWgsl('kv_slot.wgsl', { PAGED: String(paged) }),
        ROTARY_FNS: loadWgsl('rotary.wgsl'),
        DYN: this.unroll ? '' : ' + P.zero',
      });
      this.kernels.set(key, k);
    }
    return k;
  }

  private id(buf: GPUBuffer): number {
    let id = this.ids.get(buf);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(buf, id);
    }
    return id;
  }

  private bind(op: string, kernel: Kernel, buffers: GPUBuffer[], sizes: number[], words: () => ArrayBuffer, groups?: (u: GPUBuffer) => GPUBindGroup[]): Bound {
    const key = `${op}|${kernel.label}|${buffers.map((b) => this.id(b)).join(',')}|${sizes.join(',')}`;
    let b = this.bound.get(key);
    if (!b) {
      const u = uniform(this.ctx, words(), `${op} params`);
      b = { uniform: u, groups: groups ? groups(u) : [kernel.bind(u, buffers)] };
      this.bound.set(key, b);
    }
    return b;
  }

  /** Split partials, shared by every attention call (dispatches in a pass run in order). */
  private scratch(oBytes: number, mlBytes: number): [GPUBuffer, GPUBuffer] {
    if (!this.scratchO || this.scratchO.size < oBytes) this.scratchO = storageBuffer(this.ctx, oBytes, 'attention partial o');
    if (!this.scratchMl || this.scratchMl.size < mlBytes) this.scratchMl = storageBuffer(this.ctx, mlBytes, 'attention partial ml');
    return [this.scratchO, this.scratchMl];
  }
}

/**
 * Whether a split thread can hold its keys and values in registers (the kernel's PREFETCH:
 * all requested at once, before positions and q): at most 32 vec4s, as for D = 64.
 */
function splitPrefetches(D: number, split: number): boolean {
  const D4 = D / 4;
  const keysPerThread = Math.ceil(split / WG);
  const valuesPerLane = Math.ceil(split / Math.floor(WG / D4));
  return keysPerThread * D4 + valuesPerLane <= 32;
}

/**
 * Query heads per split workgroup: all G of a KV head (its keys read once), unless that leaves
 * fewer than MIN_WORKGROUPS workgroups: then the largest divisor of G that gives enough, or 1.
 * Decode at batch 1 has few rows; llama-1.1b's 4 KV heads alone would be 4 workgroups.
 */
const MIN_WORKGROUPS = 128;

function headsPerWorkgroup(G: number, headSplits: number): number {
  for (let gw = G; gw > 1; gw--) if (G % gw === 0 && (headSplits / gw) >= MIN_WORKGROUPS) return gw;
  return 1;
}

/** The kernels' (BS, NB): the page size and a row's table length, or (M, 1) for contiguous caches (unused then). */
function pageDims(dims: { M: number; paged?: KvPages }): [number, number] {
  const p = dims.paged;
  if (!p) return [dims.M, 1];
  if (!(p.blockSize >= 1 && p.blocksPerRow >= 1 && p.blockSize * p.blocksPerRow === dims.M)) {
    throw new UnsupportedError('attention', `paged caches of ${p.blocksPerRow} blocks of ${p.blockSize} positions a row do not make M = ${dims.M}`);
  }
  return [p.blockSize, p.blocksPerRow];
}

function checkHeadDim(D: number): void {
  if (D % 4 !== 0 || D < 4 || D > 4 * WG) throw new UnsupportedError('attention', `head dim ${D} must be a multiple of 4 up to ${4 * WG}`);
}

/** Dispatch (y, z) covering T rows, as the row kernels read them: t = z * 65535 + y. */
function rows(T: number): [number, number] {
  return [Math.min(T, MAX_DISPATCH), Math.ceil(T / MAX_DISPATCH)];
}
