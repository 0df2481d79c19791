/**
 * The WGSL pipeline: fusegen's generate loop over our own kernels (src/kernels) on a Dawn
 * WebGPU device. Weights f32, f16 or bf16 (or int8/int4 block-quantized); activations, KV cache
 * and accumulation f32.
 */
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type { Checkpoint } from '../arch/checkpoint.js';
import { openGpus, type AdapterInfo } from '../kernels/device.js';
import { WgslEngine, type EngineOptions, type RankProfile, type StepGpuProfile, type StepKind } from '../kernels/engine.js';
import type { MatrixType } from '../kernels/weights.js';
import { checkCapacity, pipelineInfo } from './common.js';
import { DTYPES, floatOf, refuseDtype } from './dtypes.js';
import { generateLoop } from './loop.js';
import { loadTokenizer, promptIds } from './tokenizer.js';
import type { DType, GenerateRequest, GenerateResult, PipelineInfo, StepAccess, TextGenerationPipeline } from './types.js';

/** Where a decode step's wall time goes, per step (see takeStepProfile). */
export interface StepTimes {
  steps: number;
  stepsAhead: number;
  encodeMsPerStep: number;
  submitMsPerStep: number;
  waitMsPerStep: number;
  /** Split across devices (--world_size): per rank, its layers, its share of a step and the hidden state it hands on. */
  ranks?: RankTimes[];
}

export interface RankTimes {
  rank: number;
  layers: [number, number];
  msPerStep: number;
  transferBytesPerStep: number;
  transferMsPerStep: number;
}

/** The engine's weight matrices for a dtype's float type (the unquantized ones, and the embedding tables of int8 / int4). */
const MATRIX_TYPE: Readonly<Record<ReturnType<typeof floatOf>, MatrixType>> = { float32: 'f32', float16: 'f16', bfloat16: 'bf16' };

export interface WgslOptions {
  dtype: DType;
  maxTokens: number;
  /** Devices the layers are split across (default 1). */
  worldSize?: number;
}

export class WgslPipeline implements TextGenerationPipeline {
  private constructor(
    readonly info: PipelineInfo,
    readonly adapter: AdapterInfo,
    private readonly ckpt: Checkpoint,
    readonly engine: WgslEngine,
    /** The weights' matrix type and quantization (what a saved model records). */
    readonly plan: EngineOptions,
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly maxTokens: number,
  ) {}

  static async create(ckpt: Checkpoint, o: WgslOptions): Promise<WgslPipeline> {
    const t0 = performance.now();
    refuseDtype(o.dtype, 'wgsl', '--kernels wgsl');
    const ctxs = await openGpus(o.worldSize ?? 1);
    // Activations stay f32; f16 and bf16 weights are read as u32 pairs and widened in the kernels (no shader-f16 feature needed).
    const weights = MATRIX_TYPE[floatOf(o.dtype, 'webgpu')];
    const plan: EngineOptions = { weights, quant: { bits: DTYPES[o.dtype].bits, blockSize: 32 } };
    const tWeights = performance.now();
    const engine = await WgslEngine.create(ctxs, ckpt, plan);
    const weightsMs = performance.now() - tWeights;
    const tokenizer = await loadTokenizer(ckpt);
    const info = pipelineInfo('wgsl', ckpt, 'webgpu', o.dtype, 0);
    info.weightsMs = weightsMs;
    const adapterName = (a: AdapterInfo) => `dawn:${a.vendor}/${a.architecture}/${a.device}`;
    info.executionProviders = ctxs.length === 1 ? [adapterName(ctxs[0]!.adapter)] : engine.ranks.map((r) => `${adapterName(r.adapter)} (rank ${r.rank}${r.sharedAdapter ? ', shared adapter' : ''}: layers ${r.layers[0]}-${r.layers[1] - 1}, ${r.weightBytes >= 2 ** 20 ? `${(r.weightBytes / 2 ** 20).toFixed(0)} MiB` : `${(r.weightBytes / 1024).toFixed(0)} KiB`})`);
    const pipe = new WgslPipeline(info, ctxs[0]!.adapter, ckpt, engine, plan, tokenizer, o.maxTokens);
    await pipe.generate({ prompts: ['a'], maxNewTokens: 1, doSample: false }); // compiles pipelines
    info.loadMs = performance.now() - t0;
    return pipe;
  }

  /**
   * Per step since the last call (benchmarks: where the time goes): host time until the step is
   * submitted (of it, inside queue.submit: Dawn recording the Vulkan commands and submitting
   * them), then the wait for the GPU and the readback.
   */
  takeStepProfile(): StepTimes {
    const p = this.engine.profile;
    const per = (ms: number) => ms / Math.max(1, p.steps);
    const out: StepTimes = { steps: p.steps, stepsAhead: this.engine.feedsBack ? this.engine.stepsAhead : 0, encodeMsPerStep: per(p.encodeMs), submitMsPerStep: per(p.submitMs), waitMsPerStep: per(p.waitMs) };
    if (p.ranks) out.ranks = p.ranks.map((r: RankProfile, rank) => ({ rank, layers: r.layers, msPerStep: per(r.ms), transferBytesPerStep: per(r.transferBytes), transferMsPerStep: per(r.transferMs) }));
    Object.assign(p, { steps: 0, encodeMs: 0, submitMs: 0, waitMs: 0 });
    for (const r of p.ranks ?? []) Object.assign(r, { ms: 0, transferBytes: 0, transferMs: 0 });
    return out;
  }

  /** GPU time of the last decode or prompt step, whole and per kernel (undefined without timestamp queries). */
  profileKernels(kind: StepKind = 'decode'): Promise<StepGpuProfile | undefined> {
    return this.engine.profileKernels(kind);
  }

  validate(request: GenerateRequest): void {
    checkCapacity(this.ckpt, this.maxTokens, Math.max(...promptIds(this.tokenizer, request).map((p) => p.length)), request.maxNewTokens);
  }

  generate(request: GenerateRequest): Promise<GenerateResult> {
    return generateLoop(this.engine, request, this.ckpt, this.tokenizer, this.maxTokens);
  }

  steps(): StepAccess {
    return { stepper: this.engine, ckpt: this.ckpt, tokenizer: this.tokenizer, maxTokens: this.maxTokens, leadingRows: true, mixedSteps: true };
  }

  async score(rows: number[][], from: number[]): Promise<Float32Array[][]> {
    const longest = Math.max(...rows.map((r) => r.length));
    this.engine.begin(rows.length, longest);
    const wanted = rows.map((r, b) => Array.from({ length: r.length - from[b]! }, (_, i) => from[b]! + i));
    const { logits } = await this.engine.forward({ tokens: rows, start: rows.map(() => 0), last: rows.map(() => 0), suppress: [] }, wanted, true);
    const V = this.ckpt.dims.vocabSize;
    let r = 0;
    return wanted.map((w) => w.map(() => logits!.slice(r * V, ++r * V)));
  }

  async dispose(): Promise<void> {
    this.engine.release();
  }
}
