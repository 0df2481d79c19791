/**
 * fusegen serve's scheduler (serve/batcher.ts) over a paged KV cache, against an engine that
 * models one: it stores each step's tokens at the positions its block tables name and computes
 * each row's next token from the tokens it reads back through them. A table that lets two
 * requests share a block, misses a position, or a preempted request that does not read its
 * prompt and tokens again, gives tokens other than the request's own sequence.
 */
import { describe, expect, it } from 'vitest';
import { BlockPool } from '../serve/block-pool.js';
import { ContinuousBatcher, type Job, type PagingOptions } from '../serve/batcher.js';
import type { StepAccess } from '../src/pipeline/types.js';
import type { KvPaging, StepInput, Stepper } from '../src/step.js';

const V = 97;

/** The model: the next token of a sequence, from every token of it and its position. */
function nextOf(context: number[]): number {
  let h = 7;
  context.forEach((t, p) => (h = (h * 31 + (t + 1) * (p + 3)) % 1_000_003));
  return h % V;
}

/** A request's tokens as the model gives them alone. */
function alone(prompt: number[], n: number): number[] {
  const seq = [...prompt];
  for (let i = 0; i < n; i++) seq.push(nextOf(seq));
  return seq.slice(prompt.length);
}

/** An engine with a paged KV cache of tokens (not keys and values): it reads back what the tables point at. */
class PagedTokenEngine implements Stepper {
  readonly pagedKv = true;
  paging: KvPaging | undefined;
  private cache: Array<number | undefined> = [];
  /** Per step, the blocks of each row that carried a request (idle rows name block 0 alone). */
  readonly tables: number[][][] = [];

  begin(_batch: number, _capacity: number, paging?: KvPaging): void {
    this.paging = paging;
    this.cache = new Array<number | undefined>(paging!.blocks * paging!.blockSize).fill(undefined);
  }

  async step(input: StepInput, needLogits: boolean): Promise<{ logits?: Float32Array; ids?: number[] }> {
    const { blockSize } = this.paging!;
    const tables = input.blockTables!;
    this.tables.push(tables.map((t) => [...t]));
    const slot = (b: number, p: number) => {
      const block = tables[b]![Math.floor(p / blockSize)];
      if (block === undefined) throw new Error(`row ${b}: no block for position ${p}`);
      return block * blockSize + (p % blockSize);
    };
    const ids = input.tokens.map((tokens, b) => {
      tokens.forEach((t, i) => (this.cache[slot(b, input.start[b]! + i)] = t));
      const end = input.start[b]! + tokens.length;
      const seen = Array.from({ length: end }, (_, p) => this.cache[slot(b, p)] ?? -1);
      return nextOf(seen);
    });
    if (!needLogits) return { ids };
    // One-hot-ish logits: the model's token far ahead, every other at 0 (a sampler still draws among them).
    const logits = new Float32Array(input.tokens.length * V);
    ids.forEach((id, b) => (logits[b * V + id] = 3));
    return { logits };
  }

  end(): void {}
}

function batcherOn(engine: Stepper, slots: number, paging?: PagingOptions, maxTokens = 64): ContinuousBatcher {
  const access = {
    stepper: engine,
    ckpt: { dims: { vocabSize: V }, eosTokenIds: [] },
    tokenizer: undefined,
    maxTokens,
    leadingRows: true,
    mixedSteps: true,
  } as unknown as StepAccess;
  return new ContinuousBatcher(access, slots, 16, paging);
}

function job(prompt: number[], maxTokens: number, temperature = 0): Job {
  return { promptIds: prompt, maxTokens, sampling: { temperature, topP: 1, topK: 0, seed: prompt.length }, topLogprobs: 0, logprobs: false, minTokens: 0, ignoreEos: true };
}

const prompts = Array.from({ length: 7 }, (_, i) => Array.from({ length: 5 + 2 * i }, (_, j) => (i * 13 + j * 7) % V));

/** Every step's request rows hold distinct blocks, none of them the scratch block. */
function expectDisjoint(tables: number[][][]): void {
  for (const rows of tables) {
    const held = rows.filter((t) => !(t.length === 1 && t[0] === BlockPool.SCRATCH)).flat();
    expect(held).not.toContain(BlockPool.SCRATCH);
    expect(new Set(held).size).toBe(held.length);
  }
}

describe('continuous batching over a paged KV cache', () => {
  it('gives every request its own sequence, each holding only the blocks its positions take', async () => {
    const engine = new PagedTokenEngine();
    const batcher = batcherOn(engine, 4, { blockSize: 4 });
    const results = await Promise.all(prompts.map((p) => batcher.submit(job(p, 12))));
    results.forEach((r, i) => expect(r.ids).toEqual(alone(prompts[i]!, 12)));
    expect(batcher.stats.preemptions).toBe(0);
    expectDisjoint(engine.tables);
    // A request holds ceil(positions / 4) blocks: 4 rows of at most 29 + 12 positions never take more than 4 x 11.
    for (const rows of engine.tables) for (const t of rows) expect(t.length).toBeLessThanOrEqual(11);
    // The default pool: every slot's whole capacity (64 positions, 16 blocks) and the scratch block; all of it free again.
    expect(batcher.pool!.blocks).toBe(4 * 16 + 1);
    expect(batcher.pool!.freeBlocks).toBe(batcher.pool!.usable);
    expect(batcher.stats.kvUsage).toBe(0);
  });

  it('preempts the latest request when the pool runs short, and it goes on where it stopped', async () => {
    const engine = new PagedTokenEngine();
    // 12 usable blocks of 4 (48 positions) for 4 slots of requests taking up to 29 + 12 positions.
    const batcher = batcherOn(engine, 4, { blockSize: 4, blocks: 13 });
    const peak: number[] = [];
    batcher.onStep = () => peak.push(batcher.stats.kvUsage!);
    const results = await Promise.all(prompts.map((p) => batcher.submit(job(p, 12))));
    results.forEach((r, i) => expect(r.ids).toEqual(alone(prompts[i]!, 12)));
    expect(batcher.stats.preemptions).toBeGreaterThan(0);
    expectDisjoint(engine.tables);
    expect(Math.max(...peak)).toBeLessThanOrEqual(1);
    expect(Math.max(...peak)).toBeGreaterThan(0.8);
    expect(batcher.pool!.freeBlocks).toBe(12);
  });

  it('keeps a preempted request\'s sampler where it was: seeded samples equal those of a pool that never runs short', async () => {
    const run = async (paging: PagingOptions) => {
      const batcher = batcherOn(new PagedTokenEngine(), 4, paging);
      const out = await Promise.all(prompts.map((p) => batcher.submit(job(p, 12, 1))));
      return { ids: out.map((r) => r.ids), preemptions: batcher.stats.preemptions };
    };
    const roomy = await run({ blockSize: 4 });
    const tight = await run({ blockSize: 4, blocks: 13 });
    expect(tight.preemptions).toBeGreaterThan(0);
    expect(roomy.preemptions).toBe(0);
    expect(tight.ids).toEqual(roomy.ids);
    // Sampling drew tokens other than the model's first choice (else this test would not test the sampler).
    expect(roomy.ids.some((ids, i) => ids.join() !== alone(prompts[i]!, 12).join())).toBe(true);
  });

  it('refuses a request the whole pool cannot hold, naming the blocks', async () => {
    const batcher = batcherOn(new PagedTokenEngine(), 2, { blockSize: 4, blocks: 6 });
    await expect(batcher.submit(job(prompts[3]!, 12))).rejects.toThrow(/needs 6 KV blocks of 4, over the 5 the pool has/);
    const ok = await batcher.submit(job(prompts[0]!, 12));
    expect(ok.ids).toEqual(alone(prompts[0]!, 12));
  });

  it('keeps whole slots for an engine without a paged cache (no pool, no tables)', async () => {
    const seen: StepInput[] = [];
    const plain: Stepper = {
      begin: (_b, _c, paging) => expect(paging).toBeUndefined(),
      step: async (input) => (seen.push(input), { ids: input.tokens.map(() => 1) }),
      end: () => {},
    };
    const batcher = batcherOn(plain, 2, { blockSize: 4 });
    const r = await batcher.submit(job(prompts[0]!, 3));
    expect(r.ids).toEqual([1, 1, 1]);
    expect(batcher.pool).toBeUndefined();
    expect(batcher.stats.kvUsage).toBeUndefined();
    expect(seen.every((s) => s.blockTables === undefined)).toBe(true);
  });
});
