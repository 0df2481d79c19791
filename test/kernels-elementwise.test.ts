/**
 * src/kernels/elementwise.ts (embed, fused residual + LayerNorm/RMSNorm, argmax, top-k) against a
 * float64 CPU reference on seeded random inputs. Runs on Mesa lavapipe without a GPU. Every
 * output buffer is poisoned with NaN (or 0xdeadbeef for ids) before each run.
 */
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { float16BitsToFloat32 } from '../src/checkpoint/safetensors.js';
import { uniform } from '../src/pipeline/random.js';
import { argmaxChunks, ElementwiseKernels, NORM_MAX_E } from '../src/kernels/elementwise.js';
import { float32ToFloat16Bits, type GpuContext, openGpu, readback, storageBuffer, submit, upload } from '../src/kernels/device.js';

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
if (!process.env['VK_ICD_FILENAMES'] && existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;

let ctx: GpuContext;
let k: ElementwiseKernels;

beforeAll(async () => {
  ctx = await openGpu();
  k = ElementwiseKernels.for(ctx);
});

const rng = uniform;

function randn(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

function randomF32(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = offset + scale * randn(r);
  return a;
}

function poisonedF32(n: number): GPUBuffer {
  return upload(ctx, new Float32Array(n).fill(NaN));
}

function poisonedU32(n: number): GPUBuffer {
  return upload(ctx, new Uint32Array(n).fill(0xdeadbeef));
}

async function readF32(buf: GPUBuffer, n: number): Promise<Float32Array> {
  return new Float32Array(await readback(ctx, buf, n * 4));
}

async function readU32(buf: GPUBuffer, n: number): Promise<Uint32Array> {
  return new Uint32Array(await readback(ctx, buf, n * 4));
}

/** Largest |got - ref| / (atol + rtol |ref|); NaN anywhere makes it Infinity. */
function worst(got: ArrayLike<number>, ref: ArrayLike<number>, atol: number, rtol: number): number {
  expect(got.length).toBeGreaterThanOrEqual(ref.length);
  let w = 0;
  for (let i = 0; i < ref.length; i++) {
    const g = got[i]!;
    const r = ref[i]!;
    const e = Math.abs(g - r) / (atol + rtol * Math.abs(r));
    if (!(e <= w)) w = Number.isNaN(e) ? Infinity : e;
  }
  return w;
}

describe('embed', () => {
  const vocab = 37;
  const posRows = 24;
  const cases: Array<{ E: number; T: number; dtype: 'f32' | 'f16'; pos: boolean }> = [];
  for (const E of [64, 67, 1000, 4096]) for (const T of [1, 3, 17]) cases.push({ E, T, dtype: 'f32', pos: false });
  for (const E of [67, 1000]) for (const T of [1, 17]) for (const dtype of ['f32', 'f16'] as const) cases.push({ E, T, dtype, pos: true });
  cases.push({ E: 64, T: 3, dtype: 'f16', pos: false });

  it.each(cases)('E=$E T=$T $dtype positions=$pos', async ({ E, T, dtype, pos }) => {
    const seed = E * 31 + T * 7 + (dtype === 'f16' ? 1 : 0) + (pos ? 2 : 0);
    const r = rng(seed);
    // With T >= 3: row 0 gets an out-of-range id (vocab + 5), row 1 an out-of-range position, row 2
    // HF's padding position -1 (reads row offset - 1 = 1, as PyTorch does).
    const ids = Uint32Array.from({ length: T }, (_, t) => (t === 0 && T >= 3 ? vocab + 5 : Math.floor(r() * vocab)));
    const positions = Uint32Array.from({ length: T }, (_, t) => (T >= 3 && t === 1 ? posRows : T >= 3 && t === 2 ? 0xffffffff : Math.floor(r() * (posRows - 2))));
    const tab32 = randomF32(vocab * E, seed + 1);
    const pos32 = randomF32(posRows * E, seed + 2, 0.5);
    // The values the GPU sees: f16-rounded for f16 tables.
    const widen = (a: Float32Array) => (dtype === 'f16' ? Float64Array.from(a, (v) => float16BitsToFloat32(float32ToFloat16Bits(v))) : Float64Array.from(a));
    // f16 data is padded to whole 4-byte words: writeBuffer takes multiples of 4 bytes only.
    const store = (a: Float32Array) => (dtype === 'f16' ? Uint16Array.from({ length: a.length + (a.length % 2) }, (_, i) => float32ToFloat16Bits(a[i] ?? 0)) : a);
    const tab = widen(tab32);
    const pt = widen(pos32);
    const scale = pos ? 1 : 1.5;
    const offset = 2;
    const ref = new Float64Array(T * E);
    for (let t = 0; t < T; t++)
      for (let e = 0; e < E; e++) {
        const id = ids[t]!;
        let v = id < vocab ? scale * tab[id * E + e]! : 0;
        const p = (positions[t]! + offset) >>> 0;
        if (pos && p < posRows) v += pt[p * E + e]!;
        ref[t * E + e] = v;
      }
    const out = poisonedF32(T * E);
    const idsBuf = upload(ctx, ids);
    const tableBuf = upload(ctx, store(tab32));
    const extra = pos ? { positions: upload(ctx, positions), posTable: upload(ctx, store(pos32)), posOffset: offset, posRows } : {};
    submit(ctx, (pass) => k.embed(pass, { ids: idsBuf, table: tableBuf, dtype, out, T, E, vocab, scale, ...extra }));
    const got = await readF32(out, T * E);
    expect(worst(got, ref, 1e-6, 1e-6)).toBeLessThanOrEqual(1);
    if (T >= 3) {
      // The out-of-range id row holds only its position term (or zeros).
      expect(Array.from(got.subarray(0, E)).every((v, e) => v === (pos ? Math.fround(pt[(positions[0]! + offset) * E + e]!) : 0))).toBe(true);
      if (pos) {
        // Row 1 holds only its token term; row 2 its token term plus position row 1.
        expect(Array.from(got.subarray(E, 2 * E)).every((v, e) => v === Math.fround(tab[ids[1]! * E + e]!))).toBe(true);
        expect(Array.from(got.subarray(2 * E, 3 * E)).every((v, e) => v === Math.fround(tab[ids[2]! * E + e]! + pt[E + e]!))).toBe(true);
      }
    }
  });
});

interface NormCase {
  kind: 'layer' | 'rms';
  E: number;
  T: number;
  residual: 'none' | 'separate' | 'inplace' | 'copy';
  gamma: boolean;
  beta: boolean;
  offset: number;
  noise: number;
}

function normReference(c: NormCase, x: Float32Array, res: Float32Array | undefined, gamma: Float32Array, beta: Float32Array, eps: number) {
  const { T, E } = c;
  const s = new Float32Array(T * E); // S is an f32 add on the GPU: exact to compare
  for (let i = 0; i < T * E; i++) s[i] = res ? x[i]! + res[i]! : x[i]!;
  const out = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    const row = Float64Array.from(s.subarray(t * E, (t + 1) * E));
    let mean = 0;
    if (c.kind === 'layer') {
      for (const v of row) mean += v;
      mean /= E;
    }
    let ss = 0;
    for (const v of row) ss += (v - mean) ** 2;
    const rstd = 1 / Math.sqrt(ss / E + eps);
    for (let e = 0; e < E; e++) out[t * E + e] = (row[e]! - mean) * rstd * (c.gamma ? gamma[e]! : 1) + (c.beta ? beta[e]! : 0);
  }
  return { s, out };
}

describe('norm with fused residual', () => {
  const cases: NormCase[] = [];
  for (const E of [64, 67, 1000, 4096])
    for (const T of [1, 3, 17]) {
      cases.push({ kind: 'layer', E, T, residual: 'separate', gamma: true, beta: true, offset: 0, noise: 1 });
      cases.push({ kind: 'rms', E, T, residual: 'separate', gamma: true, beta: false, offset: 0, noise: 1 });
    }
  cases.push({ kind: 'layer', E: 67, T: 3, residual: 'none', gamma: true, beta: true, offset: 0, noise: 1 });
  cases.push({ kind: 'layer', E: 1000, T: 3, residual: 'none', gamma: true, beta: false, offset: 0.5, noise: 2 });
  cases.push({ kind: 'layer', E: 1000, T: 17, residual: 'inplace', gamma: true, beta: true, offset: 0, noise: 1 });
  cases.push({ kind: 'layer', E: 8192, T: 3, residual: 'copy', gamma: false, beta: false, offset: 0, noise: 1 });
  cases.push({ kind: 'rms', E: 1000, T: 17, residual: 'inplace', gamma: true, beta: false, offset: 0, noise: 1 });
  cases.push({ kind: 'rms', E: 67, T: 3, residual: 'none', gamma: false, beta: false, offset: 0, noise: 1 });
  // Large common offset: 1000 + noise. A naive E[x^2] - E[x]^2 (or an uncorrected f32 mean) fails.
  for (const E of [67, 4096]) for (const residual of ['none', 'separate'] as const) cases.push({ kind: 'layer', E, T: 17, residual, gamma: true, beta: true, offset: 1000, noise: 0.05 });
  cases.push({ kind: 'rms', E: 4096, T: 3, residual: 'separate', gamma: true, beta: false, offset: 1000, noise: 0.05 });

  it.each(cases)('$kind E=$E T=$T residual=$residual gamma=$gamma beta=$beta offset=$offset', async (c) => {
    const { T, E } = c;
    const seed = E * 13 + T * 5 + c.offset + (c.kind === 'rms' ? 1 : 0) + c.residual.length;
    const eps = 1e-5;
    // With a residual, the offset is split between x and residual so that S carries it.
    const hasRes = c.residual === 'separate' || c.residual === 'inplace';
    const x = randomF32(T * E, seed, c.noise, hasRes ? c.offset / 2 : c.offset);
    const res = hasRes ? randomF32(T * E, seed + 1, c.noise, c.offset / 2) : undefined;
    const gamma = randomF32(E, seed + 2, 0.3, 1);
    const beta = randomF32(E, seed + 3, 0.3);
    const ref = normReference(c, x, res, gamma, beta, eps);

    const xBuf = upload(ctx, x);
    const resBuf = res ? upload(ctx, res) : undefined;
    const out = poisonedF32(T * E);
    const resOut = c.residual === 'separate' || c.residual === 'copy' ? poisonedF32(T * E) : undefined;
    submit(ctx, (pass) =>
      k.norm(pass, {
        kind: c.kind,
        x: xBuf,
        residual: resBuf,
        residualOut: c.residual === 'inplace' ? resBuf : resOut,
        gamma: c.gamma ? upload(ctx, gamma) : undefined,
        beta: c.beta ? upload(ctx, beta) : undefined,
        out,
        T,
        E,
        eps,
      }),
    );
    const got = await readF32(out, T * E);
    // Normalised outputs are O(1): 2e-5 is ~100 f32 ulps, far below the error of a naive variance
    // (or uncorrected mean) on the offset rows.
    expect(worst(got, ref.out, 2e-5, 2e-5)).toBeLessThanOrEqual(1);
    const sBuf = c.residual === 'inplace' ? resBuf : resOut;
    if (sBuf) expect(Buffer.from((await readF32(sBuf, T * E)).buffer).equals(Buffer.from(ref.s.buffer))).toBe(true);
    if (c.residual === 'separate') expect(Buffer.from((await readF32(resBuf!, T * E)).buffer).equals(Buffer.from(res!.buffer))).toBe(true);
  });

  it.each([
    { kind: 'rms', E: 67, T: 3 },
    { kind: 'rms', E: 1000, T: 17 },
    { kind: 'layer', E: 1000, T: 1 },
  ] as const)('accumulate: out += norm(x), a block\'s output normalized into the residual stream ($kind E=$E T=$T)', async ({ kind, E, T }) => {
    const c: NormCase = { kind, E, T, residual: 'none', gamma: true, beta: kind === 'layer', offset: 0, noise: 3 };
    const eps = 1e-6;
    const x = randomF32(T * E, E + T, 3);
    const gamma = randomF32(E, E + T + 1, 0.3, 1);
    const beta = randomF32(E, E + T + 2, 0.3);
    const stream = randomF32(T * E, E + T + 3, 20); // the residual stream it is added to
    const { out: normed } = normReference(c, x, undefined, gamma, beta, eps);
    const ref = Float64Array.from(normed, (v, i) => v + stream[i]!);
    const xBuf = upload(ctx, x);
    const out = upload(ctx, stream);
    submit(ctx, (pass) => k.norm(pass, { kind, x: xBuf, gamma: upload(ctx, gamma), ...(kind === 'layer' ? { beta: upload(ctx, beta) } : {}), out, accumulate: true, T, E, eps }));
    // The sum's own rounding (|stream| ~ 20) on top of the norm's 2e-5.
    expect(worst(await readF32(out, T * E), ref, 2e-5, 2e-5)).toBeLessThanOrEqual(1);
    // x is read only.
    expect(Buffer.from((await readF32(xBuf, T * E)).buffer).equals(Buffer.from(x.buffer))).toBe(true);
  });

  it('rejects aliasing and oversize rows', () => {
    const a = storageBuffer(ctx, 64 * 4);
    const b = storageBuffer(ctx, 64 * 4);
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    expect(() => k.norm(pass, { kind: 'rms', x: a, out: a, T: 1, E: 64, eps: 1e-6 })).toThrow(/distinct/);
    expect(() => k.norm(pass, { kind: 'rms', x: a, residual: b, residualOut: a, out: storageBuffer(ctx, 256), T: 1, E: 64, eps: 1e-6 })).toThrow(/distinct/);
    expect(() => k.norm(pass, { kind: 'rms', x: a, out: b, T: 1, E: NORM_MAX_E + 1, eps: 1e-6 })).toThrow(/E must be/);
    pass.end();
  });
});

/** numpy argmax: first NaN, else first maximum (-0 == +0); suppressed ids read -inf. */
function refArgmax(row: Float32Array, suppressed: Set<number>): number {
  let best = -1;
  let bv = -Infinity;
  for (let i = 0; i < row.length; i++) {
    const v = suppressed.has(i) ? -Infinity : row[i]!;
    if (Number.isNaN(v)) return i;
    if (best < 0 || v > bv) {
      best = i;
      bv = v;
    }
  }
  return best;
}

/** Sorted (value desc, index asc) top K; NaN first. */
function refTopK(row: Float32Array, K: number, suppressed: Set<number>): { ids: number[]; vals: number[] } {
  const idx = Array.from(row.keys());
  const val = (i: number) => (suppressed.has(i) ? -Infinity : row[i]!);
  idx.sort((a, b) => {
    const va = val(a);
    const vb = val(b);
    if (Number.isNaN(va) !== Number.isNaN(vb)) return Number.isNaN(va) ? -1 : 1;
    return va === vb || (Number.isNaN(va) && Number.isNaN(vb)) ? a - b : vb - va;
  });
  const ids = idx.slice(0, K);
  return { ids, vals: ids.map(val) };
}

/** Logits rows of V with planted ties and edge cases; `stride` >= V pads rows with +inf (must be ignored). */
function makeLogits(T: number, V: number, stride: number, seed: number): Float32Array {
  const { chunk } = argmaxChunks(T, V);
  const a = randomF32(T * stride, seed, 3);
  for (let t = 0; t < T; t++) {
    const row = a.subarray(t * stride, t * stride + V);
    for (let v = V; v < stride; v++) a[t * stride + v] = Infinity;
    const r = rng(seed + t);
    const at = (f: number) => Math.min(V - 1, Math.floor(f * V));
    switch (t % 8) {
      case 0: // tie across chunks: lowest wins
        row[at(0.9)] = 50;
        row[at(0.3)] = 50;
        row[at(0.6)] = 50;
        break;
      case 1: // tie inside one chunk and one invocation (stride 256 apart)
        row[chunk + 700] = 40;
        row[chunk + 444] = 40;
        row[chunk + 188] = 40;
        break;
      case 2: // max at the ends
        row[V - 1] = 60;
        row[0] = 59;
        break;
      case 3: // all equal -> 0; -0 and +0 tie
        row.fill(-0);
        for (let v = 1; v < V; v += 3) row[v] = 0;
        break;
      case 4: // all -inf -> 0
        row.fill(-Infinity);
        break;
      case 5: // NaN ranks first, as numpy/torch
        row[at(0.7)] = 1e30;
        row[at(0.5)] = NaN;
        break;
      case 6: // a lone max at a random spot, chunk boundary neighbours
        row[at(r())] = 33;
        row[chunk - 1] = 32.5;
        row[chunk] = 32.5;
        break;
      default: // plain random
        break;
    }
  }
  return a;
}

describe('argmax', () => {
  const cases: Array<{ V: number; T: number; stride: number; sup: 'none' | 'on' | 'off' }> = [
    { V: 50272, T: 1, stride: 50272, sup: 'none' },
    { V: 50272, T: 17, stride: 50272, sup: 'none' },
    { V: 50272, T: 8, stride: 50304, sup: 'on' },
    { V: 250880, T: 3, stride: 250880, sup: 'none' },
    { V: 250880, T: 9, stride: 250880, sup: 'on' },
    { V: 250880, T: 3, stride: 250880, sup: 'off' },
    { V: 1000, T: 17, stride: 1000, sup: 'on' },
  ];

  it.each(cases)('V=$V T=$T stride=$stride suppression=$sup', async ({ V, T, stride, sup }) => {
    const logits = makeLogits(T, V, stride, V + T + stride);
    // Suppress the planted maxima of rows 0, 2, 6 (and a row's first tie), plus every 4th all -inf row's 0.
    const list = [Math.floor(0.3 * V), V - 1, 0, Math.floor(0.9 * V), 5];
    for (let t = 0; t < T; t++) if (t % 8 === 6) list.push(logits.subarray(t * stride, t * stride + V).indexOf(33));
    const suppressed = new Set(sup === 'on' ? list : []);
    const ref = Array.from({ length: T }, (_, t) => refArgmax(logits.subarray(t * stride, t * stride + V), suppressed));
    if (sup === 'on') expect(ref).not.toEqual(Array.from({ length: T }, (_, t) => refArgmax(logits.subarray(t * stride, t * stride + V), new Set())));
    const ids = poisonedU32(T);
    const lBuf = upload(ctx, logits);
    const suppress = sup === 'none' ? undefined : { ids: upload(ctx, Uint32Array.from(list)), count: list.length, enabled: sup === 'on' };
    submit(ctx, (pass) => k.argmax(pass, { logits: lBuf, ids, T, V, rowStride: stride, suppress }));
    expect(Array.from(await readU32(ids, T))).toEqual(ref);
  });

  it('reuses its cache entry across steps and flips the suppression flag without rebuilding', async () => {
    const V = 4099;
    const T = 2;
    const logits = makeLogits(T, V, V, 7);
    const lBuf = upload(ctx, logits);
    const ids = poisonedU32(T);
    const list = upload(ctx, Uint32Array.from([Math.floor(0.3 * V)]));
    const before = k.cacheSize;
    const results: number[][] = [];
    for (let step = 0; step < 4; step++) {
      ctx.device.queue.writeBuffer(ids, 0, new Uint32Array(T).fill(0xdeadbeef));
      // The engine flips the flag after min_new_tokens: each value has its own cached uniform.
      submit(ctx, (pass) => k.argmax(pass, { logits: lBuf, ids, T, V, suppress: { ids: list, count: 1, enabled: step < 2 } }));
      results.push(Array.from(await readU32(ids, T)));
    }
    expect(k.cacheSize - before).toBe(2);
    const on = Array.from({ length: T }, (_, t) => refArgmax(logits.subarray(t * V, (t + 1) * V), new Set([Math.floor(0.3 * V)])));
    const off = Array.from({ length: T }, (_, t) => refArgmax(logits.subarray(t * V, (t + 1) * V), new Set()));
    expect(on).not.toEqual(off);
    expect(results).toEqual([on, on, off, off]);
  });
});

describe('topk', () => {
  const cases: Array<{ V: number; T: number; K: number; sup: boolean }> = [
    { V: 50272, T: 8, K: 10, sup: false },
    { V: 250880, T: 2, K: 64, sup: true },
    { V: 1000, T: 3, K: 1, sup: false },
    { V: 37, T: 3, K: 50, sup: false },
  ];

  it.each(cases)('V=$V T=$T K=$K suppression=$sup', async ({ V, T, K, sup }) => {
    const logits = makeLogits(T, V, V, V * 3 + K);
    // Plant extra ties just below the row maximum so that the top K crosses them.
    for (let t = 0; t < T; t++) for (let j = 0; j < 5; j++) logits[t * V + ((j * 7919) % V)] = 20;
    const list = [0, Math.floor(0.3 * V), V - 1];
    const suppressed = new Set(sup ? list : []);
    const outIds = poisonedU32(T * K);
    const outVals = poisonedF32(T * K);
    const lBuf = upload(ctx, logits);
    const suppress = sup ? { ids: upload(ctx, Uint32Array.from(list)), count: list.length } : undefined;
    submit(ctx, (pass) => k.topk(pass, { logits: lBuf, T, V, K, outIds, outVals, suppress }));
    const gotIds = Array.from(await readU32(outIds, T * K));
    const gotVals = Array.from(await readF32(outVals, T * K));
    for (let t = 0; t < T; t++) {
      const r = refTopK(logits.subarray(t * V, (t + 1) * V), K, suppressed);
      const n = Math.min(K, V);
      expect(gotIds.slice(t * K, t * K + n), `row ${t}`).toEqual(r.ids);
      expect(gotVals.slice(t * K, t * K + n).map((v) => (Object.is(v, -0) ? 0 : v)), `row ${t}`).toEqual(r.vals.map((v) => (Object.is(v, -0) ? 0 : v)));
      if (V < K) expect(gotIds.slice(t * K + V, (t + 1) * K).every((i) => i === 0xffffffff)).toBe(true);
    }
  });
});
