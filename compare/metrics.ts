/**
 * What compare measures for one prompt: the token diff of the two generations, the seed's
 * text similarity, and teacher-forced logit statistics (prefill and decode positions apart).
 */
import { diffArrays } from 'diff';
import difflib from 'difflib';
import type { LogitStats, PromptResult, SpeedIntervals } from '../src/report/compare-report.js';
import { bootstrapRatio, decodeSteps, firstTokens, type RunSamples } from '../src/report/speed-stats.js';
import { topK } from '../src/pipeline/common.js';
import { logitAgreement, type LogitAgreement, type Tolerance, type TokenVerdict } from './tolerance.js';

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
  // The reference's top-k may skip a NaN: its whole rows are checked too.
  const refRowBad = ref.map((r) => r.some((v) => !Number.isFinite(v)));
  const withRefRows = (a: LogitAgreement, from: number, to: number): LogitAgreement => {
    const reference = Math.max(a.nonFinite.reference, refRowBad.slice(from, to).filter(Boolean).length);
    const nonFinite = { reference, candidate: a.nonFinite.candidate };
    return { ...a, nonFinite, withinTolerance: a.withinTolerance && reference === 0 };
  };
  const perPositionMaxAbs = refTop.map((t, p) => Math.max(...t.ids.map((id, j) => Math.abs(cand[p]![id]! - t.values[j]!))));
  const section = (from: number, to: number): LogitStats => {
    const a = withRefRows(logitAgreement(refTop.slice(from, to), cand.slice(from, to), tol), from, to);
    let kl = 0;
    for (let p = from; p < to; p++) kl += klDivergence(ref[p]!, cand[p]!);
    return { positions: to - from, maxAbs: a.maxAbs, maxRel: a.maxRel, top1Agreement: a.top1Agreement, meanKl: to > from ? kl / (to - from) : 0 };
  };
  return {
    prefill: section(0, promptLen),
    decode: section(promptLen, ref.length),
    perPositionMaxAbs,
    agreement: withRefRows(logitAgreement(refTop, cand, tol), 0, ref.length),
  };
}

export interface PromptVerdict {
  verdict: 'match' | 'tolerated' | 'mismatch';
  reason: string;
}

/**
 * One prompt's verdict from its token verdict and its teacher-forced logits. A NaN or an
 * infinity in either side's logits is a mismatch with its own reason, before anything else:
 * NaN against NaN is never a match, however the tokens came out.
 */
export function promptVerdict(tokens: TokenVerdict, tf: TeacherForced, tol: Tolerance): PromptVerdict {
  const a = tf.agreement;
  const { reference, candidate } = a.nonFinite;
  if (reference > 0 || candidate > 0) {
    const side = reference > 0 && candidate > 0 ? 'both sides' : reference > 0 ? 'the reference' : 'the candidate';
    return {
      verdict: 'mismatch',
      reason: `non-finite logits (NaN/Inf) on ${side}: reference at ${reference}, candidate at ${candidate} of ${a.positions} teacher-forced positions; non-finite logits never match`,
    };
  }
  const logitWhy = `teacher-forced logits: max |error| ${a.maxAbs.toExponential(2)}, ${a.outOfTolerance} of ${a.positions} positions beyond atol ${tol.atol} + rtol ${tol.rtol}, top-1 agreement ${(a.top1Agreement * 100).toFixed(1)}%`;
  if (tokens.status === 'mismatch') return { verdict: 'mismatch', reason: `tokens part at ${tokens.position}: ${tokens.reason}` };
  if (!a.withinTolerance) return { verdict: 'mismatch', reason: logitWhy };
  if (tokens.status === 'tolerated') return { verdict: 'tolerated', reason: `tokens part at ${tokens.position} on a near-tie (reference margin ${tokens.margin.toFixed(4)}); ${logitWhy}` };
  return { verdict: 'match', reason: logitWhy };
}

/**
 * The candidate's speed against the reference's, each figure a ratio with its bootstrap interval
 * (speed-stats.ts), above 1 the candidate better: median and p90 time per output token and mean
 * decode step (decode tokens/s) resampled over steps and runs, time to first token over runs.
 */
export function speedIntervals(reference: RunSamples[], candidate: RunSamples[]): SpeedIntervals {
  const [r, c] = [decodeSteps(reference), decodeSteps(candidate)];
  return {
    tpotMedian: bootstrapRatio(r, c, 'median'),
    tpotP90: bootstrapRatio(r, c, 'p90'),
    decodeThroughput: bootstrapRatio(r, c, 'mean'),
    ttft: bootstrapRatio(firstTokens(reference), firstTokens(candidate), 'median'),
  };
}
