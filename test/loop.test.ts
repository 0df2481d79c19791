/**
 * The shared generate loop's run-ahead: with an engine that feeds its own greedy ids back
 * (`feedsBack`), step t + 1 is submitted before step t's ids are back, the tokens are the
 * same as step by step, end-of-sequence still stops rows, and no step is left in flight when
 * the engine is released. A deterministic stand-in engine keeps the test about the loop.
 */
import { describe, expect, it } from 'vitest';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { generateLoop, type StepInput, type Stepper } from '../src/pipeline/loop.js';
import { loadTokenizer } from '../src/pipeline/tokenizer.js';

const ckpt = openCheckpoint(tinyModelDir('opt'));
const V = ckpt.dims.vocabSize;
const EOS = ckpt.eosTokenIds[0]!;

/** The stand-in model: the next token of a row from its last token and position. */
function nextToken(token: number, position: number, eosAt?: number): number {
  if (eosAt !== undefined && position >= eosAt) return EOS;
  const t = (token * 31 + position * 7 + 5) % V;
  return t === EOS ? t + 1 : t;
}

class FakeEngine implements Stepper {
  readonly events: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  fedFromDevice = 0;
  ended = false;
  private onDevice: number[] = [];
  private submitted = 0;

  constructor(
    readonly feedsBack: boolean,
    private readonly eosAt?: number[],
    readonly stepsAhead?: number,
  ) {}

  begin(): void {}

  step(input: StepInput, needLogits: boolean): Promise<{ logits?: Float32Array; ids?: number[] }> {
    const n = this.submitted++;
    if (input.fromDevice) {
      expect(this.feedsBack).toBe(true);
      expect(needLogits).toBe(false);
      this.fedFromDevice++;
    }
    // Computed at submission, as a device would: from the device's own last ids when fed from it.
    const ids = input.tokens.map((row, b) => {
      const last = input.fromDevice ? this.onDevice[b]! : row[input.last[b]!]!;
      return nextToken(last, input.start[b]! + input.last[b]!, this.eosAt?.[b]);
    });
    this.onDevice = ids;
    this.events.push(`submit ${n}`);
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    return new Promise((resolve) =>
      setTimeout(() => {
        this.inFlight--;
        this.events.push(`done ${n}`);
        if (!needLogits) return resolve({ ids });
        const logits = new Float32Array(ids.length * V);
        ids.forEach((id, b) => (logits[b * V + id] = 1));
        resolve({ logits });
      }, 1),
    );
  }

  end(): void {
    expect(this.inFlight).toBe(0);
    this.ended = true;
  }
}

const tokenizer = await loadTokenizer(ckpt);
const prompts = [[5, 6, 7, 8], [9, 10]];
const request = { prompts: ['a', 'b'], promptTokens: prompts, maxNewTokens: 12, doSample: false };

describe('generate loop run-ahead', () => {
  it('submits step t + 1 before step t is back, with the same tokens as step by step', async () => {
    const ahead = new FakeEngine(true);
    const plain = new FakeEngine(false);
    const a = await generateLoop(ahead, { ...request, ignoreEos: true }, ckpt, tokenizer, 64);
    const p = await generateLoop(plain, { ...request, ignoreEos: true }, ckpt, tokenizer, 64);
    expect(a.sequences.map((s) => s.newIds)).toEqual(p.sequences.map((s) => s.newIds));
    expect(a.sequences[0]!.newIds).toHaveLength(12);
    // Step-by-step never overlaps; run-ahead keeps two steps in flight, never more.
    expect(plain.maxInFlight).toBe(1);
    expect(ahead.maxInFlight).toBe(2);
    expect(ahead.fedFromDevice).toBe(11);
    for (let t = 0; t + 1 < 12; t++) expect(ahead.events.indexOf(`submit ${t + 1}`)).toBeLessThan(ahead.events.indexOf(`done ${t}`));
    expect(ahead.events.filter((e) => e.startsWith('submit'))).toHaveLength(12); // none past the last token
    expect(ahead.ended).toBe(true);
  });

  it('keeps stepsAhead + 1 steps in flight when the engine asks for more, tokens unchanged', async () => {
    const deep = new FakeEngine(true, undefined, 3);
    const plain = new FakeEngine(false);
    const d = await generateLoop(deep, { ...request, ignoreEos: true }, ckpt, tokenizer, 64);
    const p = await generateLoop(plain, { ...request, ignoreEos: true }, ckpt, tokenizer, 64);
    expect(d.sequences.map((s) => s.newIds)).toEqual(p.sequences.map((s) => s.newIds));
    expect(deep.maxInFlight).toBe(4);
    expect(deep.fedFromDevice).toBe(11);
    for (let t = 0; t + 3 < 12; t++) expect(deep.events.indexOf(`submit ${t + 3}`)).toBeLessThan(deep.events.indexOf(`done ${t}`));
    expect(deep.events.filter((e) => e.startsWith('submit'))).toHaveLength(12);
    expect(deep.ended).toBe(true);
  });

  it('stops at end-of-sequence with several steps ahead and finishes them all before releasing', async () => {
    const deep = new FakeEngine(true, [5, 4], 2);
    const r = await generateLoop(deep, request, ckpt, tokenizer, 64);
    expect(r.sequences.map((s) => s.newIds.length)).toEqual([3, 4]);
    // Steps 0..3 are read; 4 and 5 were already submitted and completed before end().
    expect(deep.events.filter((e) => e.startsWith('submit'))).toHaveLength(6);
    expect(deep.events.filter((e) => e.startsWith('done'))).toHaveLength(6);
    expect(deep.ended).toBe(true);
  });

  it('stops at end-of-sequence and finishes the step already in flight before releasing', async () => {
    // Row 0 ends where its input is at position 5 (its 3rd new token), row 1 at 4 (its 4th).
    const ahead = new FakeEngine(true, [5, 4]);
    const r = await generateLoop(ahead, request, ckpt, tokenizer, 64);
    const plain = await generateLoop(new FakeEngine(false, [5, 4]), request, ckpt, tokenizer, 64);
    expect(r.sequences.map((s) => s.newIds)).toEqual(plain.sequences.map((s) => s.newIds));
    expect(r.sequences.map((s) => s.newIds.length)).toEqual([3, 4]);
    expect(r.sequences.every((s) => s.newIds[s.newIds.length - 1] === EOS)).toBe(true);
    // The step after the last one was already submitted: it completed before end().
    expect(ahead.events.filter((e) => e.startsWith('submit'))).toHaveLength(5);
    expect(ahead.ended).toBe(true);
  });

  it('steps one at a time when the loop needs logits (sampling, top-k)', async () => {
    const e = new FakeEngine(true);
    await generateLoop(e, { ...request, ignoreEos: true, recordTopK: 3 }, ckpt, tokenizer, 64);
    expect(e.maxInFlight).toBe(1);
    expect(e.fedFromDevice).toBe(0);
  });
});
