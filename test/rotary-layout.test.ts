/**
 * Every lowering rotates whole heads in rotate-half form; partial (GPT-NeoX, Phi-3) and
 * interleaved (GPT-J) rotary reach that form through zero frequencies past rotary_dim / 2 and
 * the q/k row order of rotaryHeadOrder. Checked here against the models' own formulas on random
 * vectors: permuted q and k give the same rotated dot products.
 */
import { describe, expect, it } from 'vitest';
import { headRows, ropeInvFreq, rotaryHeadOrder, type Rope } from '../src/arch/positions.js';

/** Hugging Face GPT-NeoX: rotate-half over x[0:r], x[r:] passed through. */
function neoxRotary(x: number[], pos: number, inv: number[], r: number): number[] {
  const out = [...x];
  for (let i = 0; i < r / 2; i++) {
    const c = Math.cos(pos * inv[i]!);
    const s = Math.sin(pos * inv[i]!);
    out[i] = x[i]! * c - x[i + r / 2]! * s;
    out[i + r / 2] = x[i + r / 2]! * c + x[i]! * s;
  }
  return out;
}

/** Hugging Face GPT-J: rotate_every_two over pairs (2i, 2i + 1) of x[0:r]. */
function gptjRotary(x: number[], pos: number, inv: number[], r: number): number[] {
  const out = [...x];
  for (let i = 0; i < r / 2; i++) {
    const c = Math.cos(pos * inv[i]!);
    const s = Math.sin(pos * inv[i]!);
    out[2 * i] = x[2 * i]! * c - x[2 * i + 1]! * s;
    out[2 * i + 1] = x[2 * i + 1]! * c + x[2 * i]! * s;
  }
  return out;
}

/** fusegen's one form: rotate-half over the whole head with the given [D/2] frequencies. */
function wholeHeadRotary(x: number[], pos: number, inv: Float32Array): number[] {
  const h = x.length / 2;
  return x.map((v, j) => {
    const i = j % h;
    const c = Math.cos(pos * inv[i]!);
    const s = Math.sin(pos * inv[i]!);
    return j < h ? v * c - x[j + h]! * s : v * c + x[j - h]! * s;
  });
}

const dot = (a: number[], b: number[]) => a.reduce((acc, v, i) => acc + v * b[i]!, 0);
let seed = 7;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;

describe('partial and interleaved rotary as permuted rotate-half', () => {
  for (const [name, D, r, interleaved, model] of [
    ['GPT-NeoX 25%', 16, 4, false, neoxRotary],
    ['GPT-NeoX 50%', 32, 16, false, neoxRotary],
    ['GPT-J rotary_dim 8 of 16', 16, 8, true, gptjRotary],
    ['GPT-J whole head', 16, 16, true, gptjRotary],
    ['whole-head rotate-half (identity order)', 16, 16, false, neoxRotary],
  ] as const) {
    it(`${name}: q.k after rotation is unchanged by the layout`, () => {
      const rope: Rope = { type: 'default', theta: 10000, partialFactor: r / D, dims: r };
      const inv = ropeInvFreq(rope, D);
      expect(inv.length).toBe(D / 2);
      expect([...inv.slice(r / 2)].every((f) => f === 0)).toBe(true);
      const order = rotaryHeadOrder(D, r, interleaved);
      expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: D }, (_, i) => i));
      const modelInv = [...inv.slice(0, r / 2)];
      for (const [pq, pk] of [[0, 0], [5, 3], [17, 2]] as const) {
        const q = Array.from({ length: D }, rand);
        const k = Array.from({ length: D }, rand);
        const want = dot(model(q, pq, modelInv, r), model(k, pk, modelInv, r));
        const got = dot(wholeHeadRotary(order.map((j) => q[j]!), pq, inv), wholeHeadRotary(order.map((j) => k[j]!), pk, inv));
        expect(got).toBeCloseTo(want, 10);
      }
    });
  }

  it('whole-head rotate-half keeps the identity order', () => {
    expect(rotaryHeadOrder(8, 8, false)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('headRows merges consecutive rows into ranges, per head start', () => {
    expect(headRows(2, 4, (h) => 12 * h)).toEqual([[0, 4], [12, 4]]);
    expect(headRows(1, 4, () => 4, rotaryHeadOrder(4, 4, true))).toEqual([[4, 1], [6, 1], [5, 1], [7, 1]]);
  });
});
