/**
 * fusegen's own generate loop over the injected graph (inject/decoder.ts), the counterpart
 * of DeepSpeed's InferenceEngine. Prompts are right-padded; each row keeps its own length
 * (seqlens_k) and positions; the KV cache has a fixed capacity for the whole run and stays
 * on the device between steps (WebGPU/CUDA outputs are kept as GPU buffers and fed back).
 * With every fusion switched off the same loop runs the plain graph.
 */
import { join } from 'node:path';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type { Checkpoint } from '../arch/checkpoint.js';
import { checkSavedFiles } from '../checkpoint/saved.js';
import { UsageError } from '../errors.js';
import type { FloatType } from '../graph/blocks.js';
import { kvNames } from '../graph/decoder.js';
import { exportGraph, type ExportedModel } from '../graph/export.js';
import { buildInjectedDecoder, IO } from '../inject/decoder.js';
import { policyFor } from '../inject/policy.js';
import { ALL_FUSIONS, fusionsFor, NO_FUSIONS, type FusionCounts, type FusionSwitches, type InjectionPlan } from '../inject/plan.js';
import { int32, int64, leadingRows, readFloat32, Session, zeros, type Feeds, type OrtRun } from '../runtime/ort.js';
import { checkCapacity, pipelineInfo } from './common.js';
import { DTYPES, floatOf, refuseDtype } from './dtypes.js';
import { generateLoop, type Stepper } from './loop.js';
import { loadTokenizer, padId, promptIds } from './tokenizer.js';
import type { DType, Device, GenerateRequest, GenerateResult, PipelineInfo, StepAccess, TextGenerationPipeline } from './types.js';

export interface InjectedOptions {
  device: Device;
  dtype: DType;
  /** KV-cache capacity in tokens: prompt plus new tokens must fit. */
  maxTokens: number;
  /** Default: every fusion on (kernel injection); NO_FUSIONS gives the plain graph. */
  fusions?: FusionSwitches;
  /**
   * A deliberate defect for tests of the gate and of triage: the fused attention op's softmax
   * scale. Only the fused op gets it (unfused attention keeps the model's scale), so it is a
   * defect that only the attention fusion causes.
   */
  fusedAttentionScale?: number;
  cacheDir?: string;
  /** Profile every run (bench --profile); the placement is then checked by takeProfile. */
  profile?: boolean;
  /** MatMulNBits' accuracy_level for int8/int4 (see InjectionPlan); default planFor's. */
  accuracyLevel?: 0 | 4;
  /** The ungated MLP in slices (see InjectionPlan); default planFor's (on for WebGPU floats). */
  splitMlp?: boolean;
}

/**
 * dtype -> graph float type and weight quantization, as the dtype table (dtypes.ts) says: int8/int4
 * keep activations in float32 on cpu, float16 elsewhere. On the CPU the quantized matmuls multiply
 * int8 activations (accuracy level 4): opt-125m int8 on 2 cores took 820 ms a token without it,
 * 11 ms with it; int4 10 -> 6 ms, at the same teacher-forced KL. Elsewhere it stays 0 until
 * measured there.
 */
export function planFor(dtype: DType, device: Device, fusions: FusionSwitches): InjectionPlan {
  const plan = planForDtype(dtype, device, fusions);
  // ONNX Runtime 1.30's WebGPU GroupQueryAttention ignores `softcap` (Gemma 2 gave wrong logits).
  return device === 'webgpu' ? { ...plan, fusedSoftcap: false } : plan;
}

function planForDtype(dtype: DType, device: Device, fusions: FusionSwitches): InjectionPlan {
  refuseDtype(dtype, 'ort', "fusegen's ONNX Runtime graphs");
  const { bits } = DTYPES[dtype];
  const float = floatOf(dtype, device) as FloatType; // bfloat16 was refused above
  if (bits) return { fusions, dtype: float, quant: { bits, blockSize: 32 }, accuracyLevel: device === 'cpu' ? 4 : 0, splitMlp: false };
  return { fusions, dtype: float, quant: { bits: 0, blockSize: 32 }, accuracyLevel: 0, splitMlp: device === 'webgpu' };
}

/** The plan as the export applies it: the fusions the architecture's policy allows of those asked. */
export function effectivePlan(ckpt: Checkpoint, asked: InjectionPlan): InjectionPlan {
  return { ...asked, fusions: fusionsFor(asked, ckpt.dims, policyFor(ckpt.spec.traits)) };
}

/** A saved ORT-injected model's graph file and fusion report (the manifest's detail). */
export interface SavedOrt {
  file: string;
  fused: FusionCounts;
}

/**
 * The injected graph: exported from the checkpoint (or an identical earlier export reused), or
 * a saved model's own (--save_mp_checkpoint_path), whose plan must be this one.
 */
function injectedGraph(ckpt: Checkpoint, plan: InjectionPlan, cacheDir?: string): { path: string; fused: FusionCounts } {
  if (!ckpt.saved) return exportInjectedModel(ckpt, plan, cacheDir);
  const applied = effectivePlan(ckpt, plan);
  if (JSON.stringify(applied) !== JSON.stringify(ckpt.saved.plan)) throw new UsageError('--model', `${ckpt.dir} was saved with another injection plan (${JSON.stringify(ckpt.saved.plan)}) than this run's (${JSON.stringify(applied)}): run it with the flags it was saved with, or save it again`);
  checkSavedFiles(ckpt.dir, ckpt.saved);
  const detail = ckpt.saved.detail as SavedOrt;
  return { path: join(ckpt.dir, detail.file), fused: detail.fused };
}

export function exportInjectedModel(ckpt: Checkpoint, asked: InjectionPlan, cacheDir?: string): ExportedModel & { fused: FusionCounts } {
  const plan = effectivePlan(ckpt, asked);
  const on = Object.entries(plan.fusions).filter(([, v]) => v).map(([k]) => k);
  const exported = exportGraph(
    ckpt,
    {
      variant: `injected-${plan.dtype}-q${plan.quant.bits}${plan.accuracyLevel ? `a${plan.accuracyLevel}` : ''}-${on.join('+') || 'plain'}${plan.attentionScale ? `-scale${plan.attentionScale}` : ''}`,
      file: 'model.onnx',
      opsets: [{ domain: '', version: 20 }, { domain: 'com.microsoft', version: 1 }],
      copyModelFiles: false,
      build: (weights) => {
        const { graph, fused } = buildInjectedDecoder({ spec: ckpt.spec, dims: ckpt.dims, config: ckpt.config, weights, plan });
        return { graph, meta: { fused } };
      },
    },
    cacheDir,
  );
  return { ...exported, fused: exported.meta['fused'] as FusionCounts };
}

export class InjectedPipeline implements TextGenerationPipeline {
  private constructor(
    readonly info: PipelineInfo,
    readonly fused: FusionCounts,
    private readonly ckpt: Checkpoint,
    readonly plan: InjectionPlan,
    /** The ONNX graph the session runs (its external data beside it). */
    readonly graphPath: string,
    private readonly maxTokens: number,
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly session: Session,
  ) {}

  static async create(ckpt: Checkpoint, o: InjectedOptions): Promise<InjectedPipeline> {
    const t0 = performance.now();
    const plan = planFor(o.dtype, o.device, o.fusions ?? ALL_FUSIONS);
    if (o.fusedAttentionScale && fusionsFor(plan, ckpt.dims, policyFor(ckpt.spec.traits)).attention) plan.attentionScale = o.fusedAttentionScale;
    if (o.accuracyLevel !== undefined && plan.quant.bits) plan.accuracyLevel = o.accuracyLevel;
    if (o.splitMlp !== undefined) plan.splitMlp = o.splitMlp;
    const exported = injectedGraph(ckpt, plan, o.cacheDir);
    const tokenizer = await loadTokenizer(ckpt);
    const presents = Array.from({ length: ckpt.dims.numLayers }, (_, i) => [kvNames(i).presentKey, kvNames(i).presentValue]).flat();
    const session = await Session.create(exported.path, o.device, { deviceOutputs: presents, profile: o.profile === true });
    const info = pipelineInfo('injected', ckpt, o.device, o.dtype, 0);
    if (plan.quant.bits) info.accuracyLevel = plan.accuracyLevel;
    const pipe = new InjectedPipeline(info, exported.fused, ckpt, plan, exported.path, o.maxTokens, tokenizer, session);
    // One tiny run proves where the nodes ran (a silent CPU fallback fails here), and warms up.
    await pipe.generate({ prompts: ['a'], maxNewTokens: 1, doSample: false });
    if (!o.profile) info.executionProviders = Object.keys(session.verifyPlacement().byProvider);
    info.loadMs = performance.now() - t0;
    return pipe;
  }

  /**
   * With `profile`: the runs of every generate since create (its warm-up run left out), one
   * per step. Fails, as create would have, when compute fell back off the device.
   */
  takeProfile(): OrtRun[] {
    const runs = this.session.takeProfile();
    this.info.executionProviders = Object.keys(this.session.verifyPlacement().byProvider);
    return runs.slice(1);
  }

  get fusionsOn(): boolean {
    return Object.values(this.plan.fusions).some(Boolean);
  }

  validate(request: GenerateRequest): void {
    const longest = Math.max(...promptIds(this.tokenizer, request).map((p) => p.length));
    checkCapacity(this.ckpt, this.maxTokens, longest, request.maxNewTokens);
  }

  /** An empty cache of `capacity` rows per layer, host-side (uploaded by the first run). */
  private emptyCache(batch: number, capacity: number): Feeds {
    const { numKvHeads, headDim, numLayers } = this.ckpt.dims;
    const feeds: Feeds = {};
    for (let i = 0; i < numLayers; i++) {
      const n = kvNames(i);
      feeds[n.pastKey] = zeros(this.plan.dtype, [batch, numKvHeads, capacity, headDim]);
      feeds[n.pastValue] = zeros(this.plan.dtype, [batch, numKvHeads, capacity, headDim]);
    }
    return feeds;
  }

  /**
   * One forward step over right-padded rows. `tokens[b]` are row b's new tokens, starting at
   * position `start[b]`; logits come back for the positions in `logitsAt[b]` (indices into
   * the new tokens). The cache is updated and returned for the next step.
   */
  private async step(cache: Feeds, tokens: number[][], start: number[], logitsAt: number[][]): Promise<{ logits: Float32Array; cache: Feeds }> {
    const B = tokens.length;
    const S = Math.max(...tokens.map((t) => t.length));
    const L = logitsAt[0]!.length;
    const pad = padId(this.tokenizer, this.ckpt.eosTokenIds);
    const ids: number[] = [];
    const pos: number[] = [];
    for (let b = 0; b < B; b++) {
      for (let s = 0; s < S; s++) {
        ids.push(tokens[b]![s] ?? pad);
        pos.push(start[b]! + s);
      }
    }
    const totals = tokens.map((t, b) => start[b]! + t.length);
    const feeds: Feeds = {
      ...cache,
      [IO.inputIds]: int64(ids, [B, S]),
      [IO.positionIds]: int64(pos, [B, S]),
      [IO.seqlensK]: int32(totals.map((t) => t - 1), [B]),
      [IO.totalSequenceLength]: int32([Math.max(...totals)], []),
      [IO.logitsIndex]: int64(logitsAt.flat(), [B, L]),
    };
    const onHost = this.session.device === 'cpu';
    // On the CPU the cache tensors are bound as outputs too, so the op updates them in place.
    const fetches = onHost ? Object.fromEntries([[IO.logits, null], ...Object.keys(cache).map((k) => [k.replace('past_key_values', 'present'), cache[k]!])]) : undefined;
    const out = await this.session.run(feeds, fetches);
    const next: Feeds = {};
    for (const k of Object.keys(cache)) {
      const present = k.replace('past_key_values', 'present');
      if (onHost) next[k] = cache[k]!;
      else {
        next[k] = out[present]!;
        if (cache[k]!.location === 'gpu-buffer') cache[k]!.dispose();
      }
    }
    return { logits: await readFloat32(out[IO.logits]!), cache: next };
  }

  generate(request: GenerateRequest): Promise<GenerateResult> {
    return generateLoop(this.stepper(), request, this.ckpt, this.tokenizer, this.maxTokens);
  }

  /** fusegen's step over the graph: the KV cache lives between begin and end. */
  private stepper(): Stepper {
    let cache: Feeds = {};
    let begun = 0;
    const release = () => {
      for (const t of Object.values(cache)) if (t.location === 'gpu-buffer') t.dispose();
    };
    return {
      begin: (batch, capacity) => {
        release();
        cache = this.emptyCache(batch, capacity);
        begun = batch;
      },
      step: async (input) => {
        // Fewer rows than begun (a server's batch with idle slots at the end), on the host: the
        // step runs on the caches' leading rows in place, the others' kept as they are.
        const rows = input.tokens.length;
        const part = rows < begun;
        if (part && !this.cachesInPlace) throw new Error('InjectedPipeline: a step over fewer rows than begun needs the host caches');
        const r = await this.step(part ? Object.fromEntries(Object.entries(cache).map(([k, t]) => [k, leadingRows(t, rows)])) : cache, input.tokens, input.start, input.last.map((i) => [i]));
        if (!part) cache = r.cache;
        return { logits: r.logits };
      },
      end: release,
    };
  }

  /** On the CPU the caches are host tensors the graph updates in place (see step): a step may take their leading rows. */
  private get cachesInPlace(): boolean {
    return this.session.device === 'cpu';
  }

  steps(): StepAccess {
    return { stepper: this.stepper(), ckpt: this.ckpt, tokenizer: this.tokenizer, maxTokens: this.maxTokens, leadingRows: this.cachesInPlace, mixedSteps: false };
  }

  /**
   * Teacher-forced logits: each row (token ids) run as one prefill, logits returned for
   * positions from[b] .. length-1 (the positions that predict tokens from[b]+1 ...).
   * The no-cache twin of generate's per-step logits.
   */
  async score(rows: number[][], from: number[]): Promise<Float32Array[][]> {
    const B = rows.length;
    const L = Math.max(...rows.map((r, b) => r.length - from[b]!));
    const longest = Math.max(...rows.map((r) => r.length));
    const logitsAt = rows.map((r, b) => Array.from({ length: L }, (_, i) => Math.min(from[b]! + i, r.length - 1)));
    const cache = this.emptyCache(B, longest);
    const { logits, cache: used } = await this.step(cache, rows, new Array<number>(B).fill(0), logitsAt);
    for (const t of Object.values(used)) if (t.location === 'gpu-buffer') t.dispose();
    const V = this.ckpt.dims.vocabSize;
    return rows.map((r, b) => Array.from({ length: r.length - from[b]! }, (_, i) => logits.slice((b * L + i) * V, (b * L + i + 1) * V)));
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

export { NO_FUSIONS, ALL_FUSIONS };
