/**
 * What compare measures for one prompt: the token diff of the two generations, the seed's
 * text similarity, and teacher-forced logit statistics (prefill and decode positions apart).
 */
import { diffArrays } from 'diff';
import difflib from 'difflib';
import type { LogitStats, PromptResult } from '../src/report/compare-report.js';
import { topK } from '../src/pipeline/common.js';
import { logitAgreement, type LogitAgreement, type Tolerance } from './tolerance.js';

/** difflib.SequenceMatcher(None, a, b).ratio(), as ds-hf-compare.py prints it. */
export function similarity(a: string, b: string): number {
  return new difflib.SequenceMatcher(null, a, b).ratio();
}

export function tokenDiff(ref: string[], cand: string[]): PromptResult['diff'] {
  // Diff on indices-qualified tokens would hide repeats; diff the token strings themselves.
  return diffArrays(ref, cand).map((part) => ({ kind: part.added ? 'added' : part.removed ? 'removed' : 'equal', tokens: part.value }));
}

function logSoftmax(row: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]!);
  let z = 0;
  for (let i = 0; i < row.length; i++) z += Math.exp(row[i]! - max);
  const lz = max + Math.log(z);
  const out = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i]! - lz;
  return out;
}

/** KL(p || q) in nats for logits rows p (reference) and q (candidate). */
export function klDivergence(p: ArrayLike<number>, q: ArrayLike<number>): number {
  const lp = logSoftmax(p);
  const lq = logSoftmax(q);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) {
    const pi = Math.exp(lp[i]!);
    if (pi > 0) kl += pi * (lp[i]! - lq[i]!);
  }
  return Math.max(0, kl);
}

/** Reference top-k at each position: the ids whose logits the tolerance is checked on. */
const TOLERANCE_TOPK = 10;

export interface TeacherForced {
  prefill: LogitStats;
  decode: LogitStats;
  perPositionMaxAbs: number[];
  agreement: LogitAgreement;
}

/**
 * Both sides' logits on the reference's tokens. Positions 0..promptLen-1 are the prefill
 * (the last of them predicts the first generated token); the rest are decode positions.
 */
export function teacherForced(ref: Float32Array[], cand: Float32Array[], promptLen: number, tol: Tolerance): TeacherForced {
  const refTop = ref.map((r) => topK(r, TOLERANCE_TOPK));
  const perPositionMaxAbs = refTop.map((t, p) => Math.max(...t.ids.map((id, j) => Math.abs(cand[p]![id]! - t.values[j]!))));
  const section = (from: number, to: number): LogitStats => {
    const a = logitAgreement(refTop.slice(from, to), cand.slice(from, to), tol);
    let kl = 0;
    for (let p = from; p < to; p++) kl += klDivergence(ref[p]!, cand[p]!);
    return { positions: to - from, maxAbs: a.maxAbs, maxRel: a.maxRel, top1Agreement: a.top1Agreement, meanKl: to > from ? kl / (to - from) : 0 };
  };
  return {
    prefill: section(0, promptLen),
    decode: section(promptLen, ref.length),
    perPositionMaxAbs,
    agreement: logitAgreement(refTop, cand, tol),
  };
}
