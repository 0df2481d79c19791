/**
 * The linear kernels (src/kernels/linear.ts) against a float64 CPU reference, on Mesa
 * lavapipe when no other Vulkan driver is chosen. Fresh seeded random inputs per case, odd
 * sizes, Y poisoned with NaN before every run (one spare row past the end must stay NaN),
 * both paths, every activation (SwiGLU and Gemma's GeGLU among them), with and without bias,
 * f32 / f16 / bf16 / int8 / int4 weights, and the soft cap of Gemma 2's logits.
 *
 * Error bound per element: the reference's own magnitude sum S = sum_k |x_k w_k| + |b| times
 * REL (f32 accumulation in a different order), pushed through the activation's slope, plus
 * ACT_REL * |y| for the activation's own evaluation.
 */
import { uniform } from '../src/pipeline/random.js';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bfloat16BitsToFloat32, float16BitsToFloat32, float32ArrayToBFloat16Bits } from '../src/checkpoint/safetensors.js';
import { float32ToFloat16Bits, openGpu, readback, storageBuffer, submit, upload, type GpuContext } from '../src/kernels/device.js';
import {
  chooseLinearPath,
  defaultLinearTuning,
  gemmKSplits,
  GEMV_PATH_MAX_T,
  gemvReducers,
  LinearKernels,
  linearOutColumns,
  linearTuningFromEnv,
  type LinearActivation,
  type LinearBuffers,
  type LinearPath,
  type LinearShape,
  type LinearWeight,
} from '../src/kernels/linear.js';
import { dequantize, quantizeBlockwise } from '../src/inject/quantize.js';
import { normRows } from '../bench/kernels-linear.js';

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
if (!process.env['VK_ICD_FILENAMES'] && existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;
// lavapipe compiles each shader with LLVM at its first dispatch, and this file runs many shaders
// once each on small shapes: compiling is most of its time. Without LLVM's optimization passes
// (Mesa's GALLIVM_PERF=nopt) it is shorter: 126 -> 88 s with a cold shader cache on 2 cores,
// together with the row counts below; about the same warm (scripts/README.md).
// Not for the files that run models (webgpu, wgsl): unoptimized shaders run 2-4x slower there,
// which costs more than the compiling saves.
process.env['GALLIVM_PERF'] ??= 'nopt';

const REL = 2e-6;
const ACT_REL = 1e-6;
const ACTS: LinearActivation[] = ['none', 'gelu_tanh', 'gelu_erf', 'relu', 'swiglu', 'geglu'];
const gated = (a: LinearActivation) => a === 'swiglu' || a === 'geglu';

const rng = uniform;
let seedCounter = 1;

// float64 references of the activations.
function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is too coarse for a reference; use the series / continued fraction.
  const a = Math.abs(x);
  let r: number;
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    r = 1 - erfcLarge(a);
  }
  return x < 0 ? -r : r;
}
/** erfc(a) for a >= 3 by its continued fraction (Lentz). */
function erfcLarge(a: number): number {
  // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + 1/2/(a + 1/(a + 3/2/(a + 2/(a + ...)))))
  let f = a;
  let C = a;
  let D = 0;
  for (let n = 1; n < 300; n++) {
    const an = n / 2;
    D = a + an * D;
    D = 1 / D;
    C = a + an / C;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
}
function erfc(x: number): number {
  return x >= 3 ? erfcLarge(x) : 1 - erf(x);
}
const silu = (x: number) => x / (1 + Math.exp(-x));
/** The gate's activation of a gated act. */
const gateAct = (name: LinearActivation, g: number) => (name === 'geglu' ? act('gelu_tanh', g) : silu(g));
/** cap * tanh(v / cap) in float64. */
const capped = (v: number, cap: number) => cap * Math.tanh(v / cap);
function act(name: LinearActivation, v: number): number {
  switch (name) {
    case 'gelu_tanh':
      // 0.5 v (1 + tanh(u)) written as v * sigmoid(2u): the same in exact arithmetic, without
      // the cancellation of 1 + tanh(u) for u << 0.
      return v / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
    case 'gelu_erf':
      return 0.5 * v * erfc(-v / Math.SQRT2);
    case 'relu':
      return Math.max(v, 0);
    default:
      return v;
  }
}

interface Case {
  T: number;
  K: number;
  N: number;
  weight: LinearWeight;
  blockSize?: number;
  x: ArrayLike<number>;
  /** The weights the kernel computes with, [N, K] (f16- or bf16-rounded, or dequantized). */
  wRef: Float32Array;
  bias: Float32Array;
  buffers: { x: GPUBuffer; w: GPUBuffer; bias: GPUBuffer; scales?: GPUBuffer };
}

function makeCase(ctx: GpuContext, T: number, K: number, N: number, weight: LinearWeight, blockSize?: number): Case {
  const r = rng(seedCounter++);
  const x = Float32Array.from({ length: T * K }, () => 2 * r() - 1);
  // Pre-activations with a standard deviation near 2, so the activations see both tails.
  const a = 6 / Math.sqrt(K);
  const w = Float32Array.from({ length: N * K }, () => a * (2 * r() - 1));
  const bias = Float32Array.from({ length: N }, () => 2 * r() - 1);
  let wRef: Float32Array;
  let wBuf: GPUBuffer;
  let scales: GPUBuffer | undefined;
  if (weight === 'f32') {
    wRef = w;
    wBuf = upload(ctx, w);
  } else if (weight === 'f16') {
    const bits = Uint16Array.from(w, (v) => float32ToFloat16Bits(v));
    wRef = Float32Array.from(bits, (h) => float16BitsToFloat32(h));
    wBuf = upload(ctx, bits);
  } else if (weight === 'bf16') {
    const bits = float32ArrayToBFloat16Bits(w, new Uint16Array(w.length));
    wRef = Float32Array.from(bits, (h) => bfloat16BitsToFloat32(h));
    wBuf = upload(ctx, bits);
  } else {
    const nbits = weight === 'q8' ? 8 : 4;
    const bs = blockSize!;
    // quantizeBlockwise takes W as [K, N] (MatMulNBits' B); its packed rows are our rows n.
    const wKN = new Float32Array(K * N);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wKN[k * N + n] = w[n * K + k]!;
    const q = quantizeBlockwise(wKN, K, N, nbits, bs);
    const dq = dequantize(q, K, N, nbits, bs);
    wRef = new Float32Array(N * K);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wRef[n * K + k] = dq[k * N + n]!;
    wBuf = upload(ctx, q.packed);
    scales = upload(ctx, q.scales);
  }
  const buffers: Case['buffers'] = { x: upload(ctx, x), w: wBuf, bias: upload(ctx, bias) };
  if (scales) buffers.scales = scales;
  return { T, K, N, weight, blockSize, x, wRef, bias, buffers };
}

function destroyCase(c: Case): void {
  for (const b of Object.values(c.buffers)) b?.destroy();
}

/** float64 Y and the per-element error bound. */
function reference(c: Case, actName: LinearActivation, withBias: boolean): { y: Float64Array; tol: Float64Array } {
  const { T, K, N } = c;
  const pre = new Float64Array(T * N);
  const mag = new Float64Array(T * N);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let s = withBias ? c.bias[n]! : 0;
      let m = Math.abs(s);
      for (let k = 0; k < K; k++) {
        const p = c.x[t * K + k]! * c.wRef[n * K + k]!;
        s += p;
        m += Math.abs(p);
      }
      pre[t * N + n] = s;
      mag[t * N + n] = m;
    }
  }
  const nOut = linearOutColumns({ N, act: actName });
  const y = new Float64Array(T * nOut);
  const tol = new Float64Array(T * nOut);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < nOut; n++) {
      if (gated(actName)) {
        const g = pre[t * N + n]!;
        const u = pre[t * N + nOut + n]!;
        const eg = REL * mag[t * N + n]!;
        const eu = REL * mag[t * N + nOut + n]!;
        const a = gateAct(actName, g);
        const v = a * u;
        y[t * nOut + n] = v;
        // |d silu / dg| < 1.1, |d gelu / dg| < 1.13
        tol[t * nOut + n] = 1.13 * eg * (Math.abs(u) + eu) + Math.abs(a) * eu + 2 * ACT_REL * Math.abs(v) + 1e-30;
      } else {
        const v = act(actName, pre[t * N + n]!);
        y[t * nOut + n] = v;
        // gelu's slope stays below 1.13
        tol[t * nOut + n] = 1.13 * REL * mag[t * N + n]! + ACT_REL * Math.abs(v) + 1e-30;
      }
    }
  }
  return { y, tol };
}

let ctx: GpuContext;
let lin: LinearKernels;

beforeAll(async () => {
  ctx = await openGpu();
  lin = new LinearKernels(ctx);
});
afterAll(() => lin?.destroy());

interface CheckOptions {
  /** Normalize X first (the fused pre-projection norm). */
  norm?: { kind: 'layer' | 'rms'; beta: boolean };
  /** Y starts with random values and the op adds to them. */
  accumulate?: boolean;
  /** GEMM: splits of K. */
  kSplits?: number;
  /** Outputs soft-capped (cap * tanh(y / cap)) before they are stored or added. */
  softcap?: number;
}

/** Runs one op on a NaN-poisoned Y (one spare row) and checks it against the reference; returns the worst error / bound. */
async function check(c: Case, actName: LinearActivation, withBias: boolean, path: LinearPath, kernels = lin, o: CheckOptions = {}): Promise<number> {
  const nOut = linearOutColumns({ N: c.N, act: actName });
  const bytes = (c.T + 1) * nOut * 4;
  const y = storageBuffer(ctx, bytes);
  const r = rng(seedCounter++);
  const y0 = Float32Array.from({ length: y.size / 4 }, (_, i) => (o.accumulate && i < c.T * nOut ? 4 * r() - 2 : NaN));
  ctx.device.queue.writeBuffer(y, 0, y0);
  const shape: LinearShape = { T: c.T, K: c.K, N: c.N, weight: c.weight, act: actName, path, ...(o.accumulate ? { accumulate: true } : {}), ...(o.kSplits ? { kSplits: o.kSplits } : {}), ...(o.softcap ? { softcap: o.softcap } : {}) };
  if (c.blockSize) shape.blockSize = c.blockSize;
  let ref = c;
  const extra: GPUBuffer[] = [];
  let norm: LinearBuffers['norm'];
  let gammaOf = new Float32Array(0);
  if (o.norm) {
    const gamma = Float32Array.from({ length: c.K }, () => 0.5 + r());
    gammaOf = gamma;
    const beta = o.norm.beta ? Float32Array.from({ length: c.K }, () => r() - 0.5) : undefined;
    const eps = 1e-5;
    norm = { kind: o.norm.kind, gamma: upload(ctx, gamma), eps, ...(beta ? { beta: upload(ctx, beta) } : {}) };
    extra.push(norm.gamma, ...(norm.beta ? [norm.beta] : []));
    ref = { ...c, x: normRows(c.x, c.T, c.K, o.norm.kind, gamma, beta, eps) };
  }
  ctx.device.pushErrorScope('validation');
  submit(ctx, (pass) => kernels.encode(pass, { ...c.buffers, bias: withBias ? c.buffers.bias : undefined, y, ...(norm ? { norm } : {}) }, shape));
  const err = await ctx.device.popErrorScope();
  expect(err?.message ?? null).toBeNull();
  const got = new Float32Array(await readback(ctx, y, bytes));
  y.destroy();
  for (const b of extra) b.destroy();
  const { y: want, tol } = reference(ref, actName, withBias);
  if (o.norm?.kind === 'layer' && actName === 'none') {
    // An f32 mean is off by a few of its ulps, a shift of every normalized element: output n
    // moves by that shift x rstd x sum_k W[n, k] gamma[k] (rows at a large offset feel it).
    const nOut = linearOutColumns({ N: c.N, act: actName });
    for (let t = 0; t < c.T; t++) {
      const row = Array.from({ length: c.K }, (_, k) => c.x[t * c.K + k]!);
      const mean = row.reduce((a, v) => a + v, 0) / c.K;
      const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / c.K;
      const rstd = 1 / Math.sqrt(variance + 1e-5);
      // The one-pass variance, mean((x - s)^2) - d^2 about s = x[0], loses what its f32 sums
      // lose relative to mean((x - s)^2): a few ulps of it, scaled up by mean((x - s)^2) /
      // variance (large when the first element is an outlier); rstd moves by half of that.
      const aboutShift = row.reduce((a, v) => a + (v - row[0]!) ** 2, 0) / c.K;
      const rstdRel = 0.5 * 4 * 2 ** -23 * (aboutShift / (variance + 1e-5));
      for (let n = 0; n < nOut; n++) {
        let wg = 0;
        let centered = 0;
        for (let k = 0; k < c.K; k++) {
          const w = c.wRef[n * c.K + k]! * gammaOf[k]!;
          wg += w;
          centered += (row[k]! - mean) * w;
        }
        tol[t * nOut + n] = tol[t * nOut + n]! + 4 * 2 ** -23 * Math.abs(mean) * rstd * Math.abs(wg) + rstdRel * rstd * Math.abs(centered);
      }
    }
  }
  if (o.softcap) {
    // The cap's slope is at most 1: the bound carries over, plus the cap's own evaluation.
    const cap = o.softcap;
    want.forEach((v, i) => ((want[i] = capped(v, cap)), (tol[i] = tol[i]! + ACT_REL * Math.abs(want[i]!))));
  }
  if (o.accumulate) want.forEach((v, i) => ((want[i] = v + y0[i]!), (tol[i] = tol[i]! + 2e-7 * Math.abs(y0[i]!))));
  const where = `${path} ${c.weight}${c.blockSize ? `/${c.blockSize}` : ''} T=${c.T} K=${c.K} N=${c.N} ${actName} bias=${withBias}${o.softcap ? ` softcap=${o.softcap}` : ''}`;
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!) / tol[i]!;
    if (!(e <= worst)) {
      worst = e;
      worstAt = i;
    }
  }
  if (!(worst <= 1)) {
    expect.fail(`${where}: element ${worstAt} got ${got[worstAt]} want ${want[worstAt]} (bound ${tol[worstAt]})`);
  }
  for (let i = want.length; i < got.length; i++) if (!Number.isNaN(got[i])) expect.fail(`${where}: wrote past Y at ${i}`);
  return worst;
}

const GEMV_TS = [1, 3, 8];
// GEMVs of more than 8 rows take several dispatches, the last one ragged: 9 = 8 + 1, 19 = 8 + 8 + 3.
// Their row counts (1, 3, 8) are the single dispatches' own, so every GEMV compiled here is one
// the single-dispatch cases need anyway (shaders compile slowly on lavapipe: 20 = 8 + 8 + 4 took
// one more GEMV per weight type and alignment, and covered no branch that 3 rows do not).
const ALL_TS = [1, 3, 8, 9, 19, 33];
// (K, N): odd sizes that take the element-by-element path, and aligned ones (K % 8 == 0)
// past one sweep of the GEMV's threads (64 threads x 8 elements) with a ragged tail.
const SHAPES: Array<[number, number]> = [
  [67, 45],
  [600, 37],
];

const worstSeen: Record<string, number> = {};
afterAll(() => {
  // The worst error relative to its bound, per weight type: for eyeballing (vitest --reporter verbose prints it).
  console.log('linear: worst error / bound', JSON.stringify(worstSeen));
});
function note(key: string, v: number): void {
  worstSeen[key] = Math.max(worstSeen[key] ?? 0, Number(v.toPrecision(3)));
}

describe.each(['f32', 'f16'] as const)('linear, %s weights', (weight) => {
  it.each(ACTS)('%s: GEMV (T <= 32) and GEMM (T in 1..33), with and without bias', async (actName) => {
    for (const [K, I] of SHAPES) {
      const N = gated(actName) ? 2 * I : I;
      for (const T of ALL_TS) {
        const c = makeCase(ctx, T, K, N, weight);
        for (const withBias of [false, true]) {
          if (T <= GEMV_PATH_MAX_T) note(weight, await check(c, actName, withBias, 'gemv'));
          note(weight, await check(c, actName, withBias, 'gemm'));
        }
        destroyCase(c);
      }
    }
    lin.clearCache();
  });
});

// bf16 W is exactly its rounded values, widened by a shift and accumulated in f32: the f32 bound
// holds against them. Few cases on purpose (shaders compile slowly on lavapipe): the 16-bit reader's
// loads are f16's, tested above; what is new is the widening, which every element of these passes.
// Six shaders: GEMV at 1 and 8 rows and the GEMM, each on the odd (element-wise) and aligned shape.
describe('linear, bf16 weights', () => {
  it('GEMV (T = 1, 8) and GEMM (T = 1, 8, 33), plain, gelu_erf and swiglu, with and without bias', async () => {
    for (const [K, I] of SHAPES) {
      for (const actName of ['none', 'gelu_erf', 'swiglu'] as const) {
        const N = gated(actName) ? 2 * I : I;
        for (const T of [1, 8, 33]) {
          const c = makeCase(ctx, T, K, N, 'bf16');
          for (const withBias of [false, true]) {
            if (T <= GEMV_PATH_MAX_T) note('bf16', await check(c, actName, withBias, 'gemv'));
            note('bf16', await check(c, actName, withBias, 'gemm'));
          }
          destroyCase(c);
        }
      }
    }
    lin.clearCache();
  });
});

describe.each([
  ['q8', 32],
  ['q8', 16],
  ['q4', 32],
  ['q4', 16],
] as const)('linear, %s weights, block size %i', (weight, blockSize) => {
  it('every activation, both paths, with and without bias, T in 1..33', async () => {
    // Odd K (element-wise X reads; the rows' padding to whole blocks) and aligned K.
    const cases: Array<[number, number, number[]]> = [
      [67, 45, [3, 9]],
      [600, 37, [1, 8, 33]],
    ];
    for (const [K, I, Ts] of cases) {
      for (const actName of ACTS) {
        const N = gated(actName) ? 2 * I : I;
        for (const T of Ts) {
          const c = makeCase(ctx, T, K, N, weight, blockSize);
          for (const withBias of [false, true]) {
            if (T <= GEMV_PATH_MAX_T) note(weight, await check(c, actName, withBias, 'gemv'));
            note(weight, await check(c, actName, withBias, 'gemm'));
          }
          destroyCase(c);
        }
      }
    }
    lin.clearCache();
  });
});

describe('linear with its input norm and a residual add', () => {
  let wide: LinearKernels;
  beforeAll(() => {
    wide = new LinearKernels(ctx, { gemvRows: 16, gemvThreads: 128 });
  });
  afterAll(() => wide?.destroy());
  it.each([
    { kind: 'layer', beta: true },
    { kind: 'layer', beta: false },
    { kind: 'rms', beta: false },
  ] as const)('$kind norm (beta $beta) fused before, Y += after: both paths, f16 and q4, T in 1..33', async (norm) => {
    for (const [K, N] of SHAPES) {
      for (const weight of ['f16', 'q4'] as const) {
        for (const T of ALL_TS) {
          const c = makeCase(ctx, T, K, N, weight, weight === 'q4' ? 32 : undefined);
          // Rows with a common offset: the two-pass variance must not lose them.
          c.x = Float32Array.from(c.x, (v) => v + 3);
          c.buffers.x.destroy();
          c.buffers.x = upload(ctx, c.x as Float32Array);
          for (const accumulate of [false, true]) {
            const o = { norm, accumulate };
            if (T <= GEMV_PATH_MAX_T) note(`${norm.kind} norm`, await check(c, 'gelu_tanh', true, 'gemv', lin, o));
            // 16 W rows a workgroup: the reduction's first stage then has 8 threads an output.
            if (T === 1) note(`${norm.kind} norm`, await check(c, 'gelu_tanh', true, 'gemv', wide, o));
            note(`${norm.kind} norm`, await check(c, 'none', accumulate, 'gemm', lin, o));
          }
          destroyCase(c);
        }
      }
    }
    lin.clearCache();
  });

  it('the GEMV\'s one-pass LayerNorm statistics survive a large common offset and outlier features', async () => {
    // Residual streams carry a few features far larger than the rest; rows here sit at 500
    // with every 97th feature at 60x, the first among them: the one-pass moments about the
    // row's first element, and the output's (x - s) . W - d W . gamma, must lose neither.
    for (const [K, T] of [[1000, 1], [1003, 3], [2048, 8]] as const) {
      const c = makeCase(ctx, T, K, 24, 'f16');
      c.x = Float32Array.from(c.x, (v, i) => ((i % K) % 97 === 0 ? 60 * v : v) + 500);
      c.buffers.x.destroy();
      c.buffers.x = upload(ctx, c.x as Float32Array);
      note('layer norm, offset and outliers', await check(c, 'none', false, 'gemv', lin, { norm: { kind: 'layer', beta: true } }));
      // 16 W rows a workgroup.
      if (T === 1) note('layer norm, offset and outliers', await check(c, 'none', false, 'gemv', wide, { norm: { kind: 'layer', beta: true } }));
      destroyCase(c);
    }
  });

  it('keeps each GEMM size\'s normalized copy alive for the ops cached with it', async () => {
    const norm = { kind: 'rms' as const, beta: false };
    const small = makeCase(ctx, 9, 64, 40, 'f32');
    const large = makeCase(ctx, 33, 64, 40, 'f32');
    // The same cached op again after a larger one: its bind group must still hold a live buffer.
    const y = storageBuffer(ctx, 9 * 40 * 4);
    const gamma = upload(ctx, new Float32Array(64).fill(1));
    const encode = (c: Case, out: GPUBuffer) => submit(ctx, (pass) => lin.encode(pass, { ...c.buffers, y: out, norm: { kind: 'rms', gamma, eps: 1e-5 } }, { T: c.T, K: 64, N: 40, weight: 'f32', path: 'gemm' }));
    ctx.device.pushErrorScope('validation');
    encode(small, y);
    const yl = storageBuffer(ctx, 33 * 40 * 4);
    encode(large, yl);
    encode(small, y);
    expect((await ctx.device.popErrorScope())?.message ?? null).toBeNull();
    await check(small, 'none', false, 'gemm', lin, { norm });
    for (const b of [y, yl, gamma]) b.destroy();
    destroyCase(small);
    destroyCase(large);
  });

  it('accumulates into Y without a norm, and refuses Y aliasing X', async () => {
    const c = makeCase(ctx, 3, 67, 45, 'f32');
    await check(c, 'relu', true, 'gemv', lin, { accumulate: true });
    await check(c, 'relu', true, 'gemm', lin, { accumulate: true });
    expect(() => lin.prepare({ ...c.buffers, y: c.buffers.x }, { T: 3, K: 67, N: 45, weight: 'f32', accumulate: true })).toThrow(/accumulating into X/);
    destroyCase(c);
  });
});

describe('linear, shapes and plumbing', () => {
  it('GEMM over several tiles in both directions (T=130, N=150, or I=75 for swiglu)', async () => {
    for (const weight of ['f16', 'q4'] as const) {
      for (const actName of ['relu', 'swiglu'] as const) {
        const c = makeCase(ctx, 130, 200, 150, weight, weight === 'q4' ? 32 : undefined);
        await check(c, actName, true, 'gemm');
        destroyCase(c);
      }
    }
  });

  it('GEMM split over K (ragged last split): float64 parity with bias, activations, swiglu, geglu, the residual add, int4', async () => {
    for (const [weight, blockSize] of [['f32', undefined], ['f16', undefined], ['q4', 32]] as const) {
      for (const actName of ['none', 'gelu_erf', 'swiglu', 'geglu'] as const) {
        const c = makeCase(ctx, 40, 600, gated(actName) ? 74 : 37, weight, blockSize);
        for (const kSplits of [2, 3, 7]) {
          const shape: LinearShape = { T: 40, K: 600, N: c.N, weight, act: actName, path: 'gemm', kSplits, ...(blockSize ? { blockSize } : {}) };
          // Two dispatches: the partial sums, then their sum with the epilogue.
          const y = storageBuffer(ctx, 40 * c.N * 4);
          expect(lin.prepare({ ...c.buffers, y }, shape).parts).toHaveLength(2);
          y.destroy();
          note(`${weight} split-K`, await check(c, actName, true, 'gemm', lin, { kSplits, accumulate: kSplits === 3 }));
        }
        destroyCase(c);
      }
    }
    lin.clearCache();
  });

  it('splits K only where the output tiles are too few to fill the GPU', () => {
    expect(gemmKSplits(64, 8192)).toBe(4); // opt-1.3b fc2 / o at a 128-token prompt: 32 x 2 tiles
    expect(gemmKSplits(256, 2048)).toBe(1); // fc1: 128 x 2 tiles
    expect(gemmKSplits(1, 600)).toBe(2); // K bounds the splits (256 elements each at least)
    expect(gemmKSplits(3, 200)).toBe(1);
  });

  it('GEMV with other tunings (rows per workgroup, threads, reducers) and a 2D dispatch', async () => {
    const k2 = new LinearKernels(ctx, { gemvRows: 2, gemvThreads: 32 });
    for (const [K, N] of SHAPES) {
      const c = makeCase(ctx, 5, K, 2 * N, 'f32');
      await check(c, 'swiglu', true, 'gemv', k2);
      await check(c, 'gelu_erf', false, 'gemv', k2);
      destroyCase(c);
    }
    const k4 = new LinearKernels(ctx, { gemvRows: 16, gemvThreads: 32 });
    const c4 = makeCase(ctx, 5, 1000, 90, 'q8', 16);
    await check(c4, 'swiglu', true, 'gemv', k4);
    await check(c4, 'relu', false, 'gemv', k4);
    destroyCase(c4);
    // int4 over several steps of the threads (K = 2500 pads to 79 blocks of 32, 1000 to 63 of 16).
    for (const [K, bs] of [[2500, 32], [1000, 16]] as const) {
      const q = makeCase(ctx, 5, K, 90, 'q4', bs);
      await check(q, 'swiglu', true, 'gemv', k4);
      await check(q, 'none', false, 'gemv', k4);
      destroyCase(q);
    }
    k4.destroy();
    // Fewer threads per output in the reduction's first stage than all: 16 of 64 at T = 1 (4 x 256),
    // 16 of 32 at T = 2, all 8 at T = 8, none at T = 3 (12 partial sums do not divide 256).
    const kr = new LinearKernels(ctx, { gemvRows: 4, gemvThreads: 256, gemvReducers: 16 });
    expect([1, 2, 3, 8].map((T) => gemvReducers(4 * T, kr.tuningAt(T, 37, 600, 'f16')))).toEqual([16, 16, 1, 8]);
    for (const T of [1, 2, 3, 8]) {
      const c = makeCase(ctx, T, 600, 37, 'f16');
      await check(c, 'gelu_tanh', true, 'gemv', kr);
      if (T === 1) await check(c, 'none', false, 'gemv', kr, { norm: { kind: 'rms', beta: false } });
      destroyCase(c);
    }
    kr.destroy();
    expect(() => new LinearKernels(ctx, { gemvReducers: 12 })).toThrow(/gemvReducers 12 must be a power of two/);
    // Over 65535 workgroups (2 rows each): the dispatch is split over x and y.
    const N = 2 * 65536 + 3;
    const c = makeCase(ctx, 5, 8, N, 'f32');
    const probeY = storageBuffer(ctx, 6 * N * 4);
    const e = k2.prepare({ ...c.buffers, y: probeY }, { T: 5, K: 8, N, weight: 'f32' });
    expect(e.parts).toHaveLength(1);
    expect(e.parts[0]!.dispatch[0]).toBeLessThanOrEqual(65535);
    expect(e.parts[0]!.dispatch[1]).toBeGreaterThan(1);
    await check(c, 'none', true, 'gemv', k2);
    probeY.destroy();
    destroyCase(c);
    k2.destroy();
  });

  it('activations on their own (K = 1, W = 1) match float64 to 1e-6 (gelu_erf) / 2e-6 relative over [-12, 12]', async () => {
    const T = 4801;
    const x = Float32Array.from({ length: T }, (_, i) => -12 + (24 * i) / (T - 1));
    const xBuf = upload(ctx, x);
    const w = upload(ctx, new Float32Array([1, 1]));
    const y = storageBuffer(ctx, T * 4);
    for (const actName of ACTS) {
      const N = gated(actName) ? 2 : 1;
      submit(ctx, (pass) => lin.encode(pass, { x: xBuf, w, y }, { T, K: 1, N, weight: 'f32', act: actName }));
      const got = new Float32Array(await readback(ctx, y, T * 4));
      for (let i = 0; i < T; i++) {
        const v = x[i]!;
        const want = gated(actName) ? gateAct(actName, v) * v : act(actName, v);
        const err = Math.abs(got[i]! - want);
        // gelu_erf: relative 1e-6 (its erfc fit is good to 1.2e-7). gelu_tanh and silu go
        // through exp(-2u) with u = 0.8 (x + 0.045 x^3) rounded in f32 (as HF's float32 does), so
        // 2e-6. Plus absolute 1e-9 in the far negative tails (|y| < 1e-3 there), where exp of a
        // large argument amplifies the rounding of the argument (x = -8: relative 1e-5 at 1e-25).
        const rel = actName === 'gelu_erf' || actName === 'relu' || actName === 'none' ? 1e-6 : 2e-6;
        if (!(err <= rel * Math.abs(want) + 1e-9)) expect.fail(`${actName}(${v}) = ${got[i]}, want ${want}`);
        if (Math.abs(want) >= 1e-3) note(`${actName} rel`, err / Math.abs(want));
      }
    }
    for (const b of [xBuf, w, y]) b.destroy();
    lin.clearCache();
  });

  it('soft cap (Gemma 2\'s logits) on its own (K = 1, W = 1): cap * tanh(x / cap) to 1e-6 relative over [-12, 12], and +-cap far out', async () => {
    const extremes = [-1e30, -3e4, -100, 100, 3e4, 1e30, 0, -0];
    const T = 4801 + extremes.length;
    const x = Float32Array.from({ length: T }, (_, i) => (i < 4801 ? -12 + (24 * i) / 4800 : extremes[i - 4801]!));
    const xBuf = upload(ctx, x);
    const w = upload(ctx, new Float32Array([1]));
    const y = storageBuffer(ctx, T * 4);
    for (const cap of [3, 30, 50]) {
      submit(ctx, (pass) => lin.encode(pass, { x: xBuf, w, y }, { T, K: 1, N: 1, weight: 'f32', softcap: cap }));
      const got = new Float32Array(await readback(ctx, y, T * 4));
      for (let i = 0; i < T; i++) {
        const want = capped(x[i]!, cap);
        // Relative 1e-6: the series below |x| = cap / 4, exp(-2 |x| / cap) above it (a few ulps each).
        if (!(Math.abs(got[i]! - want) <= 1e-6 * Math.abs(want) + 1e-12)) expect.fail(`softcap ${cap}: ${x[i]} -> ${got[i]}, want ${want}`);
        if (Math.abs(want) >= 1e-3) note('softcap rel', Math.abs(got[i]! - want) / Math.abs(want));
      }
    }
    expect(() => lin.prepare({ x: xBuf, w, y }, { T: 1, K: 1, N: 1, weight: 'f32', softcap: 0 })).toThrow(/softcap 0 must be a positive number/);
    for (const b of [xBuf, w, y]) b.destroy();
    lin.clearCache();
  });

  it('soft cap in every path\'s epilogue: GEMV (1, 3, 8 and 9 rows), GEMM, GEMM split over K; after bias and activation, before the residual add', async () => {
    for (const [K, N] of SHAPES) {
      for (const T of [1, 3, 8, 9]) {
        const c = makeCase(ctx, T, K, N, 'f16');
        // Outputs spread about 2 around 0: a cap of 1.5 bends most of them, 30 few.
        for (const softcap of [1.5, 30]) {
          note('softcap', await check(c, 'none', true, 'gemv', lin, { softcap }));
          note('softcap', await check(c, 'gelu_tanh', false, 'gemv', lin, { softcap, accumulate: true }));
          note('softcap', await check(c, 'none', true, 'gemm', lin, { softcap }));
        }
        destroyCase(c);
      }
    }
    // The split-K finish applies it (and a gated act's pairing with it): 3 splits, as above.
    for (const actName of ['none', 'geglu'] as const) {
      const c = makeCase(ctx, 40, 600, actName === 'geglu' ? 74 : 37, 'f16');
      note('softcap', await check(c, actName, true, 'gemm', lin, { kSplits: 3, softcap: 1.5 }));
      note('softcap', await check(c, actName, false, 'gemm', lin, { kSplits: 3, softcap: 1.5, accumulate: true }));
      destroyCase(c);
    }
    lin.clearCache();
  });

  it('caches bind groups per (buffers, shape) and chains ops in one pass', async () => {
    const before = lin.cacheSize;
    const K = 64;
    const c1 = makeCase(ctx, 1, K, K, 'f16');
    const c2 = makeCase(ctx, 1, K, 48, 'f32');
    const h = storageBuffer(ctx, K * 4);
    const y = storageBuffer(ctx, 48 * 4);
    const enc = (pass: GPUComputePassEncoder) => {
      lin.encode(pass, { x: c1.buffers.x, w: c1.buffers.w, bias: c1.buffers.bias, y: h }, { T: 1, K, N: K, weight: 'f16', act: 'gelu_tanh' });
      lin.encode(pass, { x: h, w: c2.buffers.w, y }, { T: 1, K, N: 48, weight: 'f32' });
    };
    submit(ctx, enc);
    const first = new Float32Array(await readback(ctx, y, 48 * 4));
    expect(lin.cacheSize).toBe(before + 2);
    ctx.device.queue.writeBuffer(y, 0, new Float32Array(48).fill(NaN));
    submit(ctx, enc);
    expect(lin.cacheSize).toBe(before + 2);
    const second = new Float32Array(await readback(ctx, y, 48 * 4));
    expect(Array.from(second)).toEqual(Array.from(first));
    // The chained result against the reference: h = gelu_tanh(x W1^T + b1), y = h W2^T.
    for (let t = 0; t < 1; t++) {
      for (let n = 0; n < 48; n++) {
        let s = 0;
        let m = 0;
        for (let k = 0; k < K; k++) {
          let hk = c1.bias[k]!;
          for (let j = 0; j < K; j++) hk += c1.x[t * K + j]! * c1.wRef[k * K + j]!;
          const p = act('gelu_tanh', hk) * c2.wRef[n * K + k]!;
          s += p;
          m += Math.abs(p);
        }
        expect(Math.abs(first[t * 48 + n]! - s)).toBeLessThanOrEqual(2e-5 * m);
      }
    }
    for (const b of [h, y]) b.destroy();
    destroyCase(c1);
    destroyCase(c2);
    lin.clearCache();
    expect(lin.cacheSize).toBe(0);
  });

  it('chooses the path by T and rejects what it cannot do', () => {
    expect(chooseLinearPath(1)).toBe('gemv');
    expect(chooseLinearPath(8)).toBe('gemv');
    expect(chooseLinearPath(32)).toBe('gemv');
    expect(chooseLinearPath(33)).toBe('gemm');
    const b = storageBuffer(ctx, 4096);
    const bufs = { x: b, w: b, y: b };
    expect(() => lin.prepare(bufs, { T: 33, K: 4, N: 4, weight: 'f32', path: 'gemv' })).toThrow(/T <= 32/);
    expect(() => lin.prepare(bufs, { T: 1, K: 4, N: 5, weight: 'f32', act: 'swiglu' })).toThrow(/even N/);
    expect(() => lin.prepare(bufs, { T: 1, K: 32, N: 4, weight: 'q4', blockSize: 32 })).toThrow(/scales/);
    expect(() => lin.prepare({ ...bufs, scales: b }, { T: 1, K: 32, N: 4, weight: 'q8', blockSize: 24 })).toThrow(/power of two/);
    expect(() => lin.prepare(bufs, { T: 1, K: 4096, N: 4, weight: 'f32' })).toThrow(/needs/);
    b.destroy();
  });

  it('picks the GEMV shape by T and W, and takes an override from FUSEGEN_LINEAR_TUNING', () => {
    expect(defaultLinearTuning(1, 8192, 2048)).toEqual({ gemvRows: 8, gemvThreads: 128 });
    expect(defaultLinearTuning(1, 2048, 8192)).toEqual({ gemvRows: 4, gemvThreads: 256 });
    expect(defaultLinearTuning(8, 8192, 2048, 'f16')).toEqual({ gemvRows: 4, gemvThreads: 64 });
    expect(defaultLinearTuning(8, 8192, 2048, 'q4')).toEqual({ gemvRows: 4, gemvThreads: 128 });
    const saved = process.env['FUSEGEN_LINEAR_TUNING'];
    try {
      process.env['FUSEGEN_LINEAR_TUNING'] = '{"gemvRows":2,"gemvThreads":64}';
      const k = new LinearKernels(ctx, linearTuningFromEnv());
      expect(k.tuningAt(1, 8192, 2048, 'f16')).toEqual({ gemvRows: 2, gemvThreads: 64 });
      k.destroy();
      process.env['FUSEGEN_LINEAR_TUNING'] = '{"gemvRows":3}';
      expect(() => new LinearKernels(ctx, linearTuningFromEnv())).toThrow(/gemvRows 3 must be even/);
      process.env['FUSEGEN_LINEAR_TUNING'] = 'rows=4';
      expect(() => linearTuningFromEnv()).toThrow(/FUSEGEN_LINEAR_TUNING is not JSON: rows=4/);
    } finally {
      if (saved === undefined) delete process.env['FUSEGEN_LINEAR_TUNING'];
      else process.env['FUSEGEN_LINEAR_TUNING'] = saved;
    }
  });
});
