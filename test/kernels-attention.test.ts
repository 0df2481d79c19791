/**
 * Attention kernels (the packed-QKV split with rotary and cache writes, split and prefill attention) against float64 CPU
 * references on seeded random inputs. Runs on Mesa lavapipe without a GPU.
 */
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { alibiSlopes, ropeInvFreq as archInvFreq } from '../src/arch/positions.js';
import { AttentionKernels, type AttentionPath } from '../src/kernels/attention.js';
const ropeInvFreq = (D: number, theta: number) => archInvFreq({ type: 'default', theta, partialFactor: 1 }, D);
import { type GpuContext, openGpu, readback, storageBuffer, submit, upload } from '../src/kernels/device.js';

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
if (!process.env['VK_ICD_FILENAMES'] && existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;
// lavapipe compiles each shader with LLVM at its first dispatch, and this file runs many shaders
// once each on small shapes: compiling is most of its time. Without LLVM's optimization passes
// (Mesa's GALLIVM_PERF=nopt) it is shorter: 88 -> 71 s with a cold shader cache on 2 cores,
// 4.5 -> 8.8 s warm (scripts/README.md).
// Not for the files that run models (webgpu, wgsl): unoptimized shaders run 2-4x slower there,
// which costs more than the compiling saves.
process.env['GALLIVM_PERF'] ??= 'nopt';

let ctx: GpuContext;
let kern: AttentionKernels;

beforeAll(async () => {
  ctx = await openGpu();
  kern = new AttentionKernels(ctx);
});

// ---------------------------------------------------------------------------------------------
// helpers

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let r = Math.imul(s ^ (s >>> 15), 1 | s);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(n: number, rand: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return out;
}

const u32 = (xs: number[]) => Uint32Array.from(xs);

async function readF32(buf: GPUBuffer, n: number): Promise<Float32Array> {
  return new Float32Array(await readback(ctx, buf, n * 4));
}

function poisoned(n: number): GPUBuffer {
  return upload(ctx, new Float32Array(n).fill(NaN));
}

function maxErr(got: Float32Array, want: Float64Array, rowsToCheck?: (i: number) => boolean): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    if (rowsToCheck && !rowsToCheck(i)) continue;
    const e = Math.abs(got[i]! - want[i]!);
    if (!(e <= m)) m = Number.isNaN(e) ? Infinity : e;
  }
  return m;
}

/** Rows of q [T, H*D], k and v [T, Hkv*D] packed as the QKV projection writes them, [T, (H + 2 Hkv) * D]. */
function packQkv(q: Float32Array, k: Float32Array, v: Float32Array, T: number, H: number, Hkv: number, D: number): Float32Array {
  const W = (H + 2 * Hkv) * D;
  const out = new Float32Array(T * W);
  for (let t = 0; t < T; t++) {
    out.set(q.subarray(t * H * D, (t + 1) * H * D), t * W);
    out.set(k.subarray(t * Hkv * D, (t + 1) * Hkv * D), t * W + H * D);
    out.set(v.subarray(t * Hkv * D, (t + 1) * Hkv * D), t * W + (H + Hkv) * D);
  }
  return out;
}

/** Rotate-half rotary in float64 of float32 angles, as torch computes them. */
function refRotary(x: Float32Array, rows: number, heads: number, D: number, positions: number[], theta: number): Float64Array {
  const out = Float64Array.from(x);
  const inv = ropeInvFreq(D, theta);
  const half = D / 2;
  for (let t = 0; t < rows; t++) {
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * D;
      for (let i = 0; i < half; i++) {
        const a = Math.fround(positions[t]! * inv[i]!);
        const c = Math.cos(a);
        const s = Math.sin(a);
        const x1 = x[base + i]!;
        const x2 = x[base + i + half]!;
        out[base + i] = x1 * c - x2 * s;
        out[base + i + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}

interface Dims {
  T: number;
  S: number;
  H: number;
  Hkv: number;
  D: number;
  M: number;
  scale: number;
}

/** Causal softmax attention in float64 over cache [B, Hkv, M, D], scores soft-capped when `softcap` (Gemma 2); invalid rows stay NaN. */
function refAttention(q: ArrayLike<number>, kc: ArrayLike<number>, vc: ArrayLike<number>, pos: number[], valid: number[], d: Dims, slopes?: number[], softcap?: number): Float64Array {
  const { T, S, H, Hkv, D, M, scale } = d;
  const G = H / Hkv;
  const out = new Float64Array(T * H * D).fill(NaN);
  for (let t = 0; t < T; t++) {
    if (!valid[t]) continue;
    const b = Math.floor(t / S);
    const L = Math.min(pos[t]!, M - 1) + 1;
    for (let h = 0; h < H; h++) {
      const kvBase = (b * Hkv + Math.floor(h / G)) * M * D;
      const qb = (t * H + h) * D;
      const sc = new Float64Array(L);
      let mx = -Infinity;
      for (let j = 0; j < L; j++) {
        let dot = 0;
        for (let e = 0; e < D; e++) dot += q[qb + e]! * kc[kvBase + j * D + e]!;
        const s = scale * dot;
        sc[j] = (softcap ? softcap * Math.tanh(s / softcap) : s) + (slopes ? slopes[h]! * (j - pos[t]!) : 0);
        mx = Math.max(mx, sc[j]!);
      }
      let sum = 0;
      for (let j = 0; j < L; j++) sum += sc[j] = Math.exp(sc[j]! - mx);
      for (let e = 0; e < D; e++) {
        let o = 0;
        for (let j = 0; j < L; j++) o += sc[j]! * vc[kvBase + j * D + e]!;
        out[qb + e] = o / sum;
      }
    }
  }
  return out;
}

interface Case {
  /** Rows per batch entry: 1 = decode. */
  S: number;
  /** Position of each batch row's first new token (keys before it are already cached). */
  offsets: number[];
  /** Valid (non-padding) rows per batch entry; padding rows follow. */
  counts: number[];
  H: number;
  Hkv: number;
  D: number;
  M: number;
  alibi: boolean;
  seed: number;
  /** Multiplies q (default 1): large values make scores spread past exp's f32 range. */
  qScale?: number;
  /** Scores soft-capped at this (Gemma 2's attn_logit_softcapping). */
  softcap?: number;
  /** A paged cache: blocks of this many positions, in a pool with spare blocks, each row's blocks scattered over it (seeded). */
  blockSize?: number;
}

interface Chain {
  dims: Dims;
  valid: number[];
  want: Float64Array;
  got: Record<AttentionPath, Float32Array> & { fused?: Float32Array };
  cacheOk: boolean;
  /** Decode only: the split kernel reading the packed qkv itself left both caches right. */
  fusedCacheOk?: boolean;
  /** With a soft cap: the reference without it. */
  uncapped?: Float64Array;
}

function cacheMatches(got: Float32Array, want: Float64Array): boolean {
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    if (Number.isNaN(w) ? !Number.isNaN(got[i]!) : !(Math.abs(got[i]! - w) < 1e-5)) return false;
  }
  return true;
}

/**
 * One whole step on the GPU: the qkv split (rotary when no ALiBi, cache writes) -> attention on both paths,
 * against the float64 reference. The cache holds random prior keys below each row's offset
 * and NaN everywhere else, so reading any key the step did not write shows up as NaN.
 */
/**
 * A block pool for a paged cache: row b's i-th block is `table[b][i]`, the blocks shuffled over a
 * pool with two spare blocks (never named), and conversions between the contiguous layout
 * [B, Hkv, M, D] and the pool's [blocks, Hkv, BS, D] (unnamed blocks NaN).
 */
function pagedLayout(B: number, Hkv: number, M: number, D: number, BS: number, rand: () => number) {
  const NB = M / BS;
  const blocks = B * NB + 2;
  const order = Array.from({ length: blocks }, (_, i) => i);
  for (let i = blocks - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const table = Array.from({ length: B }, (_, b) => order.slice(b * NB, (b + 1) * NB));
  const slot = (b: number, h: number, p: number) => ((table[b]![Math.floor(p / BS)]! * Hkv + h) * BS + (p % BS)) * D;
  const each = (f: (contiguous: number, pooled: number) => void) => {
    for (let b = 0; b < B; b++) for (let h = 0; h < Hkv; h++) for (let p = 0; p < M; p++) for (let e = 0; e < D; e++) f(((b * Hkv + h) * M + p) * D + e, slot(b, h, p) + e);
  };
  return {
    paged: { blockSize: BS, blocksPerRow: NB },
    table: table.flat(),
    toPool(c: Float32Array): Float32Array {
      const pool = new Float32Array(blocks * Hkv * BS * D).fill(NaN);
      each((i, j) => (pool[j] = c[i]!));
      return pool;
    },
    fromPool(pool: Float32Array): Float32Array {
      const c = new Float32Array(B * Hkv * M * D);
      each((i, j) => (c[i] = pool[j]!));
      return c;
    },
  };
}

async function runChain(c: Case): Promise<Chain> {
  const rand = rng(c.seed);
  const { S, H, Hkv, D, M } = c;
  const B = c.offsets.length;
  const T = B * S;
  const theta = 10000;
  // Drawn from its own generator, so that a paged case sees the same data as its contiguous twin.
  const pages = c.blockSize ? pagedLayout(B, Hkv, M, D, c.blockSize, rng(c.seed + 7)) : undefined;
  const toCache = (x: Float32Array) => (pages ? pages.toPool(x) : x);
  const readCache = async (buf: GPUBuffer, n: number) => {
    const got = await readF32(buf, pages ? buf.size / 4 : n);
    return pages ? pages.fromPool(got) : got;
  };
  const positions: number[] = [];
  const valid: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      positions.push(c.offsets[b]! + s);
      valid.push(s < c.counts[b]! ? 1 : 0);
    }
  }
  const q = gaussian(T * H * D, rand).map((x) => x * (c.qScale ?? 1));
  const k = gaussian(T * Hkv * D, rand);
  const v = gaussian(T * Hkv * D, rand);
  const cacheK = new Float32Array(B * Hkv * M * D).fill(NaN);
  const cacheV = new Float32Array(B * Hkv * M * D).fill(NaN);
  for (let b = 0; b < B; b++) {
    const prior = gaussian(2 * Hkv * c.offsets[b]! * D, rand);
    for (let h = 0; h < Hkv; h++) {
      for (let j = 0; j < c.offsets[b]!; j++) {
        for (let e = 0; e < D; e++) {
          const i = ((b * Hkv + h) * M + j) * D + e;
          cacheK[i] = prior[((h * c.offsets[b]! + j) * D + e) * 2]!;
          cacheV[i] = prior[((h * c.offsets[b]! + j) * D + e) * 2 + 1]!;
        }
      }
    }
  }
  const slopes = c.alibi ? alibiSlopes(H) : undefined;
  const dims: Dims = { T, S, H, Hkv, D, M, scale: 1 / Math.sqrt(D) };
  const paged = pages ? { paged: pages.paged } : {};

  // Reference: rotate, write the cache, attend.
  const qr = c.alibi ? Float64Array.from(q) : refRotary(q, T, H, D, positions, theta);
  const kr = c.alibi ? Float64Array.from(k) : refRotary(k, T, Hkv, D, positions, theta);
  const refK = Float64Array.from(cacheK);
  const refV = Float64Array.from(cacheV);
  for (let t = 0; t < T; t++) {
    if (!valid[t] || positions[t]! >= M) continue;
    const b = Math.floor(t / S);
    for (let h = 0; h < Hkv; h++) {
      for (let e = 0; e < D; e++) {
        refK[((b * Hkv + h) * M + positions[t]!) * D + e] = kr[(t * Hkv + h) * D + e]!;
        refV[((b * Hkv + h) * M + positions[t]!) * D + e] = v[(t * Hkv + h) * D + e]!;
      }
    }
  }
  const want = refAttention(qr, refK, refV, positions, valid, dims, slopes, c.softcap);
  const cap = c.softcap ? { softcap: c.softcap } : {};
  const uncapped = c.softcap ? refAttention(qr, refK, refV, positions, valid, dims, slopes) : undefined;

  const bufs = {
    qkv: upload(ctx, packQkv(q, k, v, T, H, Hkv, D)),
    q: poisoned(T * H * D),
    kCache: upload(ctx, toCache(cacheK)),
    vCache: upload(ctx, toCache(cacheV)),
    // A paged step's block tables follow its positions.
    positions: upload(ctx, u32([...positions, ...(pages?.table ?? [])])),
    valid: upload(ctx, u32(valid)),
    slopes: upload(ctx, Float32Array.from(slopes ?? [0])),
  };
  const outs = { split: poisoned(T * H * D), prefill: poisoned(T * H * D) };
  submit(ctx, (pass) => {
    kern.encodeQkvScatter(pass, bufs, { T, S, H, Hkv, D, M, ...paged, ...(c.alibi ? {} : { theta }) });
    for (const path of ['split', 'prefill'] as const) {
      const took = kern.encodeAttention(pass, { ...bufs, out: outs[path] }, { ...dims, ...paged, ...cap, alibi: c.alibi, path });
      expect(took).toBe(path);
    }
  });
  const got: Chain['got'] = { split: await readF32(outs.split, T * H * D), prefill: await readF32(outs.prefill, T * H * D) };
  const cacheOk = cacheMatches(await readCache(bufs.kCache, refK.length), refK);
  let fusedCacheOk: boolean | undefined;
  if (S === 1) {
    // The same step with no scatter: the split kernel reads the packed qkv, on fresh caches.
    const fused = { ...bufs, q: bufs.qkv, kCache: upload(ctx, toCache(cacheK)), vCache: upload(ctx, toCache(cacheV)), out: poisoned(T * H * D) };
    submit(ctx, (pass) => kern.encodeAttention(pass, { ...fused, packedQkv: c.alibi ? {} : { theta } }, { ...dims, ...paged, ...cap, alibi: c.alibi }));
    got.fused = await readF32(fused.out, T * H * D);
    fusedCacheOk = cacheMatches(await readCache(fused.kCache, refK.length), refK) && cacheMatches(await readCache(fused.vCache, refV.length), refV);
    for (const b of [fused.kCache, fused.vCache, fused.out]) b.destroy();
  }
  for (const b of [...Object.values(bufs), ...Object.values(outs)]) b.destroy();
  return { dims, valid, want, got, cacheOk, ...(fusedCacheOk === undefined ? {} : { fusedCacheOk }), ...(uncapped ? { uncapped } : {}) };
}

function expectChain(r: Chain, tol: number): void {
  const { H, D } = r.dims;
  const validRow = (i: number) => r.valid[Math.floor(i / (H * D))] === 1;
  expect(r.cacheOk).toBe(true);
  if (r.dims.S === 1) expect(r.fusedCacheOk, 'caches written by the fused split').toBe(true);
  for (const path of ['split', 'prefill', ...(r.got.fused ? ['fused' as const] : [])] as const) {
    const got = r.got[path]!;
    expect(maxErr(got, r.want, validRow), `${path} path`).toBeLessThan(tol);
    // Padding rows: anything finite (these kernels write zeros).
    for (let i = 0; i < got.length; i++) if (!validRow(i)) expect(Number.isFinite(got[i]!), `${path} padding row`).toBe(true);
  }
}

// ---------------------------------------------------------------------------------------------

describe('qkv split with rotary', () => {
  it.each([
    { D: 16, H: 4, Hkv: 4, theta: 10000 },
    { D: 64, H: 8, Hkv: 2, theta: 500000 },
  ])('rotate-half matches the float64 reference (D=$D, H=$H/$Hkv, theta=$theta)', async ({ D, H, Hkv, theta }) => {
    const rand = rng(D * 31 + H);
    const positions = [0, 1, 7, 33, 300, 4099, 65537];
    const T = positions.length;
    const M = 65538;
    const q = gaussian(T * H * D, rand);
    const k = gaussian(T * Hkv * D, rand);
    const v = gaussian(T * Hkv * D, rand);
    // One batch row (S = T): each token's k and v land at its own position.
    const bq = poisoned(T * H * D);
    const kc = storageBuffer(ctx, Hkv * M * D * 4);
    const vc = storageBuffer(ctx, Hkv * M * D * 4);
    const qkv = upload(ctx, packQkv(q, k, v, T, H, Hkv, D));
    submit(ctx, (pass) =>
      kern.encodeQkvScatter(pass, { qkv, q: bq, kCache: kc, vCache: vc, positions: upload(ctx, u32(positions)), valid: upload(ctx, u32(positions.map(() => 1))) }, { T, S: T, H, Hkv, D, M, theta }),
    );
    const gq = await readF32(bq, q.length);
    const wq = refRotary(q, T, H, D, positions, theta);
    const wk = refRotary(k, T, Hkv, D, positions, theta);
    expect(maxErr(gq, wq)).toBeLessThan(1e-5);
    const cacheK = await readF32(kc, Hkv * M * D);
    const cacheV = await readF32(vc, Hkv * M * D);
    const row = (cache: Float32Array, t: number, h: number) => cache.subarray((h * M + positions[t]!) * D, (h * M + positions[t]! + 1) * D);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < Hkv; h++) {
        expect(maxErr(row(cacheK, t, h), wk.subarray((t * Hkv + h) * D, (t * Hkv + h + 1) * D))).toBeLessThan(1e-5);
        expect(row(cacheV, t, h)).toEqual(v.subarray((t * Hkv + h) * D, (t * Hkv + h + 1) * D)); // v is never rotated
      }
    }
    // Position 0 is the identity; every other row actually moved.
    for (let i = 0; i < H * D; i++) expect(gq[i]).toBe(q[i]);
    expect(maxErr(gq.subarray(H * D * 4, H * D * 5), Float64Array.from(q.subarray(H * D * 4, H * D * 5)))).toBeGreaterThan(0.1);
    for (const b of [bq, kc, vc, qkv]) b.destroy();
  });
});

describe('qkv split without rotary', () => {
  it('copies q exactly, places valid k/v rows exactly and leaves every other cache entry untouched', async () => {
    const [B, S, H, Hkv, D, M] = [3, 4, 4, 2, 16, 7];
    const T = B * S;
    const rand = rng(7);
    // Row 2 of batch 0 is padding, batch 1 has a row past the capacity, batch 2 starts mid-cache.
    const positions = [0, 1, 2, 0xffffffff, 3, 4, 7, 100, 5, 6, 0, 2];
    const valid = [1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0];
    const q = gaussian(T * H * D, rand);
    const k = gaussian(T * Hkv * D, rand);
    const v = gaussian(T * Hkv * D, rand);
    const n = B * Hkv * M * D;
    const poison = new Uint32Array(n).map((_, i) => 0x7fc0_0000 | i); // NaNs with distinct payloads
    const kc = upload(ctx, poison);
    const vc = upload(ctx, poison);
    const bq = poisoned(T * H * D);
    submit(ctx, (pass) =>
      kern.encodeQkvScatter(pass, { qkv: upload(ctx, packQkv(q, k, v, T, H, Hkv, D)), q: bq, kCache: kc, vCache: vc, positions: upload(ctx, u32(positions)), valid: upload(ctx, u32(valid)) }, { T, S, H, Hkv, D, M }),
    );
    const wantK = Uint32Array.from(poison);
    const wantV = Uint32Array.from(poison);
    const kBits = new Uint32Array(k.buffer);
    const vBits = new Uint32Array(v.buffer);
    let written = 0;
    for (let t = 0; t < T; t++) {
      if (!valid[t] || positions[t]! >= M) continue;
      written++;
      const b = Math.floor(t / S);
      for (let h = 0; h < Hkv; h++) {
        for (let e = 0; e < D; e++) {
          wantK[((b * Hkv + h) * M + positions[t]!) * D + e] = kBits[(t * Hkv + h) * D + e]!;
          wantV[((b * Hkv + h) * M + positions[t]!) * D + e] = vBits[(t * Hkv + h) * D + e]!;
        }
      }
    }
    expect(written).toBe(7);
    expect(new Uint32Array(await readback(ctx, kc, n * 4))).toEqual(wantK);
    expect(new Uint32Array(await readback(ctx, vc, n * 4))).toEqual(wantV);
    expect(new Uint32Array(await readback(ctx, bq, q.length * 4))).toEqual(new Uint32Array(q.buffer)); // every row, padding too
  });
});

const SHAPES = [16, 64].flatMap((D) =>
  [
    [4, 4],
    [8, 2],
  ].flatMap(([H, Hkv]) => [false, true].map((alibi) => ({ D, H: H!, Hkv: Hkv!, alibi }))),
);

describe('attention, decode (S = 1, rows at different positions)', () => {
  it.each(SHAPES)('D=$D H=$H/$Hkv alibi=$alibi: both paths match the reference', async ({ D, H, Hkv, alibi }) => {
    // Contexts 1, 7, 33, 300 (the new token included), and a finished row (valid 0).
    const r = await runChain({ S: 1, offsets: [0, 6, 32, 299, 12], counts: [1, 1, 1, 1, 0], H, Hkv, D, M: 301, alibi, seed: D + H + (alibi ? 100 : 0) });
    expectChain(r, 1e-5);
  });
});

describe('attention, prefill (S > 1, right padding, cached prefixes)', () => {
  it.each(SHAPES)('D=$D H=$H/$Hkv alibi=$alibi: both paths match the reference', async ({ D, H, Hkv, alibi }) => {
    // Batch rows of 9, 5 and 1 valid tokens after cached prefixes of 0, 3 and 290 keys.
    const r = await runChain({ S: 9, offsets: [0, 3, 290], counts: [9, 5, 1], H, Hkv, D, M: 300, alibi, seed: 1000 + D + H + (alibi ? 100 : 0) });
    expectChain(r, 1e-5);
  });
});

describe('attention, head dim 128', () => {
  // D = 128 takes the split kernel's other loads: keys and values read where used, not prefetched.
  it('decode rows at 0, 40 and 200, GQA 4/2', async () => {
    const r = await runChain({ S: 1, offsets: [0, 40, 200], counts: [1, 1, 1], H: 4, Hkv: 2, D: 128, M: 201, alibi: false, seed: 128 });
    expectChain(r, 1e-5);
  });
});

describe('attention, 16 query heads per KV head', () => {
  it('decode and prefill rows, D=16, H=32/2', async () => {
    const r = await runChain({ S: 3, offsets: [0, 140], counts: [3, 2], H: 32, Hkv: 2, D: 16, M: 150, alibi: false, seed: 16 });
    expectChain(r, 1e-5);
  });
});

describe('attention, scores spread over hundreds', () => {
  // exp(score - max) must take the true maximum of each split: scores 300 apart overflow f32's exp otherwise.
  it('decode and prefill rows with q scaled 150x, D=64, H=8/2', async () => {
    for (const S of [1, 5]) {
      const r = await runChain({ S, offsets: [0, 90, 299], counts: [S, S, 1], H: 8, Hkv: 2, D: 64, M: 310, alibi: false, seed: 150 + S, qScale: 150 });
      expectChain(r, 2e-4);
    }
  });
});

describe('attention, soft-capped scores (Gemma 2)', () => {
  // cap * tanh(scale q.k / cap) before the mask and softmax, on every path (split, fused split,
  // prefill); the shapes of the test above, so no kernel compiles for it alone.
  it.each([
    { cap: 5, qScale: 20 }, // scores spread about 20: most saturate near +-5
    { cap: 50, qScale: 8 }, // Gemma 2's cap, scores spread about 8: both sides of the series' range (|s| / cap < 0.25)
  ])('decode and prefill rows, D=64, H=8/2, cap $cap, q scaled $qScale x', async ({ cap, qScale }) => {
    for (const S of [1, 5]) {
      const r = await runChain({ S, offsets: [0, 90, 299], counts: [S, S, 1], H: 8, Hkv: 2, D: 64, M: 310, alibi: false, seed: 250 + S + cap, qScale, softcap: cap });
      expectChain(r, 2e-5);
      // The cap changed the result: the uncapped reference is far from it.
      expect(maxErr(Float32Array.from(r.want), r.uncapped!, (i) => r.valid[Math.floor(i / (r.dims.H * r.dims.D))] === 1)).toBeGreaterThan(1e-2);
    }
  });

  it('refuses a cap that is not a positive number', () => {
    const b = storageBuffer(ctx, 64);
    const pass = { setPipeline() {}, setBindGroup() {}, dispatchWorkgroups() {} } as unknown as GPUComputePassEncoder;
    expect(() => kern.encodeAttention(pass, { q: b, kCache: b, vCache: b, positions: b, valid: b, out: b }, { T: 1, S: 1, H: 4, Hkv: 4, D: 16, M: 8, scale: 1, softcap: 0 })).toThrow(/softcap 0 must be a positive number/);
    b.destroy();
  });
});

describe('attention, long context (4100 keys)', () => {
  it('decode rows at 4099 and 2050, GQA 8/2, D=64', async () => {
    const r = await runChain({ S: 1, offsets: [4099, 2050], counts: [1, 1], H: 8, Hkv: 2, D: 64, M: 4100, alibi: false, seed: 4100 });
    expectChain(r, 1e-5);
  });
  it('a 24-row chunk after 4076 cached keys, ALiBi, D=64', async () => {
    const r = await runChain({ S: 24, offsets: [4076], counts: [24], H: 4, Hkv: 4, D: 64, M: 4100, alibi: true, seed: 4101 });
    expectChain(r, 1e-5);
  });
});

describe('attention over a paged cache (block tables after the positions)', () => {
  // Each row's blocks scattered over a pool with spare blocks: every path (scatter, split, fused
  // split, prefill) must find each key through the table. Same data as the contiguous twin, so
  // the same sums in the same order: equal to the last bit.
  it.each([
    { S: 1, offsets: [0, 6, 32, 299, 12], counts: [1, 1, 1, 1, 0], H: 8, Hkv: 2, D: 64, alibi: false, BS: 16 },
    { S: 9, offsets: [0, 3, 290], counts: [9, 5, 1], H: 8, Hkv: 2, D: 64, alibi: false, BS: 48 },
    { S: 1, offsets: [0, 6, 32, 299, 12], counts: [1, 1, 1, 1, 1], H: 4, Hkv: 4, D: 16, alibi: true, BS: 16 },
  ])('S=$S D=$D H=$H/$Hkv alibi=$alibi, blocks of $BS: the reference, and the contiguous cache bit for bit', async ({ BS, ...c }) => {
    const M = 336; // a multiple of 16 and 48, past the longest row
    const base = { ...c, M, seed: 77 + c.S + c.D };
    const pagedRun = await runChain({ ...base, blockSize: BS });
    expectChain(pagedRun, 1e-5);
    const contiguous = await runChain(base);
    for (const path of Object.keys(contiguous.got) as Array<keyof Chain['got']>) {
      expect(Buffer.from(pagedRun.got[path]!.buffer).equals(Buffer.from(contiguous.got[path]!.buffer)), `${path} path`).toBe(true);
    }
  });

  it('refuses a block table that does not make M', () => {
    const b = storageBuffer(ctx, 64);
    const pass = { setPipeline() {}, setBindGroup() {}, dispatchWorkgroups() {} } as unknown as GPUComputePassEncoder;
    expect(() => kern.encodeAttention(pass, { q: b, kCache: b, vCache: b, positions: b, valid: b, out: b }, { T: 1, S: 1, H: 4, Hkv: 4, D: 16, M: 40, scale: 1, paged: { blockSize: 16, blocksPerRow: 2 } })).toThrow(/2 blocks of 16 positions a row do not make M = 40/);
    b.destroy();
  });
});

describe('attention engine contract', () => {
  it('reads the packed qkv in place only at decode', () => {
    const b = storageBuffer(ctx, 64);
    const bufs = { q: b, kCache: b, vCache: b, positions: b, valid: b, out: b, packedQkv: { theta: 10000 } };
    const dims = { T: 4, H: 4, Hkv: 4, D: 16, M: 8, scale: 1 };
    const pass = { setPipeline() {}, setBindGroup() {}, dispatchWorkgroups() {} } as unknown as GPUComputePassEncoder;
    expect(() => kern.encodeAttention(pass, bufs, { ...dims, S: 2 })).toThrow(/only by decode's split path/);
    expect(() => kern.encodeAttention(pass, bufs, { ...dims, S: 1, D: 12 })).toThrow(/multiple of 8/);
    b.destroy();
  });

  it('picks split for decode and prefill for prompts', () => {
    const base = { H: 8, Hkv: 2, D: 64, M: 2048, scale: 0.125 };
    expect(kern.choosePath({ ...base, T: 8, S: 1 })).toBe('split');
    expect(kern.choosePath({ ...base, T: 8 * 512, S: 512 })).toBe('prefill');
    expect(kern.choosePath({ ...base, T: 64, S: 64, maxKeys: 64 })).toBe('prefill');
    expect(kern.choosePath({ ...base, T: 4, S: 4, maxKeys: 2000 })).toBe('split');
  });

  it('re-encoding a decode step reuses its bind groups; new positions come from the storage buffers', async () => {
    const [B, H, Hkv, D, M] = [3, 8, 2, 16, 260];
    const rand = rng(99);
    const kc = gaussian(B * Hkv * M * D, rand);
    const vc = gaussian(B * Hkv * M * D, rand);
    const q = gaussian(B * H * D, rand);
    const dims = { T: B, S: 1, H, Hkv, D, M, scale: 0.3 };
    const bufs = { q: upload(ctx, q), kCache: upload(ctx, kc), vCache: upload(ctx, vc), positions: upload(ctx, u32([0, 0, 0])), valid: upload(ctx, u32([1, 1, 1])), out: storageBuffer(ctx, B * H * D * 4) };
    let before = -1;
    for (const [step, pos] of [[5, 120, 255], [6, 121, 256], [130, 3, 259]].entries()) {
      ctx.device.queue.writeBuffer(bufs.positions, 0, u32(pos));
      ctx.device.queue.writeBuffer(bufs.out, 0, new Float32Array(B * H * D).fill(NaN));
      submit(ctx, (pass) => kern.encodeAttention(pass, bufs, { ...dims, maxKeys: Math.max(...pos) + 1 }));
      if (step === 0) before = kern.boundCount;
      else expect(kern.boundCount).toBe(before);
      const want = refAttention(q, kc, vc, pos, [1, 1, 1], dims);
      expect(maxErr(await readF32(bufs.out, B * H * D), want)).toBeLessThan(1e-5);
    }
  });
});
