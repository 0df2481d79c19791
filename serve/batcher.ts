/**
 * Continuous batching over a pipeline's own steps (StepAccess): a request joins the running
 * batch at the next step boundary, in the lowest free slot, and leaves it when it finishes, so
 * the engine always steps every request in flight together.
 *
 * KV memory: where the engine pages its cache (the WGSL engine), a request holds blocks from a
 * pool (BlockPool) as its positions grow, not a slot's whole capacity: the pool may be smaller
 * than slots x positions. A request is admitted only when the pool can take its prompt beside
 * what the running ones still need for theirs; when a running request needs a block and none is
 * free, the latest arrival is preempted (vLLM's recompute preemption): its blocks go back, and it
 * waits at the head of the queue to read its prompt and the tokens it had generated again, then
 * goes on where it stopped. Elsewhere (ORT) each slot holds a cache of the engine's capacity.
 *
 * A step carries a new request's prompt (whole, or a chunk of it beside running rows) and one
 * token of every running one, each row at its own position. Greedy rows take the engine's argmax when no row of the step needs logits;
 * a step where any row samples, wants logprobs or must not end yet (min_tokens) brings logits
 * back and each row is decided on the host.
 */
import { CapacityError } from '../src/errors.js';
import { BlockPool } from './block-pool.js';
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

interface Waiting {
  job: Job;
  resolve: (r: JobResult) => void;
  reject: (e: Error) => void;
  submitted: number;
  /** A preempted request: what it had when it left the batch. */
  resumed?: Pick<Slot, 'started' | 'ids' | 'sampler'>;
}

interface Slot extends Waiting {
  started: number;
  /** Tokens the slot's cache holds: its prompt, then its generated ids, are fed up to here. */
  position: number;
  ids: number[];
  sampler: Sampler;
  /** Its blocks in order (a paged cache). */
  blocks: number[];
}

export interface BatcherStats {
  running: number;
  waiting: number;
  steps: number;
  /** Requests sent back to the queue to free KV blocks. */
  preemptions: number;
  /** The KV block pool's use (0..1), where the engine pages its cache. */
  kvUsage?: number;
}

/** The paged KV cache a batcher asks of an engine that has one: blocks of `blockSize` positions. */
export interface PagingOptions {
  blockSize: number;
  /** Blocks in the pool, the scratch block included (default: every slot's whole capacity, and one). */
  blocks?: number;
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
  preemptions = 0;
  /** The KV block pool, where the engine pages its cache (pagedKv). */
  readonly pool: BlockPool | undefined;
  readonly tokenizer: StepAccess['tokenizer'];
  /** Called after every step with the rows it carried (metrics). */
  onStep?: (rows: number, ms: number) => void;

  constructor(
    private readonly access: StepAccess,
    readonly size: number,
    /** Tokens (rows x padded length) a step may carry while prompts join running rows (vLLM's max_num_batched_tokens). */
    private readonly stepTokens = 512,
    paging?: PagingOptions,
  ) {
    this.tokenizer = access.tokenizer;
    this.slots = new Array<Slot | undefined>(size).fill(undefined);
    if (paging && access.stepper.pagedKv) {
      const perSlot = Math.ceil(access.maxTokens / paging.blockSize);
      this.pool = new BlockPool(paging.blocks ?? size * perSlot + 1, paging.blockSize);
    }
  }

  get stats(): BatcherStats {
    const pool = this.pool;
    return {
      running: this.slots.filter(Boolean).length,
      waiting: this.queue.length,
      steps: this.steps,
      preemptions: this.preemptions,
      ...(pool ? { kvUsage: 1 - pool.freeBlocks / pool.usable } : {}),
    };
  }

  /** Queues a request; resolves when it finishes (length, end-of-sequence, a stop, or its signal). */
  submit(job: Job): Promise<JobResult> {
    if (this.closed) return Promise.reject(new Error('the server is shutting down'));
    const need = job.promptIds.length + job.maxTokens;
    if (job.promptIds.length === 0) return Promise.reject(new CapacityError('prompt', 'is empty'));
    if (need > this.access.maxTokens) return Promise.reject(new CapacityError('max_tokens', `prompt (${job.promptIds.length} tokens) plus max_tokens (${job.maxTokens}) is ${need}, over the ${this.access.maxTokens} positions a request may hold`));
    const pool = this.pool;
    if (pool && pool.blocksFor(need) > pool.usable) return Promise.reject(new CapacityError('max_tokens', `prompt (${job.promptIds.length} tokens) plus max_tokens (${job.maxTokens}) needs ${pool.blocksFor(need)} KV blocks of ${pool.blockSize}, over the ${pool.usable} the pool has`));
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
        const step = this.plan();
        if (!step) return;
        const { active, input, needLogits } = step;
        if (!this.begun) {
          await stepper.begin(this.size, this.access.maxTokens, this.pool && { blockSize: this.pool.blockSize, blocks: this.pool.blocks });
          this.begun = true;
        }
        const t0 = performance.now();
        const out = await stepper.step(input, needLogits);
        this.steps++;
        this.onStep?.(active.length, performance.now() - t0);
        for (const b of active) {
          const s = this.slots[b]!;
          s.position += input.tokens[b]!.length;
          if (s.position < contextLength(s)) continue; // still reading its prompt (preempted: and what it had generated)
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
        if (s) {
          this.pool?.release(s.blocks);
          s.reject(e as Error);
        }
        this.slots[b] = undefined;
      }
      for (const w of this.queue.splice(0)) w.reject(e as Error);
    }
  }

  /**
   * The next step: every row's tokens at its position (and, paged, its blocks covering them,
   * the latest admitted request preempted while the pool is short); undefined when none runs.
   */
  private plan(): { active: number[]; input: StepInput; needLogits: boolean } | undefined {
    for (;;) {
      const active = this.slots.flatMap((s, b) => (s ? [b] : []));
      if (active.length === 0) return undefined;
      // Leading rows up to the last busy slot, rounded up to a power of two: few step shapes, so
      // few buffer sets and recorded dispatch lists, at the cost of a few idle rows.
      const rows = this.access.leadingRows ? Math.min(this.size, 2 ** Math.ceil(Math.log2(active[active.length - 1]! + 1))) : this.size;
      // A step pads every row to its longest, so a prompt joining running rows goes in by chunks
      // that keep the step within `stepTokens` (rows x padded length: chunked prefill), a token a step where the
      // engine cannot mix; prompts alone in a step go in whole.
      const chunk = active.every((b) => this.slots[b]!.position === 0) ? Infinity : this.access.mixedSteps ? Math.max(1, Math.floor(this.stepTokens / rows)) : 1;
      const input: StepInput = { tokens: [], start: [], last: [], suppress: [], ...(this.pool ? { blockTables: [] } : {}) };
      let needLogits = false;
      let short: number | undefined;
      for (let b = 0; b < rows; b++) {
        const s = this.slots[b];
        // An idle row below the last active one computes a throwaway token at position 0 of its own cache (paged: of the scratch block).
        const tokens = s ? nextTokens(s, chunk) : [0];
        if (s && this.pool && !this.pool.cover(s.blocks, s.position + tokens.length)) short ??= b;
        input.tokens.push(tokens);
        input.start.push(s ? s.position : 0);
        input.last.push(tokens.length - 1);
        input.blockTables?.push(s ? s.blocks : [BlockPool.SCRATCH]);
        if (s && (s.job.sampling.temperature > 0 || s.job.logprobs || (!s.job.ignoreEos && s.ids.length < s.job.minTokens))) needLogits = true;
      }
      if (short === undefined) return { active, input, needLogits };
      // submit() keeps every request within the pool, so a request alone always fits.
      if (active.length === 1) throw new Error(`the KV pool cannot hold the only running request (${this.pool!.freeBlocks} blocks free)`);
      // The latest arrival goes back to the queue (vLLM's order); the step is planned again without it.
      this.preempt(active.reduce((a, b) => (this.slots[b]!.submitted > this.slots[a]!.submitted ? b : a)));
    }
  }

  /** Waiting requests into free slots, lowest first (so the rows a step carries stay few), in order while the KV pool takes their prompts; requests cancelled while waiting leave. */
  private admit(): void {
    for (let i = 0; i < this.queue.length; ) {
      const w = this.queue[i]!;
      if (w.job.signal?.aborted) {
        this.queue.splice(i, 1);
        w.resolve({ ids: w.resumed?.ids ?? [], finishReason: 'abort', queuedMs: (w.resumed?.started ?? performance.now()) - w.submitted });
      } else i++;
    }
    const pool = this.pool;
    // Blocks the running requests still need for what they have to read (their prompts, chunked).
    let committed = 0;
    if (pool) for (const s of this.slots) if (s) committed += Math.max(0, pool.blocksFor(contextLength(s)) - s.blocks.length);
    for (let b = 0; b < this.size && this.queue.length > 0; b++) {
      if (this.slots[b]) continue;
      const w = this.queue[0]!;
      if (pool) {
        // Its prompt (preempted: and what it had generated) and a block's room to go on, leaving vLLM's
        // watermark (1% of the pool) for the running ones' next blocks; into an empty batch it goes anyway.
        const need = pool.blocksFor(w.job.promptIds.length + (w.resumed?.ids.length ?? 0) + 1);
        const idle = this.slots.every((s) => !s);
        if (!idle && pool.freeBlocks - committed - need < Math.ceil(pool.usable / 100)) break;
        committed += need;
      }
      this.queue.shift();
      const p = w.job.sampling;
      const resumed = w.resumed ?? { started: performance.now(), ids: [], sampler: makeSampler(p.temperature > 0, p.seed, { temperature: p.temperature || 1, topK: p.topK, topP: p.topP }) };
      this.slots[b] = { job: w.job, resolve: w.resolve, reject: w.reject, submitted: w.submitted, ...resumed, position: 0, blocks: [] };
    }
  }

  /** Sends a running request back to the head of the queue, its blocks freed: it reads its prompt and tokens again when readmitted (recompute). */
  private preempt(b: number): void {
    const s = this.slots[b]!;
    this.slots[b] = undefined;
    this.pool!.release(s.blocks);
    this.preemptions++;
    this.queue.unshift({ job: s.job, resolve: s.resolve, reject: s.reject, submitted: s.submitted, resumed: { started: s.started, ids: s.ids, sampler: s.sampler } });
  }

  private finish(b: number, finishReason: JobResult['finishReason']): void {
    const s = this.slots[b]!;
    this.slots[b] = undefined;
    this.pool?.release(s.blocks);
    s.resolve({ ids: s.ids, finishReason, queuedMs: s.started - s.submitted });
  }
}

/** Positions a slot's cache holds once fed: its prompt, then its generated ids. */
function contextLength(s: Slot): number {
  return s.job.promptIds.length + s.ids.length;
}

/** Up to `n` of the slot's tokens from its position on: its prompt, then its generated ids (the last one, at decode). */
function nextTokens(s: Slot, n: number): number[] {
  const prompt = s.job.promptIds;
  const end = Math.min(contextLength(s), s.position + n);
  if (end <= prompt.length) return prompt.slice(s.position, end);
  return [...prompt.slice(s.position), ...s.ids.slice(Math.max(0, s.position - prompt.length), end - prompt.length)];
}

/** The k most likely ids of a logits row with their log-probabilities (`lse`: the row's logSumExp). */
export function topLogprobs(row: ArrayLike<number>, k: number, lse: number): Array<{ id: number; logprob: number }> {
  const t = topK(row, k);
  return t.ids.map((id, i) => ({ id, logprob: t.values[i]! - lse }));
}
