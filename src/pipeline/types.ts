import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type { Checkpoint } from '../arch/checkpoint.js';
import type { Stepper } from '../step.js';

/**
 * What every pipeline (reference, injected) takes and returns: plain data, so that compare
 * and bench never need to know which pipeline produced a trace.
 */

export type Device = 'cpu' | 'webgpu' | 'cuda';
export type DType = 'float32' | 'float16' | 'int8' | 'int4' | 'bfloat16';

/** float16 where the device runs it (as the seed defaults), float32 on the CPU (ORT lacks most fp16 kernels there). */
export function defaultDtype(device: Device): DType {
  return device === 'cpu' ? 'float32' : 'float16';
}

/** fusegen's kernel-injection backends: fused ONNX Runtime ops, or fusegen's own WGSL kernels on Dawn. */
export type Kernels = 'ort' | 'wgsl';

/** The kernel-injection backend when none is named (--kernels): the one place this default is decided. */
export const DEFAULT_KERNELS: Record<Device, Kernels> = { cpu: 'ort', webgpu: 'wgsl', cuda: 'ort' };

/** The injected backend: `kernels` when given, else DEFAULT_KERNELS for the device. */
export function kernelsFor(device: Device, kernels: Kernels | undefined): Kernels {
  return kernels ?? DEFAULT_KERNELS[device];
}

/** DEFAULT_KERNELS in words, as --help shows it: `wgsl on webgpu, ort elsewhere`. */
export function defaultKernelsHelp(): string {
  const wgsl = (Object.keys(DEFAULT_KERNELS) as Device[]).filter((d) => DEFAULT_KERNELS[d] === 'wgsl');
  return wgsl.length ? `wgsl on ${wgsl.join(', ')}, ort elsewhere` : 'ort';
}

export interface GenerateRequest {
  prompts: string[];
  /** Token ids to use instead of tokenizing `prompts` (benchmarks that need exact prompt lengths). */
  promptTokens?: number[][];
  maxNewTokens: number;
  /** false: greedy. */
  doSample: boolean;
  /** Seeds the sampler (ignored when greedy). */
  seed?: number;
  /** Record the top-k logits of every generated step (0: none). */
  recordTopK?: number;
  /** Benchmarks: always generate maxNewTokens (end-of-sequence does not stop a row). */
  ignoreEos?: boolean;
  /** End-of-sequence is suppressed until this many tokens were generated (HF min_new_tokens). */
  minNewTokens?: number;
}

export interface TopK {
  ids: number[];
  values: number[];
}

export interface SequenceResult {
  prompt: string;
  /** Prompt ids without padding, as the tokenizer produced them (special tokens included). */
  promptIds: number[];
  /** Generated ids, up to and including the first end-of-sequence token. */
  newIds: number[];
  finishReason: 'eos' | 'length';
  /** Prompt and continuation decoded without special tokens, as the seed prints `out=`. */
  text: string;
  /** The continuation alone. */
  generatedText: string;
  /** Per generated step, when requested. */
  topK?: TopK[];
}

export interface GenerateTimings {
  /** From the call to the first generated token (tokenization and prefill). */
  firstTokenMs: number;
  /** Wall time of each step after the first (decode steps), in order. */
  decodeStepMs: number[];
  totalMs: number;
}

export interface GenerateResult {
  sequences: SequenceResult[];
  /** Longest padded prompt: the prefill length. */
  promptLength: number;
  /** Steps actually run (all rows together). */
  steps: number;
  timings: GenerateTimings;
}

export interface PipelineInfo {
  /** reference: transformers.js on the plain export; hf: Hugging Face transformers (PyTorch) in a Python child; injected: fusegen on ORT; wgsl: fusegen's WGSL engine; remote: a server speaking the OpenAI completions API (pipeline/remote.ts); llamacpp: llama.cpp on fusegen's GGUF export (pipeline/llamacpp.ts). */
  name: 'reference' | 'hf' | 'injected' | 'wgsl' | 'remote' | 'llamacpp';
  device: Device;
  dtype: DType;
  modelDir: string;
  modelType: string;
  /** Execution provider(s) the session really uses. */
  executionProviders: string[];
  /** Bytes of weights the model holds (for bandwidth figures). */
  parameterBytes: number;
  parameters: number;
  loadMs: number;
  /** Of the load, the time the weights took to reach the device (WGSL engine: the upload, or a saved model's stream; the rest is tokenizer and warm-up compile). */
  weightsMs?: number;
  /** MatMulNBits' accuracy_level, where an ORT-injected graph is quantized. */
  accuracyLevel?: 0 | 4;
}

export interface TextGenerationPipeline {
  readonly info: PipelineInfo;
  /** Throws (before any work) when the request cannot fit the KV cache or the positions. */
  validate(request: GenerateRequest): void;
  /**
   * Teacher-forced logits, no cache: each row of token ids in one pass; full logits rows for
   * positions from[b] .. length - 1 (position p predicts token p + 1).
   */
  score(rows: number[][], from: number[]): Promise<Float32Array[][]>;
  generate(request: GenerateRequest): Promise<GenerateResult>;
  /** The pipeline's own steps, where it runs them (fusegen's loop): for a caller that schedules rows itself. */
  steps?(): StepAccess;
  dispose(): Promise<void>;
}

/**
 * A pipeline's engine step by step, for a caller that schedules rows itself (fusegen serve's
 * continuous batching): it begins a batch of slots once and gives each step any mix of prompt
 * and decode rows, each at its own position.
 */
export interface StepAccess {
  stepper: Stepper;
  ckpt: Checkpoint;
  tokenizer: PreTrainedTokenizer;
  /** Positions a row may hold, prompt and generated together (the KV cache's capacity a row). */
  maxTokens: number;
  /** A step may carry only the first rows of the batch begun, the others' caches kept (the WGSL engine, ORT on the CPU); otherwise every step carries them all. */
  leadingRows: boolean;
  /**
   * A step may give several tokens to a row while other rows continue from their caches (the WGSL
   * engine). Otherwise only a step where every row starts at position 0 may (ORT's
   * GroupQueryAttention takes batched prompts only without past context), and a prompt that
   * joins running rows goes in one token a step.
   */
  mixedSteps: boolean;
}
