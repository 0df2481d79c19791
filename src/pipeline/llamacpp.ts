/**
 * The llamacpp pipeline (issue 27): the checkpoint exported to GGUF by fusegen (graph/gguf.ts) and
 * run by llama.cpp through node-llama-cpp, on the CPU with its prebuilt binary: an implementation
 * of the forward pass fusegen did not write, as a second opinion for compare.
 *
 * Settings: prompts are the checkpoint's tokenizer's ids (fusegen's tokenizer, never llama.cpp's),
 * one context whose sequences are the batch's rows (llama.cpp decodes the rows of a step in one
 * batch), the KV cache in float32 and flash attention off, so that float32 runs compute in float32
 * wherever llama.cpp's CPU kernels do (its GELU does not: ggml's CPU gelu reads a float16 table).
 * Greedy steps that need no logits are llama.cpp's own greedy sampler (the anchor below biased
 * away); steps that record top-k or suppress end-of-sequence (min_new_tokens: node-llama-cpp does
 * not bias end-of-generation tokens) take the argmax of llama.cpp's logits, as fusegen's loop does,
 * and sampled runs draw from fusegen's seeded sampler (sampling.ts) on them: a fixed seed, the
 * same draws as fusegen's own pipelines make.
 *
 * Logits: node-llama-cpp gives a position's probabilities over the whole vocabulary (float32
 * softmax), not its logits. The GGUF carries one anchor token whose logit is exactly 0 (zero
 * embedding and head rows), so logit_i = ln p_i - ln p_anchor (computed in float64) recovers
 * llama.cpp's logits, offset included, for `score` and for the recorded top-k. A logit more than
 * about 87 below the row's largest underflows float32's exp and comes back as -Infinity; a row
 * whose largest logit exceeds about 87 loses the anchor itself and is refused.
 */
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type { ControlledEvaluateInputItem, Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token, TokenBias as TokenBiasType } from 'node-llama-cpp';
import type { Checkpoint } from '../arch/checkpoint.js';
import { ggufLayout } from '../arch/gguf.js';
import { FusegenError, UnsupportedError, UsageError } from '../errors.js';
import { exportGguf, type GgufExport, type GgufExportOptions } from '../graph/gguf.js';
import { checkCapacity, finishSequences, pipelineInfo, topK } from './common.js';
import { DTYPES, refuseDtype } from './dtypes.js';
import { makeSampler } from './sampling.js';
import { firstLine, loadTokenizer, promptIds } from './tokenizer.js';
import type { DType, Device, GenerateRequest, GenerateResult, PipelineInfo, TextGenerationPipeline, TopK } from './types.js';

/** The binding's version, pinned in package.json: reports name it. */
export const NODE_LLAMA_CPP_VERSION = '3.21.1';

export interface LlamaCppOptions {
  device: Device;
  dtype: DType;
  /** Positions a row may hold, prompt and generated together (each sequence's context size). */
  maxTokens: number;
  /** CPU threads (default: llamaCppThreads). */
  threads?: number;
  cacheDir?: string;
}

/** The GGUF weights type of each dtype llama.cpp runs (the dtype table's llamacpp column). */
export function ggufWeightsFor(dtype: DType): GgufExportOptions['weights'] {
  const w = DTYPES[dtype].gguf;
  if (!w) throw new UnsupportedError('--dtype', `${dtype} has no GGUF type`);
  return w;
}

/**
 * CPU threads for a context: $FUSEGEN_LLAMACPP_THREADS, else 1 for a model under 100M parameters,
 * else node-llama-cpp's default (the machine's math cores). llama.cpp's CPU threads spin at every
 * barrier: on a tiny model there is nothing to split, and on a shared machine two spinning threads
 * made a step of tiny-llama take 300-700 ms against 1 ms with one (2 cores, load 4.6).
 */
export function llamaCppThreads(parameters: number): number | undefined {
  const env = process.env['FUSEGEN_LLAMACPP_THREADS'];
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new UsageError('FUSEGEN_LLAMACPP_THREADS (environment)', `expected a positive integer, got "${env}"`);
    return n;
  }
  return parameters < 100e6 ? 1 : undefined;
}

/**
 * Refuses, before any export or run, what the llamacpp pipeline cannot run: a dtype the GGUF export
 * does not write, a device other than the CPU, an architecture llama.cpp lacks or the export does
 * not map (one line each, exit 2).
 */
export function checkLlamaCpp(ckpt: Checkpoint, dtype: DType, device: Device): void {
  refuseDtype(dtype, 'llamacpp', 'the llamacpp pipeline');
  if (device !== 'cpu') throw new UnsupportedError('--device', `${device}: the llamacpp pipeline runs node-llama-cpp's prebuilt CPU binary (--device cpu)`);
  if (ckpt.saved) throw new UnsupportedError(ckpt.dir, 'holds a saved injected model: the llamacpp pipeline exports the source checkpoint to GGUF');
  ggufLayout(ckpt);
}

/** A failure inside the binding or llama.cpp after load: one line, naming the pipeline. */
export class LlamaCppError extends FusegenError {
  constructor(message: string) {
    super('unsupported', 'llamacpp', message);
    this.name = 'LlamaCppError';
  }
}

type Binding = typeof import('node-llama-cpp');

let shared: Promise<{ binding: Binding; llama: Llama }> | undefined;

/**
 * node-llama-cpp and its llama.cpp, loaded once per process: the prebuilt CPU binary only
 * (`build: 'never'`, no download, no compiler), so a machine without it is refused in one line.
 */
async function loadLlama(): Promise<{ binding: Binding; llama: Llama }> {
  shared ??= (async () => {
    let binding: Binding;
    try {
      binding = await import('node-llama-cpp');
    } catch (e) {
      throw new UnsupportedError('llamacpp', `node-llama-cpp ${NODE_LLAMA_CPP_VERSION} is not installed (npm ci installs it): ${firstLine(e)}`);
    }
    try {
      const llama = await binding.getLlama({ gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false, logLevel: binding.LlamaLogLevel.error });
      return { binding, llama };
    } catch (e) {
      throw new UnsupportedError('llamacpp', `node-llama-cpp cannot load its prebuilt CPU binary (@node-llama-cpp/${process.platform}-${process.arch}): ${firstLine(e)}`);
    }
  })();
  shared.catch(() => (shared = undefined));
  return shared;
}

export class LlamaCppPipeline implements TextGenerationPipeline {
  private context: LlamaContext | undefined;
  private sequences: LlamaContextSequence[] = [];
  private disposed = false;

  private constructor(
    readonly info: PipelineInfo,
    readonly gguf: GgufExport,
    private readonly ckpt: Checkpoint,
    private readonly maxTokens: number,
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly binding: Binding,
    private readonly model: LlamaModel,
    private readonly threads: number | undefined,
  ) {}

  static async create(ckpt: Checkpoint, o: LlamaCppOptions): Promise<LlamaCppPipeline> {
    const t0 = performance.now();
    checkLlamaCpp(ckpt, o.dtype, o.device);
    const weights = ggufWeightsFor(o.dtype);
    const gguf = exportGguf(ckpt, { weights, float: 'F32', logitAnchor: true, ...(o.cacheDir ? { cacheDir: o.cacheDir } : {}) });
    const { binding, llama } = await loadLlama();
    const tokenizer = await loadTokenizer(ckpt);
    let model: LlamaModel;
    try {
      model = await llama.loadModel({ modelPath: gguf.path, gpuLayers: 0 });
    } catch (e) {
      throw new LlamaCppError(`llama.cpp cannot load ${gguf.path}: ${firstLine(e)}`);
    }
    const loadMs = performance.now() - t0;
    const info = pipelineInfo('llamacpp', ckpt, 'cpu', o.dtype, loadMs);
    info.executionProviders = [`llama.cpp ${llama.llamaCppRelease.release} cpu (node-llama-cpp ${NODE_LLAMA_CPP_VERSION}, ${llama.buildType} binary, GGUF ${weights})`];
    return new LlamaCppPipeline(info, gguf, ckpt, o.maxTokens, tokenizer, binding, model, o.threads ?? llamaCppThreads(info.parameters));
  }

  /** At least `n` sequences of one context, each holding maxTokens positions, histories cleared. */
  private async rows(n: number): Promise<LlamaContextSequence[]> {
    if (this.disposed) throw new LlamaCppError('the pipeline was disposed');
    if (!this.context || this.sequences.length < n) {
      await this.context?.dispose();
      this.context = await this.model
        .createContext({
          sequences: n,
          contextSize: this.maxTokens,
          batchSize: Math.min(2048, Math.max(512, this.maxTokens)),
          flashAttention: false,
          experimentalKvCacheKeyType: 'F32',
          experimentalKvCacheValueType: 'F32',
          ...(this.threads !== undefined ? { threads: this.threads } : {}),
        })
        .catch((e: unknown) => {
          throw new LlamaCppError(`llama.cpp cannot create a context of ${n} sequences x ${this.maxTokens} tokens: ${firstLine(e)}`);
        });
      this.sequences = Array.from({ length: n }, () => this.context!.getSequence());
    }
    const seqs = this.sequences.slice(0, n);
    await Promise.all(seqs.map((s) => s.clearHistory()));
    return seqs;
  }

  /**
   * llama.cpp's own tokenization of `text` by the GGUF's tokenizer metadata, without special
   * tokens (no BOS; special-token text is not parsed). Prompts never take this path (they are the
   * checkpoint tokenizer's ids); the tests hold it to that tokenizer, which checks the exported
   * tokens, scores, merges and types.
   */
  llamaTokenize(text: string): number[] {
    return [...this.model.tokenize(text)];
  }

  validate(request: GenerateRequest): void {
    const prompts = promptIds(this.tokenizer, request);
    checkCapacity(this.ckpt, this.maxTokens, Math.max(...prompts.map((p) => p.length)), request.maxNewTokens);
  }

  /** The logits row of one position from its probabilities (see the header): the anchor's logit is 0. */
  private logits(probabilities: Map<number, number> | undefined): Float32Array {
    const anchor = this.gguf.anchorId!;
    const pA = probabilities?.get(anchor);
    if (!probabilities || !pA) throw new LlamaCppError('llama.cpp gave no probability for the logit anchor (a logit above ~87 underflows it): its logits cannot be recovered');
    const lnA = Math.log(pA);
    const row = new Float32Array(anchor).fill(-Infinity);
    for (const [t, p] of probabilities) if (t < anchor) row[t] = Math.log(p) - lnA;
    return row;
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const t0 = performance.now();
    const prompts = promptIds(this.tokenizer, request);
    const B = prompts.length;
    const longest = Math.max(...prompts.map((p) => p.length));
    checkCapacity(this.ckpt, this.maxTokens, longest, request.maxNewTokens);
    const seqs = await this.rows(B);
    const k = request.recordTopK ?? 0;
    const eos = request.ignoreEos ? [] : this.ckpt.eosTokenIds;
    const sample = makeSampler(request.doSample, request.seed ?? 0, this.ckpt.sampling);
    // The anchor is never chosen by llama.cpp's greedy sampler; EOS cannot be biased there (node-llama-cpp ignores it), so suppressed steps take the logits path.
    const greedyBias: TokenBiasType = new this.binding.TokenBias(this.model.tokenizer).set(this.gguf.anchorId! as Token, 'never');
    const generated: number[][] = Array.from({ length: B }, () => []);
    const recorded: TopK[][] = Array.from({ length: B }, () => []);
    const done = new Array<boolean>(B).fill(false);
    const stepTimes: number[] = [];
    for (let t = 0; t < request.maxNewTokens; t++) {
      const suppress = t < (request.minNewTokens ?? 0) ? eos : [];
      const needLogits = request.doSample || k > 0 || suppress.length > 0;
      const live = seqs.map((_, b) => b).filter((b) => !done[b]);
      const results = await Promise.all(
        live.map(async (b) => {
          const input = t === 0 ? prompts[b]! : [generated[b]![generated[b]!.length - 1]!];
          const last = needLogits ? { generateNext: { probabilities: true } } : { generateNext: { token: true, options: { tokenBias: greedyBias } } };
          const items = input.map((id, i): ControlledEvaluateInputItem => (i === input.length - 1 ? [id as Token, last] : (id as Token)));
          const out = await seqs[b]!.controlledEvaluate(items).catch((e: unknown) => {
            throw new LlamaCppError(`llama.cpp failed at step ${t} of row ${b}: ${firstLine(e)}`);
          });
          return { b, next: out[items.length - 1]?.next };
        }),
      );
      // Rows in order, as fusegen's loop draws from one sampler.
      for (const { b, next } of results.sort((x, y) => x.b - y.b)) {
        let chosen: number;
        if (needLogits) {
          const row = this.logits(next?.probabilities);
          for (const e of suppress) row[e] = -Infinity;
          chosen = sample(row);
          if (k > 0) recorded[b]!.push(topK(row, k));
        } else {
          if (next?.token === undefined || next.token === null) throw new LlamaCppError(`llama.cpp returned no token at step ${t} of row ${b}`);
          chosen = next.token;
        }
        generated[b]!.push(chosen);
        if (eos.includes(chosen)) done[b] = true;
      }
      stepTimes.push(performance.now());
      if (done.every(Boolean)) break;
    }
    return {
      sequences: finishSequences(this.tokenizer, request.prompts, prompts, generated, eos, k > 0 ? recorded : undefined),
      promptLength: longest,
      steps: stepTimes.length,
      timings: {
        firstTokenMs: (stepTimes[0] ?? performance.now()) - t0,
        decodeStepMs: stepTimes.slice(1).map((s, i) => s - stepTimes[i]!),
        totalMs: performance.now() - t0,
      },
    };
  }

  /** Teacher-forced logits, each row in its own sequence from position 0 (no cache carried over): rows for positions from[b] .. length - 1. */
  async score(rows: number[][], from: number[]): Promise<Float32Array[][]> {
    const longest = Math.max(...rows.map((r) => r.length));
    if (longest > this.maxTokens) throw new LlamaCppError(`a scored row of ${longest} tokens exceeds the context of ${this.maxTokens}`);
    const seqs = await this.rows(rows.length);
    return Promise.all(
      rows.map(async (row, b) => {
        const items = row.map((id, i): ControlledEvaluateInputItem => (i >= from[b]! ? [id as Token, { generateNext: { probabilities: true } }] : (id as Token)));
        const out = await seqs[b]!.controlledEvaluate(items).catch((e: unknown) => {
          throw new LlamaCppError(`llama.cpp failed to score row ${b}: ${firstLine(e)}`);
        });
        return row.slice(from[b]!).map((_, i) => this.logits(out[from[b]! + i]?.next.probabilities));
      }),
    );
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.context?.dispose();
    await this.model.dispose();
  }
}
