/**
 * The llamacpp pipeline (issue 27): the checkpoint exported to GGUF by fusegen (graph/gguf.ts) and
 * run by llama.cpp through node-llama-cpp: an implementation of the forward pass fusegen did not
 * write, as a second opinion for compare and a peer for bench.
 *
 * Backends (llamaCppBackendFor): --device cpu is node-llama-cpp's prebuilt CPU binary, --device
 * webgpu (fusegen's name for the GPU through Vulkan) its prebuilt Vulkan binary with every layer
 * offloaded. Prebuilt binaries only (no download, no compiler): a Vulkan binary that cannot load, a
 * Vulkan backend that finds no device, or a model not wholly offloaded is refused in one line,
 * never run on the CPU in its place. ggml_vulkan takes discrete, integrated and other non-CPU
 * devices only; a CPU device (Mesa's lavapipe) only where GGML_VK_VISIBLE_DEVICES names it.
 * --device cuda is refused: node-llama-cpp's prebuilt CUDA binaries are not wired (see cudaRefusal).
 *
 * Timings: the context keeps llama.cpp's performance counters (llama_perf_context), which
 * node-llama-cpp exposes only as printTimings' log lines (printed and reset); timedGenerate reads
 * them for a run's prompt step and its decode steps (LlamaCppTimings).
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
import { createRequire } from 'node:module';
import { format } from 'node:util';
import type { ControlledEvaluateInputItem, Llama, LlamaContext, LlamaContextSequence, LlamaLogLevel, LlamaModel, LlamaOptions, Token, TokenBias as TokenBiasType } from 'node-llama-cpp';
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

/** llama.cpp's compute backend, as node-llama-cpp's `gpu` option names it: its CPU build or its Vulkan build. */
export type LlamaCppBackend = 'cpu' | 'vulkan';

/** Whether node-llama-cpp's prebuilt package `@node-llama-cpp/<name>` is installed. */
function prebuiltInstalled(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(`@node-llama-cpp/${name}`);
    return true;
  } catch {
    return false;
  }
}

/** --device cuda: node-llama-cpp's prebuilt CUDA binaries are not wired; why, and what to use instead. */
export function cudaRefusal(): string {
  const pkg = `@node-llama-cpp/${process.platform}-${process.arch}-cuda`;
  const where = prebuiltInstalled(`${process.platform}-${process.arch}-cuda`)
    ? 'are installed here but not wired: at about 540 MB with -cuda-ext they cannot travel to the GPU machine with the tree'
    : 'are not installed here';
  return `cuda: node-llama-cpp's prebuilt CUDA binaries (${pkg}, ${pkg}-ext) ${where}; the llamacpp pipeline runs llama.cpp's Vulkan build on the GPU (--device webgpu) or its CPU build (--device cpu)`;
}

/** The backend a device runs on: cpu on the CPU build, webgpu (the GPU through Vulkan) on the Vulkan build; cuda refused in one line naming --device. */
export function llamaCppBackendFor(device: Device): LlamaCppBackend {
  if (device === 'cpu') return 'cpu';
  if (device === 'webgpu') return 'vulkan';
  throw new UnsupportedError('--device', cudaRefusal());
}

/**
 * getLlama's options for a backend: that prebuilt binary only (`build: 'never'`, no download, no
 * compiler), `gpu` naming it so node-llama-cpp tries no other (for `vulkan` it never falls back to
 * the CPU build), its progress warnings on so the reason a binary is refused can be told.
 */
export function llamaOptions(backend: LlamaCppBackend, logLevel: LlamaLogLevel, logger: (level: LlamaLogLevel, message: string) => void): LlamaOptions {
  return { gpu: backend === 'vulkan' ? 'vulkan' : false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: true, logLevel, logger };
}

/**
 * Refuses, before any export or run, what the llamacpp pipeline cannot run: a dtype the GGUF export
 * does not write, a device it has no backend for (cuda), an architecture llama.cpp lacks or the
 * export does not map (one line each, exit 2).
 */
export function checkLlamaCpp(ckpt: Checkpoint, dtype: DType, device: Device): void {
  refuseDtype(dtype, 'llamacpp', 'the llamacpp pipeline');
  llamaCppBackendFor(device);
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

/** The prefix of llama_perf_context_print's lines, which printTimings logs at the info level. */
const PERF_PREFIX = 'llama_perf_context_print:';

/**
 * A Llama's log: llama.cpp's errors to the console as node-llama-cpp's default logger prints them,
 * and, while `capture` runs, llama_perf_context_print's lines to the caller.
 */
class LlamaLog {
  private sink: string[] | undefined;
  constructor(private readonly binding: Binding) {}

  readonly logger = (level: LlamaLogLevel, message: string): void => {
    if (this.sink && message.includes(PERF_PREFIX)) this.sink.push(message);
    else if (level === this.binding.LlamaLogLevel.error || level === this.binding.LlamaLogLevel.fatal) this.binding.Llama.defaultConsoleLogger(level, message);
  };

  /**
   * The perf lines `print` logs: the log level lowered to info meanwhile, then waited for until
   * `complete` (they come through node-llama-cpp's thread-safe log queue).
   */
  async capture(llama: Llama, print: () => Promise<void>, complete: (lines: string[]) => boolean): Promise<string[]> {
    const lines: string[] = [];
    const level = llama.logLevel;
    this.sink = lines;
    llama.logLevel = this.binding.LlamaLogLevel.info;
    try {
      await print();
      for (let i = 0; i < 100 && !complete(lines); i++) await new Promise((r) => setTimeout(r, 1));
      return lines;
    } finally {
      llama.logLevel = level;
      this.sink = undefined;
    }
  }
}

interface Loaded {
  binding: Binding;
  llama: Llama;
  log: LlamaLog;
  /** The backend's devices, as llama.cpp names them (none for cpu). */
  devices: string[];
}

/**
 * One Llama per binary and process. A second getLlama of the same binary breaks the first's log:
 * node-llama-cpp 3.21.1's native setLogger releases the previous callback, whose finalizer then
 * marks the new one unset, and llama.cpp's lines go to stdout instead of any logger (so the timings
 * cannot be read). Code in this process that needs a Llama takes this one (sharedLlama).
 */
const shared = new Map<LlamaCppBackend, Promise<Loaded>>();

/** Runs `f` with console.warn and console.error collected instead of printed: node-llama-cpp tells there why it refused a binary. */
async function collectingConsole<T>(f: () => Promise<T>): Promise<{ value?: T; error?: unknown; said: string[] }> {
  const said: string[] = [];
  const { warn, error } = console;
  console.warn = (...args: unknown[]) => void said.push(format(...args));
  console.error = (...args: unknown[]) => void said.push(format(...args));
  try {
    return { value: await f(), said };
  } catch (e) {
    return { error: e, said };
  } finally {
    console.warn = warn;
    console.error = error;
  }
}

/** node-llama-cpp's own words, one line: its messages' first lines without the [node-llama-cpp] prefix. */
function oneLine(parts: string[]): string {
  return parts.map((p) => p.split('\n')[0]!.replace(/^\S*\[node-llama-cpp\]\S*\s*/, '').trim()).filter((p) => p !== '').join('; ');
}

/**
 * node-llama-cpp and llama.cpp's backend, loaded once per process and backend: the prebuilt binary
 * only (llamaOptions). A binary that does not load, or a Vulkan backend without a device (llama.cpp
 * would then run every layer on the CPU), is refused in one line naming the backend and
 * node-llama-cpp's reason.
 */
function loadLlama(backend: LlamaCppBackend): Promise<Loaded> {
  let p = shared.get(backend);
  if (!p) {
    p = (async () => {
      let binding: Binding;
      try {
        binding = await import('node-llama-cpp');
      } catch (e) {
        throw new UnsupportedError('llamacpp', `node-llama-cpp ${NODE_LLAMA_CPP_VERSION} is not installed (npm ci installs it): ${firstLine(e)}`);
      }
      const log = new LlamaLog(binding);
      const pkg = `@node-llama-cpp/${process.platform}-${process.arch}${backend === 'vulkan' ? '-vulkan' : ''}`;
      const name = backend === 'vulkan' ? 'Vulkan' : 'CPU';
      const { value: llama, error, said } = await collectingConsole(() => binding.getLlama(llamaOptions(backend, binding.LlamaLogLevel.error, log.logger)));
      if (!llama) throw new UnsupportedError('llamacpp', `llama.cpp's ${name} backend: node-llama-cpp ${NODE_LLAMA_CPP_VERSION} cannot load its prebuilt ${name} binary (${pkg}): ${oneLine([...said, firstLine(error)])}`);
      if (llama.gpu !== (backend === 'vulkan' ? 'vulkan' : false)) throw new UnsupportedError('llamacpp', `llama.cpp's ${name} backend: node-llama-cpp loaded its ${String(llama.gpu)} build instead`);
      const devices = backend === 'vulkan' ? await llama.getGpuDeviceNames() : [];
      if (backend === 'vulkan' && (devices.length === 0 || !llama.supportsGpuOffloading)) {
        await llama.dispose();
        throw new UnsupportedError(
          'llamacpp',
          `llama.cpp's Vulkan backend (${pkg}) loaded but found no Vulkan device to offload to (ggml_vulkan takes discrete, integrated and other non-CPU GPUs; a CPU device such as Mesa's lavapipe only where GGML_VK_VISIBLE_DEVICES names it, e.g. GGML_VK_VISIBLE_DEVICES=0): not running on the CPU in its place`,
        );
      }
      return { binding, llama, log, devices };
    })();
    shared.set(backend, p);
    p.catch(() => shared.delete(backend));
  }
  return p;
}

/** The process's Llama of a backend, as the llamacpp pipeline loads it (see `shared`): for code beside the pipeline that drives node-llama-cpp itself. */
export async function sharedLlama(backend: LlamaCppBackend): Promise<Llama> {
  return (await loadLlama(backend)).llama;
}

/**
 * llama.cpp's own counters (llama_perf_context) over one phase of a run, beside the wall time
 * fusegen measured around it. llama.cpp counts a decode call of more than one token as "prompt
 * eval" (its tokens) and a call of exactly one token as "eval" (its calls): a batch of B rows
 * decodes B tokens a call, so at B > 1 the decode steps count as prompt eval.
 */
export interface LlamaCppPhase {
  /** fusegen's wall time of the phase (node-llama-cpp's calls and fusegen's loop around them). */
  wallMs: number;
  promptEvalMs: number;
  promptEvalTokens: number;
  evalMs: number;
  evalRuns: number;
  /** Decode calls that reused the previous call's compute graph. */
  graphsReused: number;
}

/** llama.cpp's timings of one run: the backend that ran, the prompt's step (prefill) and the later steps (decode). */
export interface LlamaCppTimings {
  backend: LlamaCppBackend;
  /** The Vulkan devices llama.cpp offloaded to (none on the CPU). */
  devices: string[];
  prefill: LlamaCppPhase;
  decode: LlamaCppPhase;
}

type Counters = Omit<LlamaCppPhase, 'wallMs'>;

const PERF_LINES = {
  prompt: /prompt eval time =\s*([\d.]+) ms \/\s*(\d+) tokens/,
  eval: /(?<!prompt )eval time =\s*([\d.]+) ms \/\s*(\d+) runs/,
  reused: /graphs reused =\s*(\d+)/,
};

/** Whether the lines hold every counter parsePerf reads. */
function perfComplete(lines: string[]): boolean {
  return Object.values(PERF_LINES).every((re) => lines.some((l) => re.test(l)));
}

/**
 * llama.cpp's counters from llama_perf_context_print's lines. llama_perf_context reports each count
 * as at least 1 (max(1, n)): a count of 1 in 0.00 ms is its zero (no decode call takes under 5 us).
 */
export function parsePerf(lines: string[]): Counters {
  const find = (re: RegExp) => {
    const m = lines.map((l) => re.exec(l)).find((x) => x);
    if (!m) throw new LlamaCppError(`llama.cpp printed no "${re.source.replace('(?<!prompt )', '').split(' =')[0]}" line in its timings (${lines.length} lines; another getLlama of the same binary in this process takes its log, see sharedLlama)`);
    return m;
  };
  const count = (m: RegExpExecArray) => (Number(m[2]) === 1 && Number(m[1]) === 0 ? 0 : Number(m[2]));
  const p = find(PERF_LINES.prompt);
  const e = find(PERF_LINES.eval);
  return { promptEvalMs: Number(p[1]), promptEvalTokens: count(p), evalMs: Number(e[1]), evalRuns: count(e), graphsReused: Number(find(PERF_LINES.reused)[1]) };
}

export class LlamaCppPipeline implements TextGenerationPipeline {
  private context: LlamaContext | undefined;
  private sequences: LlamaContextSequence[] = [];
  private disposed = false;

  private constructor(
    readonly info: PipelineInfo,
    readonly gguf: GgufExport,
    /** The llama.cpp backend that runs it, and its devices (none on the CPU). */
    readonly backend: LlamaCppBackend,
    readonly devices: string[],
    private readonly ckpt: Checkpoint,
    private readonly maxTokens: number,
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly loaded: Loaded,
    private readonly model: LlamaModel,
    private readonly threads: number | undefined,
  ) {
    this.rowsOneAtATime = backend === 'vulkan' && devices.some((d) => /llvmpipe/i.test(d));
  }

  /** Whether a step's rows are evaluated one after another (eachRow says why). */
  private readonly rowsOneAtATime: boolean;

  static async create(ckpt: Checkpoint, o: LlamaCppOptions): Promise<LlamaCppPipeline> {
    const t0 = performance.now();
    checkLlamaCpp(ckpt, o.dtype, o.device);
    const backend = llamaCppBackendFor(o.device);
    const weights = ggufWeightsFor(o.dtype);
    const gguf = exportGguf(ckpt, { weights, float: 'F32', logitAnchor: true, ...(o.cacheDir ? { cacheDir: o.cacheDir } : {}) });
    const loaded = await loadLlama(backend);
    const { llama, devices } = loaded;
    const tokenizer = await loadTokenizer(ckpt);
    let model: LlamaModel;
    try {
      model = await llama.loadModel({ modelPath: gguf.path, gpuLayers: backend === 'vulkan' ? 'max' : 0 });
    } catch (e) {
      throw new LlamaCppError(`llama.cpp (${backend}) cannot load ${gguf.path}: ${firstLine(e)}`);
    }
    const layers = `${model.gpuLayers}/${model.fileInsights.totalLayers} layers offloaded`;
    if (backend === 'vulkan' && model.gpuLayers < model.fileInsights.totalLayers) {
      await model.dispose();
      throw new LlamaCppError(`llama.cpp's Vulkan backend offloaded ${layers} to ${devices.join(', ')}: the rest would run on the CPU`);
    }
    const loadMs = performance.now() - t0;
    const info = pipelineInfo('llamacpp', ckpt, o.device, o.dtype, loadMs);
    const where = backend === 'vulkan' ? `vulkan on ${devices.join(', ')}, ${layers}` : 'cpu';
    info.executionProviders = [`llama.cpp ${llama.llamaCppRelease.release} ${where} (node-llama-cpp ${NODE_LLAMA_CPP_VERSION}, ${llama.buildType} binary, GGUF ${weights})`];
    return new LlamaCppPipeline(info, gguf, backend, devices, ckpt, o.maxTokens, tokenizer, loaded, model, o.threads ?? llamaCppThreads(info.parameters));
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
          // llama.cpp's counters (a clock read per decode call), which timedGenerate reads.
          performanceTracking: true,
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

  generate(request: GenerateRequest): Promise<GenerateResult> {
    return this.run(request, false).then((r) => r.result);
  }

  /**
   * A run with llama.cpp's own timings: its counters read (and reset) before the run, after the
   * prompt's step and after the last step. Reading them takes about a millisecond (node-llama-cpp's
   * printTimings waits a timer for its log lines); the step timings leave that time out, but a
   * caller's clock around the call does not, so bench times other runs and asks for these after.
   */
  async timedGenerate(request: GenerateRequest): Promise<{ result: GenerateResult; timings: LlamaCppTimings }> {
    const { result, timings } = await this.run(request, true);
    return { result, timings: timings! };
  }

  /** llama.cpp's counters since they were last read (printTimings prints and resets them). */
  private async counters(): Promise<Counters> {
    const context = this.context!;
    return parsePerf(await this.loaded.log.capture(this.loaded.llama, () => context.printTimings(), perfComplete));
  }

  private async run(request: GenerateRequest, timed: boolean): Promise<{ result: GenerateResult; timings?: LlamaCppTimings }> {
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
    const greedyBias: TokenBiasType = new this.loaded.binding.TokenBias(this.model.tokenizer).set(this.gguf.anchorId! as Token, 'never');
    const generated: number[][] = Array.from({ length: B }, () => []);
    const recorded: TopK[][] = Array.from({ length: B }, () => []);
    const done = new Array<boolean>(B).fill(false);
    // Each step's wall time from the end of the one before (or the call), the counters' reading left out.
    const stepMs: number[] = [];
    let mark = t0;
    let reading = 0;
    if (timed) {
      const r0 = performance.now();
      await this.counters(); // reset: what earlier runs left
      reading = performance.now() - r0;
      mark += reading;
    }
    let prefill: Counters | undefined;
    for (let t = 0; t < request.maxNewTokens; t++) {
      const suppress = t < (request.minNewTokens ?? 0) ? eos : [];
      const needLogits = request.doSample || k > 0 || suppress.length > 0;
      const live = seqs.map((_, b) => b).filter((b) => !done[b]);
      const results = await this.eachRow(
        live, async (b) => {
          const input = t === 0 ? prompts[b]! : [generated[b]![generated[b]!.length - 1]!];
          const last = needLogits ? { generateNext: { probabilities: true } } : { generateNext: { token: true, options: { tokenBias: greedyBias } } };
          const items = input.map((id, i): ControlledEvaluateInputItem => (i === input.length - 1 ? [id as Token, last] : (id as Token)));
          const out = await seqs[b]!.controlledEvaluate(items).catch((e: unknown) => {
            throw new LlamaCppError(`llama.cpp failed at step ${t} of row ${b}: ${firstLine(e)}`);
          });
          return { b, next: out[items.length - 1]?.next };
        },
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
      const now = performance.now();
      stepMs.push(now - mark);
      mark = now;
      if (timed && t === 0) {
        prefill = await this.counters();
        mark = performance.now();
        reading += mark - now;
      }
      if (done.every(Boolean)) break;
    }
    const sequences = finishSequences(this.tokenizer, request.prompts, prompts, generated, eos, k > 0 ? recorded : undefined);
    const end = performance.now();
    const result: GenerateResult = {
      sequences,
      promptLength: longest,
      steps: stepMs.length,
      timings: { firstTokenMs: stepMs[0] ?? end - t0, decodeStepMs: stepMs.slice(1), totalMs: end - t0 - reading },
    };
    if (!timed) return { result };
    const decode = await this.counters();
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    return {
      result,
      timings: {
        backend: this.backend,
        devices: this.devices,
        prefill: { wallMs: result.timings.firstTokenMs, ...prefill! },
        decode: { wallMs: sum(result.timings.decodeStepMs), ...decode },
      },
    };
  }

  /** Teacher-forced logits, each row in its own sequence from position 0 (no cache carried over): rows for positions from[b] .. length - 1. */
  async score(rows: number[][], from: number[]): Promise<Float32Array[][]> {
    const longest = Math.max(...rows.map((r) => r.length));
    if (longest > this.maxTokens) throw new LlamaCppError(`a scored row of ${longest} tokens exceeds the context of ${this.maxTokens}`);
    const seqs = await this.rows(rows.length);
    return this.eachRow(
      rows.map((_, b) => b),
      async (b) => {
        const row = rows[b]!;
        const items = row.map((id, i): ControlledEvaluateInputItem => (i >= from[b]! ? [id as Token, { generateNext: { probabilities: true } }] : (id as Token)));
        const out = await seqs[b]!.controlledEvaluate(items).catch((e: unknown) => {
          throw new LlamaCppError(`llama.cpp failed to score row ${b}: ${firstLine(e)}`);
        });
        return row.slice(from[b]!).map((_, i) => this.logits(out[from[b]! + i]?.next.probabilities));
      },
    );
  }

  /**
   * Rows' evaluations: together (node-llama-cpp batches them into one decode), except one after
   * another where the Vulkan build runs on a CPU device (Mesa's llvmpipe), where together gave a
   * row tokens of no sequence of its own in 5 of 12 runs of test/llamacpp.test.ts's batch of eight
   * (0 of 12 one at a time). On a GPU rows go together, as a peer's batch should.
   */
  private async eachRow<R>(rows: number[], evaluate: (b: number) => Promise<R>): Promise<R[]> {
    if (!this.rowsOneAtATime) return Promise.all(rows.map(evaluate));
    const out: R[] = [];
    for (const b of rows) out.push(await evaluate(b));
    return out;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.context?.dispose();
    await this.model.dispose();
  }
}
