/**
 * Issue 29 item 7: --dtype bfloat16 where it can run, the WGSL engine. Weights are stored bf16
 * (a float32's top half), activations, KV cache and accumulation float32; ONNX Runtime keeps its
 * one-line refusal. Here: the float32 -> bfloat16 rounding (nearest, ties to even; NaN, Inf,
 * subnormals), the checkpoint reads that feed the upload (a BF16 tensor copied bit for bit,
 * F32 and F16 ones rounded), the streamed upload, the embedding gather of a bf16 table, and
 * compare end to end against the float32 reference on lavapipe. The linear kernels' bf16 parity
 * with float64 is in kernels-linear.test.ts (it shares that file's reference and shapes).
 */
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync, closeSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tinyModelDir, type FixtureArch } from '../fixtures/checkpoints.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import {
  bfloat16BitsToFloat32,
  float16BitsToFloat32,
  float32ArrayToBFloat16Bits,
  float32ToBFloat16Bits,
  float32ToFloat16Bits,
  openSafetensorsFile,
  writeSafetensors,
  type TensorToWrite,
} from '../src/checkpoint/safetensors.js';
import { WeightSource } from '../src/graph/weights.js';
import { openGpu, readback, storageBuffer, submit, upload } from '../src/kernels/device.js';
import { ElementwiseKernels } from '../src/kernels/elementwise.js';
import { GpuStream, uploadWeights, type GpuLinear, type GpuMatrix, type GpuWeights } from '../src/kernels/weights.js';
import { main } from '../src/cli/main.js';
import { WgslPipeline } from '../src/pipeline/wgsl.js';
import type { CompareReport } from '../src/report/compare-report.js';

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
if (!process.env['VK_ICD_FILENAMES'] && existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;

const tmp: string[] = [];
const tmpDir = (tag: string) => {
  const d = mkdtempSync(join(tmpdir(), `fusegen-bf16-${tag}-`));
  tmp.push(d);
  return d;
};
afterAll(() => {
  for (const d of tmp) rmSync(d, { recursive: true, force: true });
});

/** Round to nearest even written another way than the library's (which adds 0x7fff + lsb): compare the dropped half with 0x8000. */
function rneBits(u: number): number {
  u >>>= 0;
  const hi = u >>> 16;
  const lo = u & 0xffff;
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return hi | 0x40; // NaN: quiet, sign and top payload kept
  return lo > 0x8000 || (lo === 0x8000 && (hi & 1) === 1) ? hi + 1 : hi; // a carry into the exponent is right (up to Inf)
}

/** A Float32Array holding exactly these bit patterns (written through a u32 view: no NaN is canonicalized). */
function floatsOfBits(bits: number[]): Float32Array {
  const u = Uint32Array.from(bits, (b) => b >>> 0);
  return new Float32Array(u.buffer);
}

describe('float32 -> bfloat16, round to nearest, ties to even', () => {
  // [float32 bits, bfloat16 bits]
  const cases: Array<[number, number, string]> = [
    [0x3f800000, 0x3f80, '1'],
    [0x3f808000, 0x3f80, '1 + 2^-8: a tie, to the even 1'],
    [0x3f818000, 0x3f82, 'a tie above an odd mantissa rounds up'],
    [0x3f807fff, 0x3f80, 'just below a tie'],
    [0x3f808001, 0x3f81, 'just above a tie'],
    [0xbf818000, 0xbf82, 'a negative tie'],
    [0x00000000, 0x0000, '+0'],
    [0x80000000, 0x8000, '-0'],
    [0x00000001, 0x0000, 'the smallest subnormal rounds to 0'],
    [0x00008000, 0x0000, 'a subnormal tie, to even 0'],
    [0x00018000, 0x0002, 'a subnormal tie, up to even'],
    [0x00008001, 0x0001, 'above a subnormal tie'],
    [0x00010000, 0x0001, 'the smallest bfloat16 subnormal, exact'],
    [0x807fffff, 0x8080, 'the largest negative subnormal rounds to the smallest normal'],
    [0x7f7f7fff, 0x7f7f, 'below the largest finite tie'],
    [0x7f7f8000, 0x7f80, 'a tie above the largest finite (odd) rounds to Inf'],
    [0x7f7fffff, 0x7f80, 'float32 max overflows to Inf'],
    [0xff7fffff, 0xff80, '-float32 max overflows to -Inf'],
    [0x7f800000, 0x7f80, 'Inf'],
    [0xff800000, 0xff80, '-Inf'],
    [0x7fc00000, 0x7fc0, 'quiet NaN'],
    [0x7f800001, 0x7fc0, 'a NaN whose payload is only in the dropped half stays NaN, not Inf'],
    [0xff800001, 0xffc0, 'a negative one keeps its sign'],
    [0x7fa00000, 0x7fe0, 'a signalling NaN is quieted, its top payload kept'],
    [0xffffffff, 0xffff, 'all ones'],
  ];

  it.each(cases.map(([f32, bf16, why]) => [`0x${f32.toString(16)} -> 0x${bf16.toString(16)}: ${why}`, f32, bf16] as const))('%s', (_name, f32, bf16) => {
    const src = floatsOfBits([f32]);
    expect(float32ArrayToBFloat16Bits(src, new Uint16Array(1))[0]).toBe(bf16);
    expect(rneBits(f32)).toBe(bf16);
    if (!Number.isNaN(src[0])) expect(float32ToBFloat16Bits(src[0]!)).toBe(bf16);
  });

  it('the bulk conversion equals an independent rounding on 2^18 random patterns, every bfloat16 round-trips, and a view at an offset reads its own elements', () => {
    let s = 12345;
    const bits = Array.from({ length: 1 << 18 }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0));
    const got = float32ArrayToBFloat16Bits(floatsOfBits(bits), new Uint16Array(bits.length));
    for (let i = 0; i < bits.length; i++) if (got[i] !== rneBits(bits[i]!)) expect.fail(`0x${bits[i]!.toString(16)} -> 0x${got[i]!.toString(16)}, want 0x${rneBits(bits[i]!).toString(16)}`);
    // Every bfloat16 widened is itself again (NaNs quieted).
    const all = floatsOfBits(Array.from({ length: 65536 }, (_, b) => b << 16));
    const back = float32ArrayToBFloat16Bits(all, new Uint16Array(65536));
    for (let b = 0; b < 65536; b++) {
      const nan = (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;
      if (back[b] !== (nan ? b | 0x40 : b)) expect.fail(`bf16 0x${b.toString(16)} came back as 0x${back[b]!.toString(16)}`);
    }
    const whole = floatsOfBits([0x3f808000, 0x3f818000, 0x7f800001, 0x00018000]);
    expect(Array.from(float32ArrayToBFloat16Bits(whole.subarray(1, 3), new Uint16Array(2)))).toEqual([0x3f82, 0x7fc0]);
  });
});

describe('checkpoint reads for bf16 weights (WeightSource, format BF16)', () => {
  it('a BF16 tensor is copied bit for bit (NaN payloads, subnormals, -0); F32 and F16 tensors are rounded to nearest even; rows, whole and transposed reads agree', () => {
    const dir = tmpDir('reads');
    const file = join(dir, 'w.safetensors');
    const rows = 6;
    const cols = 8;
    const n = rows * cols;
    const tensors: TensorToWrite[] = [
      { name: 'a.f32', dtype: 'F32', shape: [rows, cols] },
      { name: 'b.f16', dtype: 'F16', shape: [rows, cols] },
      { name: 'c.bf16', dtype: 'BF16', shape: [rows, cols] },
    ];
    // Ties and near-ties of the bfloat16 grid, as float32 and as float16 (1 + 2^-8 and 1 + 3 2^-8 are
    // float16 values; 65504, float16's max, rounds to 2^16; 2^-24, its smallest subnormal, is a bfloat16 normal).
    const f32Special = floatsOfBits([0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0x00018000, 0x807fffff, 0x7f7fffff, 0x80000000]);
    const f16Special = [1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504, 2 ** -24, -(2 ** -14), 1 - 2 ** -11, -0, 0.1];
    const fill = (t: TensorToWrite) => Float32Array.from({ length: n }, (_, i) => (i < 8 ? (t.dtype === 'F16' ? f16Special[i]! : f32Special[i]!) : Math.sin(i * 12.9898 + t.name.length) * 3));
    writeSafetensors(file, tensors, fill);
    // The BF16 tensor's raw halves, patched to patterns no float conversion keeps: a signalling NaN, NaN payloads, subnormals, -0.
    const raw = [0x7f81, 0xff81, 0x7fff, 0x0001, 0x807f, 0x8000, 0x7f80, 0x3f81];
    const info = openSafetensorsFile(file).info('c.bf16');
    const fd = openSync(file, 'r+');
    const patch = Buffer.alloc(raw.length * 2);
    raw.forEach((h, i) => patch.writeUInt16LE(h, 2 * i));
    writeSync(fd, patch, 0, patch.length, info.byteOffset);
    closeSync(fd);
    const store = openSafetensorsFile(file, { allowNonfinite: true });
    try {
      const w = new WeightSource(store, [], dir);
      const bytes = readFileSync(file);
      const stored = Array.from({ length: n }, (_, i) => bytes.readUInt16LE(info.byteOffset + 2 * i));
      expect(stored.slice(0, 8)).toEqual(raw);
      // BF16: the stored bits, whole, by rows, and by row ranges of a view.
      expect(Array.from(w.readHalf({ source: 'c.bf16' }, 'BF16'))).toEqual(stored);
      expect(Array.from(w.readRowsHalf({ source: 'c.bf16' }, 0, rows, undefined, 'BF16'))).toEqual(stored);
      expect(Array.from(w.readRowsHalf({ source: 'c.bf16', rows: [[1, 2], [4, 2]] }, 1, 2, new Uint16Array(64), 'BF16'))).toEqual(stored.slice(2 * cols, 3 * cols).concat(stored.slice(4 * cols, 5 * cols)));
      // F32 and F16: each value rounded once (float16 widens to float32 exactly).
      for (const name of ['a.f32', 'b.f16']) {
        const f32 = store.readFloat32(name);
        const want = Array.from({ length: n }, (_, i) => rneBits(new Uint32Array(f32.buffer, f32.byteOffset, n)[i]!));
        expect(Array.from(w.readHalf({ source: name }, 'BF16')), name).toEqual(want);
        expect(Array.from(w.readRowsHalf({ source: name }, 2, 3, undefined, 'BF16')), name).toEqual(want.slice(2 * cols, 5 * cols));
        // Transposed (GPT-2's Conv1D): read whole and rounded.
        const t = w.readHalf({ source: name, transpose: true }, 'BF16');
        expect(t[1 * rows + 2], name).toBe(want[2 * cols + 1]);
      }
      const f16 = Array.from(w.readHalf({ source: 'b.f16' }, 'BF16').subarray(0, 8));
      expect(f16).toEqual([0x3f80, 0x3f82, 0x4780, 0x3380, 0xb880, 0x3f80, 0x8000, float32ToBFloat16Bits(float16BitsToFloat32(float32ToFloat16Bits(0.1)))]);
      const f32 = Array.from(w.readHalf({ source: 'a.f32' }, 'BF16').subarray(0, 8));
      expect(f32).toEqual([0x3f80, 0x3f82, 0x3f80, 0x3f81, 0x0002, 0x8080, 0x7f80, 0x8000]);
      // The float16 read is unchanged by the format argument's default.
      expect(Array.from(w.readHalf({ source: 'b.f16' })).slice(0, 2)).toEqual([float32ToFloat16Bits(1 + 2 ** -8), float32ToFloat16Bits(1 + 3 * 2 ** -8)]);
    } finally {
      store.close();
    }
  });
});

/** A copy of a fixture with every tensor stored `dtype` (rounded to nearest even by the writer). */
function storedAs(arch: FixtureArch, dtype: 'BF16'): string {
  const src = tinyModelDir(arch);
  const dir = tmpDir(`${arch}-${dtype}`);
  for (const f of readdirSync(src)) if (f !== 'model.safetensors') copyFileSync(join(src, f), join(dir, f));
  const store = openSafetensorsFile(join(src, 'model.safetensors'));
  writeSafetensors(join(dir, 'model.safetensors'), store.names().map((name) => ({ name, dtype, shape: store.info(name).shape })), (t) => store.readFloat32(t.name));
  store.close();
  return dir;
}

/** Every buffer of an upload in a fixed order, with whether it is a weight matrix (bf16 in a bf16 upload) and its element count. */
function buffersOf(gw: GpuWeights): Array<{ buffer: GPUBuffer; matrix: boolean; n: number }> {
  const m = (x: GpuMatrix) => ({ buffer: x.buffer, matrix: true, n: x.n * x.k });
  const f = (b: GPUBuffer | undefined) => (b ? [{ buffer: b, matrix: false, n: b.size / 4 }] : []);
  const lin = (l: GpuLinear) => [m(l.w), ...f(l.bias)];
  const nrm = (x?: { gamma: GPUBuffer; beta?: GPUBuffer }) => (x ? [...f(x.gamma), ...f(x.beta)] : []);
  return [
    m(gw.embed),
    ...(gw.positions ? [m(gw.positions)] : []),
    ...nrm(gw.embedNorm),
    ...gw.layers.flatMap((l) => [...nrm(l.inputNorm), ...lin(l.qkv), ...lin(l.o), ...nrm(l.attnOutNorm), ...nrm(l.mlpOutNorm), ...nrm(l.postAttentionNorm), ...lin(l.up), ...lin(l.down)]),
    ...nrm(gw.finalNorm),
    m(gw.lmHead),
    ...f(gw.lmHeadBias),
  ];
}

describe('the WGSL engine uploads bf16 weights', () => {
  const NO_QUANT = { bits: 0 as const, blockSize: 32 };
  it.each([
    ['gpt2', 'F32'],
    ['llama', 'F32'],
    ['llama', 'BF16'],
  ] as const)('%s stored %s: streamed in 2 KiB chunks; every matrix is its float32 upload rounded to nearest even (a BF16 checkpoint: its own bits), norms and biases float32 as they are', async (arch, stored) => {
    const ckpt = openCheckpoint(stored === 'F32' ? tinyModelDir(arch) : storedAs(arch, stored));
    const ctx = await openGpu();
    const chunk = 2048;
    // Every write the upload's stream is given (it stages them and the GPU copies them into place).
    const writes: number[] = [];
    const write = GpuStream.prototype.write;
    GpuStream.prototype.write = function (this: GpuStream, buffer: GPUBuffer, offset: number, bytes: Uint8Array) {
      if (/^(embed|lm_head|positions)$|\.(qkv|o|gate_up|up|down)$/.test(buffer.label)) writes.push(bytes.byteLength);
      return write.call(this, buffer, offset, bytes);
    };
    let bf: GpuWeights;
    try {
      bf = await uploadWeights(ctx, ckpt, 'bf16', NO_QUANT, { chunkBytes: chunk, stagingBytes: 4 * chunk });
    } finally {
      GpuStream.prototype.write = write;
    }
    const f32 = await uploadWeights(ctx, ckpt, 'f32', NO_QUANT);
    expect(Math.max(...writes)).toBeLessThanOrEqual(chunk + 4);
    expect(writes.length).toBeGreaterThan(20);
    const [a, b] = [buffersOf(bf), buffersOf(f32)];
    expect(a.map((x) => [x.matrix, x.n])).toEqual(b.map((x) => [x.matrix, x.n]));
    // bf16 matrices take half the bytes of float32 ones; the rest is the same.
    const matrices = new Map(a.filter((x) => x.matrix).map((x) => [x.buffer, x.n])); // a tied head is the embedding's buffer
    expect(f32.bytes - bf.bytes).toBe([...matrices.values()].reduce((sum, n) => sum + 2 * n, 0));
    for (const [i, x] of a.entries()) {
      const y = b[i]!;
      if (!x.matrix) {
        expect(Buffer.from(await readback(ctx, x.buffer, x.n * 4)).equals(Buffer.from(await readback(ctx, y.buffer, y.n * 4))), x.buffer.label).toBe(true);
        continue;
      }
      const got = new Uint16Array(await readback(ctx, x.buffer, x.n * 2));
      const wide = new Uint32Array(await readback(ctx, y.buffer, y.n * 4));
      for (let j = 0; j < x.n; j++) {
        // A BF16 checkpoint's values are exact in float32 (their bits in the top half) and arrive as they are stored.
        const want = stored === 'BF16' ? wide[j]! >>> 16 : rneBits(wide[j]!);
        if (stored === 'BF16' && (wide[j]! & 0xffff) !== 0) expect.fail(`${y.buffer.label}[${j}]: float32 upload of a BF16 checkpoint has low bits`);
        if (got[j] !== want) expect.fail(`${x.buffer.label}[${j}]: 0x${got[j]!.toString(16)}, want 0x${want.toString(16)}`);
      }
    }
    if (arch === 'gpt2') {
      expect(bf.lmHead).toBe(bf.embed); // tied: the LM head reads the bf16 table
      expect(bf.positions?.type).toBe('bf16');
    }
    expect(bf.embed.type).toBe('bf16');
    expect(bf.layers[0]!.qkv.w.type).toBe('bf16');
  }, 60_000);
});

describe('the embedding gather reads a bf16 table', () => {
  it('token and learned-position rows widened exactly (Inf, -0 kept; NaN stays NaN; a subnormal as it is or flushed), summed in f32', async () => {
    const ctx = await openGpu();
    const k = ElementwiseKernels.for(ctx);
    const E = 67; // odd: rows straddle u32 words
    const vocab = 5;
    const posRows = 4;
    let s = 7;
    const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 4 - 2;
    const table = Uint16Array.from({ length: vocab * E + 1 }, () => float32ToBFloat16Bits(rnd()));
    const pos = Uint16Array.from({ length: posRows * E + 1 }, () => float32ToBFloat16Bits(rnd() / 4));
    // Row 3 of the table: specials at its first elements (an odd row start: high halves of their words).
    const specials = [0x7f80, 0xff80, 0x8000, 0x7fc1, 0x0001, 0x3f81];
    specials.forEach((h, i) => (table[3 * E + i] = h));
    const ids = Uint32Array.from([3, 0, 4, 1]);
    const positions = Uint32Array.from([0, 1, 3, 2]);
    const T = ids.length;
    const out = storageBuffer(ctx, T * E * 4);
    const bufs = [upload(ctx, ids), upload(ctx, table), upload(ctx, positions), upload(ctx, pos)];
    const [idsBuf, tableBuf, posBuf, posTableBuf] = bufs as [GPUBuffer, GPUBuffer, GPUBuffer, GPUBuffer];
    // Without positions first (row 0: the specials as they are), then with them.
    submit(ctx, (pass) => k.embed(pass, { ids: idsBuf, table: tableBuf, dtype: 'bf16', out, T: 1, E, vocab }));
    const alone = new Float32Array(await readback(ctx, out, E * 4));
    expect(Object.is(alone[0], Infinity) && Object.is(alone[1], -Infinity) && Object.is(alone[2], -0)).toBe(true);
    expect(Number.isNaN(alone[3])).toBe(true);
    expect([bfloat16BitsToFloat32(0x0001), 0]).toContain(alone[4]);
    expect(alone[5]).toBe(bfloat16BitsToFloat32(0x3f81));
    for (let e = 6; e < E; e++) expect(alone[e]).toBe(bfloat16BitsToFloat32(table[3 * E + e]!));
    submit(ctx, (pass) => k.embed(pass, { ids: idsBuf, table: tableBuf, dtype: 'bf16', out, T, E, vocab, positions: posBuf, posTable: posTableBuf, posOffset: 0, posRows }));
    const got = new Float32Array(await readback(ctx, out, T * E * 4));
    for (let t = 1; t < T; t++) {
      for (let e = 0; e < E; e++) {
        const want = Math.fround(bfloat16BitsToFloat32(table[ids[t]! * E + e]!) + bfloat16BitsToFloat32(pos[positions[t]! * E + e]!));
        if (got[t * E + e] !== want) expect.fail(`row ${t} element ${e}: ${got[t * E + e]}, want ${want}`);
      }
    }
    for (const b of [...bufs, out]) b.destroy();
  });
});

describe('two WGSL engines on one device', () => {
  it("a second engine (compare's triage reruns a bf16 candidate with float32 weights) leaves the candidate's cached dispatches alone", async () => {
    const ckpt = openCheckpoint(tinyModelDir('llama'));
    const ctx = await openGpu();
    const request = { prompts: ['DeepSpeed is a machine learning framework'], maxNewTokens: 6, doSample: false, ignoreEos: true, recordTopK: 3 };
    const cand = await WgslPipeline.create(ckpt, { dtype: 'bfloat16', maxTokens: 64 });
    try {
      const first = await cand.generate(request);
      const rerun = await WgslPipeline.create(ckpt, { dtype: 'float32', maxTokens: 64 });
      // Another batch: the rerun's buffers are made again, and its caches cleared.
      await rerun.generate({ ...request, prompts: [...request.prompts, 'He has a'] });
      await rerun.dispose();
      ctx.device.pushErrorScope('validation');
      const again = await cand.generate(request);
      expect((await ctx.device.popErrorScope())?.message ?? null).toBeNull();
      expect(again.sequences.map((s) => [s.newIds, s.topK])).toEqual(first.sequences.map((s) => [s.newIds, s.topK]));
    } finally {
      await cand.dispose();
    }
  });
});

describe('compare --dtype bfloat16', () => {
  it('on the WGSL engine (webgpu, lavapipe) against the float32 reference: the tiny llama passes its gate, the report says bfloat16', async () => {
    const reports = tmpDir('compare');
    const lines: string[] = [];
    const code = await main(
      ['compare', '--use_kernel', '--kernels', 'wgsl', '--device', 'webgpu', '--dtype', 'bfloat16', '--model', tinyModelDir('llama'), '--num_inputs', '2', '--min_length', '30', '--max_length', '40', '--speed_repeats', '1', '--report_dir', reports],
      { out: (l) => lines.push(l), err: (l) => lines.push(l) },
    );
    expect(code, lines.join('\n')).toBe(0);
    const json = readdirSync(reports).find((f) => f.endsWith('.json'))!;
    const report = JSON.parse(readFileSync(join(reports, json), 'utf8')) as CompareReport;
    expect(report.settings.dtype).toBe('bfloat16');
    expect(report.settings.kernels).toBe('wgsl');
    expect(report.gate.exitCode).toBe(0);
    expect(report.summary.mismatches + report.summary.errored).toBe(0);
    // Not float32's agreement: the bf16 weights move the logits (the KL is measured, above zero).
    const kl = Math.max(...report.prompts.flatMap((p) => [p.logits!.prefill.maxKl!, p.logits!.decode.maxKl!]));
    expect(kl).toBeGreaterThan(1e-6);
    expect(kl).toBeLessThanOrEqual(report.tolerance.maxKl);
  });

  it('is refused on ONNX Runtime in one line naming --dtype, exit 2, before any report', async () => {
    for (const kernels of [['--use_kernel'], ['--use_kernel', '--kernels', 'ort', '--device', 'webgpu'], []]) {
      const reports = join(tmpDir('refused'), 'reports');
      const err: string[] = [];
      const code = await main(['compare', '--dtype', 'bfloat16', ...kernels, '--model', tinyModelDir('opt'), '--report_dir', reports], { out: () => {}, err: (l) => err.push(l) });
      expect(code, kernels.join(' ')).toBe(2);
      expect(err).toHaveLength(1);
      expect(err[0]).toMatch(/^error: --dtype: bfloat16 is not available for fusegen's ONNX Runtime graphs .*: ONNX Runtime has no bfloat16 kernels for these ops$/);
      expect(existsSync(reports)).toBe(false);
    }
  });
});
