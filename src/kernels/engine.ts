/**
 * The WGSL engine: a decoder step built from our own kernels, weights and KV cache in GPU
 * buffers. One command buffer per step; the host writes the step's token ids and positions
 * and reads back only the chosen ids (greedy argmax on the GPU), or logits when asked.
 *
 *   ids ── embed (× scale) (+ positions) ── (embed norm) ── res (the residual stream)
 *   each layer: norm+qkv ── split (+rotary, kv-write) ── attention (soft cap) ── o (res +=) ── norm+mlp ── down (res +=)
 *   (decode: the attention kernel does the split's work itself; with norms after the blocks,
 *   Gemma 2's sandwich, o and down write x and a norm adds norm(x) to res)
 *   gather the rows that need logits (not at decode, which takes every row) ── norm+lm head (soft cap) ── argmax ── ids
 * (norm+linear: the norm is applied as the GEMV loads its input; see linear.ts)
 *
 * With several devices (--world_size) the layers are split into contiguous ranges, one
 * Stage per device, as llama.cpp's layer split: the first holds the embedding, the last
 * the LM head, and the residual stream crosses to the next device through the host between
 * them (WebGPU has no device-to-device copy). Its point is capacity, not speed.
 */
import { join } from 'node:path';
import type { Checkpoint } from '../arch/checkpoint.js';
import { alibiSlopes, ropeInvFreq } from '../arch/positions.js';
import { savedFile, type SavedFile } from '../checkpoint/saved.js';
import { layerAttentionScale, type ArchTraits } from '../arch/spec.js';
import { CapacityError, UnsupportedError } from '../errors.js';
import type { Quantization } from '../inject/plan.js';
import type { KvPaging, StepInput, Stepper } from '../step.js';
import { AttentionKernels } from './attention.js';
import { Kernel, params, storageBuffer, uniform, upload, type AdapterInfo, type GpuContext } from './device.js';
import { ElementwiseKernels } from './elementwise.js';
import { LinearKernels, linearTuningFromEnv, type LinearActivation, type LinearWeight } from './linear.js';
import { loadGpuWeights, saveGpuWeights, type SavedWeightsLayout } from './saved-weights.js';
import { layerSlices, uploadWeights, type GpuLinear, type GpuMatrix, type GpuNorm, type GpuWeights, type MatrixType } from './weights.js';

/** A saved WGSL model's per-rank files and structures (the manifest's detail). */
export interface SavedWgsl {
  ranks: Array<{ file: string; layout: SavedWeightsLayout }>;
}

export interface EngineOptions {
  weights: MatrixType;
  quant: Quantization;
}

interface Run {
  B: number;
  S: number;
  capacity: number;
  /** Rows of logits the buffers hold. */
  R: number;
  buf: Record<'ids' | 'positions' | 'valid' | 'rows' | 'x' | 'res' | 'qkv' | 'q' | 'attn' | 'mlp' | 'picked' | 'logits' | 'next' | 'suppress', GPUBuffer>;
  kCache: GPUBuffer[];
  vCache: GPUBuffer[];
  /** Rows the KV caches hold (at least B; contiguous caches). */
  cacheRows: number;
  /** A paged KV cache: the caches are the block pool, and `positions` carries each row's table of `perRow` blocks after the T positions. */
  pages: (KvPaging & { perRow: number }) | undefined;
  /** Readback buffers, one per step in flight (STAGING_RING). */
  staging: GPUBuffer[];
  /** Steps submitted so far (picks the staging buffer). */
  submitted: number;
  /** The last step left one chosen id per row in `ids`: the next step may be fed from the device. */
  feedback: boolean;
  /** Recorded dispatch lists by step shape (valid while these buffers live). */
  recorded: Map<string, Dispatch[]>;
}

/**
 * Greedy steps submitted ahead of the one being read (`FUSEGEN_STEPS_AHEAD`, 1..MAX_STEPS_AHEAD).
 * Two: on the H200, opt-125m's GPU step (0.60 ms) outran one step ahead (0.71-0.82 ms a token:
 * the host's encoding plus the readback's wake-up); two reach it (bench/results).
 */
const MAX_STEPS_AHEAD = 3;
const STEPS_AHEAD = Math.min(MAX_STEPS_AHEAD, Math.max(1, Number(process.env['FUSEGEN_STEPS_AHEAD'] ?? 2) || 2));

/** Readback buffers: one per step in flight, and the one being read. */
const STAGING_RING = MAX_STEPS_AHEAD + 1;

/** Whole-step replays a kernel profile times (their median is the step's GPU time). */
const STEP_REPLAYS = 5;

type Dispatch = [GPUComputePipeline, GPUBindGroup, number, number, number];

/** Encodes recorded dispatches into `pass` (setPipeline only where it changes). */
function replay(pass: GPUComputePassEncoder, list: Dispatch[]): void {
  let current: GPUComputePipeline | undefined;
  for (const [pipeline, group, x, y, z] of list) {
    if (pipeline !== current) pass.setPipeline((current = pipeline));
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
  }
}

/** One kernel's share of a step's GPU time (timestamp queries). */
export interface KernelTime {
  kernel: string;
  dispatches: number;
  /** Its dispatches each in a pass of their own, summed: includes a drain and a launch each. */
  totalUs: number;
  /** The step's time less the step's without this kernel's dispatches: its cost where it runs. */
  marginalUs: number;
}

function weightKind(m: GpuMatrix): LinearWeight {
  return m.quant ? (m.quant.bits === 8 ? 'q8' : 'q4') : m.type;
}

/** Where a step's wall time goes: host encoding (of it, in queue.submit) vs waiting for the GPU and the readback. */
export interface StepProfile {
  steps: number;
  encodeMs: number;
  submitMs: number;
  waitMs: number;
  /** Split across devices: each device's share, summed over the steps. */
  ranks?: RankProfile[];
}

/** One device's share of the steps of a layer split. */
export interface RankProfile {
  /** Its layers [from, to). */
  layers: [number, number];
  /** Encoding, the GPU's work and the readback of its output (the hidden state, or the last one's ids or logits). */
  ms: number;
  /** The hidden state handed to the next device: bytes, and host time to copy it there. */
  transferBytes: number;
  transferMs: number;
}

export type StepKind = 'decode' | 'prefill';

/** GPU time of one whole step (its dispatches in one pass, as run) and per kernel (each in its own pass). */
export interface StepGpuProfile {
  stepUs: number;
  kernels: KernelTime[];
}

/** The gated MLPs the linear kernels pair gate and up rows for, by the gate's activation. */
const GATED: Partial<Record<ArchTraits['activation'], LinearActivation>> = { silu: 'swiglu', gelu_tanh: 'geglu' };

/** The linear kernels' epilogue for the MLP's up projection: an activation, or SwiGLU / GeGLU over gate and up rows. */
function linearActivation(traits: ArchTraits, configPath: string): LinearActivation {
  const act = traits.gatedMlp ? GATED[traits.activation] : traits.activation !== 'silu' ? (traits.activation as LinearActivation) : undefined;
  if (act) return act;
  throw new UnsupportedError('--kernels', `wgsl: ${traits.gatedMlp ? 'a gated' : 'an ungated'} ${traits.activation} MLP (${configPath}) is not in the WGSL engine; use --kernels ort`);
}

/** Everything a step's shape decides: rows, logits rows, keys attended, what comes back. */
interface StepShape {
  B: number;
  S: number;
  T: number;
  R: number;
  allRows: boolean;
  maxKeys: number;
  needLogits: boolean;
  suppress: number;
}

/**
 * One device's part of the model (all of it on one device): its weights, its layers' KV
 * cache, its kernels and its recorded dispatch lists.
 */
class Stage {
  run: Run | undefined;
  /** The KV cache's block pool, from begin (absent: a cache of `capacity` positions a row). */
  paging: KvPaging | undefined;
  private readonly gather: Kernel;
  private readonly slopes: GPUBuffer | undefined;
  /** Rotary inverse frequencies from the spec's rope settings (positions.ts), when rotary. */
  private readonly invFreq: GPUBuffer | undefined;
  private readonly linearK: LinearKernels;
  private readonly attentionK: AttentionKernels;
  private readonly elementwise: ElementwiseKernels;
  /** The dispatch lists of the last decode step (one new token a row) and the last prompt step. */
  readonly lastSteps = new Map<StepKind, Dispatch[]>();

  constructor(
    readonly ctx: GpuContext,
    readonly ckpt: Checkpoint,
    readonly weights: GpuWeights,
  ) {
    this.gather = new Kernel(ctx, 'gather-rows', 'gather-rows.wgsl');
    // Its own row-wise kernels' cache: release() clears it, and another engine on this device
    // (compare's triage) must not clear the entries this one's recorded steps bind.
    this.elementwise = new ElementwiseKernels(ctx);
    this.linearK = new LinearKernels(ctx, linearTuningFromEnv(), this.elementwise);
    this.attentionK = new AttentionKernels(ctx);
    this.slopes = ckpt.spec.traits.position === 'alibi' ? upload(ctx, Float32Array.from(alibiSlopes(ckpt.dims.numHeads)), 'alibi slopes') : undefined;
    this.invFreq = ckpt.dims.rope ? upload(ctx, ropeInvFreq(ckpt.dims.rope, ckpt.dims.headDim), 'rope inv_freq') : undefined;
  }

  get first(): boolean {
    return this.weights.slice.first;
  }

  get last(): boolean {
    return this.weights.slice.last;
  }

  /** Bytes a step brings back: the last part's ids or logits, another's hidden state for the next device. */
  outputBytes(T: number, R: number, needLogits: boolean): number {
    if (!this.last) return T * this.ckpt.dims.hiddenSize * 4;
    return needLogits ? R * this.ckpt.dims.vocabSize * 4 : R * 4;
  }

  /** Buffers for B rows of up to S new tokens, `capacity` cached tokens and R logits rows. */
  ensure(B: number, S: number, capacity: number, R: number): Run {
    const r = this.run;
    const pg = this.paging;
    if (pg) capacity = Math.ceil(capacity / pg.blockSize) * pg.blockSize;
    if (r && r.B === B && r.S >= S && r.capacity >= capacity && r.R >= R && samePaging(r.pages, pg)) return r;
    // The KV caches outlive a new step shape (a prompt step between decode steps, a server's batch
    // gaining or losing rows): row b's cache sits at the same offset whatever B a step has, so they
    // are kept while they hold B rows of `capacity` positions. A block pool serves any rows and capacity.
    const keep = r && samePaging(r.pages, pg) && (pg ? true : r.cacheRows >= B && r.capacity >= capacity);
    const kept = keep ? { kCache: r.kCache, vCache: r.vCache, rows: r.cacheRows, capacity: pg ? capacity : r.capacity } : undefined;
    this.release(kept !== undefined);
    capacity = kept?.capacity ?? capacity;
    const { dims } = this.ckpt;
    const T = B * S;
    const E = dims.hiddenSize;
    const D = dims.headDim;
    const { from, to } = this.weights.slice;
    const f = (n: number, label: string) => storageBuffer(this.ctx, n * 4, label);
    const pages = pg ? { ...pg, perRow: capacity / pg.blockSize } : undefined;
    const cache = (i: number, kind: string) => f(pg ? pg.blocks * dims.numKvHeads * pg.blockSize * D : B * dims.numKvHeads * capacity * D, `${kind}-cache-${i}`);
    const layers = Array.from({ length: to - from }, (_, j) => from + j);
    this.run = {
      B,
      S,
      capacity,
      R,
      buf: {
        ids: f(T, 'ids'),
        positions: f(T + (pages ? B * pages.perRow : 0), 'positions'),
        valid: f(T, 'valid'),
        rows: f(R, 'rows'),
        x: f(T * E, 'x'),
        res: f(T * E, 'residual'),
        qkv: f(T * (dims.numHeads + 2 * dims.numKvHeads) * D, 'qkv'),
        q: f(T * dims.numHeads * D, 'q'),
        attn: f(T * dims.numHeads * D, 'attn'),
        mlp: f(T * dims.intermediateSize, 'mlp'), // SwiGLU's / GeGLU's epilogue writes I columns from 2I rows
        picked: f(this.last ? R * E : 1, 'picked'),
        logits: f(this.last ? R * dims.vocabSize : 1, 'logits'),
        next: f(R, 'next'),
        suppress: f(16, 'suppress'),
      },
      kCache: kept?.kCache ?? layers.map((i) => cache(i, 'k')),
      vCache: kept?.vCache ?? layers.map((i) => cache(i, 'v')),
      cacheRows: kept?.rows ?? B,
      pages,
      staging: Array.from({ length: STAGING_RING }, () => this.ctx.device.createBuffer({ size: Math.max(16, Math.max(this.outputBytes(T, R, true), this.outputBytes(T, R, false))), usage: 0x1 | 0x8 })),
      submitted: 0,
      feedback: false,
      recorded: new Map(),
    };
    return this.run;
  }

  /** Destroys the step's buffers, and the KV caches unless a new run keeps them. */
  release(keepCaches = false): void {
    if (!this.run) return;
    for (const b of [...Object.values(this.run.buf), ...(keepCaches ? [] : [...this.run.kCache, ...this.run.vCache]), ...this.run.staging]) b.destroy();
    this.run = undefined;
    this.lastSteps.clear();
    this.linearK.clearCache();
    this.attentionK.clear();
    this.elementwise.clearCache();
  }

  /** The step's dispatches, recorded once per shape (positions and ids live in buffers the caller rewrites). */
  dispatches(run: Run, s: StepShape): Dispatch[] {
    const key = `${s.B}/${s.S}/${s.R}/${s.allRows}/${s.needLogits}/${s.suppress > 0}/${Math.ceil(s.maxKeys / this.attentionK.split)}`;
    let list = run.recorded.get(key);
    if (!list) {
      list = record((pass) => this.encodeStep(pass, run, s));
      run.recorded.set(key, list);
    }
    this.lastSteps.set(s.S === 1 ? 'decode' : 'prefill', list);
    return list;
  }

  /** Encodes this part's kernels of one step for T = B * S rows and R logits rows. */
  private encodeStep(pass: GPUComputePassEncoder, run: Run, s: StepShape): void {
    const { dims, spec } = this.ckpt;
    const { S, T, R, maxKeys } = s;
    const w = this.weights;
    const E = dims.hiddenSize;
    const D = dims.headDim;
    const norm = spec.traits.norm === 'layernorm' ? 'layer' : 'rms';
    const eps = dims.normEps;
    const { buf } = run;
    // The norms before the projections ride in the linear kernels (normalized on load), and
    // the residual adds after them in their epilogues (Y += ...): res is the residual stream.
    const linear = (x: GPUBuffer, l: GpuLinear, y: GPUBuffer, rowsT: number, o: { act?: LinearActivation; norm?: GpuNorm; accumulate?: boolean; softcap?: number } = {}) =>
      this.linearK.encode(
        pass,
        { x, w: l.w.buffer, y, ...(l.bias ? { bias: l.bias } : {}), ...(l.w.quant ? { scales: l.w.quant.scales } : {}), ...(o.norm ? { norm: { kind: norm, gamma: o.norm.gamma, ...(o.norm.beta ? { beta: o.norm.beta } : {}), eps } } : {}) },
        {
          T: rowsT, K: l.w.k, N: l.w.n, weight: weightKind(l.w), act: o.act ?? 'none',
          ...(o.accumulate ? { accumulate: true } : {}), ...(o.softcap ? { softcap: o.softcap } : {}), ...(l.w.quant ? { blockSize: l.w.quant.blockSize } : {}),
        },
      );
    // A block's output projection into the residual stream: added by its epilogue (res +=), or
    // with a norm after the block (Gemma 2) written to x, and norm(x) added to res by the norm kernel.
    const project = (input: GPUBuffer, l: GpuLinear, outNorm: GpuNorm | undefined) => {
      if (!outNorm) return linear(input, l, buf.res, T, { accumulate: true });
      linear(input, l, buf.x, T);
      this.elementwise.norm(pass, { kind: norm, x: buf.x, gamma: outNorm.gamma, ...(outNorm.beta ? { beta: outNorm.beta } : {}), out: buf.res, accumulate: true, T, E, eps });
    };

    if (w.embed) {
      this.elementwise.embed(pass, {
        ids: buf.ids,
        table: w.embed.buffer,
        dtype: w.embed.type,
        out: w.embedNorm ? buf.x : buf.res,
        T,
        E,
        vocab: dims.vocabSize,
        ...(dims.embedScale ? { scale: dims.embedScale } : {}),
        ...(w.positions ? { positions: buf.positions, posTable: w.positions.buffer, posOffset: spec.traits.positionOffset, posRows: w.positions.n } : {}),
      });
      const en = w.embedNorm;
      if (en) this.elementwise.norm(pass, { kind: norm, x: buf.x, gamma: en.gamma, ...(en.beta ? { beta: en.beta } : {}), out: buf.res, T, E, eps });
    }
    const act = linearActivation(spec.traits, this.ckpt.configPath);
    w.layers.forEach((layer, j) => {
      const i = w.slice.from + j;
      linear(buf.res, layer.qkv, buf.qkv, T, { norm: layer.inputNorm });
      const heads = { T, S, H: dims.numHeads, Hkv: dims.numKvHeads, D, M: run.capacity, ...(run.pages ? { paged: { blockSize: run.pages.blockSize, blocksPerRow: run.pages.perRow } } : {}) };
      const rope = this.invFreq ? { theta: dims.rope!.theta, invFreq: this.invFreq } : {};
      const cache = { kCache: run.kCache[j]!, vCache: run.vCache[j]!, positions: buf.positions, valid: buf.valid };
      // Decode reads the packed projection in place (split, rotary and cache write in the attention kernel).
      const packed = this.attentionK.readsPackedQkv(S, D, rope.theta !== undefined);
      if (!packed) this.attentionK.encodeQkvScatter(pass, { qkv: buf.qkv, q: buf.q, ...cache, ...(this.invFreq ? { invFreq: this.invFreq } : {}) }, { ...heads, ...(rope.theta !== undefined ? { theta: rope.theta } : {}) });
      this.attentionK.encodeAttention(
        pass,
        { q: packed ? buf.qkv : buf.q, ...(packed ? { packedQkv: rope } : {}), ...cache, out: buf.attn, ...(this.slopes ? { slopes: this.slopes } : {}) },
        { ...heads, scale: layerAttentionScale(dims, i), alibi: !!this.slopes, maxKeys, ...(dims.attnSoftcap ? { softcap: dims.attnSoftcap } : {}) },
      );
      // Parallel residual: the MLP reads the stream before attention's add lands in it.
      if (dims.parallelResidual) linear(buf.res, layer.up, buf.mlp, T, { act, norm: layer.postAttentionNorm });
      project(buf.attn, layer.o, layer.attnOutNorm);
      if (!dims.parallelResidual) linear(buf.res, layer.up, buf.mlp, T, { act, norm: layer.postAttentionNorm });
      project(buf.mlp, layer.down, layer.mlpOutNorm);
    });
    if (!w.lmHead) return;
    if (!s.allRows) this.gather.encode(pass, this.gatherGroup(run, R, E), Math.ceil(E / 64), R);
    // Gemma 2's final soft cap rides in the head's epilogue: argmax and the logits read back see it.
    linear(s.allRows ? buf.res : buf.picked, { w: w.lmHead, ...(w.lmHeadBias ? { bias: w.lmHeadBias } : {}) }, buf.logits, R, { norm: w.finalNorm, ...(dims.logitSoftcap ? { softcap: dims.logitSoftcap } : {}) });
    if (!s.needLogits) {
      this.elementwise.argmax(pass, { logits: buf.logits, ids: buf.next, T: R, V: dims.vocabSize, suppress: { ids: buf.suppress, count: Math.min(4, s.suppress), enabled: s.suppress > 0 } });
    }
  }

  /** Bind groups of the row gather, per logits-row count, for the current run's buffers. */
  private gatherGroups = new WeakMap<Run, Map<number, GPUBindGroup>>();

  private gatherGroup(run: Run, R: number, E: number): GPUBindGroup {
    let byR = this.gatherGroups.get(run);
    if (!byR) this.gatherGroups.set(run, (byR = new Map()));
    let g = byR.get(R);
    if (!g) {
      g = this.gather.bind(uniform(this.ctx, params({ u32: R }, { u32: E })), [run.buf.res, run.buf.rows, run.buf.picked]);
      byR.set(R, g);
    }
    return g;
  }

  /**
   * GPU time of this part's last step of a kind, replayed with timestamp pairs around passes:
   * the whole step in one pass as it runs, the step without each kernel's dispatches (their
   * marginal cost), and each dispatch in its own pass (which adds a drain and a launch, so
   * these sums overstate the step). Whole-step figures are medians of STEP_REPLAYS passes.
   * Replaying is harmless: every pass starts from the embedding (or the hidden state handed
   * over), and the isolated dispatches, last and in order, leave a decode step's own results
   * (a prompt step's are computed from the ids and positions the buffers hold by then: the
   * next generate rewrites its cache rows). Undefined without the timestamp-query feature.
   */
  async profileKernels(kind: StepKind): Promise<StepGpuProfile | undefined> {
    const list = this.lastSteps.get(kind);
    if (!list || !this.ctx.timestamps) return undefined;
    const device = this.ctx.device;
    const label = ([pipeline, group]: Dispatch) => group.label || pipeline.label || 'unlabelled';
    const kernels = [...new Set(list.map(label))];
    const replays = (dispatches: Dispatch[]) => Array.from({ length: STEP_REPLAYS }, () => dispatches);
    const passes = [
      ...replays(list),
      ...kernels.flatMap((k) => replays(list.filter((d) => label(d) !== k))),
      ...list.map((d) => [d]),
    ];
    const n = passes.length;
    const qs = device.createQuerySet({ type: 'timestamp', count: 2 * n });
    const resolved = device.createBuffer({ size: 16 * n, usage: 0x200 | 0x4 }); // QUERY_RESOLVE | COPY_SRC
    const read = device.createBuffer({ size: 16 * n, usage: 0x1 | 0x8 }); // MAP_READ | COPY_DST
    try {
      const enc = device.createCommandEncoder();
      passes.forEach((dispatches, i) => {
        const pass = enc.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
        replay(pass, dispatches);
        pass.end();
      });
      enc.resolveQuerySet(qs, 0, 2 * n, resolved, 0);
      enc.copyBufferToBuffer(resolved, 0, read, 0, 16 * n);
      device.queue.submit([enc.finish()]);
      await read.mapAsync(1);
      const ts = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap();
      const us = (i: number) => Number(ts[2 * i + 1]! - ts[2 * i]!) / 1e3;
      const medianOf = (first: number) => Array.from({ length: STEP_REPLAYS }, (_, i) => us(first + i)).sort((x, y) => x - y)[Math.floor(STEP_REPLAYS / 2)]!;
      const stepUs = medianOf(0);
      const byKernel = new Map<string, KernelTime>(kernels.map((kernel, j) => [kernel, { kernel, dispatches: 0, totalUs: 0, marginalUs: stepUs - medianOf(STEP_REPLAYS * (1 + j)) }]));
      const isolated = STEP_REPLAYS * (1 + kernels.length);
      list.forEach((d, i) => {
        const k = byKernel.get(label(d))!;
        k.dispatches++;
        k.totalUs += us(isolated + i);
      });
      return { stepUs, kernels: [...byKernel.values()].sort((x, y) => y.marginalUs - x.marginalUs) };
    } finally {
      qs.destroy();
      resolved.destroy();
      read.destroy();
    }
  }
}

function samePaging(a: KvPaging | undefined, b: KvPaging | undefined): boolean {
  return a === b || (!!a && !!b && a.blockSize === b.blockSize && a.blocks === b.blocks);
}

/** The step's block tables, [B, perRow] (entries past a row's blocks are 0: read as stale keys past its last, never used). */
function blockTables(input: StepInput, pages: KvPaging & { perRow: number }): Uint32Array {
  const { blockSize, blocks, perRow } = pages;
  const tables = input.blockTables;
  if (!tables) throw new UnsupportedError('paging', 'a step on a paged KV cache names no block tables');
  const out = new Uint32Array(input.tokens.length * perRow);
  input.tokens.forEach((tokens, b) => {
    const table = tables[b] ?? [];
    const need = Math.ceil((input.start[b]! + tokens.length) / blockSize);
    if (table.length < need) throw new CapacityError('paging', `row ${b} holds ${table.length} blocks, short of the ${need} its positions up to ${input.start[b]! + tokens.length} take`);
    if (table.length > perRow) throw new CapacityError('paging', `row ${b} names ${table.length} blocks, over the ${perRow} a row holds`);
    table.forEach((block, i) => {
      if (!(Number.isInteger(block) && block >= 0 && block < blocks)) throw new CapacityError('paging', `row ${b}'s block ${block} is not in the pool of ${blocks}`);
      out[b * perRow + i] = block;
    });
  });
  return out;
}

/**
 * Runs `encode` against a pass that only records (pipeline, bind group, workgroups): the
 * kernel classes' cache lookups then happen once per step shape, not on every step.
 */
function record(encode: (pass: GPUComputePassEncoder) => void): Dispatch[] {
  const list: Dispatch[] = [];
  let pipeline: GPUComputePipeline | undefined;
  let group: GPUBindGroup | undefined;
  const recorder = {
    setPipeline: (p: GPUComputePipeline) => (pipeline = p),
    setBindGroup: (_i: number, g: GPUBindGroup) => (group = g),
    dispatchWorkgroups: (x: number, y = 1, z = 1) => list.push([pipeline!, group!, x, y, z]),
  };
  encode(recorder as unknown as GPUComputePassEncoder);
  return list;
}

export class WgslEngine implements Stepper {
  readonly profile: StepProfile = { steps: 0, encodeMs: 0, submitMs: 0, waitMs: 0 };

  private constructor(
    readonly ckpt: Checkpoint,
    private readonly stages: Stage[],
  ) {
    if (stages.length > 1) this.profile.ranks = stages.map((st) => ({ layers: [st.weights.slice.from, st.weights.slice.to], ms: 0, transferBytes: 0, transferMs: 0 }));
  }

  /**
   * Checks what the engine runs, then streams the weights into GPU buffers (uploadWeights):
   * all of them on one device, or with several devices each its contiguous range of layers.
   */
  static async create(ctxs: GpuContext | GpuContext[], ckpt: Checkpoint, o: EngineOptions): Promise<WgslEngine> {
    // The engine fuses each norm into the next projection's input and each residual add into
    // a projection's epilogue: a residual stream of norm outputs, or projections around the
    // embedding, would need steps it does not have.
    const g = ckpt.spec.globals(ckpt.dims, ckpt.config);
    if (ckpt.dims.residualFromNorm) throw new UnsupportedError('--kernels', `wgsl: the residual layout of ${ckpt.configPath} (residual from the norm's output: post-LayerNorm OPT, BLOOM's apply_residual_connection_post_layernorm) is not in the WGSL engine; use --kernels ort`);
    if (g.projectIn || g.projectOut) throw new UnsupportedError('--kernels', `wgsl: ${ckpt.configPath}'s word_embed_proj_dim (projections around the embedding) is not in the WGSL engine; use --kernels ort`);
    linearActivation(ckpt.spec.traits, ckpt.configPath);
    const devices = Array.isArray(ctxs) ? ctxs : [ctxs];
    if (devices.length > ckpt.dims.numLayers) throw new UnsupportedError('--world_size', `${devices.length} exceeds the ${ckpt.dims.numLayers} layers of ${ckpt.configPath}: each rank holds at least one layer`);
    const slices = layerSlices(ckpt.dims.numLayers, devices.length);
    const saved = ckpt.saved && (ckpt.saved.detail as SavedWgsl);
    if (saved && JSON.stringify(ckpt.saved!.plan) !== JSON.stringify(o)) throw new UnsupportedError('--model', `${ckpt.dir} holds weights saved as ${JSON.stringify(ckpt.saved!.plan)}, not this run's ${JSON.stringify(o)}: run it with the dtype it was saved with, or save it again`);
    if (saved && saved.ranks.length !== devices.length) throw new UnsupportedError('--world_size', `${ckpt.dir} holds weights saved for ${saved.ranks.length} ranks, not ${devices.length}`);
    const stages: Stage[] = [];
    for (const [r, ctx] of devices.entries()) {
      // A saved model (--save_mp_checkpoint_path) streams its buffers as they were uploaded (its plan and rank count checked above).
      const rank = saved?.ranks[r];
      const weights = rank ? await loadGpuWeights(ctx, rank.layout, join(ckpt.dir, rank.file), savedFile(ckpt.saved!, rank.file).sha256) : await uploadWeights(ctx, ckpt, o.weights, o.quant, { slice: slices[r]! });
      stages.push(new Stage(ctx, ckpt, weights));
    }
    return new WgslEngine(ckpt, stages);
  }

  /** Each rank's weights into `dir`, one file per rank, as uploaded (saved-weights.ts): the files and what a reload needs. */
  async saveWeights(dir: string): Promise<{ files: SavedFile[]; detail: SavedWgsl }> {
    const files: SavedFile[] = [];
    const detail: SavedWgsl = { ranks: [] };
    for (const [r, st] of this.stages.entries()) {
      const file = `rank-${r}.bin`;
      const { layout, bytes, sha256 } = await saveGpuWeights(st.ctx, st.weights, join(dir, file));
      files.push({ name: file, bytes, sha256 });
      detail.ranks.push({ file, layout });
    }
    return { files, detail };
  }

  /** Each device's part: its adapter, whether another rank shares that adapter, its layers and weight bytes. */
  get ranks(): Array<{ rank: number; adapter: AdapterInfo; sharedAdapter: boolean; layers: [number, number]; weightBytes: number }> {
    return this.stages.map((st, rank) => ({
      rank,
      adapter: st.ctx.adapter,
      sharedAdapter: this.stages.some((o) => o !== st && o.ctx.adapterKey === st.ctx.adapterKey),
      layers: [st.weights.slice.from, st.weights.slice.to],
      weightBytes: st.weights.bytes,
    }));
  }

  readonly pagedKv = true;

  begin(batch: number, capacity: number, paging?: KvPaging): void {
    if (paging && !(Number.isInteger(paging.blockSize) && paging.blockSize >= 1 && Number.isInteger(paging.blocks) && paging.blocks >= 1)) {
      throw new UnsupportedError('paging', `${paging.blocks} blocks of ${paging.blockSize} positions is not a block pool`);
    }
    for (const st of this.stages) {
      st.paging = paging && { blockSize: paging.blockSize, blocks: paging.blocks };
      st.ensure(batch, 1, capacity, batch);
    }
  }

  end(): void {}

  release(): void {
    for (const st of this.stages) st.release();
  }

  /** Greedy steps can take their tokens from the previous step's argmax, still on the GPU, where one device does it all. */
  get feedsBack(): boolean {
    return this.stages.length === 1;
  }

  readonly stepsAhead = STEPS_AHEAD;

  step(input: StepInput, needLogits: boolean): Promise<{ logits?: Float32Array; ids?: number[] }> {
    return this.forward(input, input.last.map((i) => [i]), needLogits);
  }

  /**
   * Runs one step over right-padded rows and returns logits for `logitRows[b]` (indices into
   * row b's new tokens), or, with `needLogits` false, the argmax id of each row's first entry.
   * On one device, encoding and submission happen before the first await, so a caller may
   * start the next step (with `input.fromDevice`) before this one's ids are back: the GPU then
   * never waits for the host between steps. Split across devices, each device's part runs in
   * turn, the hidden state read back and written to the next.
   */
  async forward(input: StepInput, logitRows: number[][], needLogits: boolean): Promise<{ logits?: Float32Array; ids?: number[] }> {
    const B = input.tokens.length;
    const S = Math.max(...input.tokens.map((t) => t.length));
    const T = B * S;
    const R = logitRows.reduce((a, r) => a + r.length, 0);
    const end = Math.max(...input.tokens.map((t, b) => input.start[b]! + t.length));
    const positions = new Uint32Array(T);
    const valid = new Uint32Array(T);
    for (let b = 0; b < B; b++) {
      for (let s = 0; s < S; s++) {
        positions[b * S + s] = input.start[b]! + s;
        valid[b * S + s] = s < input.tokens[b]!.length ? 1 : 0;
      }
    }
    const rows = logitRows.flatMap((r, b) => r.map((i) => b * S + i));
    // Every row, in order (decode): the LM head reads the residual stream itself, no gather.
    const allRows = R === T && rows.every((r, i) => r === i);
    const shape: StepShape = { B, S, T, R, allRows, maxKeys: Math.max(...positions) + 1, needLogits, suppress: input.suppress.length };
    let hidden: ArrayBuffer | undefined;
    // A paged cache's block tables (the same on every device), built at the first stage.
    let tables: Uint32Array | undefined;
    for (const [r, stage] of this.stages.entries()) {
      const t0 = performance.now();
      const before = stage.run;
      const run = stage.ensure(B, S, Math.max(stage.run?.capacity ?? 0, end), R);
      if (input.fromDevice && (!this.feedsBack || run !== before || S !== 1 || !run.feedback)) throw new Error('WgslEngine: a step fed from the device must follow a greedy step of the same batch on one device');
      const q = stage.ctx.device.queue;
      const { buf } = run;
      if (stage.first && !input.fromDevice) q.writeBuffer(buf.ids, 0, Uint32Array.from({ length: T }, (_, t) => input.tokens[Math.floor(t / S)]![t % S] ?? 0));
      if (hidden) q.writeBuffer(buf.res, 0, hidden);
      q.writeBuffer(buf.positions, 0, positions);
      q.writeBuffer(buf.valid, 0, valid);
      if (run.pages) q.writeBuffer(buf.positions, T * 4, (tables ??= blockTables(input, run.pages)));
      if (stage.last && !allRows) q.writeBuffer(buf.rows, 0, Uint32Array.from(rows));
      if (stage.last && input.suppress.length) q.writeBuffer(buf.suppress, 0, Uint32Array.from(input.suppress.slice(0, 4)));
      const list = stage.dispatches(run, shape);
      const enc = stage.ctx.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      replay(pass, list);
      pass.end();
      const bytes = Math.ceil(stage.outputBytes(T, R, needLogits) / 4) * 4;
      const staging = run.staging[run.submitted++ % STAGING_RING]!;
      enc.copyBufferToBuffer(!stage.last ? buf.res : needLogits ? buf.logits : buf.next, 0, staging, 0, bytes);
      // One chosen id per row: they are the next step's tokens, should it be fed from the device.
      run.feedback = this.feedsBack && !needLogits && R === B;
      if (run.feedback) enc.copyBufferToBuffer(buf.next, 0, buf.ids, 0, B * 4);
      const commands = enc.finish();
      const tEncoded = performance.now();
      q.submit([commands]);
      const t1 = performance.now();
      await staging.mapAsync(1, 0, bytes);
      const t2 = performance.now();
      this.profile.encodeMs += t1 - t0;
      this.profile.submitMs += t1 - tEncoded;
      this.profile.waitMs += t2 - t1;
      const out = staging.getMappedRange(0, bytes).slice(0);
      staging.unmap();
      const rank = this.profile.ranks?.[r];
      if (rank) {
        rank.ms += t2 - t0;
        if (!stage.last) {
          rank.transferBytes += bytes;
          rank.transferMs += performance.now() - t2;
        }
      }
      if (stage.last) {
        this.profile.steps++;
        return needLogits ? { logits: new Float32Array(out) } : { ids: [...new Uint32Array(out)] };
      }
      hidden = out;
    }
    throw new Error('WgslEngine: no stage holds the LM head');
  }

  /**
   * GPU time of the last step of a kind (see Stage.profileKernels); split across devices, the
   * devices' step times summed and their kernels each named with their rank.
   */
  async profileKernels(kind: StepKind = 'decode'): Promise<StepGpuProfile | undefined> {
    const parts: StepGpuProfile[] = [];
    for (const st of this.stages) {
      const p = await st.profileKernels(kind);
      if (!p) return undefined;
      parts.push(p);
    }
    if (parts.length === 1) return parts[0];
    return {
      stepUs: parts.reduce((a, p) => a + p.stepUs, 0),
      kernels: parts.flatMap((p, r) => p.kernels.map((k) => ({ ...k, kernel: `rank ${r}: ${k.kernel}` }))).sort((x, y) => y.marginalUs - x.marginalUs),
    };
  }
}
