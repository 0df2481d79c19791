/** Next-token choice: greedy argmax, or seeded sampling with Hugging Face's defaults (T = 1, top-k 50). */
import { uniform } from './random.js';

export type Sampler = (logits: Float32Array) => number;

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

export function makeSampler(doSample: boolean, seed: number, topK = 50): Sampler {
  if (!doSample) return argmax;
  const rand = uniform(seed);
  return (logits) => {
    // Top-k by partial selection, then softmax over the survivors.
    const idx = Array.from({ length: logits.length }, (_, i) => i);
    idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
    const top = idx.slice(0, Math.min(topK, idx.length));
    const max = logits[top[0]!]!;
    const w = top.map((i) => Math.exp(logits[i]! - max));
    let r = rand() * w.reduce((a, b) => a + b, 0);
    for (let j = 0; j < top.length; j++) {
      r -= w[j]!;
      if (r <= 0) return top[j]!;
    }
    return top[top.length - 1]!;
  };
}
