/**
 * Issue 24 item 1: loading streams. The WGSL engine's weights go from the safetensors files to
 * the GPU a bounded chunk of rows at a time (no tensor, let alone the model, is copied whole
 * into host memory, but for views a checkpoint stores transposed), and the bytes that arrive are
 * exactly those of the whole-tensor construction it replaced. The pieces it is made of (range
 * reads, row reads of views, row-wise quantization) equal their whole-tensor counterparts. Peak
 * RSS while uploading a 125M-parameter int4 model stays within the GPU buffers plus a bound.
 * The load's time and peak RSS are reported by generate --test_performance and in bench rows.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TINY_ARCHS, tinyModelDir, writePresetCheckpoint } from '../fixtures/checkpoints.js';
import { openCheckpoint, openWeights } from '../src/arch/checkpoint.js';
import type { LinearWeights, NormWeights, WeightView } from '../src/arch/spec.js';
import { openSafetensorsFile, writeSafetensors } from '../src/checkpoint/safetensors.js';
import { transpose, WeightSource } from '../src/graph/weights.js';
import { quantizeBlockwise, quantizeRows } from '../src/inject/quantize.js';
import { openGpu, readback, type GpuContext } from '../src/kernels/device.js';
import { GpuStream, uploadWeights, type GpuLinear, type GpuMatrix, type MatrixType } from '../src/kernels/weights.js';
import type { Quantization } from '../src/inject/plan.js';
import { main } from '../src/cli/main.js';
import { validateBenchReport } from '../src/report/bench-validate.js';
import type { BenchReport } from '../src/report/bench-report.js';

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
if (!process.env['VK_ICD_FILENAMES'] && fs.existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;

const ROOT = join(import.meta.dirname, '..');
const tmp: string[] = [];
const tmpDir = (tag: string) => {
  const d = fs.mkdtempSync(join(tmpdir(), `fusegen-stream-${tag}-`));
  tmp.push(d);
  return d;
};
afterAll(() => {
  for (const d of tmp) fs.rmSync(d, { recursive: true, force: true });
});

/** A deterministic pseudo-random float32 array (normal-ish). */
function randoms(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
  return Float32Array.from({ length: n }, () => next() + next() + next());
}

describe('the pieces of a streamed load equal their whole-tensor counterparts', () => {
  it.each([4, 8] as const)('quantizeRows (int%i) gives quantizeBlockwise\'s bytes of the transpose, a row range at a time too', (bits) => {
    for (const [N, K] of [[37, 100], [64, 64], [5, 33]] as const) {
      const rows = randoms(N * K, N * K + bits);
      rows[7] = 0; // a zero block stays zero
      const whole = quantizeBlockwise(transpose(rows, N, K), K, N, bits, 32);
      const byRows = quantizeRows(rows, K, N, bits, 32);
      expect(Buffer.from(byRows.packed).equals(Buffer.from(whole.packed))).toBe(true);
      expect(Array.from(byRows.scales)).toEqual(Array.from(whole.scales));
      // Rows quantize independently: a middle slice is that slice of the whole.
      const [r0, r1] = [1, 1 + (N >> 1)];
      const part = quantizeRows(rows.subarray(r0 * K, r1 * K), K, r1 - r0, bits, 32);
      const rowBytes = whole.nBlocks * whole.blobSize;
      expect(Buffer.from(part.packed).equals(Buffer.from(whole.packed.subarray(r0 * rowBytes, r1 * rowBytes)))).toBe(true);
      expect(Array.from(part.scales)).toEqual(Array.from(whole.scales.subarray(r0 * whole.nBlocks, r1 * whole.nBlocks)));
    }
  });

  it.each(['F32', 'F16', 'BF16'] as const)('%s: readFloat32Range and readRawRange read only the range, as the whole read has it; a NaN in a range is named by its flat index in the tensor', (dtype) => {
    const dir = tmpDir('range');
    const file = join(dir, 'model.safetensors');
    const a = randoms(6 * 50, 3);
    writeSafetensors(file, [{ name: 'a', dtype, shape: [6, 50] }, { name: 'b', dtype, shape: [8] }], (t) => (t.name === 'a' ? a : randoms(8, 1)));
    const store = openSafetensorsFile(file);
    const all = store.readFloat32('a');
    const raw = store.readRaw('a');
    const size = dtype === 'F32' ? 4 : 2;
    for (const [start, count] of [[0, 300], [50, 100], [299, 1], [123, 0]] as const) {
      expect(Array.from(store.readFloat32Range!('a', start, count))).toEqual(Array.from(all.subarray(start, start + count)));
      expect(Buffer.from(store.readRawRange!('a', start, count)).equals(Buffer.from(raw.subarray(start * size, (start + count) * size)))).toBe(true);
    }
    expect(() => store.readFloat32Range!('a', 250, 51)).toThrow(/outside/);
    store.close();
    a[170] = NaN;
    writeSafetensors(file, [{ name: 'a', dtype, shape: [6, 50] }], () => a);
    const poisoned = openSafetensorsFile(file);
    expect(() => poisoned.readFloat32Range!('a', 150, 50)).toThrow(`1 of the 50 values at flat indices 150..199 (of 300) are not finite (first at flat index 170: NaN)`);
    expect(() => poisoned.readRawRange!('a', 150, 50)).toThrow(/first at flat index 170: NaN/);
    expect(poisoned.readFloat32Range!('a', 0, 150).length).toBe(150); // the rest of the tensor reads
    poisoned.close();
  });

  it.each(TINY_ARCHS)('%s: every view the engine reads by rows (row ranges, column ranges, offsets) reads as read() has it, rows at a time', (arch) => {
    const ckpt = openCheckpoint(tinyModelDir(arch));
    const store = openWeights(ckpt);
    try {
      const w = new WeightSource(store, ckpt.spec.weightPrefixes, ckpt.dir);
      const views: WeightView[] = [];
      const walk = (v: unknown): void => {
        if (typeof v !== 'object' || v === null) return;
        if (typeof (v as WeightView).source === 'string') views.push(v as WeightView);
        else Object.values(v).forEach(walk);
      };
      walk([ckpt.spec.globals(ckpt.dims, ckpt.config), ckpt.spec.layer(0, ckpt.dims, ckpt.config), ckpt.spec.layer(ckpt.dims.numLayers - 1, ckpt.dims, ckpt.config)]);
      let streamed = 0;
      for (const v of views.flatMap((x) => [x, { ...x, transpose: !x.transpose }])) {
        if (!w.streamable(v)) continue;
        streamed++;
        const shape = w.shape(v);
        const width = shape[1] ?? 1;
        const whole = w.read(v);
        const half = w.readHalf(v);
        for (const [r0, n] of [[0, shape[0]!], [1, Math.min(3, shape[0]! - 1)], [shape[0]! - 1, 1]] as const) {
          expect(Array.from(w.readRows(v, r0, n)), `${v.source} rows ${r0}+${n}`).toEqual(Array.from(whole.subarray(r0 * width, (r0 + n) * width)));
          expect(Array.from(w.readRowsHalf(v, r0, n))).toEqual(Array.from(half.subarray(r0 * width, (r0 + n) * width)));
        }
      }
      expect(streamed).toBeGreaterThan(views.length / 2);
    } finally {
      store.close();
    }
  });
});

/** What the whole-tensor upload put in each buffer (the code streaming replaced), from WeightSource.read/readHalf. */
function expected(ckpt: ReturnType<typeof openCheckpoint>, type: MatrixType, quant: Quantization) {
  const store = openWeights(ckpt);
  const w = new WeightSource(store, ckpt.spec.weightPrefixes, ckpt.dir);
  const outIn = (v: WeightView): WeightView => ({ ...v, transpose: !v.transpose });
  const matrix = (views: WeightView[], q: Quantization): Uint8Array[] => {
    const shapes = views.map((v) => w.shape(outIn(v)));
    const k = shapes[0]![1]!;
    const n = shapes.reduce((a, s) => a + s[0]!, 0);
    if (type === 'f16' && !q.bits) return [new Uint8Array(Uint16Array.from(views.flatMap((v) => Array.from(w.readHalf(outIn(v))))).buffer)];
    const data = Float32Array.from(views.flatMap((v) => Array.from(w.read(outIn(v)))));
    if (q.bits) {
      const p = quantizeBlockwise(transpose(data, n, k), k, n, q.bits, q.blockSize);
      return [p.packed, new Uint8Array(p.scales.buffer)];
    }
    return [new Uint8Array(data.buffer)];
  };
  // Stacked biases: a part without one contributes zeros for its rows.
  const bias = (lws: LinearWeights[]): Uint8Array[] =>
    lws.some((l) => l.bias) ? [new Uint8Array(Float32Array.from(lws.flatMap((l) => (l.bias ? Array.from(w.read(l.bias)) : new Array<number>(w.shape(outIn(l.weight))[0]!).fill(0)))).buffer)] : [];
  const norm = (nw: NormWeights | undefined): Uint8Array[] => (nw ? [nw.weight, ...(nw.bias ? [nw.bias] : [])].map((v) => new Uint8Array(w.read(v).buffer)) : []);
  const { dims, config, spec } = ckpt;
  const g = spec.globals(dims, config);
  const out: Uint8Array[][] = [matrix([{ ...g.embedTokens, transpose: true }], { bits: 0, blockSize: 32 })];
  for (let i = 0; i < dims.numLayers; i++) {
    const lw = spec.layer(i, dims, config);
    const up = spec.traits.gatedMlp && lw.gate ? [lw.gate, lw.up] : [lw.up];
    out.push(norm(lw.inputNorm), [...matrix([lw.q.weight, lw.k.weight, lw.v.weight], quant), ...bias([lw.q, lw.k, lw.v])], [...matrix([lw.o.weight], quant), ...bias([lw.o])]);
    out.push(norm(lw.postAttentionNorm), [...matrix(up.map((l) => l.weight), quant), ...bias(up)], [...matrix([lw.down.weight], quant), ...bias([lw.down])]);
  }
  out.push(norm(g.finalNorm), matrix([g.lmHead], quant));
  store.close();
  return out.flat();
}

/** The same buffers in the same order, read back from the GPU. */
async function uploaded(ctx: GpuContext, ckpt: ReturnType<typeof openCheckpoint>, type: MatrixType, quant: Quantization, chunkBytes: number) {
  // Every write the stream is given (it stages them and the GPU copies them into place).
  const writes: Array<{ label: string; bytes: number }> = [];
  const write = GpuStream.prototype.write;
  GpuStream.prototype.write = function (this: GpuStream, buffer: GPUBuffer, offset: number, bytes: Uint8Array) {
    writes.push({ label: buffer.label, bytes: bytes.byteLength });
    return write.call(this, buffer, offset, bytes);
  };
  let gw;
  try {
    gw = await uploadWeights(ctx, ckpt, type, quant, { chunkBytes, stagingBytes: 4 * chunkBytes });
  } finally {
    GpuStream.prototype.write = write;
  }
  const m = (x: GpuMatrix) => [x.buffer, ...(x.quant ? [x.quant.scales] : [])];
  const lin = (l: GpuLinear) => [...m(l.w), ...(l.bias ? [l.bias] : [])];
  const nrm = (n?: { gamma: GPUBuffer; beta?: GPUBuffer }) => (n ? [n.gamma, ...(n.beta ? [n.beta] : [])] : []);
  const buffers = [...m(gw.embed), ...gw.layers.flatMap((l) => [...nrm(l.inputNorm), ...lin(l.qkv), ...lin(l.o), ...nrm(l.postAttentionNorm), ...lin(l.up), ...lin(l.down)]), ...nrm(gw.finalNorm), ...m(gw.lmHead)];
  return { buffers, writes };
}

describe('the WGSL engine streams its weights (issue 24 item 1)', () => {
  const cases = TINY_ARCHS.flatMap((arch) => [
    { arch, type: 'f16' as const, quant: { bits: 0 as const, blockSize: 32 } },
    { arch, type: 'f32' as const, quant: { bits: 0 as const, blockSize: 32 } },
    { arch, type: 'f16' as const, quant: { bits: 4 as const, blockSize: 32 } },
  ]).concat([{ arch: 'llama', type: 'f16', quant: { bits: 8, blockSize: 32 } }]);
  it.each(cases)('$arch $type int$quant.bits: matrices arrive in chunks of at most 2 KiB, byte for byte what the whole-tensor upload wrote', async ({ arch, type, quant }) => {
    const ckpt = openCheckpoint(tinyModelDir(arch));
    const ctx = await openGpu();
    const chunk = 2048;
    const { buffers, writes } = await uploaded(ctx, ckpt, type, quant as Quantization, chunk);
    const want = expected(ckpt, type, quant as Quantization);
    expect(buffers.length).toBe(want.length);
    for (const [i, b] of buffers.entries()) {
      const got = new Uint8Array(await readback(ctx, b, want[i]!.byteLength));
      expect(Buffer.from(got).equals(Buffer.from(want[i]!)), `${b.label} (${want[i]!.byteLength} bytes)`).toBe(true);
    }
    // Matrices (the embedding, projections, LM head, their scales) are written a chunk at a time:
    // the largest ones take many writes, none more than a chunk (plus a carried half word).
    const matrix = writes.filter((x) => /^(embed|lm_head)$|\.(qkv|o|gate_up|up|down)$|\.scales$/.test(x.label));
    expect(Math.max(...matrix.map((x) => x.bytes))).toBeLessThanOrEqual(chunk + 4);
    expect(matrix.filter((x) => x.label === 'embed').length).toBeGreaterThan(8);
  }, 60_000);
});

const MiB = 2 ** 20;

describe('peak host memory while loading (issue 24 item 1)', () => {
  it('opt-125m int4 on the WGSL engine: peak RSS during the upload stays within its GPU buffers (host memory on lavapipe) + 150 MiB', () => {
    const dir = join(tmpDir('opt125m'), 'opt-125m');
    writePresetCheckpoint(dir, 'opt-125m');
    const script = `
      import { readFileSync, writeFileSync } from 'node:fs';
      const { openCheckpoint } = await import('${ROOT}/dist/src/arch/checkpoint.js');
      const { openGpu } = await import('${ROOT}/dist/src/kernels/device.js');
      const { uploadWeights } = await import('${ROOT}/dist/src/kernels/weights.js');
      const hwm = () => Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
      const ckpt = openCheckpoint(${JSON.stringify(dir)});
      const ctx = await openGpu();
      const start = process.memoryUsage.rss();
      writeFileSync('/proc/self/clear_refs', '5');
      const w = await uploadWeights(ctx, ckpt, 'f16', { bits: 4, blockSize: 32 });
      console.log(JSON.stringify({ start, peak: hwm(), gpuBytes: w.bytes }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout.trim().split('\n').pop()!) as { start: number; peak: number; gpuBytes: number };
    // Before streaming: 741 MiB over the start for 151 MiB of buffers (whole f32 tensors, their transposes and quantized copies piled up).
    expect((m.peak - m.start) / MiB, JSON.stringify(m)).toBeLessThan(m.gpuBytes / MiB + 150);
  }, 180_000);
});

describe('the load is reported (issue 24 item 1)', () => {
  it('generate --test_performance prints the load time and peak RSS; --use_meta_tensor names the default and changes nothing', async () => {
    const lines = async (extra: string[]) => {
      const out: string[] = [];
      const code = await main(['generate', '--greedy', '--max_new_tokens', '3', ...extra], { out: (l) => out.push(l), err: (l) => out.push(`ERR ${l}`) });
      expect(code, out.join('\n')).toBe(0);
      return out;
    };
    const plain = await lines(['--test_performance']);
    const meta = await lines(['--test_performance', '--use_meta_tensor']);
    for (const out of [plain, meta]) {
      const load = out.filter((l) => l.startsWith('  Load:'));
      expect(load).toHaveLength(1);
      expect(load[0]).toMatch(/^ {2}Load: +\d+\.\d\d s, peak RSS during load \d+ MiB \(\d+ MiB before, \d+ MiB after; weights \d+ MiB on disk\)$/);
    }
    const texts = (out: string[]) => out.flatMap((l) => l.split('\n')).filter((l) => l.startsWith('out='));
    expect(texts(plain)).toHaveLength(1);
    expect(texts(meta)).toEqual(texts(plain));
  }, 120_000);

  it('bench rows carry the load (time, peak RSS, how it was taken), valid under the schema; the console prints it per pipeline', async () => {
    const reportDir = tmpDir('bench');
    const out: string[] = [];
    const code = await main(['bench', '--report_dir', reportDir, '--repeats', '1', '--max_new_tokens', '2', '--pipelines', 'ort', '--use_meta_tensor'], { out: (l) => out.push(l), err: () => {} });
    expect(code).toBe(0);
    const file = fs.readdirSync(reportDir).find((f) => f.endsWith('-bench.json'))!;
    const report = JSON.parse(fs.readFileSync(join(reportDir, file), 'utf8')) as BenchReport;
    validateBenchReport(report);
    const load = report.rows[0]!.load!;
    expect(load.peakSource).toBe('vmhwm-reset');
    expect(load.ms).toBeGreaterThan(0);
    expect(load.peakRssMB).toBeGreaterThanOrEqual(load.endRssMB);
    expect(load.peakRssMB).toBeGreaterThanOrEqual(load.startRssMB);
    expect(out.filter((l) => /^ort load: \d+\.\d\d s, peak RSS during load \d+ MB$/.test(l))).toHaveLength(1);
    // A load field that is not a figure is refused by the validator.
    expect(() => validateBenchReport({ ...report, rows: [{ ...report.rows[0]!, load: { ...load, peakRssMB: 'x' } }] })).toThrow(/load/);
  }, 120_000);
});
