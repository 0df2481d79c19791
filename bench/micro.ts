/**
 * Micro-benchmarks (not a test): each fused op against the decomposed subgraph it replaces,
 * built with the injected decoder's own emitters (src/inject/blocks.ts) with the fusion
 * switched on and off, run through ONNX Runtime on one device and timed with tinybench.
 *
 *   node dist/bench/micro.js [--device cpu|webgpu] [--time 300] [--cases attention,norm,gelu,packed]
 *
 * Per case: both graphs get the same inputs; their outputs must agree (max abs diff relative
 * to the largest decomposed output <= 1e-3) before either is timed. Reported: median and p99
 * latency of `session.run`, and the fused/decomposed ratio of medians (< 1: the fusion wins).
 * The attention case mirrors inject/decoder.ts (GroupQueryAttention vs the standard-ops
 * attention over a KV cache in one max-length buffer), whose emitter is not exported.
 * Caveat: Session runs with graphOptimizationLevel 'all', and ORT's own transformer fusions
 * rewrite some decomposed graphs (on the CPU, Add + Gelu(tanh) becomes FastGelu: the gelu
 * case then compares FastGelu with itself, max|diff| exactly 0).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Bench } from 'tinybench';
import type { ModelDims, NormKind, WeightView } from '../src/arch/spec.js';
import type { TensorInfo, TensorStore } from '../src/checkpoint/safetensors.js';
import { mergeHeads, repeatKv, splitHeads } from '../src/graph/blocks.js';
import { float, Graph, int, ints } from '../src/graph/ir.js';
import { writeModel } from '../src/graph/onnx-writer.js';
import { WeightSource } from '../src/graph/weights.js';
import { addNorm, biasGelu, cacheRowIndices, MS, projection, splitLast, type InjectContext, type LinearSource } from '../src/inject/blocks.js';
import { ALL_FUSIONS, NO_FUSIONS, type InjectionPlan } from '../src/inject/plan.js';
import { fillNormal } from '../src/pipeline/random.js';
import { reportTimestamp, writeTextAtomic } from '../src/report/write.js';
import { int32, int64, readFloat32, Session, type Device, type Feeds } from '../src/runtime/ort.js';
import * as ort from 'onnxruntime-node';

export type MicroCaseKind = 'attention' | 'norm' | 'gelu' | 'packed';
export const MICRO_CASES: readonly MicroCaseKind[] = ['attention', 'norm', 'gelu', 'packed'];

export interface MicroOptions {
  device?: Device;
  /** tinybench time budget per task, ms (default 300). */
  timeMs?: number;
  cases?: MicroCaseKind[];
  /** 'tiny' shrinks every shape (tests); default 'full' (opt-125m / llama-1B-like). */
  scale?: 'full' | 'tiny';
}

export interface MicroResult {
  case: string;
  kind: MicroCaseKind;
  variant: 'fused' | 'decomposed';
  device: Device;
  medianMs: number;
  p99Ms: number;
  samples: number;
  /** Max abs difference between the fused and decomposed outputs (same on both rows). */
  maxAbsDiff: number;
  /** maxAbsDiff over the largest |decomposed output|. */
  relDiff: number;
  /** fused median / decomposed median (same on both rows). */
  ratio: number;
  ok: boolean;
  error?: string;
}

/** One case: the two graphs, their shared feeds, the outputs compared, and how to tell them apart. */
export interface MicroCaseGraphs {
  name: string;
  kind: MicroCaseKind;
  fused: Graph;
  decomposed: Graph;
  feeds: () => Feeds;
  outputs: string[];
  /** The op whose count tells the variants apart, e.g. GroupQueryAttention 1 vs 0, MatMul 1 vs 3. */
  marker: { op: string; fused: number; decomposed: number };
}

const REL_TOL = 1e-3;

/** An in-memory TensorStore of float32 tensors, so the real WeightSource serves synthetic weights. */
class MemoryStore implements TensorStore {
  private readonly tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  add(name: string, shape: number[], data: Float32Array): WeightView {
    this.tensors.set(name, { shape, data });
    return { source: name };
  }
  names(): string[] {
    return [...this.tensors.keys()];
  }
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  private get(name: string) {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`micro: no tensor ${name}`);
    return t;
  }
  info(name: string): TensorInfo {
    const t = this.get(name);
    return { name, dtype: 'F32', shape: t.shape, file: '<memory>', byteOffset: 0, byteLength: t.data.byteLength };
  }
  readRaw(name: string): Uint8Array {
    const d = this.get(name).data;
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  }
  readFloat32(name: string): Float32Array {
    return this.get(name).data;
  }
  close(): void {}
}

function dimsOf(E: number, H: number, I: number): ModelDims {
  return { vocabSize: 1, hiddenSize: E, numLayers: 1, numHeads: H, numKvHeads: H, headDim: E / H, intermediateSize: I, maxPositions: 1 << 20, normEps: 1e-5, rope: { type: 'default', theta: 10000, partialFactor: 1 }, embedDim: E, attentionScale: 1 / Math.sqrt(E / H), attentionScaleByLayer: false, residualFromNorm: false, parallelResidual: false };
}

const plan = (fused: boolean): InjectionPlan => ({ fusions: fused ? ALL_FUSIONS : NO_FUSIONS, quant: { bits: 0, blockSize: 32 }, accuracyLevel: 0, splitMlp: false, dtype: 'float32' });

/** Builds the same subgraph twice (fusions on, off) over one synthetic weight store. */
function pair(name: string, dims: ModelDims, store: MemoryStore, body: (ctx: InjectContext) => void): { fused: Graph; decomposed: Graph } {
  const w = new WeightSource(store, [], '<micro>');
  const mk = (fused: boolean) => {
    const g = new Graph(`micro-${name}-${fused ? 'fused' : 'decomposed'}`);
    body({ g, w, dtype: 'float32', dims, plan: plan(fused), fused: {} });
    return g;
  };
  return { fused: mk(true), decomposed: mk(false) };
}

const randn = (n: number, seed: number, std = 1, mean = 0) => fillNormal(new Float32Array(n), seed, mean, std);
const f32 = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);

/** Names a tensor as a graph output through Identity (the same one node in both variants). */
function expose(g: Graph, x: string, name: string, shape: Array<number | string>): void {
  g.op('Identity', [x], {}, { name: `/micro/${name}/Identity`, outputNames: [name] });
  g.output(name, 'float32', shape);
}

// ---- (1) attention ------------------------------------------------------------------------

/**
 *   fused:  GroupQueryAttention(q, k, v, past_key, past_value, seqlens_k, total_sequence_length)
 *   plain:  heads ── k, v scattered into the cache at their positions ──
 *           Softmax(q k^T / sqrt(D) + causal mask) v ── merge heads      (as inject/decoder.ts)
 * Decode: S = 1 at context T (cache capacity M = T, T - 1 rows filled); prefill: S = M = T.
 */
function attentionCase(E: number, H: number, S: number, T: number): MicroCaseGraphs {
  const dims = dimsOf(E, H, 4 * E);
  const D = E / H;
  const M = T;
  const { fused, decomposed } = pair('attention', dims, new MemoryStore(), (ctx) => {
    const { g } = ctx;
    const [q, k, v] = ['q', 'k', 'v'].map((n) => g.input(n, 'float32', [1, S, E])) as [string, string, string];
    const pastKey = g.input('past_key', 'float32', [1, H, M, D]);
    const pastValue = g.input('past_value', 'float32', [1, H, M, D]);
    g.input('seqlens_k', 'int32', [1]);
    g.input('total_sequence_length', 'int32', []);
    const pos = g.input('position_ids', 'int64', [1, S]);
    const scale = 1 / Math.sqrt(D);
    let out: string;
    if (ctx.plan.fusions.attention) {
      out = g.op('GroupQueryAttention', [q, k, v, pastKey, pastValue, 'seqlens_k', 'total_sequence_length'], {
        num_heads: int(H),
        kv_num_heads: int(H),
        scale: float(scale),
        do_rotary: int(0),
        rotary_interleaved: int(0),
        local_window_size: int(-1),
      }, { name: '/attn/GroupQueryAttention', domain: MS, outputNames: ['/attn/GroupQueryAttention/output_0', 'present_key', 'present_value'] })[0]!;
    } else {
      const s = '/model/attn_mask';
      const keys = g.op1('Squeeze', [g.op1('Shape', [pastKey], '/model/attn_bias/Shape', { start: int(2), end: int(3) }), g.constInt64([0])], '/model/attn_bias/Squeeze');
      const j = g.op1('Range', [g.constInt64([0], true), keys, g.constInt64([1], true)], `${s}/Range`);
      const visible = g.op1('LessOrEqual', [j, g.op1('Unsqueeze', [pos, g.constInt64([1, 3])], `${s}/Unsqueeze`)], `${s}/LessOrEqual`);
      const mask = g.op1('Where', [visible, g.constFloat([0], 'float32', true), g.constFloat([-3.4028234663852886e38], 'float32', true)], `${s}/Where`);
      const rows = cacheRowIndices(ctx, pos);
      const qh = splitHeads(ctx, '/attn/q_heads', q, H);
      const kh = splitHeads(ctx, '/attn/k_heads', k, H);
      const vh = splitHeads(ctx, '/attn/v_heads', v, H);
      const kAll = g.op('ScatterElements', [pastKey, rows, kh], { axis: int(2) }, { name: '/attn/k_cache/ScatterElements', outputNames: ['present_key'] })[0]!;
      const vAll = g.op('ScatterElements', [pastValue, rows, vh], { axis: int(2) }, { name: '/attn/v_cache/ScatterElements', outputNames: ['present_value'] })[0]!;
      const kT = g.op1('Transpose', [repeatKv(ctx, '/attn/k_repeat', kAll)], '/attn/k_transpose', { perm: ints([0, 1, 3, 2]) });
      const scores = g.op1('Mul', [g.op1('MatMul', [qh, kT], '/attn/qk/MatMul'), g.constFloat([scale], 'float32', true)], '/attn/qk/Mul');
      const probs = g.op1('Softmax', [g.op1('Add', [scores, mask], '/attn/qk/Add')], '/attn/Softmax', { axis: int(-1) });
      out = mergeHeads(ctx, '/attn/merge_heads', g.op1('MatMul', [probs, repeatKv(ctx, '/attn/v_repeat', vAll)], '/attn/pv/MatMul'));
    }
    expose(g, out, 'y', [1, S, E]);
    g.output('present_key', 'float32', [1, H, M, D]);
    g.output('present_value', 'float32', [1, H, M, D]);
  });
  const past = T - S; // rows already in the cache
  const feeds = (): Feeds => {
    const cache = (seed: number) => {
      const c = new Float32Array(H * M * D);
      const r = randn(H * M * D, seed);
      for (let h = 0; h < H; h++) c.set(r.subarray(h * M * D, h * M * D + past * D), h * M * D);
      return f32(c, [1, H, M, D]);
    };
    return {
      q: f32(randn(S * E, 1), [1, S, E]),
      k: f32(randn(S * E, 2), [1, S, E]),
      v: f32(randn(S * E, 3), [1, S, E]),
      past_key: cache(4),
      past_value: cache(5),
      seqlens_k: int32([T - 1], [1]),
      total_sequence_length: int32([T], []),
      position_ids: int64(Array.from({ length: S }, (_, i) => past + i), [1, S]),
    };
  };
  const name = S === 1 ? `attention decode S=1 T=${T} H=${H} D=${D}` : `attention prefill S=${S} H=${H} D=${D}`;
  return { name, kind: 'attention', fused, decomposed, feeds, outputs: ['y'], marker: { op: 'GroupQueryAttention', fused: 1, decomposed: 0 } };
}

// ---- (2) residual add + norm ----------------------------------------------------------------

/**
 *   fused:  SkipLayerNormalization | SkipSimplifiedLayerNormalization (delta, residual, gamma, (beta), bias)
 *   plain:  sum = residual + (delta + bias); LayerNormalization(sum) | RMSNorm in standard ops
 */
function normCase(kind: NormKind, E: number, T: number): MicroCaseGraphs {
  const dims = dimsOf(E, 1, 4 * E);
  const store = new MemoryStore();
  const nw = { weight: store.add('gamma', [E], randn(E, 11, 0.1, 1)), ...(kind === 'layernorm' ? { bias: store.add('beta', [E], randn(E, 12, 0.1)) } : {}) };
  const biasData = randn(E, 13, 0.1);
  const { fused, decomposed } = pair(`${kind}`, dims, store, (ctx) => {
    const { g } = ctx;
    const residual = g.input('residual', 'float32', [1, T, E]);
    const delta = g.input('delta', 'float32', [1, T, E]);
    const bias = g.initializer({ name: 'delta_bias', type: 'float32', dims: [E], data: () => biasData });
    const { normed, sum } = addNorm(ctx, '/norm', residual, delta, bias, kind, nw);
    expose(g, normed, 'normed', [1, T, E]);
    expose(g, sum, 'sum', [1, T, E]);
  });
  const feeds = (): Feeds => ({ residual: f32(randn(T * E, 14), [1, T, E]), delta: f32(randn(T * E, 15), [1, T, E]) });
  const op = kind === 'layernorm' ? 'SkipLayerNormalization' : 'SkipSimplifiedLayerNormalization';
  return { name: `${kind === 'layernorm' ? 'add+LayerNorm' : 'add+RMSNorm'} vs ${op} E=${E} T=${T}`, kind: 'norm', fused, decomposed, feeds, outputs: ['normed', 'sum'], marker: { op, fused: 1, decomposed: 0 } };
}

// ---- (3) bias + gelu ------------------------------------------------------------------------

/**   fused: FastGelu(x, bias)      plain: Gelu(x + bias, approximate=tanh) */
function geluCase(I: number, T: number): MicroCaseGraphs {
  const dims = dimsOf(I, 1, I);
  const biasData = randn(I, 21, 0.1);
  const { fused, decomposed } = pair('gelu', dims, new MemoryStore(), (ctx) => {
    const { g } = ctx;
    const x = g.input('x', 'float32', [1, T, I]);
    const bias = g.initializer({ name: 'bias', type: 'float32', dims: [I], data: () => biasData });
    expose(g, biasGelu(ctx, '/act', x, bias, 'FastGelu'), 'y', [1, T, I]);
  });
  const feeds = (): Feeds => ({ x: f32(randn(T * I, 22), [1, T, I]) });
  return { name: `bias+Gelu(tanh) vs FastGelu I=${I} T=${T}`, kind: 'gelu', fused, decomposed, feeds, outputs: ['y'], marker: { op: 'FastGelu', fused: 1, decomposed: 0 } };
}

// ---- (4) packed projections -----------------------------------------------------------------

/**
 *   fused:  x ── MatMul([W_0 | W_1 | ...]) (+ bias) ── Split      (packedQkv / packedGateUp)
 *   plain:  x ── MatMul(W_i) (+ bias_i), one per part
 */
function packedCase(label: string, E: number, outDims: number[], T: number, withBias: boolean): MicroCaseGraphs {
  const dims = dimsOf(E, 1, outDims[0]!);
  const store = new MemoryStore();
  const std = 1 / Math.sqrt(E);
  const src: LinearSource = {
    weights: outDims.map((n, i) => store.add(`w${i}`, [E, n], randn(E * n, 31 + i, std))),
    biases: outDims.map((n, i) => (withBias ? store.add(`b${i}`, [n], randn(n, 41 + i, 0.1)) : undefined)),
    outDims,
  };
  const names = outDims.map((_, i) => `y${i}`);
  const { fused, decomposed } = pair(label, dims, store, (ctx) => {
    const { g } = ctx;
    const x = g.input('x', 'float32', [1, T, E]);
    const packed = label === 'qkv' ? ctx.plan.fusions.packedQkv : ctx.plan.fusions.packedGateUp;
    const ys = packed
      ? splitLast(g, `/${label}/split`, projection(ctx, `/${label}/packed_proj`, x, src, E).y, outDims)
      : outDims.map((n, i) => projection(ctx, `/${label}/proj_${i}`, x, { weights: [src.weights[i]!], biases: [src.biases[i]], outDims: [n] }, E).y);
    ys.forEach((y, i) => expose(g, y, names[i]!, [1, T, outDims[i]!]));
  });
  const feeds = (): Feeds => ({ x: f32(randn(T * E, 51), [1, T, E]) });
  const title = label === 'qkv' ? `Q/K/V 3 MatMuls vs packed E=${E} T=${T}` : `gate/up 2 MatMuls vs packed E=${E} I=${outDims[0]} T=${T}`;
  return { name: title, kind: 'packed', fused, decomposed, feeds, outputs: names, marker: { op: 'MatMul', fused: 1, decomposed: outDims.length } };
}

/** Every case's graph pair, for the requested kinds and scale (no ORT involved). */
export function buildMicroCases(o: Pick<MicroOptions, 'cases' | 'scale'> = {}): MicroCaseGraphs[] {
  const want = new Set(o.cases ?? MICRO_CASES);
  const tiny = o.scale === 'tiny';
  const out: MicroCaseGraphs[] = [];
  if (want.has('attention')) {
    const [E, H] = tiny ? [32, 2] : [768, 12];
    for (const T of tiny ? [8, 16] : [128, 512, 2048]) out.push(attentionCase(E, H, 1, T));
    const P = tiny ? 4 : 128;
    out.push(attentionCase(E, H, P, P));
  }
  if (want.has('norm')) {
    const E = tiny ? 32 : 768;
    for (const kind of ['layernorm', 'rmsnorm'] as const) for (const T of tiny ? [1, 4] : [1, 128]) out.push(normCase(kind, E, T));
  }
  if (want.has('gelu')) for (const T of tiny ? [1, 4] : [1, 128]) out.push(geluCase(tiny ? 64 : 3072, T));
  if (want.has('packed')) {
    const E = tiny ? 32 : 768;
    for (const T of tiny ? [1] : [1, 128]) out.push(packedCase('qkv', E, [E, E, E], T, true));
    const [Eg, I] = tiny ? [32, 48] : [2048, 5632];
    out.push(packedCase('gate_up', Eg, [I, I], 1, false));
  }
  return out;
}

function diff(a: Float32Array, b: Float32Array): { maxAbsDiff: number; refMax: number } {
  if (a.length !== b.length) return { maxAbsDiff: Infinity, refMax: 0 };
  let maxAbsDiff = 0;
  let refMax = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= maxAbsDiff)) maxAbsDiff = Number.isNaN(d) ? Infinity : d;
    refMax = Math.max(refMax, Math.abs(b[i]!));
  }
  return { maxAbsDiff, refMax };
}

const OPSETS = [{ domain: '', version: 20 }, { domain: MS, version: 1 }];

async function runCase(c: MicroCaseGraphs, dir: string, device: Device, timeMs: number): Promise<MicroResult[]> {
  const row = (variant: 'fused' | 'decomposed', extra: Partial<MicroResult>): MicroResult => ({
    case: c.name, kind: c.kind, variant, device, medianMs: NaN, p99Ms: NaN, samples: 0, maxAbsDiff: NaN, relDiff: NaN, ratio: NaN, ok: false, ...extra,
  });
  const sessions: Session[] = [];
  try {
    const stem = c.name.replace(/[^A-Za-z0-9]+/g, '_');
    for (const [variant, g] of [['fused', c.fused], ['decomposed', c.decomposed]] as const) {
      const path = join(dir, `${stem}-${variant}.onnx`);
      writeModel(g, { path, opsets: OPSETS });
      sessions.push(await Session.create(path, device));
    }
    const [fs, ds] = sessions as [Session, Session];
    const feeds = c.feeds();
    const pick = (s: Session): Feeds => Object.fromEntries(s.inputNames.map((n) => [n, feeds[n]!]));
    const fFeeds = pick(fs);
    const dFeeds = pick(ds);
    // The first run is profiled (placement); it also serves the correctness check.
    const [fo, dout] = [await fs.run(fFeeds), await ds.run(dFeeds)];
    if (device !== 'cpu') for (const s of sessions) s.verifyPlacement();
    let maxAbsDiff = 0;
    let refMax = 0;
    for (const name of c.outputs) {
      const d = diff(await readFloat32(fo[name]!), await readFloat32(dout[name]!));
      maxAbsDiff = Math.max(maxAbsDiff, d.maxAbsDiff);
      refMax = Math.max(refMax, d.refMax);
    }
    const relDiff = maxAbsDiff / Math.max(refMax, 1e-12);
    const ok = relDiff <= REL_TOL;

    const bench = new Bench({ time: timeMs, iterations: 5, warmup: true, warmupTime: Math.min(100, timeMs), warmupIterations: 3, throws: true });
    bench.add('fused', async () => void (await fs.run(fFeeds)));
    bench.add('decomposed', async () => void (await ds.run(dFeeds)));
    await bench.run();
    const stats = (name: string) => {
      const r = bench.getTask(name)?.result;
      if (!r || r.state !== 'completed') throw new Error(`tinybench: task ${name} ${r?.state ?? 'missing'}${r && 'error' in r ? `: ${String(r.error)}` : ''}`);
      return { medianMs: r.latency.p50, p99Ms: r.latency.p99, samples: r.latency.samplesCount };
    };
    const f = stats('fused');
    const d = stats('decomposed');
    const common = { maxAbsDiff, relDiff, ratio: f.medianMs / d.medianMs, ok, ...(ok ? {} : { error: `outputs differ: max abs diff ${maxAbsDiff.toExponential(2)} (relative ${relDiff.toExponential(2)} > ${REL_TOL})` }) };
    return [row('fused', { ...f, ...common }), row('decomposed', { ...d, ...common })];
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    return [row('fused', { error }), row('decomposed', { error })];
  } finally {
    for (const s of sessions) await s.release();
  }
}

/** Builds, checks and times every requested case on one device. Never throws per case: see `ok`/`error`. */
export async function runMicro(o: MicroOptions = {}): Promise<MicroResult[]> {
  const device = o.device ?? 'cpu';
  const timeMs = o.timeMs ?? 300;
  const dir = mkdtempSync(join(tmpdir(), 'fusegen-micro-'));
  const results: MicroResult[] = [];
  try {
    for (const c of buildMicroCases(o)) {
      // Each case's models can be large (gate/up: ~90 MB each): dropped once timed.
      const caseDir = mkdtempSync(join(dir, 'case-'));
      try {
        results.push(...(await runCase(c, caseDir, device, timeMs)));
      } finally {
        rmSync(caseDir, { recursive: true, force: true });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

export function formatMicroTable(results: MicroResult[]): string {
  const head = ['case', 'variant', 'device', 'median ms', 'p99 ms', 'n', 'max|diff|', 'fused/decomp', 'ok'];
  const rows = results.map((r) => [r.case, r.variant, r.device, r.medianMs.toFixed(4), r.p99Ms.toFixed(4), String(r.samples), r.maxAbsDiff.toExponential(1), r.ratio.toFixed(2), r.ok ? 'ok' : `FAIL${r.error ? `: ${r.error}` : ''}`]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 3 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const device = (arg('device') ?? 'cpu') as Device;
  if (!['cpu', 'webgpu', 'cuda'].includes(device)) throw new Error(`--device: expected cpu|webgpu, got ${device}`);
  const timeMs = Number(arg('time') ?? '300');
  if (!(timeMs > 0)) throw new Error('--time: expected a positive number of milliseconds');
  const cases = (arg('cases') ?? MICRO_CASES.join(',')).split(',').map((s) => s.trim()) as MicroCaseKind[];
  for (const c of cases) if (!MICRO_CASES.includes(c)) throw new Error(`--cases: unknown case ${c} (expected ${MICRO_CASES.join(',')})`);
  const createdAt = new Date().toISOString();
  const results = await runMicro({ device, timeMs, cases });
  console.log(formatMicroTable(results));
  const path = join('reports', `${reportTimestamp(createdAt)}-micro.json`);
  writeTextAtomic(path, `${JSON.stringify({ createdAt, device, timeMs, cases, results }, null, 2)}\n`);
  console.log(`\nwrote ${path}`);
  process.exit(results.every((r) => r.ok) ? 0 : 1);
}
