/**
 * llama.cpp as a second opinion (issue 27): fusegen's GGUF export (src/graph/gguf.ts, the layouts
 * in src/arch/gguf.ts), its own Q8_0 / Q4_0 quantizer (src/graph/gguf-format.ts), the llamacpp
 * pipeline (src/pipeline/llamacpp.ts, node-llama-cpp's prebuilt CPU binary) against Hugging Face's
 * goldens, `compare --candidate llamacpp` and `generate --engine llamacpp` through the CLI.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlamaLogLevel, type Token } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { llamaCppCandidate, toleranceFor } from '../compare/tolerance.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { FIRST_MLP_OUT, scaledFixture } from '../fixtures/defects.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import type { GgufValue } from '../src/arch/gguf.js';
import { float16BitsToFloat32, openSafetensorsFile } from '../src/checkpoint/safetensors.js';
import { main } from '../src/cli/main.js';
import { FusegenError } from '../src/errors.js';
import { exportGguf, type GgufExport } from '../src/graph/gguf.js';
import { DSPipeline } from '../src/pipeline/ds-pipeline.js';
import { GGUF_ALIGNMENT, quantizeQ4_0, quantizeQ8_0, readGguf, readGgufTensor, writeGguf, type GgmlTypeName, type GgufFile } from '../src/graph/gguf-format.js';
import { cudaRefusal, llamaCppBackendFor, LlamaCppPipeline, llamaOptions, parsePerf, sharedLlama, type LlamaCppPhase } from '../src/pipeline/llamacpp.js';
import { loadTokenizer } from '../src/pipeline/tokenizer.js';
import type { BenchReport } from '../src/report/bench-report.js';
import { runBench, type BenchOptions, type BenchProgress } from '../bench/run.js';
import { validateBenchReport } from '../src/report/bench-validate.js';
import { loadGolden, maxLogitError } from './helpers.js';

// llama.cpp's Vulkan build on Mesa's lavapipe (vitest.config.ts points VK_ICD_FILENAMES at it):
// ggml_vulkan takes a CPU-type device only where GGML_VK_VISIBLE_DEVICES names it.
const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
const onLavapipe = process.env['VK_ICD_FILENAMES'] === LAVAPIPE;
if (onLavapipe && process.env['GGML_VK_VISIBLE_DEVICES'] === undefined) process.env['GGML_VK_VISIBLE_DEVICES'] = '0';
/** A string as a RegExp matching it literally. */
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const cacheDir = mkdtempSync(join(tmpdir(), 'fusegen-gguf-test-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// Dequantization as llama.cpp defines it (ggml-quants.c dequantize_row_q8_0 / dequantize_row_q4_0):
// Q8_0 block = f16 d, int8 qs[32], y[j] = qs[j] * d; Q4_0 block = f16 d, uint8 qs[16],
// y[j] = ((qs[j] & 0x0F) - 8) * d and y[j + 16] = ((qs[j] >> 4) - 8) * d.

function dequantQ8_0(bytes: Uint8Array): Float32Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array((bytes.length / 34) * 32);
  for (let i = 0; i < bytes.length / 34; i++) {
    const d = float16BitsToFloat32(v.getUint16(i * 34, true));
    for (let j = 0; j < 32; j++) out[i * 32 + j] = Math.fround(v.getInt8(i * 34 + 2 + j) * d);
  }
  return out;
}

function dequantQ4_0(bytes: Uint8Array): Float32Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array((bytes.length / 18) * 32);
  for (let i = 0; i < bytes.length / 18; i++) {
    const d = float16BitsToFloat32(v.getUint16(i * 18, true));
    for (let j = 0; j < 16; j++) {
      const q = bytes[i * 18 + 2 + j]!;
      out[i * 32 + j] = Math.fround(((q & 0x0f) - 8) * d);
      out[i * 32 + j + 16] = Math.fround(((q >> 4) - 8) * d);
    }
  }
  return out;
}

function dequant(type: GgmlTypeName, bytes: Uint8Array): Float32Array {
  if (type === 'Q8_0') return dequantQ8_0(bytes);
  if (type === 'Q4_0') return dequantQ4_0(bytes);
  if (type === 'F16') return Float32Array.from(new Uint16Array(bytes.slice().buffer), float16BitsToFloat32);
  return new Float32Array(bytes.slice().buffer);
}

/** Deterministic values of every magnitude (a few zero blocks, exact halves, outliers). */
function samples(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const r = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
  const x = Float32Array.from({ length: n }, (_, i) => (r() - 0.5) * (i % 7 === 0 ? 1e-3 : i % 5 === 0 ? 100 : 2));
  x.fill(0, 64, 96);
  return x;
}

describe('Q8_0 and Q4_0 by fusegen, read back by llama.cpp\'s definition', () => {
  it('Q8_0: d = amax / 127 in f16, q = round half away from zero (exact vectors)', () => {
    const x = Float32Array.from({ length: 32 }, (_, j) => j - 16); // amax 16: d = 16/127
    x[0] = -127; // amax 127: d = 1, q = round(x)
    x[1] = 2.5;
    x[2] = -2.5;
    x[3] = 0.49;
    const q = quantizeQ8_0(x);
    expect(q.length).toBe(34);
    expect(float16BitsToFloat32(q[0]! | (q[1]! << 8))).toBe(1);
    const qs = Int8Array.from(q.subarray(2));
    expect([qs[0], qs[1], qs[2], qs[3], qs[4], qs[31]]).toEqual([-127, 3, -3, 0, -12, 15]);
    expect(Array.from(dequantQ8_0(q).subarray(4))).toEqual(Array.from(x.subarray(4)));
  });

  it('Q4_0: d = max / -8 (signed value of largest magnitude), nibbles q + 8, element j low and j + 16 high', () => {
    const x = Float32Array.from({ length: 32 }, (_, j) => (j - 16) * 0.25); // max -4 at j = 0: d = 0.5
    const q = quantizeQ4_0(x);
    expect(q.length).toBe(18);
    expect(float16BitsToFloat32(q[0]! | (q[1]! << 8))).toBe(0.5);
    // element j: x / d = (j - 16) / 2 * -1 ... q = trunc(x / d + 8.5), capped at 15
    const expectQ = (v: number) => Math.min(15, Math.trunc(v / 0.5 + 8.5));
    for (let j = 0; j < 16; j++) {
      expect(q[2 + j]! & 0x0f, `low nibble ${j}`).toBe(expectQ(x[j]!));
      expect(q[2 + j]! >> 4, `high nibble ${j}`).toBe(expectQ(x[j + 16]!));
    }
    // A positive largest value flips the sign of d: its own element is q = 0, i.e. -8 * d = max.
    const pos = Float32Array.from({ length: 32 }, (_, j) => (j === 5 ? 3 : 0.1));
    const qp = quantizeQ4_0(pos);
    expect(float16BitsToFloat32(qp[0]! | (qp[1]! << 8))).toBe(-0.375);
    expect(dequantQ4_0(qp)[5]).toBe(3);
  });

  it('round trip on 64k values: Q8_0 within d/2; Q4_0 within d/2, d where +8d clamps to 7d (plus the f16 rounding of d)', () => {
    const x = samples(32 * 2048, 7);
    for (const [name, quant, deq, qmax, bytes, step] of [['Q8_0', quantizeQ8_0, dequantQ8_0, 127, 34, 0.5], ['Q4_0', quantizeQ4_0, dequantQ4_0, 8, 18, 1]] as const) {
      const q = quant(x);
      const y = deq(q);
      let worst = 0;
      for (let b = 0; b < x.length / 32; b++) {
        const dh = Math.abs(float16BitsToFloat32(q[b * bytes]! | (q[b * bytes + 1]! << 8)));
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
        const d = amax / qmax;
        for (let j = 0; j < 32; j++) {
          const e = Math.abs(x[b * 32 + j]! - y[b * 32 + j]!);
          // Rounding (Q4_0: the one code past +7 clamps, up to d), plus what the f16 rounding of d moves the largest code by.
          const bound = step * d + qmax * Math.abs(dh - d) + 1e-7 * amax;
          worst = Math.max(worst, e / (bound || 1));
          if (amax === 0) expect(Math.abs(y[b * 32 + j]!), `${name} zero block`).toBe(0);
        }
      }
      expect(worst, name).toBeLessThanOrEqual(1);
      expect(worst, `${name}: the bound is tight, not vacuous`).toBeGreaterThan(0.5);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('GGUF export: header, metadata and tensor layout read back', () => {
  let llama: GgufExport;
  let file: GgufFile;

  beforeAll(() => {
    llama = exportGguf(openCheckpoint(tinyModelDir('llama')), { weights: 'F32', logitAnchor: true, cacheDir });
    file = readGguf(llama.path);
  });

  it('GGUF v3 with llama.cpp\'s llama hyperparameters from config.json', () => {
    const ckpt = openCheckpoint(tinyModelDir('llama'));
    const m = file.metadata;
    expect(file.version).toBe(3);
    expect(m.get('general.architecture')).toBe('llama');
    expect(m.get('general.file_type')).toBe(0);
    expect({
      ctx: m.get('llama.context_length'),
      embd: m.get('llama.embedding_length'),
      blocks: m.get('llama.block_count'),
      ff: m.get('llama.feed_forward_length'),
      heads: m.get('llama.attention.head_count'),
      kv: m.get('llama.attention.head_count_kv'),
      rot: m.get('llama.rope.dimension_count'),
      base: m.get('llama.rope.freq_base'),
    }).toEqual({ ctx: 2048, embd: 64, blocks: 2, ff: 128, heads: 4, kv: 2, rot: 16, base: 10000 });
    expect(m.get('llama.attention.layer_norm_rms_epsilon')).toBeCloseTo(ckpt.dims.normEps, 12);
    expect(file.types.get('llama.context_length')).toBe('u32');
    expect(file.types.get('llama.attention.layer_norm_rms_epsilon')).toBe('f32');
    // The vocabulary plus the zero-logit anchor, everywhere llama.cpp counts tokens.
    expect(m.get('llama.vocab_size')).toBe(2343);
    expect(m.get('fusegen.logit_anchor_id')).toBe(2342);
  });

  it('the tokenizer: tokens in id order, byte and control types, scores by merge rank, special ids', () => {
    const tj = JSON.parse(readFileSync(join(tinyModelDir('llama'), 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number>; merges: string[][] } };
    const m = file.metadata;
    const tokens = m.get('tokenizer.ggml.tokens') as string[];
    const types = m.get('tokenizer.ggml.token_type') as number[];
    const scores = m.get('tokenizer.ggml.scores') as number[];
    expect(m.get('tokenizer.ggml.model')).toBe('llama');
    expect(tokens.length).toBe(2343);
    for (const [text, id] of Object.entries(tj.model.vocab)) expect(tokens[id]).toBe(text);
    expect(tokens[2342]).toBe('<|fusegen_logit_anchor|>');
    expect([types[0], types[1], types[2], types[3], types[3 + 0x0a], types[2342]]).toEqual([3, 3, 3, 6, 6, 5]);
    const [a, b] = tj.model.merges[5]!;
    expect(scores[tj.model.vocab[a! + b!]!]).toBe(-5);
    expect([m.get('tokenizer.ggml.bos_token_id'), m.get('tokenizer.ggml.eos_token_id'), m.get('tokenizer.ggml.unknown_token_id'), m.get('tokenizer.ggml.add_bos_token')]).toEqual([1, 2, 0, true]);
  });

  it('tensors in llama.cpp\'s names and layouts: dims fastest first, aligned, q/k rows interleaved per head, the anchor row zero', () => {
    expect(file.tensors.map((t) => t.name).slice(0, 12)).toEqual([
      'token_embd.weight', 'output_norm.weight', 'output.weight',
      'blk.0.attn_norm.weight', 'blk.0.attn_q.weight', 'blk.0.attn_k.weight', 'blk.0.attn_v.weight', 'blk.0.attn_output.weight',
      'blk.0.ffn_norm.weight', 'blk.0.ffn_gate.weight', 'blk.0.ffn_up.weight', 'blk.0.ffn_down.weight',
    ]);
    const dims = Object.fromEntries(file.tensors.map((t) => [t.name, t.dims]));
    expect([dims['token_embd.weight'], dims['blk.0.attn_k.weight'], dims['blk.0.ffn_down.weight'], dims['output_norm.weight']]).toEqual([[64, 2343], [64, 32], [128, 64], [64]]);
    for (const t of file.tensors) expect((t.offset - file.dataOffset) % GGUF_ALIGNMENT, t.name).toBe(0);
    const st = openSafetensorsFile(join(tinyModelDir('llama'), 'model.safetensors'));
    try {
      const read = (name: string) => new Float32Array(readGgufTensor(llama.path, file, name).slice().buffer);
      const embd = read('token_embd.weight');
      const hf = st.readFloat32('model.embed_tokens.weight');
      expect(Array.from(embd.subarray(0, hf.length))).toEqual(Array.from(hf));
      expect(embd.subarray(hf.length).every((v) => v === 0)).toBe(true);
      expect(read('output.weight').subarray(2342 * 64).every((v) => v === 0)).toBe(true);
      // k: 2 heads of D = 16 rows of 64; GGUF row h*16 + 2i + k is HF row h*16 + k*8 + i.
      const k = read('blk.0.attn_k.weight');
      const hk = st.readFloat32('model.layers.0.self_attn.k_proj.weight');
      for (const [h, i, half] of [[0, 0, 0], [0, 0, 1], [1, 3, 1], [1, 7, 0]] as const) {
        const ours = (h * 16 + 2 * i + half) * 64;
        const theirs = (h * 16 + half * 8 + i) * 64;
        expect(Array.from(k.subarray(ours, ours + 64)), `head ${h} pair ${i}.${half}`).toEqual(Array.from(hk.subarray(theirs, theirs + 64)));
      }
      // v is not permuted.
      expect(Array.from(read('blk.0.attn_v.weight'))).toEqual(Array.from(st.readFloat32('model.layers.0.self_attn.v_proj.weight')));
    } finally {
      st.close();
    }
  });

  it('gpt2 in Q8_0: fused attn_qkv as torch [out, in] (Conv1D transposed), the tied head written quantized beside a float embedding', () => {
    const e = exportGguf(openCheckpoint(tinyModelDir('gpt2')), { weights: 'Q8_0', cacheDir });
    const f = readGguf(e.path);
    expect(f.metadata.get('general.architecture')).toBe('gpt2');
    expect(f.metadata.get('general.file_type')).toBe(7);
    expect(f.metadata.get('tokenizer.ggml.model')).toBe('gpt2');
    expect(f.metadata.get('tokenizer.ggml.pre')).toBe('gpt-2');
    const tj = JSON.parse(readFileSync(join(tinyModelDir('gpt2'), 'tokenizer.json'), 'utf8')) as { model: { merges: string[][] } };
    expect((f.metadata.get('tokenizer.ggml.merges') as string[]).slice(0, 3)).toEqual(tj.model.merges.slice(0, 3).map((m) => m.join(' ')));
    const type = Object.fromEntries(f.tensors.map((t) => [t.name, t.type]));
    expect([type['token_embd.weight'], type['position_embd.weight'], type['output.weight'], type['blk.0.attn_qkv.weight'], type['blk.0.attn_qkv.bias'], type['blk.1.ffn_down.weight']]).toEqual(['F32', 'F32', 'Q8_0', 'Q8_0', 'F32', 'Q8_0']);
    const qkv = f.tensors.find((t) => t.name === 'blk.0.attn_qkv.weight')!;
    expect(qkv.dims).toEqual([64, 192]);
    const st = openSafetensorsFile(join(tinyModelDir('gpt2'), 'model.safetensors'));
    try {
      const cAttn = st.readFloat32(st.names().find((n) => /h\.0\.attn\.c_attn\.weight$/.test(n))!); // [in 64, out 192]
      const ours = dequantQ8_0(readGgufTensor(e.path, f, qkv.name)); // [out 192, in 64]
      let worst = 0;
      for (let r = 0; r < 192; r++) for (let c = 0; c < 64; c++) worst = Math.max(worst, Math.abs(ours[r * 64 + c]! - cAttn[c * 192 + r]!));
      expect(worst).toBeGreaterThan(0);
      expect(worst).toBeLessThan(0.01); // Q8_0 of weights of magnitude ~0.1: far below a transposed or shuffled read
    } finally {
      st.close();
    }
  });

  it('cached by content: the same export is found again; another type or another checkpoint is another key', () => {
    const again = exportGguf(openCheckpoint(tinyModelDir('llama')), { weights: 'F32', logitAnchor: true, cacheDir });
    expect([again.cached, again.key, again.path]).toEqual([true, llama.key, llama.path]);
    const f16 = exportGguf(openCheckpoint(tinyModelDir('llama')), { weights: 'F16', logitAnchor: true, cacheDir });
    expect(f16.cached).toBe(false);
    expect(f16.key).not.toBe(llama.key);
    const edited = scaledFixture('llama', FIRST_MLP_OUT, 1.01, 'gguf-key').dir;
    try {
      expect(exportGguf(openCheckpoint(edited), { weights: 'F32', logitAnchor: true, cacheDir }).key).not.toBe(llama.key);
    } finally {
      rmSync(edited, { recursive: true, force: true });
    }
  });

  it('architectures llama.cpp lacks, or not mapped, are refused with one line', () => {
    for (const [arch, what] of [['opt', 'llama.cpp has no opt architecture'], ['gpt_neox', 'not gpt_neox yet']] as const) {
      let err: unknown;
      try {
        exportGguf(openCheckpoint(tinyModelDir(arch)), { weights: 'F32', cacheDir });
      } catch (e) {
        err = e;
      }
      expect(err, arch).toBeInstanceOf(FusegenError);
      expect((err as Error).message).toContain(what);
      expect((err as Error).message).toContain('model_type');
      expect((err as Error).message.includes('\n')).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe.each(['llama', 'gpt2', 'bloom'] as const)('llamacpp pipeline on tiny-%s against the Hugging Face goldens', (arch) => {
  const golden = loadGolden(arch);
  // The measured policy: llama's float32 row unchanged; gpt2's and bloom's widened for ggml's float16-table GELU.
  const tol = toleranceFor('float32', llamaCppCandidate(tinyModelDir(arch)));
  let pipe: LlamaCppPipeline;

  beforeAll(async () => {
    pipe = await LlamaCppPipeline.create(openCheckpoint(tinyModelDir(arch)), { device: 'cpu', dtype: 'float32', maxTokens: 512 });
  });
  afterAll(async () => {
    await pipe?.dispose();
  });

  it('one left-padded batch of eight (a sequence set): greedy ids and text equal, top-10 logits within the measured float32 bound', async () => {
    expect(pipe.info.executionProviders[0]).toMatch(/^llama\.cpp .* cpu \(node-llama-cpp 3\.21\.1/);
    const r = await pipe.generate({ prompts: golden.batch.prompts, maxNewTokens: golden.max_new_tokens, doSample: false, recordTopK: golden.top_k });
    let worst = 0;
    let raw = 0;
    r.sequences.forEach((seq, i) => {
      const g = golden.batch.rows[i]!;
      expect(seq.newIds, seq.prompt).toEqual(g.new_ids);
      expect(seq.text, seq.prompt).toBe(g.text);
      worst = Math.max(worst, maxLogitError(seq, g, tol.rtol));
      raw = Math.max(raw, maxLogitError(seq, g));
    });
    expect(worst).toBeLessThan(tol.atol);
    // An independent forward pass: not bit-identical to Hugging Face's; GELU's table shows where it runs.
    expect(raw).toBeGreaterThan(arch === 'llama' ? 1e-7 : 1e-3);
  });

  it('each prompt alone: prompt ids, greedy ids; the fast greedy path (no logits) picks the same ids', async () => {
    for (const g of golden.single.slice(0, 3)) {
      const r = await pipe.generate({ prompts: [g.prompt], maxNewTokens: golden.max_new_tokens, doSample: false, recordTopK: golden.top_k });
      expect(r.sequences[0]!.promptIds).toEqual(g.input_ids);
      expect(r.sequences[0]!.newIds, g.prompt).toEqual(g.new_ids);
      expect(maxLogitError(r.sequences[0]!, g, tol.rtol)).toBeLessThan(tol.atol);
      const fast = await pipe.generate({ prompts: [g.prompt], maxNewTokens: golden.max_new_tokens, doSample: false });
      expect(fast.sequences[0]!.newIds).toEqual(g.new_ids);
      expect(fast.sequences[0]!.topK).toBeUndefined();
    }
  });

  it('score: teacher-forced logits rows equal the generated steps\' (position p predicts p + 1)', async () => {
    const g = golden.single[0]!;
    const rows = await pipe.score([[...g.input_ids, ...g.new_ids]], [g.input_ids.length - 1]);
    expect(rows[0]!.length).toBe(g.new_ids.length + 1);
    const asSteps = { topK: rows[0]!.slice(0, -1).map((row) => { const ids = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]! || a - b).slice(0, 10); return { ids, values: ids.map((id) => row[id]!) }; }) };
    expect(maxLogitError(asSteps, g, tol.rtol)).toBeLessThan(tol.atol);
  });

  it('sampled with a fixed seed: the same seed gives the same ids, never the anchor', async () => {
    const req = { prompts: golden.batch.prompts.slice(0, 3), maxNewTokens: 24, doSample: true, seed: 11, ignoreEos: true };
    const [a, b] = [await pipe.generate(req), await pipe.generate(req)];
    expect(a.sequences.map((s) => s.newIds)).toEqual(b.sequences.map((s) => s.newIds));
    expect(a.sequences.flatMap((s) => s.newIds).every((id) => id >= 0 && id < pipe.gguf.anchorId!)).toBe(true);
    const greedy = await pipe.generate({ ...req, doSample: false });
    expect(a.sequences.map((s) => s.newIds)).not.toEqual(greedy.sequences.map((s) => s.newIds));
  });

  it("llama.cpp's own tokenizer, from the exported metadata, gives the checkpoint tokenizer's ids", async () => {
    const tokenizer = await loadTokenizer(openCheckpoint(tinyModelDir(arch)));
    for (const p of golden.batch.prompts) expect(pipe.llamaTokenize(p), p).toEqual(tokenizer.encode(p, { add_special_tokens: false }));
  });
});

// ---------------------------------------------------------------------------------------------

describe("llama.cpp reads fusegen's Q8_0 and Q4_0 blocks as llama.cpp's dequantization defines them", () => {
  /** Logits of one token row through node-llama-cpp directly (the anchor recovers them), every position. */
  async function logitsOf(path: string, anchor: number, row: number[]): Promise<Float64Array[]> {
    // The pipeline's own Llama: a second one of the binary would take llama.cpp's log from it (sharedLlama).
    const llama = await sharedLlama('cpu');
    const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    const ctx = await model.createContext({ contextSize: 256, flashAttention: false, threads: 1, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' });
    try {
      const out = await ctx.getSequence().controlledEvaluate(row.map((t) => [t as Token, { generateNext: { probabilities: true } }]));
      return out.map((o) => {
        const p = o!.next.probabilities!;
        const lnA = Math.log(p.get(anchor as Token)!);
        return Float64Array.from({ length: anchor }, (_, i) => Math.log(p.get(i as Token)!) - lnA);
      });
    } finally {
      await ctx.dispose();
      await model.dispose();
    }
  }
  /** Mean |difference| over every position and token. */
  const meanDiff = (a: Float64Array[], b: Float64Array[]) => {
    let sum = 0;
    let n = 0;
    a.forEach((r, i) => r.forEach((v, j) => ((sum += Math.abs(v - b[i]![j]!)), n++)));
    return sum / n;
  };

  /** The same GGUF with every tensor dequantized by `deq` and stored F32. */
  function dequantizedCopy(src: string, dest: string, deq: (type: GgmlTypeName, bytes: Uint8Array) => Float32Array): void {
    const f = readGguf(src);
    const types: Record<string, GgufValue['type']> = { u32: 'u32', i32: 'i32', f32: 'f32', bool: 'bool', str: 'str', 'array:str': 'str[]', 'array:f32': 'f32[]', 'array:i32': 'i32[]' };
    const metadata = [...f.metadata].map(([k, v]): [string, GgufValue] => (k === 'general.file_type' ? [k, { type: 'u32', value: 0 }] : [k, { type: types[f.types.get(k)!]!, value: v } as GgufValue]));
    writeGguf(dest, metadata, f.tensors.map((t) => ({ name: t.name, dims: t.dims, type: 'F32' })), (i) => new Uint8Array(deq(f.tensors[i]!.type, readGgufTensor(src, f, f.tensors[i]!.name)).buffer));
  }

  /** A layout mistake: each block's values reversed (Q8_0 bytes, Q4_0 nibbles read high first). */
  function misread(type: GgmlTypeName, bytes: Uint8Array): Float32Array {
    const y = dequant(type, bytes);
    if (type !== 'Q8_0' && type !== 'Q4_0') return y;
    for (let b = 0; b < y.length; b += 32) y.subarray(b, b + 32).reverse();
    return y;
  }

  it.each(['Q8_0', 'Q4_0'] as const)('%s: llama.cpp on the quantized file agrees with the same weights dequantized, far better than with a misread layout', async (weights) => {
    const g = loadGolden('llama').single[0]!;
    const row = [...g.input_ids, ...g.new_ids];
    const ckpt = openCheckpoint(tinyModelDir('llama'));
    const q = exportGguf(ckpt, { weights, logitAnchor: true, cacheDir });
    const f32 = exportGguf(ckpt, { weights: 'F32', logitAnchor: true, cacheDir });
    const asDefined = join(cacheDir, `dequantized-${weights}.gguf`);
    const wrong = join(cacheDir, `misread-${weights}.gguf`);
    dequantizedCopy(q.path, asDefined, dequant);
    dequantizedCopy(q.path, wrong, misread);
    const onQ = await logitsOf(q.path, q.anchorId!, row);
    const readAsDefined = meanDiff(onQ, await logitsOf(asDefined, q.anchorId!, row)); // left: llama.cpp's own Q8_0 activations
    const quantError = meanDiff(onQ, await logitsOf(f32.path, q.anchorId!, row)); // what quantizing the weights did
    const layoutError = meanDiff(onQ, await logitsOf(wrong, q.anchorId!, row));
    expect(readAsDefined).toBeLessThan(quantError);
    expect(readAsDefined).toBeLessThan(layoutError / 10);
  });
});

// ---------------------------------------------------------------------------------------------

describe('compare --candidate llamacpp through the CLI', () => {
  const reportDir = mkdtempSync(join(tmpdir(), 'fusegen-llamacpp-compare-'));
  afterAll(() => rmSync(reportDir, { recursive: true, force: true }));

  async function run(args: string[]): Promise<{ code: number; out: string[]; err: string[]; report?: Record<string, any> }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['compare', ...args, '--report_dir', reportDir], { out: (l) => out.push(l), err: (l) => err.push(l) });
    const line = out.find((l) => l.startsWith('reports: '));
    return { code, out, err, ...(line ? { report: JSON.parse(readFileSync(line.slice('reports: '.length).split('\n')[0]!.trim(), 'utf8')) } : {}) };
  }
  const SHORT = ['--num_inputs', '2', '--min_length', '100', '--max_length', '120', '--speed_repeats', '1'];

  it.each(['llama', 'gpt2'] as const)('an identical copy of tiny-%s passes (exit 0), judged on llama.cpp\'s logits under its measured float32 bounds', async (arch) => {
    const r = await run(['--model', tinyModelDir(arch), '--candidate', 'llamacpp', ...SHORT]);
    expect(r.code, [...r.out, ...r.err].join('\n')).toBe(0);
    const rep = r.report!;
    expect(rep.environment.executionProviders.candidate[0]).toMatch(/^llama\.cpp /);
    expect(rep.speed.candidate.pipeline).toBe('llamacpp');
    expect(rep.tolerance).toMatchObject(arch === 'llama' ? { atol: 1e-4, maxKl: 1e-6 } : { atol: 0.12, maxKl: 2e-4 });
    for (const p of rep.prompts) {
      expect(p.verdict).toBe('match');
      expect(p.logits.decode.positions).toBeGreaterThan(50);
      expect(p.logits.decode.unionMaxAbs).toBeGreaterThan(0); // llama.cpp's own forward pass
    }
  });

  it('a planted defect in the candidate checkpoint fails the gate (exit 1): llama.cpp runs --candidate_model', async () => {
    const { dir } = scaledFixture('llama', FIRST_MLP_OUT, 1.2, 'llamacpp-defect');
    try {
      const r = await run(['--model', tinyModelDir('llama'), '--candidate_model', dir, '--candidate', 'llamacpp', ...SHORT]);
      expect(r.code, r.err.join('\n')).toBe(1);
      expect(r.report!.prompts.some((p: { verdict: string }) => p.verdict === 'mismatch')).toBe(true);
      expect(r.out.some((l) => l.startsWith('triage prompt') && l.includes('llama.cpp: triage has no reruns'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('bad input is refused with one line, exit 2, before any run: OPT (llama.cpp has none), cuda, bfloat16, int4, --use_kernel', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--model', tinyModelDir('opt'), '--candidate', 'llamacpp'], /^error: .*config\.json: model_type: "opt": llama\.cpp has no opt architecture/],
      [['--model', tinyModelDir('llama'), '--candidate', 'llamacpp', '--device', 'cuda'], /^error: --device: cuda: node-llama-cpp's prebuilt CUDA binaries \(@node-llama-cpp\/linux-x64-cuda, @node-llama-cpp\/linux-x64-cuda-ext\) are installed here but not wired: .*--device webgpu/],
      [['--model', tinyModelDir('llama'), '--candidate', 'llamacpp', '--dtype', 'bfloat16'], /^error: --dtype: bfloat16 is not available for the llamacpp pipeline/],
      [['--model', tinyModelDir('llama'), '--candidate', 'llamacpp', '--use_kernel'], /^error: --use_kernel: does not apply to --candidate llamacpp/],
      [['--model', tinyModelDir('llama'), '--candidate', 'llamacpp', '--dtype', 'int4'], /^error: --dtype: int4: llama\.cpp's Q4_0 is not fusegen's int4/],
      [['--model', tinyModelDir('llama'), '--candidate', 'llama.cpp'], /^error: --candidate: expected one of llamacpp, got "llama.cpp"/],
    ];
    for (const [args, want] of cases) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err.length, args.join(' ')).toBe(1);
      expect(r.err[0], args.join(' ')).toMatch(want);
      expect(r.report, args.join(' ')).toBeUndefined();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe("the llama.cpp backend a device runs on, and node-llama-cpp's options for it", () => {
  it('cpu is the CPU build, webgpu the Vulkan build; cuda is refused in one line naming --device and why', () => {
    expect(llamaCppBackendFor('cpu')).toBe('cpu');
    expect(llamaCppBackendFor('webgpu')).toBe('vulkan');
    expect(() => llamaCppBackendFor('cuda')).toThrow(FusegenError);
    expect(() => llamaCppBackendFor('cuda')).toThrow(/^--device: cuda: node-llama-cpp's prebuilt CUDA binaries \(@node-llama-cpp\/linux-x64-cuda, @node-llama-cpp\/linux-x64-cuda-ext\) /);
    // Whether they are installed is read from the tree, not assumed.
    const installed = existsSync(join(import.meta.dirname, '..', 'node_modules', '@node-llama-cpp', 'linux-x64-cuda', 'package.json'));
    expect(cudaRefusal()).toContain(installed ? 'are installed here but not wired' : 'are not installed here');
    expect(cudaRefusal().includes('\n')).toBe(false);
  });

  it('getLlama is asked for that prebuilt binary alone: gpu names it (no fallback to another), never built, never downloaded', () => {
    const logger = () => {};
    const common = { build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: true, logLevel: LlamaLogLevel.error, logger };
    expect(llamaOptions('vulkan', LlamaLogLevel.error, logger)).toEqual({ gpu: 'vulkan', ...common });
    expect(llamaOptions('cpu', LlamaLogLevel.error, logger)).toEqual({ gpu: false, ...common });
  });

  it("llama_perf_context_print's lines parsed; a count of 1 in 0.00 ms is llama.cpp's max(1, n) floor for none", () => {
    const lines = (prompt: string, evals: string, reused = 6) => [
      'llama_perf_context_print:        load time =       4.79 ms',
      `llama_perf_context_print: prompt eval time = ${prompt} (    0.25 ms per token,  3958.83 tokens per second)`,
      `llama_perf_context_print:        eval time = ${evals}   (    0.15 ms per token,  6809.34 tokens per second)`,
      'llama_perf_context_print:       total time =       5.29 ms /     8 tokens',
      `llama_perf_context_print:    graphs reused = ${String(reused).padStart(10)}`,
    ];
    expect(parsePerf(lines('      1.26 ms /     5 tokens', '      0.00 ms /     1 runs', 0))).toEqual({ promptEvalMs: 1.26, promptEvalTokens: 5, evalMs: 0, evalRuns: 0, graphsReused: 0 });
    expect(parsePerf(lines('      0.00 ms /     1 tokens', '   1234.03 ms /  4097 runs'))).toEqual({ promptEvalMs: 0, promptEvalTokens: 0, evalMs: 1234.03, evalRuns: 4097, graphsReused: 6 });
    // One real call of one token is 1, not 0.
    expect(parsePerf(lines('      0.00 ms /     1 tokens', '      0.15 ms /     1 runs')).evalRuns).toBe(1);
    expect(() => parsePerf(lines('1.26 ms / 5 tokens', '0.00 ms / 1 runs').filter((l) => !l.includes(' eval time') || l.includes('prompt')))).toThrow(/^llamacpp: llama\.cpp printed no "eval time" line in its timings \(4 lines; /);
  });
});

describe("llama.cpp's own timings of a run (timedGenerate), on the CPU build", () => {
  let pipe: LlamaCppPipeline;
  beforeAll(async () => {
    pipe = await LlamaCppPipeline.create(openCheckpoint(tinyModelDir('llama')), { device: 'cpu', dtype: 'float32', maxTokens: 128 });
  });
  afterAll(async () => {
    await pipe?.dispose();
  });
  const request = (batch: number, promptLength: number, maxNewTokens: number) => ({
    prompts: Array.from({ length: batch }, (_, b) => `p${b}`),
    promptTokens: Array.from({ length: batch }, (_, b) => Array.from({ length: promptLength }, (_, i) => 100 + 37 * b + 11 * i)),
    maxNewTokens,
    doSample: false,
    ignoreEos: true,
  });

  it('batch 1: the prompt step is llama.cpp prompt eval of the prompt, the decode steps n - 1 evals; each inside its wall time; the same ids as an untimed run', async () => {
    const plain = await pipe.generate(request(1, 12, 10)); // leaves llama.cpp's counters running: the timed run resets them first
    const { result, timings } = await pipe.timedGenerate(request(1, 12, 10));
    expect(result.sequences[0]!.newIds).toEqual(plain.sequences[0]!.newIds);
    expect(timings).toMatchObject({ backend: 'cpu', devices: [], prefill: { promptEvalTokens: 12, evalRuns: 0, graphsReused: 0 }, decode: { promptEvalTokens: 0, evalRuns: 9, graphsReused: 8 } });
    expect(timings.prefill.promptEvalMs).toBeGreaterThan(0);
    expect(timings.decode.evalMs).toBeGreaterThan(0);
    expect(timings.prefill.wallMs).toBe(result.timings.firstTokenMs);
    expect(timings.decode.wallMs).toBeCloseTo(result.timings.decodeStepMs.reduce((a, b) => a + b, 0), 9);
    expect(timings.prefill.promptEvalMs).toBeLessThanOrEqual(timings.prefill.wallMs);
    expect(timings.decode.evalMs).toBeLessThanOrEqual(timings.decode.wallMs);
  });

  it('batch 3: rows decode together, so llama.cpp counts the decode steps as prompt eval, 3 tokens a step', async () => {
    const { timings } = await pipe.timedGenerate(request(3, 5, 6));
    expect(timings).toMatchObject({ prefill: { promptEvalTokens: 15, evalRuns: 0 }, decode: { promptEvalTokens: 15, evalRuns: 0 } });
    expect(timings.decode.promptEvalMs).toBeGreaterThan(0);
  });

  it('a one-token prompt is an eval for llama.cpp (its prompt eval then reads 0, not the floor 1)', async () => {
    const { timings } = await pipe.timedGenerate(request(1, 1, 4));
    expect(timings).toMatchObject({ prefill: { promptEvalTokens: 0, evalRuns: 1 }, decode: { promptEvalTokens: 0, evalRuns: 3 } });
    expect(timings.prefill.evalMs).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------------------------------------

describe("llamacpp on llama.cpp's Vulkan build (--device webgpu), here on Mesa's lavapipe", () => {
  // ggml_vulkan's first run of a shape compiles its pipelines: on lavapipe on a cold Mesa shader
  // cache that took minutes (13 on 2 busy cores for the batch of 8); seconds once cached.
  const COLD = 900_000;
  const golden = loadGolden('llama');
  let vk: LlamaCppPipeline;
  let cpu: LlamaCppPipeline;

  beforeAll(async () => {
    vk = await LlamaCppPipeline.create(openCheckpoint(tinyModelDir('llama')), { device: 'webgpu', dtype: 'float32', maxTokens: 512 });
    cpu = await LlamaCppPipeline.create(openCheckpoint(tinyModelDir('llama')), { device: 'cpu', dtype: 'float32', maxTokens: 512 });
  }, COLD);
  afterAll(async () => {
    await vk?.dispose();
    await cpu?.dispose();
  });

  it('loads on the Vulkan device with every layer offloaded, and says so', () => {
    expect(vk.backend).toBe('vulkan');
    expect(vk.devices.length).toBeGreaterThan(0);
    if (onLavapipe) expect(vk.devices[0]).toMatch(/^llvmpipe/);
    expect(vk.info.device).toBe('webgpu');
    expect(vk.info.executionProviders).toEqual([expect.stringMatching(new RegExp(`^llama\\.cpp \\S+ vulkan on ${escape(vk.devices.join(', '))}, 3/3 layers offloaded \\(node-llama-cpp 3\\.21\\.1, prebuilt binary, GGUF F32\\)$`))]);
  });

  it("a left-padded batch of eight: the Hugging Face goldens' greedy ids and texts, as the CPU build gives, from logits of its own", async () => {
    const req = { prompts: golden.batch.prompts, maxNewTokens: golden.max_new_tokens, doSample: false, recordTopK: golden.top_k };
    const [onVk, onCpu] = [await vk.generate(req), await cpu.generate(req)];
    onVk.sequences.forEach((seq, i) => {
      expect(seq.newIds, seq.prompt).toEqual(golden.batch.rows[i]!.new_ids);
      expect(seq.text, seq.prompt).toBe(golden.batch.rows[i]!.text);
    });
    expect(onVk.sequences.map((s) => s.newIds)).toEqual(onCpu.sequences.map((s) => s.newIds));
    // Measured on lavapipe: top-10 within 3.2e-2 of the goldens (the CPU build 2.6e-5): not
    // float32-exact, and not the CPU's numbers either, so the GPU computed them.
    const worst = Math.max(...onVk.sequences.map((s, i) => maxLogitError(s, golden.batch.rows[i]!)));
    expect(worst).toBeLessThan(0.1);
    expect(worst).toBeGreaterThan(Math.max(...onCpu.sequences.map((s, i) => maxLogitError(s, golden.batch.rows[i]!))));
    // The greedy path without logits (llama.cpp's own sampler) picks the same ids.
    const fast = await vk.generate({ ...req, recordTopK: 0 });
    expect(fast.sequences.map((s) => s.newIds)).toEqual(golden.batch.rows.map((g) => g.new_ids));
  }, COLD);

  it("llama.cpp's timings name the Vulkan backend and its device, and count as on the CPU", async () => {
    const g = golden.single[0]!;
    const { result, timings } = await vk.timedGenerate({ prompts: [g.prompt], maxNewTokens: 6, doSample: false, ignoreEos: true });
    expect(result.sequences[0]!.newIds).toEqual(g.new_ids.slice(0, 6));
    expect(timings).toMatchObject({ backend: 'vulkan', devices: vk.devices, prefill: { promptEvalTokens: g.input_ids.length, evalRuns: 0 }, decode: { promptEvalTokens: 0, evalRuns: 5 } });
    expect(timings.prefill.promptEvalMs).toBeGreaterThan(0);
    expect(timings.decode.evalMs).toBeGreaterThan(0);
    expect(timings.decode.evalMs).toBeLessThanOrEqual(timings.decode.wallMs);
  }, COLD);

  it('bench --pipelines llamacpp --device webgpu: the row names the Vulkan device and carries its timings', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-bench-llamacpp-vk-'));
    try {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(['bench', '--model', tinyModelDir('llama'), '--device', 'webgpu', '--dtype', 'float32', '--pipelines', 'llamacpp', '--batch_sizes', '1', '--prompt_lengths', '8', '--max_new_tokens', '4', '--repeats', '1', '--report_dir', dir], { out: (l) => out.push(l), err: (l) => err.push(l) });
      expect(code, err.join('\n')).toBe(0);
      const report = JSON.parse(readFileSync(join(dir, readdirSync(dir).find((f) => f.endsWith('-bench.json'))!), 'utf8')) as BenchReport;
      validateBenchReport(report);
      expect(report.device).toBe('webgpu');
      const [row] = report.rows;
      expect(row!.executionProviders[0]).toMatch(/ vulkan on .+, 3\/3 layers offloaded /);
      expect(row!.llamaCppTimings).toMatchObject({ backend: 'vulkan', devices: vk.devices, prefill: { promptEvalTokens: 8, evalRuns: 0 }, decode: { promptEvalTokens: 0, evalRuns: 3 } });
      expect(out.some((l) => l.startsWith(`llamacpp b1 p8 llama.cpp's own timings (vulkan on ${vk.devices[0]}, one run): prompt step `))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, COLD);

  it('generate --engine llamacpp --device webgpu: the seed\'s output, then which build ran on what', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['generate', '--model', tinyModelDir('llama'), '--engine', 'llamacpp', '--device', 'webgpu', '--dtype', 'float32', '--greedy', '--max_new_tokens', String(golden.max_new_tokens)], { out: (l) => out.push(l), err: (l) => err.push(l) });
    expect(err).toEqual([]);
    expect(code).toBe(0);
    expect(out.join('\n')).toContain(`\nin=${golden.batch.prompts[0]}\nout=${golden.batch.rows[0]!.text}\n${'-'.repeat(60)}`);
    expect(out.slice(-2)).toEqual([`llamacpp: ${vk.info.executionProviders[0]}`, 'Done !']);
  }, COLD);

  it('compare --candidate llamacpp --device webgpu runs llama.cpp on the Vulkan device; float32 gets the same tokens but logits beyond the float32 row (measured, README)', async () => {
    const reportDir = mkdtempSync(join(tmpdir(), 'fusegen-llamacpp-vk-compare-'));
    try {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(['compare', '--model', tinyModelDir('llama'), '--candidate', 'llamacpp', '--device', 'webgpu', '--dtype', 'float32', '--num_inputs', '2', '--min_length', '40', '--max_length', '60', '--speed_repeats', '1', '--report_dir', reportDir], { out: (l) => out.push(l), err: (l) => err.push(l) });
      expect(err).toEqual([]);
      const line = out.find((l) => l.startsWith('reports: '))!;
      const rep = JSON.parse(readFileSync(line.slice('reports: '.length).split('\n')[0]!.trim(), 'utf8')) as Record<string, any>;
      expect(rep.environment.executionProviders.candidate).toEqual([vk.info.executionProviders[0]]);
      expect(rep.speed.candidate.pipeline).toBe('llamacpp');
      expect(code).toBe(1);
      for (const p of rep.prompts) {
        expect(p.similarity, p.reason).toBe(1); // every greedy token the reference's
        expect(p.logits.decode.unionMaxAbs).toBeGreaterThan(1e-4); // beyond the float32 row's atol...
        expect(p.logits.decode.unionMaxAbs).toBeLessThan(0.1); // ...by a Vulkan build's rounding, not a defect
      }
    } finally {
      rmSync(reportDir, { recursive: true, force: true });
    }
  }, COLD);

  /** The built CLI in a process of its own (node-llama-cpp loads the Vulkan build once a process), with `env` over this one's. */
  function cli(env: Record<string, string | undefined>): { stdout: string; stderr: string; status: number | null } {
    const bin = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'main.js');
    expect(existsSync(bin), `${bin} is missing: npm run build`).toBe(true);
    const merged: NodeJS.ProcessEnv = { ...process.env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k]; else merged[k] = v;
    return spawnSync(process.execPath, [bin, 'generate', '--model', tinyModelDir('llama'), '--engine', 'llamacpp', '--device', 'webgpu', '--dtype', 'float32', '--greedy', '--max_new_tokens', '2'], { encoding: 'utf8', timeout: 110_000, env: merged });
  }

  it("a Vulkan binary that does not load is one line naming the backend and node-llama-cpp's reason, exit 2; never the CPU in its place", () => {
    const p = cli({ VK_ICD_FILENAMES: join(tmpdir(), 'no-such-icd.json') });
    expect(p.stdout).toBe('');
    expect(p.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^error: llamacpp: llama\.cpp's Vulkan backend: node-llama-cpp 3\.21\.1 cannot load its prebuilt Vulkan binary \(@node-llama-cpp\/linux-x64-vulkan\): The prebuilt binary for platform "linux" "x64" with Vulkan support is not compatible with the current system; NoBinaryFoundError$/)]);
    expect(p.status).toBe(2);
  });

  it('a Vulkan build that finds no device it takes (lavapipe without GGML_VK_VISIBLE_DEVICES) is refused in one line, exit 2', () => {
    const p = cli({ VK_ICD_FILENAMES: LAVAPIPE, GGML_VK_VISIBLE_DEVICES: undefined });
    expect(p.stdout).toBe('');
    expect(p.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^error: llamacpp: llama\.cpp's Vulkan backend \(@node-llama-cpp\/linux-x64-vulkan\) loaded but found no Vulkan device to offload to \(.*GGML_VK_VISIBLE_DEVICES.*\): not running on the CPU in its place$/)]);
    expect(p.status).toBe(2);
  });
});

describe('bench --pipelines llamacpp: llama.cpp beside fusegen on the CPU', () => {
  it('writes rows for llama.cpp and the ORT-injected graph side by side, valid under the schema', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-bench-llamacpp-'));
    try {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(['bench', '--model', tinyModelDir('llama'), '--pipelines', 'ort,llamacpp', '--batch_sizes', '1,2', '--prompt_lengths', '8', '--max_new_tokens', '8', '--repeats', '1', '--report_dir', dir], { out: (l) => out.push(l), err: (l) => err.push(l) });
      expect(code, err.join('\n')).toBe(0);
      const file = readdirSync(dir).find((f) => f.endsWith('-bench.json'))!;
      const report = JSON.parse(readFileSync(join(dir, file), 'utf8')) as BenchReport;
      validateBenchReport(report);
      const rows = report.rows.filter((r) => r.pipeline === 'llamacpp');
      expect(rows.map((r) => r.batch)).toEqual([1, 2]);
      for (const r of rows) expect(r.decodeTokensPerSec).toBeGreaterThan(0);
      // Its speedup is stated against the first pipeline, as for any pair.
      expect(rows.every((r) => r.versus?.pipeline === 'ort')).toBe(true);
      // llama.cpp's own counters, as llama.cpp counts: the prompt step is one decode call of
      // batch x 8 tokens (prompt eval); each of the 7 later steps one call of one token a row, which
      // llama.cpp counts as eval at batch 1 and as prompt eval (2 tokens a call) at batch 2.
      const [b1, b2] = rows.map((r) => r.llamaCppTimings!);
      expect(b1).toMatchObject({ backend: 'cpu', devices: [], prefill: { promptEvalTokens: 8, evalRuns: 0 }, decode: { promptEvalTokens: 0, evalRuns: 7, graphsReused: 6 } });
      expect(b2).toMatchObject({ backend: 'cpu', devices: [], prefill: { promptEvalTokens: 16, evalRuns: 0 }, decode: { promptEvalTokens: 14, evalRuns: 0, graphsReused: 6 } });
      for (const t of [b1!, b2!]) {
        expect(t.prefill.promptEvalMs).toBeGreaterThan(0);
        expect(t.decode.promptEvalMs + t.decode.evalMs).toBeGreaterThan(0);
        // llama.cpp's time inside fusegen's wall time of the same phase.
        expect(t.prefill.promptEvalMs + t.prefill.evalMs).toBeLessThanOrEqual(t.prefill.wallMs);
        expect(t.decode.promptEvalMs + t.decode.evalMs).toBeLessThanOrEqual(t.decode.wallMs);
      }
      // The ORT rows carry none; the text output prints each llamacpp row's.
      expect(report.rows.filter((r) => r.pipeline === 'ort').every((r) => r.llamaCppTimings === undefined)).toBe(true);
      expect(out.filter((l) => l.includes("llama.cpp's own timings"))).toEqual([
        expect.stringMatching(/^llamacpp b1 p8 llama\.cpp's own timings \(cpu, one run\): prompt step [\d.]+ ms wall, llama\.cpp [\d.]+ ms \(prompt eval [\d.]+ ms \/ 8 tokens, 0 graphs reused\); decode steps [\d.]+ ms wall, llama\.cpp [\d.]+ ms \(eval [\d.]+ ms \/ 7 runs, 6 graphs reused\)$/),
        expect.stringMatching(/^llamacpp b2 p8 llama\.cpp's own timings \(cpu, one run\): .*decode steps .*\(prompt eval [\d.]+ ms \/ 14 tokens, 6 graphs reused\)$/),
      ]);
      // The HTML's "Where the time goes" has the same counters, a table per llamacpp row.
      const html = readFileSync(join(dir, file.replace(/\.json$/, '.html')), 'utf8');
      expect(html.match(/llama\.cpp&#39;s own counters \(llama_perf_context, cpu\)/g)).toHaveLength(2);
      // The schema holds the field to its shape: a phase without a counter is not a bench report.
      const broken = structuredClone(report);
      delete (broken.rows.find((r) => r.pipeline === 'llamacpp')!.llamaCppTimings!.decode as Partial<LlamaCppPhase>).evalRuns;
      expect(() => validateBenchReport(broken)).toThrow(/^invalid bench report: rows\[2\]\.llamaCppTimings\.decode\.evalRuns: is required$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("counts the run that reads llama.cpp's timings: one a point after its measured runs (--profile's per-op runs are ORT's only)", async () => {
    const events: BenchProgress[] = [];
    const o: BenchOptions = { ckpt: openCheckpoint(tinyModelDir('llama')), device: 'cpu', dtype: 'float32', pipelines: ['llamacpp'], batchSizes: [1, 2], promptLengths: [4], maxNewTokens: 3, repeats: 1, profile: true };
    const report = await runBench(o, (p) => events.push(p), () => false);
    expect(events.map((e) => `${e.run}/${e.runs} ${e.point}/${e.points} ${e.step}`)).toEqual(['1/6 1/2 warm-up', '2/6 1/2 run 1/1', '3/6 1/2 profiled', '4/6 2/2 warm-up', '5/6 2/2 run 1/1', '6/6 2/2 profiled']);
    expect(report.rows.map((r) => [r.llamaCppTimings!.prefill.promptEvalTokens, r.llamaCppTimings!.decode.evalRuns, r.llamaCppTimings!.decode.promptEvalTokens, r.opProfile])).toEqual([[4, 2, 0, undefined], [8, 0, 4, undefined]]);
  });

  it.each([
    [['--model', tinyModelDir('llama'), '--pipelines', 'llamacpp', '--device', 'cuda'], /^error: --device: cuda: node-llama-cpp's prebuilt CUDA binaries .* are installed here but not wired/],
    [['--model', tinyModelDir('opt'), '--pipelines', 'ort,llamacpp'], /llama\.cpp has no opt architecture/],
  ])('refuses %j in one line before any run', async (args, message) => {
    const err: string[] = [];
    const code = await main(['bench', ...args, '--report_dir', mkdtempSync(join(tmpdir(), 'fusegen-bench-llamacpp-'))], { out: () => {}, err: (l) => err.push(l) });
    expect(code).toBe(2);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(message);
  });
});

// ---------------------------------------------------------------------------------------------

describe('generate --engine llamacpp: the seed\'s command on llama.cpp', () => {
  async function generate(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['generate', ...args], { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out, err };
  }
  /** The seed's blocks (`in=` / `out=` / dashes) from generate's lines. */
  function blocks(out: string[]): Array<{ prompt: string; text: string }> {
    const text = out.map((l) => `${l}\n`).join('');
    return [...text.matchAll(/\nin=([^\n]*)\nout=([\s\S]*?)\n-{60}\n/g)].map((m) => ({ prompt: m[1]!, text: m[2]! }));
  }
  const FIGURES = /^fusegen figures \(llamacpp pipeline \(llama\.cpp through node-llama-cpp\), cpu, (\w+), batch (\d+), 27 runs after warm-up\):$/;

  it.each(['llama', 'gpt2', 'bloom'] as const)('tiny-%s, greedy, batch 8: the seed\'s format, every text the Hugging Face golden\'s, figures labelled llamacpp', async (arch) => {
    const golden = loadGolden(arch);
    const r = await generate(['--model', tinyModelDir(arch), '--engine', 'llamacpp', '--greedy', '--batch_size', '8', '--max_new_tokens', String(golden.max_new_tokens), '--test_performance']);
    expect(r.err, r.err.join('\n')).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.out[0]).toMatch(/^initialization time: \d+\.\d{2}ms$/);
    expect(r.out[1]).toMatch(/^generation time is \d+\.\d{4} sec$/);
    expect(blocks(r.out)).toEqual(golden.batch.prompts.map((prompt, i) => ({ prompt, text: golden.batch.rows[i]!.text })));
    // The label proves llama.cpp ran: fusegen's own loop also reproduces these goldens.
    const header = r.out.find((l) => l.startsWith('fusegen figures ('));
    expect(header).toMatch(FIGURES);
    expect(FIGURES.exec(header!)!.slice(1)).toEqual(['float32', '8']);
    expect(r.out.filter((l) => /^Avg (Per Token Latency|BW|flops):/.test(l))).toHaveLength(3);
    expect(r.out.join('\n')).not.toContain('n/a');
    expect(r.out.at(-1)).toBe('Done !');
  });

  it('DSPipeline with engine llamacpp (the same mapping, backendFor): float32 gives the golden token ids; each dtype runs its GGUF type', async () => {
    const golden = loadGolden('llama');
    for (const [dtype, gguf] of [['float32', 'F32'], ['float16', 'F16'], ['int8', 'Q8_0'], ['int4', 'Q4_0']] as const) {
      const pipe = await DSPipeline.create({ model: tinyModelDir('llama'), engine: 'llamacpp', dtype });
      try {
        expect(pipe.pipeline.info.name, dtype).toBe('llamacpp');
        expect(pipe.pipeline.info.executionProviders[0], dtype).toContain(`GGUF ${gguf})`);
        const r = await pipe.pipeline.generate({ prompts: golden.batch.prompts, maxNewTokens: golden.max_new_tokens, doSample: false });
        if (dtype === 'float32') expect(r.sequences.map((s) => s.newIds)).toEqual(golden.batch.rows.map((g) => g.new_ids));
        else expect(r.sequences.every((s) => s.newIds.length > 0), dtype).toBe(true);
      } finally {
        await pipe.dispose();
      }
    }
  });

  it.each(['float16', 'int8', 'int4'] as const)('--dtype %s through the CLI: a run in the seed\'s format, the figures naming the dtype', async (dtype) => {
    const r = await generate(['--model', tinyModelDir('llama'), '--engine', 'llamacpp', '--greedy', '--dtype', dtype, '--max_new_tokens', '6', '--test_performance']);
    expect(r.err, r.err.join('\n')).toEqual([]);
    expect(r.code).toBe(0);
    expect(blocks(r.out).map((b) => b.prompt)).toEqual([loadGolden('llama').batch.prompts[0]]);
    expect(FIGURES.exec(r.out.find((l) => l.startsWith('fusegen figures ('))!)?.slice(1)).toEqual([dtype, '1']);
    expect(r.out.at(-1)).toBe('Done !');
  });

  const saveDir = join(cacheDir, 'never-saved');
  it.each([
    [['--device', 'cuda'], '--device', /cuda: node-llama-cpp's prebuilt CUDA binaries .* are installed here but not wired: .*cannot travel to the GPU machine.*--device webgpu/],
    [['--use_kernel'], '--use_kernel', /does not apply to --engine llamacpp/],
    [['--kernels', 'wgsl'], '--kernels', /does not apply to --engine llamacpp/],
    [['--kernels', 'ort'], '--kernels', /does not apply to --engine llamacpp/],
    [['--hf_baseline'], '--hf_baseline', /does not apply to --engine llamacpp/],
    [['--reference', 'hf'], '--reference', /does not apply to --engine llamacpp/],
    [['--dtype', 'int8', '--accuracy_level', '4'], '--accuracy_level', /does not apply to --engine llamacpp/],
    [['--world_size', '2'], '--world_size', /does not apply to --engine llamacpp/],
    // Another rank would print its one line and exit 0: refused first.
    [['--world_size', '2', '--local_rank', '1'], '--world_size', /does not apply to --engine llamacpp/],
    [['--save_mp_checkpoint_path', saveDir], '--save_mp_checkpoint_path', /does not apply to --engine llamacpp/],
    [['--dtype', 'bfloat16'], '--dtype', /bfloat16 is not available for the llamacpp pipeline/],
    [['--engine', 'llama.cpp'], '--engine', /expected one of llamacpp, got "llama\.cpp"/],
  ] as const)('refuses %j: one line naming %s, exit 2, nothing on stdout', async (args, flag, why) => {
    const r = await generate(['--model', tinyModelDir('llama'), '--engine', 'llamacpp', '--greedy', '--max_new_tokens', '2', ...args]);
    expect(r.out).toEqual([]);
    expect(r.err).toHaveLength(1);
    expect(r.err[0]!.startsWith(`error: ${flag}: `), r.err[0]).toBe(true);
    expect(r.err[0]).toMatch(why);
    expect(r.code).toBe(2);
    expect(existsSync(saveDir)).toBe(false);
  });

  it('a checkpoint llama.cpp has no architecture for (OPT) is refused in one line before any export', async () => {
    const r = await generate(['--model', tinyModelDir('opt'), '--engine', 'llamacpp', '--greedy', '--max_new_tokens', '2']);
    expect(r.out).toEqual([]);
    expect(r.err).toHaveLength(1);
    expect(r.err[0]).toMatch(/^error: .*config\.json: model_type: "opt": llama\.cpp has no opt architecture/);
    expect(r.code).toBe(2);
  });

  it('the built binary: a refusal exits 2 with one stderr line and an empty stdout', () => {
    const bin = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'main.js');
    expect(existsSync(bin), `${bin} is missing: npm run build`).toBe(true);
    const p = spawnSync(process.execPath, [bin, 'generate', '--model', tinyModelDir('llama'), '--engine', 'llamacpp', '--use_kernel', '--max_new_tokens', '2'], { encoding: 'utf8', timeout: 110_000 });
    expect(p.stdout).toBe('');
    expect(p.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^error: --use_kernel: does not apply to --engine llamacpp/)]);
    expect(p.status).toBe(2);
  });
});
