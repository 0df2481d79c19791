/**
 * Linear-kernel micro-benchmark (not a test): times Y = X . W^T for one weight matrix, by
 * default the decode GEMV on a [8192, 8192] f16 W, and reports the bytes it streams per
 * second. Each result is also checked against a float64 reference on a sample of rows.
 *
 *   node dist/bench/kernels-linear.js [--shapes 8192x8192,2048x8192 (N x K)] [--T 1,8]
 *     [--weights f16,bf16,q8,q4] [--block_size 32] [--path gemv|gemm] [--iters 200] [--reps 5]
 *     [--tunings default,8x64,4x128,4x256x16] [--copies N] [--norm layer|rms]
 *   (--tunings: GEMV rows per workgroup x threads [x reducers], each timed on the same data)
 *
 * Timing: with timestamp-query, one compute pass of `iters` back-to-back dispatches between
 * two timestamps, the median of `reps` passes (Dawn inserts a barrier between the dispatches,
 * as between the ops of a decode step); without it, the wall time of the same submits. The
 * dispatches take turns over `copies` weight buffers (default: enough for 256 MB, five
 * times the H200's 50 MB L2, at most 256), so each op streams its weights from memory as a
 * decode step's ops do.
 * On lavapipe, maxStorageBufferBindingSize (128 MiB) caps W: an f32 [8192, 8192] is skipped.
 */
import { pathToFileURL } from 'node:url';
import { openGpu, readback, storageBuffer, upload, type GpuContext } from '../src/kernels/device.js';
import { chooseLinearPath, gemvInput, LinearKernels, linearBufferBytes, type LinearPath, type LinearShape, type LinearTuning, type LinearWeight } from '../src/kernels/linear.js';
import { bfloat16BitsToFloat32, float16BitsToFloat32, float32ToBFloat16Bits, float32ToFloat16Bits } from '../src/checkpoint/safetensors.js';
import { uniform } from '../src/pipeline/random.js';

export interface LinearBenchOptions {
  N: number;
  K: number;
  T: number;
  weight: LinearWeight;
  blockSize?: number;
  path?: LinearPath;
  iters?: number;
  reps?: number;
  /** Each one timed on the same data; default the defaults. */
  tunings?: Array<Partial<LinearTuning>>;
  /** Weight buffers the dispatches take turns over (default: enough for 256 MB). */
  copies?: number;
  /** A LayerNorm / RMSNorm of X's rows before the product (the GEMV fuses it for few rows). */
  norm?: 'layer' | 'rms';
}

export interface LinearBenchResult {
  N: number;
  K: number;
  T: number;
  weight: LinearWeight;
  path: LinearPath;
  norm: 'layer' | 'rms' | 'none';
  /** The GEMV's (empty for the GEMM). */
  tuning: Partial<LinearTuning>;
  method: 'timestamp' | 'wall';
  /** Per op. */
  microseconds: number;
  /** Weight buffers the dispatches took turns over. */
  copies: number;
  /** W (and scales), X and Y bytes per op. */
  bytes: number;
  GBps: number;
  /** 2 T N K flops per op. */
  TFLOPs: number;
  /** Worst |error| / sum |x w| over the sampled rows. */
  maxRelError: number;
  /** maxRelError < 1e-5 (f32 accumulation gives ~1e-8 here): false means a wrong kernel. */
  ok: boolean;
  device: string;
}

const rng = uniform;

export async function benchLinear(ctx: GpuContext, o: LinearBenchOptions): Promise<Array<LinearBenchResult | { tuning: Partial<LinearTuning>; skipped: string }> | { skipped: string }> {
  const { N, K, T, weight } = o;
  const iters = o.iters ?? 200;
  const reps = o.reps ?? 5;
  const blockSize = o.blockSize ?? 32;
  const shape: LinearShape = { T, K, N, weight, blockSize };
  if (o.path) shape.path = o.path;
  const need = linearBufferBytes(shape);
  const limit = ctx.device.limits.maxStorageBufferBindingSize;
  if (need.w > limit) return { skipped: `W is ${need.w} bytes, over maxStorageBufferBindingSize ${limit}` };

  const r = rng(1234);
  const x = Float32Array.from({ length: T * K }, () => 2 * r() - 1);
  const gamma = Float32Array.from({ length: K }, () => 0.5 + r());
  const beta = Float32Array.from({ length: K }, () => r() - 0.5);
  // The reference multiplies the normalized rows (float64 statistics).
  const xRef = o.norm ? normRows(x, T, K, o.norm, gamma, o.norm === 'layer' ? beta : undefined, 1e-5) : x;
  // Random bits are valid weights of every type; `value(n, k)` reads them back for the reference.
  const quantized = weight === 'q8' || weight === 'q4';
  const wBytes = new Uint8Array(need.w);
  const wWords = new Uint32Array(wBytes.buffer);
  let value: (n: number, k: number) => number;
  let scales: Float32Array | undefined;
  if (weight === 'f32') {
    const f = new Float32Array(wBytes.buffer);
    for (let i = 0; i < f.length; i++) f[i] = (2 * r() - 1) / Math.sqrt(K);
    value = (n, k) => f[n * K + k]!;
  } else if (weight === 'f16') {
    const h = new Uint16Array(wBytes.buffer);
    for (let i = 0; i < h.length; i++) h[i] = float32ToFloat16Bits((2 * r() - 1) / Math.sqrt(K));
    value = (n, k) => float16BitsToFloat32(h[n * K + k]!);
  } else if (weight === 'bf16') {
    const h = new Uint16Array(wBytes.buffer);
    for (let i = 0; i < h.length; i++) h[i] = float32ToBFloat16Bits((2 * r() - 1) / Math.sqrt(K));
    value = (n, k) => bfloat16BitsToFloat32(h[n * K + k]!);
  } else {
    for (let i = 0; i < wWords.length; i++) wWords[i] = (r() * 4294967296) >>> 0;
    const nBlocks = Math.ceil(K / blockSize);
    scales = Float32Array.from({ length: N * nBlocks }, () => (0.5 + r()) / (Math.sqrt(K) * (weight === 'q8' ? 128 : 8)));
    const rowBytes = (nBlocks * blockSize * (weight === 'q8' ? 8 : 4)) / 8;
    value = (n, k) => {
      const s = scales![n * nBlocks + Math.floor(k / blockSize)]!;
      if (weight === 'q8') return (wBytes[n * rowBytes + k]! - 128) * s;
      return (((wBytes[n * rowBytes + (k >> 1)]! >> ((k & 1) * 4)) & 15) - 8) * s;
    };
  }
  const bufs = {
    x: upload(ctx, x),
    w: upload(ctx, wBytes),
    y: storageBuffer(ctx, need.y),
    ...(scales ? { scales: upload(ctx, scales) } : {}),
    ...(o.norm ? { norm: { kind: o.norm, gamma: upload(ctx, gamma), ...(o.norm === 'layer' ? { beta: upload(ctx, beta) } : {}), eps: 1e-5 } } : {}),
  };
  // The same weights again (the first is the one checked), so that no op finds its W in cache.
  const copies = o.copies ?? Math.min(256, Math.ceil(256e6 / (need.w + need.scales)));
  const rotation = [bufs];
  for (let i = 1; i < copies; i++) rotation.push({ ...bufs, w: upload(ctx, wBytes), ...(scales ? { scales: upload(ctx, scales) } : {}) });
  const results: Array<LinearBenchResult | { tuning: Partial<LinearTuning>; skipped: string }> = [];
  for (const tuning of o.tunings ?? [{}]) {
    let lin: LinearKernels;
    try {
      lin = new LinearKernels(ctx, tuning);
      lin.prepare(bufs, shape); // validates, compiles
    } catch (e) {
      results.push({ tuning, skipped: (e as Error).message });
      continue;
    }
    const path = o.path ?? chooseLinearPath(T);

    // One run, checked on sampled rows.
    {
      const enc = ctx.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      lin.encode(pass, bufs, shape);
      pass.end();
      ctx.device.queue.submit([enc.finish()]);
    }
    const y = new Float32Array(await readback(ctx, bufs.y, need.y));
    let maxRelError = 0;
    for (let i = 0; i < 64; i++) {
      const n = Math.floor((i * (N - 1)) / 63);
      for (let t = 0; t < T; t++) {
        let s = 0;
        let m = 0;
        for (let k = 0; k < K; k++) {
          const p = xRef[t * K + k]! * value(n, k);
          s += p;
          m += Math.abs(p);
        }
        const e = Math.abs(y[t * N + n]! - s) / m;
        if (!(e <= maxRelError)) maxRelError = e;
      }
    }

    const encodeOps = (pass: GPUComputePassEncoder) => {
      for (let i = 0; i < iters; i++) lin.encode(pass, rotation[i % copies]!, shape);
    };
    const times: number[] = [];
    let method: 'timestamp' | 'wall' = 'wall';
    if (ctx.timestamps) {
      method = 'timestamp';
      const qs = ctx.device.createQuerySet({ type: 'timestamp', count: 2 });
      const resolve = ctx.device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      const read = ctx.device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      for (let rep = 0; rep < reps + 1; rep++) {
        const enc = ctx.device.createCommandEncoder();
        const pass = enc.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
        encodeOps(pass);
        pass.end();
        enc.resolveQuerySet(qs, 0, 2, resolve, 0);
        enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
        ctx.device.queue.submit([enc.finish()]);
        await read.mapAsync(GPUMapMode.READ);
        const ts = new BigUint64Array(read.getMappedRange().slice(0));
        read.unmap();
        if (rep > 0) times.push(Number(ts[1]! - ts[0]!) / 1e3 / iters); // first pass is warm-up
      }
      qs.destroy();
      resolve.destroy();
      read.destroy();
    }
    if (!times.length || times.some((t) => !(t > 0))) {
      method = 'wall';
      times.length = 0;
      for (let rep = 0; rep < reps + 1; rep++) {
        const t0 = performance.now();
        const enc = ctx.device.createCommandEncoder();
        const pass = enc.beginComputePass();
        encodeOps(pass);
        pass.end();
        ctx.device.queue.submit([enc.finish()]);
        await ctx.device.queue.onSubmittedWorkDone();
        if (rep > 0) times.push(((performance.now() - t0) * 1e3) / iters);
      }
    }
    times.sort((a, b) => a - b);
    const microseconds = times[Math.floor(times.length / 2)]!;
    const bytes = need.w + need.scales * (quantized ? 1 : 0) + need.x + need.y;
    results.push({
      N, K, T, weight, path, norm: o.norm ?? 'none', tuning: path === 'gemv' ? lin.tuningAt(T, N, K, weight, gemvInput(o.norm, path, T)) : {}, method, copies, microseconds, bytes,
      GBps: bytes / microseconds / 1e3, TFLOPs: (2 * T * N * K) / microseconds / 1e6, maxRelError, ok: maxRelError < 1e-5, device: ctx.adapter.description || ctx.adapter.device,
    });
    lin.destroy();
  }
  for (const b of [bufs.x, bufs.w, bufs.y, bufs.scales, bufs.norm?.gamma, bufs.norm?.beta]) b?.destroy();
  for (const r of rotation.slice(1)) {
    r.w.destroy();
    r.scales?.destroy();
  }
  return results;
}

/** X's rows normalized in float64, as the fused norm must compute them (also the tests' reference). */
export function normRows(x: ArrayLike<number>, T: number, K: number, kind: 'layer' | 'rms', gamma: Float32Array, beta: Float32Array | undefined, eps: number): Float64Array {
  const out = new Float64Array(T * K);
  for (let t = 0; t < T; t++) {
    const row = Array.from({ length: K }, (_, k) => x[t * K + k]!);
    const mean = kind === 'layer' ? row.reduce((a, v) => a + v, 0) / K : 0;
    const second = row.reduce((a, v) => a + (v - mean) ** 2, 0) / K;
    const r = 1 / Math.sqrt(second + eps);
    row.forEach((v, k) => (out[t * K + k] = (v - mean) * r * gamma[k]! + (beta ? beta[k]! : 0)));
  }
  return out;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] ?? fallback : fallback;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const ctx = await openGpu();
  // --tunings 8x64,4x256x16: gemvRows x gemvThreads [x gemvReducers] ('default': defaultLinearTuning)
  const tunings = arg('tunings', 'default')
    .split(',')
    .map((t): Partial<LinearTuning> => {
      if (t === 'default') return {};
      const [rows, threads, reducers] = t.split('x').map(Number);
      return { gemvRows: rows!, gemvThreads: threads!, ...(reducers ? { gemvReducers: reducers } : {}) };
    });
  for (const weight of arg('weights', 'f16').split(',') as LinearWeight[]) {
    for (const [N, K] of arg('shapes', '8192x8192').split(',').map((s) => s.split('x').map(Number))) {
      for (const T of arg('T', '1,8').split(',').map(Number)) {
        const path = process.argv.includes('--path') ? (arg('path', 'gemv') as LinearPath) : undefined;
        const res = await benchLinear(ctx, {
          N: N!,
          K: K!,
          T,
          weight,
          blockSize: Number(arg('block_size', '32')),
          iters: Number(arg('iters', '200')),
          reps: Number(arg('reps', '5')),
          tunings,
          ...(process.argv.includes('--copies') ? { copies: Number(arg('copies', '1')) } : {}),
          ...(path ? { path } : {}),
          ...(process.argv.includes('--norm') ? { norm: arg('norm', 'layer') as 'layer' | 'rms' } : {}),
        });
        if ('skipped' in res) console.log(JSON.stringify({ weight, N, K, T, ...res }));
        else for (const r of res) console.log(JSON.stringify(r));
      }
    }
  }
  process.exit(0);
}
