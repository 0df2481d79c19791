/** Next-token choice: greedy argmax, or seeded sampling as Hugging Face's generate samples. */
import type { Sampling } from '../arch/checkpoint.js';
import { uniform } from './random.js';

export type Sampler = (logits: Float32Array) => number;

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/**
 * Greedy, or seeded sampling as Hugging Face's generate warps logits: temperature, then top-k
 * (0: none), then top-p (the smallest set of most likely tokens whose mass reaches p).
 */
export function makeSampler(doSample: boolean, seed: number, s: Sampling = { temperature: 1, topK: 50, topP: 1 }): Sampler {
  if (!doSample) return argmax;
  const rand = uniform(seed);
  return (logits) => {
    const idx = Array.from({ length: logits.length }, (_, i) => i);
    idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
    let top = s.topK > 0 ? idx.slice(0, Math.min(s.topK, idx.length)) : idx;
    const max = logits[top[0]!]! / s.temperature;
    let w = top.map((i) => Math.exp(logits[i]! / s.temperature - max));
    if (s.topP < 1) {
      const total = w.reduce((a, b) => a + b, 0);
      let mass = 0;
      let keep = 0;
      while (keep < w.length && mass / total < s.topP) mass += w[keep++]!;
      top = top.slice(0, Math.max(1, keep));
      w = w.slice(0, top.length);
    }
    let r = rand() * w.reduce((a, b) => a + b, 0);
    for (let j = 0; j < top.length; j++) {
      r -= w[j]!;
      if (r <= 0) return top[j]!;
    }
    return top[top.length - 1]!;
  };
}
