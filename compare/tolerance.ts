/**
 * The tolerance policy: one table, used by the tests and by `compare`.
 *
 * Logits agree when |candidate - reference| <= atol + rtol * |reference| at every compared
 * position (teacher-forced: both sides see the reference's tokens). Generated tokens agree
 * when they are identical, or when they part at a near-tie: the reference's top-2 margin at
 * the first divergent step is within `nearTie`, and each side's token is in the other's
 * top-`topN`. Anything else is a mismatch.
 *
 * The float16 figures come from measurement (tiny fixtures vs Hugging Face float32 goldens,
 * teacher-forced): worst |error| 0.12 on the CPU EP (relative 1.1e-2) and 0.38 on the WebGPU
 * EP (lavapipe; relative 3.4e-2, its kernels accumulate in half precision), at logits of
 * magnitude ~11; top-1 agreement >= 0.976 with every miss at a golden margin below 0.03.
 * int8 worst error 1.04 (relative 9e-2). int4 on random-weight fixtures is far looser; it is
 * measured and reported, not gated (`gate: false`).
 */
import type { DType, TopK } from '../src/pipeline/types.js';

export interface Tolerance {
  atol: number;
  rtol: number;
  /** Teacher-forced share of positions whose argmax matches the reference's. */
  minTop1Agreement: number;
  /** Largest reference top-2 margin at which a token divergence is accepted. */
  nearTie: number;
  topN: number;
  /** false: differences are reported but never fail a run. */
  gate: boolean;
}

export const TOLERANCE: Record<DType, Tolerance> = {
  float32: { atol: 1e-4, rtol: 1e-4, minTop1Agreement: 1, nearTie: 1e-3, topN: 5, gate: true },
  float16: { atol: 0.25, rtol: 3e-2, minTop1Agreement: 0.97, nearTie: 0.5, topN: 5, gate: true },
  bfloat16: { atol: 0.4, rtol: 4e-2, minTop1Agreement: 0.9, nearTie: 1, topN: 5, gate: true },
  int8: { atol: 0.5, rtol: 0.1, minTop1Agreement: 0.9, nearTie: 2, topN: 5, gate: true },
  int4: { atol: 2, rtol: 0.5, minTop1Agreement: 0.5, nearTie: 4, topN: 5, gate: false },
};

export type TokenVerdict =
  | { status: 'match' }
  | { status: 'tolerated'; position: number; margin: number }
  | { status: 'mismatch'; position: number; reason: string };

/** Compares two generations of the same prompt; `topK` per generated step, both sides. */
export function tokenVerdict(ref: { newIds: number[]; topK?: TopK[] }, cand: { newIds: number[]; topK?: TopK[] }, tol: Tolerance): TokenVerdict {
  const n = Math.max(ref.newIds.length, cand.newIds.length);
  let i = 0;
  while (i < n && ref.newIds[i] === cand.newIds[i]) i++;
  if (i === n) return { status: 'match' };
  const r = ref.topK?.[i];
  const c = cand.topK?.[i];
  if (!r || !c || ref.newIds[i] === undefined || cand.newIds[i] === undefined) {
    return { status: 'mismatch', position: i, reason: ref.newIds[i] === undefined || cand.newIds[i] === undefined ? 'different lengths' : 'no logits recorded at the divergence' };
  }
  const margin = r.values[0]! - (r.values[1] ?? -Infinity);
  const inRef = r.ids.slice(0, tol.topN).includes(cand.newIds[i]!);
  const inCand = c.ids.slice(0, tol.topN).includes(ref.newIds[i]!);
  if (margin <= tol.nearTie && inRef && inCand) return { status: 'tolerated', position: i, margin };
  const why = margin > tol.nearTie ? `reference top-2 margin ${margin.toFixed(4)} > ${tol.nearTie}` : `token outside the other side's top-${tol.topN}`;
  return { status: 'mismatch', position: i, reason: why };
}

export interface LogitAgreement {
  positions: number;
  maxAbs: number;
  maxRel: number;
  top1Agreement: number;
  /** Positions where |error| exceeded atol + rtol * |reference| (a NaN/Inf on either side always does). */
  outOfTolerance: number;
  /** Positions whose compared logits hold a NaN or an infinity, per side: never within tolerance. */
  nonFinite: { reference: number; candidate: number };
  withinTolerance: boolean;
}

/**
 * Teacher-forced logits: for each position, the reference's top-k (ids and values) against
 * the candidate's full logits row, compared at the reference's ids.
 */
export function logitAgreement(ref: TopK[], cand: ArrayLike<number>[], tol: Tolerance): LogitAgreement {
  let maxAbs = 0;
  let maxRel = 0;
  let agree = 0;
  let out = 0;
  const nonFinite = { reference: 0, candidate: 0 };
  ref.forEach((r, p) => {
    const row = cand[p]!;
    let bad = false;
    // NaN compares false with everything: every test below is written so that NaN fails it.
    const refBad = r.values.some((v) => !Number.isFinite(v));
    let candBad = false;
    r.ids.forEach((id, j) => {
      const want = r.values[j]!;
      const err = Math.abs(row[id]! - want);
      maxAbs = Math.max(maxAbs, err);
      maxRel = Math.max(maxRel, err / Math.max(Math.abs(want), 1e-12));
      if (!(err <= tol.atol + tol.rtol * Math.abs(want))) bad = true;
    });
    let best = 0;
    for (let v = 0; v < row.length; v++) {
      if (!Number.isFinite(row[v]!)) candBad = true;
      else if (!(row[best]! >= row[v]!)) best = v;
    }
    if (refBad) nonFinite.reference++;
    if (candBad) nonFinite.candidate++;
    if (bad || refBad || candBad) out++;
    if (best === r.ids[0] && !refBad && !candBad) agree++;
  });
  const top1Agreement = ref.length ? agree / ref.length : 1;
  const finite = nonFinite.reference === 0 && nonFinite.candidate === 0;
  return { positions: ref.length, maxAbs, maxRel, top1Agreement, outOfTolerance: out, nonFinite, withinTolerance: finite && out === 0 && top1Agreement >= tol.minTop1Agreement };
}
