/**
 * `--reference hf`: Hugging Face transformers (PyTorch) itself as the reference pipeline. The
 * checkpoint is read by transformers' own code, so a config field fusegen misreads no longer
 * changes both sides of a comparison alike.
 *
 * PyTorch runs in a Python child process (hf_reference.py, shipped beside this module's source)
 * spoken to in line-delimited JSON: one request per line on its stdin, one response per line on
 * its stdout, matched by id, so several requests may be in flight. The child's stderr is its
 * log; its last lines go into error messages (FUSEGEN_HF_VERBOSE=1 copies it to fusegen's). A child that cannot start, exits or is killed
 * fails every pending and later request with one line (never a hang); startup is time-bound.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type { Checkpoint } from '../arch/checkpoint.js';
import { FusegenError, UnsupportedError, UsageError } from '../errors.js';
import { checkCapacity, pipelineInfo } from './common.js';
import { refuseDtype } from './dtypes.js';
import { loadTokenizer, promptIds } from './tokenizer.js';
import type { DType, GenerateRequest, GenerateResult, PipelineInfo, SequenceResult, TextGenerationPipeline } from './types.js';

export const HF_SCRIPT = 'hf_reference.py';

/** What the child said about itself: versions and the torch device it runs on. */
export interface HfRuntime {
  python: string;
  torch: string;
  transformers: string;
  device: 'cpu' | 'cuda';
  deviceName: string;
}

export interface HfOptions {
  dtype: DType;
  /** KV-cache capacity in tokens (prompt + new tokens), as the other pipelines' --max_tokens. */
  maxTokens: number;
  /** Where torch runs: auto is cuda where torch sees a GPU, else cpu. Default $FUSEGEN_HF_DEVICE, else auto. */
  torchDevice?: 'auto' | 'cpu' | 'cuda';
  /** The interpreter. Default $FUSEGEN_PYTHON, else python3. */
  python?: string;
  /** The protocol script. Default $FUSEGEN_HF_REFERENCE_SCRIPT, else the shipped hf_reference.py. */
  script?: string;
  /** Imports plus model load must finish within this (default 600 s: large checkpoints, cold disks). */
  startupTimeoutMs?: number;
  /** dispose(): how long the child may take to exit after `shutdown` before it is killed (default 5 s). */
  shutdownGraceMs?: number;
  /** Largest logits payload of one score response; longer rows are scored in several requests (default 64 MiB). */
  scoreChunkBytes?: number;
}

/** The child failed after it started: an error line it sent, or its death. One line, naming --reference. */
export class HfReferenceError extends FusegenError {
  constructor(message: string) {
    super('unsupported', '--reference', `hf: ${message}`);
    this.name = 'HfReferenceError';
  }
}

const disposedError = () => new HfReferenceError('the pipeline was disposed');

const MISSING_HINT = 'install them there, or set FUSEGEN_PYTHON to an interpreter that has them';

/** The shipped script: beside this module when run from source, under src/ when run from dist/. */
export function hfReferenceScript(): string {
  const here = import.meta.dirname;
  const candidates = [join(here, HF_SCRIPT), join(here, '..', '..', '..', 'src', 'pipeline', HF_SCRIPT)];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new UnsupportedError('--reference', `hf: ${HF_SCRIPT} is missing from this installation (looked for ${candidates.join(' and ')})`);
  return found;
}

function torchDeviceFrom(o: HfOptions): 'auto' | 'cpu' | 'cuda' {
  if (o.torchDevice) return o.torchDevice;
  const env = process.env['FUSEGEN_HF_DEVICE'];
  if (env === undefined || env === '') return 'auto';
  if (env !== 'auto' && env !== 'cpu' && env !== 'cuda') throw new UsageError('FUSEGEN_HF_DEVICE (environment)', `expected one of auto, cpu, cuda, got "${env}"`);
  return env;
}

type Message = Record<string, unknown>;

interface Pending {
  op: string;
  resolve: (m: Message) => void;
  reject: (e: Error) => void;
}

/** The child process and its line protocol. */
class HfChild {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private parts: Buffer[] = [];
  private readonly stderrTail: string[] = [];
  private stderrPartial = '';
  /** Set once the child is gone or unusable: every later call fails with it. */
  private failure: Error | undefined;
  private exited = false;
  /** close() was called: the child's exit is expected, and later calls are refused. */
  private closing = false;
  private readonly exitWaiters: Array<() => void> = [];
  private startup: { resolve: (m: Message) => void; reject: (e: Error) => void } | undefined;
  hello: Message | undefined;

  constructor(
    readonly python: string,
    args: string[],
  ) {
    this.proc = spawn(python, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PYTHONUNBUFFERED: '1' } });
    this.proc.stdout.on('data', (chunk: Buffer) => this.onStdout(chunk));
    this.proc.stderr.on('data', (chunk: Buffer) => this.onStderr(chunk));
    // Writing to a child that just died raises EPIPE here; its exit is reported on its own.
    this.proc.stdin.on('error', () => {});
    this.proc.on('error', (e: NodeJS.ErrnoException) => {
      const why = e.code === 'ENOENT' ? `hf needs Python with torch and transformers: ${python} was not found (set FUSEGEN_PYTHON to such an interpreter)` : `hf: cannot start ${python}: ${e.message}`;
      this.fail(new UnsupportedError('--reference', why));
      this.markExited();
    });
    let exitTimer: NodeJS.Timeout | undefined;
    const onGone = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(exitTimer);
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      this.fail(this.closing ? disposedError() : this.deathError(how));
      this.markExited();
    };
    // 'close' comes after stdout is drained (responses written just before exit still count);
    // 'exit' starts a short wait in case a grandchild holds the pipes open.
    this.proc.on('close', onGone);
    this.proc.on('exit', (code, signal) => {
      exitTimer = setTimeout(() => onGone(code, signal), 2000);
      exitTimer.unref();
    });
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  private deathError(how: string): Error {
    const during = this.startup ? 'before it was ready' : this.pending.size ? `during ${[...new Set([...this.pending.values()].map((p) => p.op))].join(', ')}` : 'while idle';
    const last = this.lastStderr();
    const msg = `the Python reference (${this.python}, pid ${this.proc.pid ?? '?'}) ${how} ${during}${last ? ` (last stderr: ${last})` : ''}`;
    return this.startup ? new UnsupportedError('--reference', `hf: ${msg}`) : new HfReferenceError(msg);
  }

  /** The last stderr line worth showing (a traceback's last line names the error). */
  lastStderr(): string {
    const lines = [...this.stderrTail, this.stderrPartial].map((l) => l.trim()).filter(Boolean);
    const last = lines.at(-1) ?? '';
    return last.length > 300 ? `${last.slice(0, 300)}...` : last;
  }

  private onStderr(chunk: Buffer): void {
    const lines = (this.stderrPartial + chunk.toString('utf8')).split('\n');
    this.stderrPartial = lines.pop() ?? '';
    for (const l of lines) if (l.trim()) this.stderrTail.push(l);
    if (this.stderrTail.length > 50) this.stderrTail.splice(0, this.stderrTail.length - 50);
    if (process.env['FUSEGEN_HF_VERBOSE']) process.stderr.write(chunk);
  }

  /** Splits stdout into lines; a line may span many chunks (score responses are megabytes). */
  private onStdout(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      const line = this.parts.length ? Buffer.concat([...this.parts, piece]) : piece;
      this.parts = [];
      start = nl + 1;
      if (line.length) this.onLine(line.toString('utf8'));
    }
    if (start < chunk.length) this.parts.push(chunk.subarray(start));
  }

  private onLine(line: string): void {
    let m: Message;
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      m = parsed as Message;
    } catch {
      return this.protocolError(`wrote a line that is not a JSON object: ${JSON.stringify(line.slice(0, 80))}`);
    }
    if (!('id' in m)) return this.onStartupLine(m);
    const id = m['id'];
    const p = typeof id === 'number' ? this.pending.get(id) : undefined;
    // An answer nobody asked for means the pairing is lost: fail everything rather than wait forever.
    if (!p) return this.protocolError(`answered an unknown request id ${JSON.stringify(id)}${typeof m['error'] === 'string' ? `: ${m['error']}` : ''}`);
    this.pending.delete(id as number);
    if (typeof m['error'] === 'string') p.reject(new HfReferenceError(`${p.op} failed in Python: ${m['error'].split('\n')[0]}`));
    else p.resolve(m);
  }

  private onStartupLine(m: Message): void {
    const s = this.startup;
    if (!s) return this.protocolError(`sent a line without an id after startup: ${JSON.stringify(m).slice(0, 80)}`);
    if (m['hello']) {
      this.hello = m['hello'] as Message;
    } else if (m['ready']) {
      this.startup = undefined;
      s.resolve(m['ready'] as Message);
    } else if (typeof m['error'] === 'string') {
      const missing = Array.isArray(m['missing']) ? (m['missing'] as string[]) : [];
      const py = typeof m['python'] === 'string' ? ` (Python ${m['python']})` : '';
      const why = missing.length
        ? `hf needs torch and transformers: ${this.python}${py} cannot import ${missing.join(' or ')} (${MISSING_HINT})`
        : `hf: ${m['error'].split('\n')[0]}`;
      this.fail(new UnsupportedError('--reference', why));
      this.kill();
    } else {
      this.protocolError(`sent an unexpected startup line: ${JSON.stringify(m).slice(0, 80)}`);
    }
  }

  private protocolError(what: string): void {
    const e = `the Python reference (${this.python}, pid ${this.proc.pid ?? '?'}) ${what}`;
    this.fail(this.startup ? new UnsupportedError('--reference', `hf: ${e}`) : new HfReferenceError(e));
    this.kill();
  }

  /** Rejects the startup and every pending request with `e`; later calls fail with it too. */
  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    const s = this.startup;
    this.startup = undefined;
    s?.reject(e);
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(e);
  }

  private markExited(): void {
    if (this.exited) return;
    this.exited = true;
    for (const w of this.exitWaiters.splice(0)) w();
  }

  /** Waits for hello and ready, at most `timeoutMs`; kills the child on any failure. */
  waitReady(timeoutMs: number): Promise<Message> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        const stage = this.hello ? 'loading the model' : 'importing torch and transformers';
        const last = this.lastStderr();
        this.fail(new UnsupportedError('--reference', `hf: the Python reference (${this.python}) was not ready within ${timeoutMs / 1000} s (still ${stage})${last ? ` (last stderr: ${last})` : ''}`));
        this.kill();
      }, timeoutMs);
      this.startup = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          this.kill();
          reject(e);
        },
      };
    });
  }

  call(op: string, body: Message = {}): Promise<Message> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(disposedError());
    const id = this.nextId++;
    return new Promise<Message>((resolve, reject) => {
      this.pending.set(id, { op, resolve, reject });
      this.proc.stdin.write(`${JSON.stringify({ id, op, ...body })}\n`);
    });
  }

  private waitExit(ms: number): Promise<boolean> {
    if (this.exited) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.exitWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  kill(): void {
    if (!this.exited) this.proc.kill('SIGKILL');
  }

  /** Asks the child to exit, kills it when it does not within `graceMs`; resolves once it is gone. */
  async close(graceMs: number): Promise<void> {
    if (!this.exited && !this.failure) {
      // Requests already sent are answered first: the child reads its stdin in order.
      void this.call('shutdown').catch(() => {});
      this.proc.stdin.end();
    }
    this.closing = true;
    if (await this.waitExit(graceMs)) return;
    this.kill();
    await this.waitExit(5000);
  }
}

function num(m: Message, key: string): number {
  const v = m[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new HfReferenceError(`the Python reference's answer lacks the number "${key}"`);
  return v;
}

interface HfRow {
  prompt_ids: number[];
  new_ids: number[];
  finish_reason: 'eos' | 'length';
  text: string;
  generated_text: string;
  top_k?: Array<{ ids: number[]; values: number[] }>;
}

export class HfPipeline implements TextGenerationPipeline {
  private disposed = false;

  private constructor(
    readonly info: PipelineInfo,
    readonly runtime: HfRuntime,
    private readonly ckpt: Checkpoint,
    private readonly maxTokens: number,
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly child: HfChild,
    private readonly vocab: number,
    private readonly o: HfOptions,
  ) {}

  /** The child's process id (tests kill it to prove a death is reported). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  static async create(ckpt: Checkpoint, o: HfOptions): Promise<HfPipeline> {
    const t0 = performance.now();
    refuseDtype(o.dtype, 'hf', '--reference hf');
    const device = torchDeviceFrom(o);
    const script = o.script ?? (process.env['FUSEGEN_HF_REFERENCE_SCRIPT'] || hfReferenceScript());
    if (!existsSync(script)) throw new UnsupportedError('--reference', `hf: the protocol script ${script} does not exist`);
    const python = o.python ?? (process.env['FUSEGEN_PYTHON'] || 'python3');
    const tokenizer = await loadTokenizer(ckpt); // validate()'s prompt lengths: it must answer synchronously
    const child = new HfChild(python, [script, '--model', ckpt.dir, '--dtype', o.dtype, '--device', device]);
    const ready = await child.waitReady(o.startupTimeoutMs ?? 600_000);
    const hello = child.hello ?? {};
    const runtime: HfRuntime = {
      python: String(hello['python'] ?? 'unknown'),
      torch: String(hello['torch'] ?? 'unknown'),
      transformers: String(hello['transformers'] ?? 'unknown'),
      device: hello['device'] === 'cuda' ? 'cuda' : 'cpu',
      deviceName: String(hello['device_name'] ?? ''),
    };
    const info = pipelineInfo('hf', ckpt, runtime.device, o.dtype, performance.now() - t0);
    info.executionProviders = [`pytorch-${runtime.device}`];
    const vocab = typeof ready['vocab'] === 'number' ? ready['vocab'] : ckpt.dims.vocabSize;
    return new HfPipeline(info, runtime, ckpt, o.maxTokens, tokenizer, child, vocab, o);
  }

  /** Throws before any work when the request cannot fit; prompt lengths from fusegen's tokenizer (generate() rechecks with Hugging Face's). */
  validate(request: GenerateRequest): void {
    const rows = promptIds(this.tokenizer, request);
    checkCapacity(this.ckpt, this.maxTokens, Math.max(...rows.map((r) => r.length)), request.maxNewTokens);
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const t0 = performance.now();
    const ids = request.promptTokens ?? ((await this.child.call('tokenize', { prompts: request.prompts }))['ids'] as number[][]);
    checkCapacity(this.ckpt, this.maxTokens, Math.max(...ids.map((r) => r.length)), request.maxNewTokens);
    const tokenizeMs = performance.now() - t0;
    const k = request.recordTopK ?? 0;
    const res = await this.child.call('generate', {
      prompt_ids: ids,
      max_new_tokens: request.maxNewTokens,
      min_new_tokens: request.minNewTokens ?? 0,
      do_sample: request.doSample,
      seed: request.seed ?? 0,
      top_k: k,
      ignore_eos: request.ignoreEos ?? false,
    });
    const rows = res['rows'] as HfRow[];
    if (!Array.isArray(rows) || rows.length !== ids.length) throw new HfReferenceError(`generate answered ${Array.isArray(rows) ? rows.length : 'no'} rows for ${ids.length} prompts`);
    const timings = res['timings'] as Message;
    const sequences = rows.map((r, b): SequenceResult => {
      const seq: SequenceResult = {
        prompt: request.prompts[b] ?? '',
        promptIds: r.prompt_ids,
        newIds: r.new_ids,
        finishReason: r.finish_reason,
        text: r.text,
        generatedText: r.generated_text,
      };
      if (k > 0) seq.topK = (r.top_k ?? []).map((s) => ({ ids: s.ids, values: s.values }));
      return seq;
    });
    return {
      sequences,
      promptLength: num(res, 'prompt_length'),
      steps: num(res, 'steps'),
      timings: {
        firstTokenMs: tokenizeMs + num(timings, 'first_token_ms'),
        decodeStepMs: timings['decode_step_ms'] as number[],
        totalMs: performance.now() - t0,
      },
    };
  }

  async score(rows: number[][], from: number[]): Promise<Float32Array[][]> {
    if (rows.length !== from.length) throw new Error(`score: ${rows.length} rows but ${from.length} starts`);
    // A response carries at most scoreChunkBytes of logits: longer rows go in several requests,
    // each the row's prefix up to its last position (causal: later tokens do not change them).
    const per = Math.max(1, Math.floor((this.o.scoreChunkBytes ?? 64 * 2 ** 20) / (4 * this.vocab)));
    const jobs = rows.map((row, b) => {
      const parts: Array<Promise<Float32Array[]>> = [];
      for (let s = from[b]!; s < row.length; s += per) {
        const e = Math.min(row.length, s + per);
        parts.push(this.scoreRange(row.slice(0, e), s));
      }
      return Promise.all(parts).then((p) => p.flat());
    });
    return Promise.all(jobs); // all in flight at once; every rejection is handled
  }

  private async scoreRange(row: number[], from: number): Promise<Float32Array[]> {
    const res = await this.child.call('score', { rows: [row], from: [from] });
    const vocab = num(res, 'vocab');
    const payload = (res['logits'] as unknown[] | undefined)?.[0];
    const positions = row.length - from;
    if (typeof payload !== 'string') throw new HfReferenceError('score answered without logits');
    const bytes = Buffer.from(payload, 'base64');
    if (bytes.length !== positions * vocab * 4) throw new HfReferenceError(`score answered ${bytes.length} bytes of logits for ${positions} positions of ${vocab}`);
    // float32 little-endian, as every platform Node runs fusegen on stores it.
    const all = new Float32Array(positions * vocab);
    new Uint8Array(all.buffer).set(bytes);
    return Array.from({ length: positions }, (_, i) => all.subarray(i * vocab, (i + 1) * vocab));
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.child.close(this.o.shutdownGraceMs ?? 5000);
  }
}
