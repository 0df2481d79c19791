/**
 * Continuous batching over a pipeline's own steps (StepAccess): a request joins the running
 * batch at the next step boundary, in the lowest free slot, and leaves it when it finishes, so
 * the engine always steps every request in flight together. Each slot holds one request's KV
 * cache at the engine's capacity a row (not a paged pool: a slot is reserved for a request's
 * whole life, as the first continuous-batching servers did).
 *
 * A step carries a new request's prompt (whole, or a chunk of it beside running rows) and one
 * token of every running one, each row at its own position. Greedy rows take the engine's argmax when no row of the step needs logits;
 * a step where any row samples, wants logprobs or must not end yet (min_tokens) brings logits
 * back and each row is decided on the host.
 */
import { CapacityError } from '../src/errors.js';
import { logSumExp, topK } from '../src/pipeline/common.js';
import { makeSampler, type Sampler } from '../src/pipeline/sampling.js';
import type { StepAccess } from '../src/pipeline/types.js';
import type { StepInput } from '../src/step.js';

export interface SamplingParams {
  /** 0: greedy. */
  temperature: number;
  topP: number;
  /** 0: no top-k cut. */
  topK: number;
  seed: number;
}

export interface Job {
  promptIds: number[];
  maxTokens: number;
  sampling: SamplingParams;
  /** Top logprobs to return per generated token (0: only when `logprobs` is set, the chosen token's). */
  topLogprobs: number;
  /** Return the chosen token's logprob (and `topLogprobs` alternatives). */
  logprobs: boolean;
  /** End-of-sequence does not end the request before this many tokens. */
  minTokens: number;
  ignoreEos: boolean;
  signal?: AbortSignal;
  /** Every generated token as it is chosen; returning true ends the request (a stop string matched). */
  onToken?: (t: GeneratedToken) => boolean | void;
}

export interface GeneratedToken {
  id: number;
  logprob?: number;
  /** 1-based rank of `id` in the distribution (prompt logprobs, as vLLM gives it). */
  rank?: number;
  top?: Array<{ id: number; logprob: number }>;
}

export interface JobResult {
  ids: number[];
  finishReason: 'stop' | 'length' | 'abort';
  /** From submission to the first step that carried the request. */
  queuedMs: number;
}

interface Slot {
  job: Job;
  resolve: (r: JobResult) => void;
  reject: (e: Error) => void;
  submitted: number;
  started: number;
  /** Tokens the slot's cache holds. */
  position: number;
  ids: number[];
  sampler: Sampler;
  /** Prompt tokens in the cache so far. */
  fed: number;
}

type Waiting = Omit<Slot, 'started' | 'position' | 'ids' | 'sampler' | 'fed'>;

export interface BatcherStats {
  running: number;
  waiting: number;
  steps: number;
}

export class ContinuousBatcher {
  private readonly slots: Array<Slot | undefined>;
  private readonly queue: Waiting[] = [];
  private loop: Promise<void> | undefined;
  /** An exclusive run on the engine (a teacher-forced pass): the batch waits for it. */
  private held: Promise<void> | undefined;
  private begun = false;
  private closed = false;
  steps = 0;
  readonly tokenizer: StepAccess['tokenizer'];
  /** Called after every step with the rows it carried (metrics). */
  onStep?: (rows: number, ms: number) => void;

  constructor(
    private readonly access: StepAccess,
    readonly size: number,
    /** Tokens (rows x padded length) a step may carry while prompts join running rows (vLLM's max_num_batched_tokens). */
    private readonly stepTokens = 512,
  ) {
    this.tokenizer = access.tokenizer;
    this.slots = new Array<Slot | undefined>(size).fill(undefined);
  }

  get stats(): BatcherStats {
    return { running: this.slots.filter(Boolean).length, waiting: this.queue.length, steps: this.steps };
  }

  /** Queues a request; resolves when it finishes (length, end-of-sequence, a stop, or its signal). */
  submit(job: Job): Promise<JobResult> {
    if (this.closed) return Promise.reject(new Error('the server is shutting down'));
    const need = job.promptIds.length + job.maxTokens;
    if (job.promptIds.length === 0) return Promise.reject(new CapacityError('prompt', 'is empty'));
    if (need > this.access.maxTokens) return Promise.reject(new CapacityError('max_tokens', `prompt (${job.promptIds.length} tokens) plus max_tokens (${job.maxTokens}) is ${need}, over the ${this.access.maxTokens} positions a request may hold`));
    return new Promise<JobResult>((resolve, reject) => {
      this.queue.push({ job, resolve, reject, submitted: performance.now() });
      this.loop ??= this.run().finally(() => (this.loop = undefined));
    });
  }

  /** Runs `fn` alone on the engine (no request in flight), then lets the batch go on (it begins anew). */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    for (;;) {
      if (this.loop) await this.loop;
      else if (this.held) await this.held;
      else break;
    }
    const done = fn();
    this.held = done.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await done;
    } finally {
      this.held = undefined;
      this.begun = false;
    }
  }

  /** Refuses new requests, ends those in flight with `abort`, and releases the engine. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.queue.splice(0)) w.resolve({ ids: [], finishReason: 'abort', queuedMs: performance.now() - w.submitted });
    for (const s of this.slots) if (s) s.job.signal = AbortSignal.abort();
    while (this.loop) await this.loop;
    if (this.begun) this.access.stepper.end();
    this.begun = false;
  }

  private async run(): Promise<void> {
    const { stepper, ckpt } = this.access;
    const V = ckpt.dims.vocabSize;
    const eos = ckpt.eosTokenIds;
    while (this.held) await this.held;
    try {
      for (;;) {
        this.admit();
        const active = this.slots.flatMap((s, b) => (s ? [b] : []));
        if (active.length === 0) return;
        if (!this.begun) {
          await stepper.begin(this.size, this.access.maxTokens);
          this.begun = true;
        }
        // Leading rows up to the last busy slot, rounded up to a power of two: few step shapes, so
        // few buffer sets and recorded dispatch lists, at the cost of a few idle rows.
        const rows = this.access.leadingRows ? Math.min(this.size, 2 ** Math.ceil(Math.log2(active[active.length - 1]! + 1))) : this.size;
        // A step pads every row to its longest, so a prompt joining running rows goes in by chunks
        // that keep the step within `stepTokens` (rows x padded length: chunked prefill), a token a step where the
        // engine cannot mix; prompts alone in a step go in whole.
        const chunk = active.every((b) => this.slots[b]!.position === 0) ? Infinity : this.access.mixedSteps ? Math.max(1, Math.floor(this.stepTokens / rows)) : 1;
        const input: StepInput = { tokens: [], start: [], last: [], suppress: [] };
        let needLogits = false;
        for (let b = 0; b < rows; b++) {
          const s = this.slots[b];
          const prompt = s?.job.promptIds;
          // An idle row below the last active one computes a throwaway token at position 0 of its own cache.
          const tokens = !s ? [0] : s.fed < prompt!.length ? prompt!.slice(s.fed, s.fed + chunk) : [s.ids[s.ids.length - 1]!];
          input.tokens.push(tokens);
          input.start.push(s ? s.position : 0);
          input.last.push(tokens.length - 1);
          if (s && (s.job.sampling.temperature > 0 || s.job.logprobs || (!s.job.ignoreEos && s.ids.length < s.job.minTokens))) needLogits = true;
        }
        const t0 = performance.now();
        const out = await stepper.step(input, needLogits);
        this.steps++;
        this.onStep?.(active.length, performance.now() - t0);
        for (const b of active) {
          const s = this.slots[b]!;
          s.position += input.tokens[b]!.length;
          if (s.fed < s.job.promptIds.length) {
            s.fed += input.tokens[b]!.length;
            if (s.fed < s.job.promptIds.length) continue; // still reading its prompt
          }
          let chosen: GeneratedToken;
          if (out.logits) {
            const row = out.logits.subarray(b * V, (b + 1) * V);
            // The model's own log-probabilities (as vLLM returns them by default), read before end-of-sequence is masked.
            const lse = s.job.logprobs ? logSumExp(row) : 0;
            const top = s.job.logprobs && s.job.topLogprobs > 0 ? topLogprobs(row, s.job.topLogprobs, lse) : undefined;
            if (!s.job.ignoreEos && s.ids.length < s.job.minTokens) for (const e of eos) row[e] = -Infinity;
            const id = s.sampler(row);
            chosen = { id };
            if (s.job.logprobs) chosen.logprob = row[id]! - lse; // the chosen id is never a masked one
            if (top) chosen.top = top;
          } else chosen = { id: out.ids![b]! };
          s.ids.push(chosen.id);
          const stopped = s.job.onToken?.(chosen) === true;
          const ended = !s.job.ignoreEos && s.ids.length >= s.job.minTokens && eos.includes(chosen.id);
          if (stopped || ended) this.finish(b, 'stop');
          else if (s.ids.length >= s.job.maxTokens) this.finish(b, 'length');
          else if (s.job.signal?.aborted) this.finish(b, 'abort');
        }
      }
    } catch (e) {
      // The engine failed: every request in flight or waiting fails with it, and the next one begins anew.
      this.begun = false;
      for (let b = 0; b < this.size; b++) {
        const s = this.slots[b];
        if (s) s.reject(e as Error);
        this.slots[b] = undefined;
      }
      for (const w of this.queue.splice(0)) w.reject(e as Error);
    }
  }

  /** Waiting requests into free slots, lowest first (so the rows a step carries stay few); requests cancelled while waiting leave. */
  private admit(): void {
    for (let i = 0; i < this.queue.length; ) {
      const w = this.queue[i]!;
      if (w.job.signal?.aborted) {
        this.queue.splice(i, 1);
        w.resolve({ ids: [], finishReason: 'abort', queuedMs: performance.now() - w.submitted });
      } else i++;
    }
    for (let b = 0; b < this.size && this.queue.length > 0; b++) {
      if (this.slots[b]) continue;
      const w = this.queue.shift()!;
      const p = w.job.sampling;
      this.slots[b] = { ...w, started: performance.now(), position: 0, ids: [], fed: 0, sampler: makeSampler(p.temperature > 0, p.seed, { temperature: p.temperature || 1, topK: p.topK, topP: p.topP }) };
    }
  }

  private finish(b: number, finishReason: JobResult['finishReason']): void {
    const s = this.slots[b]!;
    this.slots[b] = undefined;
    s.resolve({ ids: s.ids, finishReason, queuedMs: s.started - s.submitted });
  }
}

/** The k most likely ids of a logits row with their log-probabilities (`lse`: the row's logSumExp). */
export function topLogprobs(row: ArrayLike<number>, k: number, lse: number): Array<{ id: number; logprob: number }> {
  const t = topK(row, k);
  return t.ids.map((id, i) => ({ id, logprob: t.values[i]! - lse }));
}
