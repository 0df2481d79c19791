/**
 * The reference pipeline: transformers.js text generation on the plain (standard-ops)
 * ONNX export of the checkpoint. This is our "Hugging Face baseline": the same library
 * JS users already run, on a graph with nothing fused.
 */
import { AutoModelForCausalLM, random, Tensor as TjsTensor, type PreTrainedModel, type PreTrainedTokenizer, type Tensor } from '@huggingface/transformers';
import type { Checkpoint } from '../arch/checkpoint.js';
import { UnsupportedError } from '../errors.js';
import { CUDA_MISSING, cudaInstalled, deviceError, ProfileDir, type OrtRun } from '../runtime/ort.js';
import type { FloatType } from '../graph/blocks.js';
import { exportReferenceModel } from '../graph/export.js';
import { checkCapacity, finishSequences, pipelineInfo, topK } from './common.js';
import { floatOf, refuseDtype } from './dtypes.js';
import { loadTokenizer, padId } from './tokenizer.js';
import type { DType, Device, GenerateRequest, GenerateResult, PipelineInfo, TextGenerationPipeline, TopK } from './types.js';

export interface ReferenceOptions {
  device: Device;
  dtype: DType;
  /** KV-cache capacity in tokens (prompt + new tokens), as the seed's --max_tokens. */
  maxTokens: number;
  cacheDir?: string;
  /** Profile every run of the model's session (bench --profile); see takeProfile. */
  profile?: boolean;
}

export class ReferencePipeline implements TextGenerationPipeline {
  private constructor(
    readonly info: PipelineInfo,
    private readonly ckpt: Checkpoint,
    private readonly maxTokens: number,
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly model: PreTrainedModel,
    private readonly profileDir: ProfileDir | undefined,
  ) {}

  private released = false;

  static async create(ckpt: Checkpoint, o: ReferenceOptions): Promise<ReferencePipeline> {
    const t0 = performance.now();
    refuseDtype(o.dtype, 'transformersjs', 'the reference pipeline');
    if (o.device === 'cuda' && !cudaInstalled()) throw new UnsupportedError('--device', CUDA_MISSING);
    const exported = exportReferenceModel(ckpt, { dtype: floatOf(o.dtype, o.device) as FloatType, cacheDir: o.cacheDir }); // float32 or float16: refused otherwise
    const tokenizer = await loadTokenizer(ckpt);
    const profileDir = o.profile ? new ProfileDir() : undefined;
    const session_options = profileDir ? { enableProfiling: true, profileFilePrefix: profileDir.prefix } : {};
    const model = await AutoModelForCausalLM.from_pretrained(exported.dir, { dtype: exported.tjsDtype, device: o.device, session_options }).catch((e: unknown) => {
      profileDir?.remove();
      throw deviceError(o.device, e);
    });
    const info = pipelineInfo('reference', ckpt, o.device, o.dtype, performance.now() - t0);
    return new ReferencePipeline(info, ckpt, o.maxTokens, tokenizer, model, profileDir);
  }

  /** Tokenizes as the seed does: special tokens added, left padding with pad = eos. */
  private encode(request: GenerateRequest): { input_ids: Tensor; attention_mask: Tensor } {
    if (!request.promptTokens) return this.tokenizer(request.prompts, { add_special_tokens: true, padding: true }) as { input_ids: Tensor; attention_mask: Tensor };
    const rows = request.promptTokens;
    const S = Math.max(...rows.map((r) => r.length));
    const pad = padId(this.tokenizer, this.ckpt.eosTokenIds);
    const ids = rows.flatMap((r) => [...new Array<number>(S - r.length).fill(pad), ...r]).map(BigInt);
    const mask = rows.flatMap((r) => [...new Array<number>(S - r.length).fill(0), ...new Array<number>(r.length).fill(1)]).map(BigInt);
    return { input_ids: new TjsTensor('int64', BigInt64Array.from(ids), [rows.length, S]), attention_mask: new TjsTensor('int64', BigInt64Array.from(mask), [rows.length, S]) };
  }

  /** Throws before any work when the request cannot fit the KV cache or the positions. */
  validate(request: GenerateRequest): void {
    const { input_ids } = this.encode(request);
    checkCapacity(this.ckpt, this.maxTokens, input_ids.dims[1]!, request.maxNewTokens);
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const t0 = performance.now();
    const inputs = this.encode(request);
    const [batch, promptLength] = inputs.input_ids.dims as [number, number];
    checkCapacity(this.ckpt, this.maxTokens, promptLength, request.maxNewTokens);

    const k = request.recordTopK ?? 0;
    const recorded: TopK[][] = Array.from({ length: batch }, () => []);
    const recordLogits = (ids: bigint[][], logits: Tensor) => {
      const data = logits.data as Float32Array;
      const vocab = logits.dims.at(-1)!;
      for (let b = 0; b < batch; b++) recorded[b]!.push(topK(data.subarray(b * vocab, (b + 1) * vocab), k));
      return logits;
    };
    const stepTimes: number[] = [];
    const generated: number[][] = Array.from({ length: batch }, () => []);
    let first = true;
    const streamer = {
      put: (value: bigint[][]) => {
        if (first) {
          first = false; // the prompt comes first
          return;
        }
        stepTimes.push(performance.now());
        value.forEach((row, b) => generated[b]!.push(Number(row[0])));
      },
      end: () => {},
    };
    if (request.doSample) random.seed(request.seed ?? 0);
    await this.model.generate({
      ...inputs,
      max_new_tokens: request.maxNewTokens,
      do_sample: request.doSample,
      // The checkpoint's sampling settings, as fusegen's own loop takes them (HF defaults where absent).
      ...(request.doSample ? { temperature: this.ckpt.sampling.temperature, top_k: this.ckpt.sampling.topK, top_p: this.ckpt.sampling.topP } : {}),
      ...(request.ignoreEos ? { min_new_tokens: request.maxNewTokens } : request.minNewTokens ? { min_new_tokens: request.minNewTokens } : {}),
      streamer: streamer as never,
      logits_processor: (k > 0 ? [recordLogits] : []) as never,
    } as never);
    const totalMs = performance.now() - t0;

    const masks = inputs.attention_mask.tolist() as bigint[][];
    const promptIds = (inputs.input_ids.tolist() as bigint[][]).map((row, b) => row.filter((_, i) => masks[b]![i] === 1n).map(Number));
    const sequences = finishSequences(this.tokenizer, request.prompts, promptIds, generated, request.ignoreEos ? [] : this.ckpt.eosTokenIds, k > 0 ? recorded : undefined);
    return {
      sequences,
      promptLength,
      steps: stepTimes.length,
      timings: {
        firstTokenMs: (stepTimes[0] ?? t0) - t0,
        decodeStepMs: stepTimes.slice(1).map((t, i) => t - stepTimes[i]!),
        totalMs,
      },
    };
  }

  async score(rows: number[][], from: number[]): Promise<Float32Array[][]> {
    const out: Float32Array[][] = [];
    for (const [b, row] of rows.entries()) {
      const ids = new TjsTensor('int64', BigInt64Array.from(row.map(BigInt)), [1, row.length]);
      const mask = new TjsTensor('int64', new BigInt64Array(row.length).fill(1n), [1, row.length]);
      const { logits } = (await this.model({ input_ids: ids, attention_mask: mask })) as { logits: Tensor };
      const data = (logits.data instanceof Float32Array ? logits.data : Float32Array.from(logits.data as ArrayLike<number>)) as Float32Array;
      const V = logits.dims.at(-1)!;
      out.push(Array.from({ length: row.length - from[b]! }, (_, i) => data.slice((from[b]! + i) * V, (from[b]! + i + 1) * V)));
    }
    return out;
  }

  /**
   * With `profile`: the runs of every generate so far, one per step. ONNX Runtime writes the
   * profile when the session is released, so this disposes the pipeline.
   */
  async takeProfile(): Promise<OrtRun[]> {
    if (!this.profileDir || this.released) throw new Error('takeProfile() needs a pipeline created with profile, once');
    await this.dispose();
    return this.profileDir.take();
  }

  async dispose(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.model.dispose();
  }
}
