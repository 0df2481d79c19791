/**
 * What compare measures for one prompt: the token diff of the two generations, the seed's
 * text similarity, and teacher-forced logit statistics (prefill and decode positions apart).
 */
import { diffArrays } from 'diff';
import difflib from 'difflib';
import type { LogitStats, PromptResult, SpeedIntervals } from '../src/report/compare-report.js';
import { bootstrapRatio, decodeSteps, firstTokens, type RunSamples } from '../src/report/speed-stats.js';
import { topK } from '../src/pipeline/common.js';
import type { TopK } from '../src/pipeline/types.js';
import { logitAgreement, type LogitAgreement, type Tolerance, type TokenVerdict } from './tolerance.js';

/** difflib.SequenceMatcher(None, a, b).ratio(), as ds-hf-compare.py prints it. */
export function similarity(a: string, b: string): number {
  return new difflib.SequenceMatcher(null, a, b).ratio();
}

export function tokenDiff(ref: string[], cand: string[]): PromptResult['diff'] {
  // Diff on indices-qualified tokens would hide repeats; diff the token strings themselves.
  return diffArrays(ref, cand).map((part) => ({ kind: part.added ? 'added' : part.removed ? 'removed' : 'equal', tokens: part.value }));
}

/**
 * KL(p || q) in nats for logits rows p (reference) and q (candidate), over the whole row: both
 * log-softmaxes in float64, in three passes and no allocation (it runs once per position on
 * rows of the full vocabulary). NaN where either row holds a NaN.
 */
export function klDivergence(p: ArrayLike<number>, q: ArrayLike<number>): number {
  let mp = -Infinity;
  let mq = -Infinity;
  for (let i = 0; i < p.length; i++) {
    mp = Math.max(mp, p[i]!);
    mq = Math.max(mq, q[i]!);
  }
  let zp = 0;
  let zq = 0;
  for (let i = 0; i < p.length; i++) {
    zp += Math.exp(p[i]! - mp);
    zq += Math.exp(q[i]! - mq);
  }
  const lzp = mp + Math.log(zp);
  const lzq = mq + Math.log(zq);
  let kl = 0;
  for (let i = 0; i < p.length; i++) {
    const lp = p[i]! - lzp;
    const pi = Math.exp(lp);
    if (pi > 0 || Number.isNaN(pi)) kl += pi * (lp - (q[i]! - lzq));
  }
  return Number.isNaN(kl) ? NaN : Math.max(0, kl);
}

/**
 * Top-k of each side at each position: the ids whose logits the atol/rtol tolerance is checked
 * on. The reference's alone (the check before issue 29) missed a token the candidate lifted out
 * of nowhere; the union of both sides' top-k catches it, and KL over the full row catches what
 * moves below both top-k.
 */
export const TOLERANCE_TOPK = 10;

/** One teacher-forced position's figures over the whole vocabulary (both full rows). */
export interface RowFigures {
  /** max |candidate - reference| over the union of both sides' top-k ids. */
  unionMaxAbs: number;
  /** Some id of that union is beyond atol + rtol * |reference|, or not finite. */
  unionOut: boolean;
  /** max |candidate - reference| over the whole row (reported, not gated: the tail of a low-precision row is noise). */
  fullMaxAbs: number;
  /** KL(reference || candidate) over the whole row, in nats (NaN where a row holds a NaN). */
  kl: number;
}

/** Reduces one position's two full rows to its figures: nothing of vocabulary size is kept. */
export function rowFigures(ref: ArrayLike<number>, cand: ArrayLike<number>, refTop: TopK, tol: Pick<Tolerance, 'atol' | 'rtol'>): RowFigures {
  const union = new Set([...refTop.ids, ...topK(cand, TOLERANCE_TOPK).ids]);
  let unionMaxAbs = 0;
  let unionOut = false;
  for (const id of union) {
    const err = Math.abs(cand[id]! - ref[id]!);
    // NaN compares false: a NaN on either side is out, and its error is NaN.
    if (!(err <= unionMaxAbs)) unionMaxAbs = Number.isNaN(unionMaxAbs) ? unionMaxAbs : err;
    if (!(err <= tol.atol + tol.rtol * Math.abs(ref[id]!))) unionOut = true;
  }
  let fullMaxAbs = 0;
  for (let v = 0; v < ref.length; v++) {
    const err = Math.abs(cand[v]! - ref[v]!);
    if (!(err <= fullMaxAbs)) fullMaxAbs = Number.isNaN(fullMaxAbs) ? fullMaxAbs : err;
  }
  return { unionMaxAbs, unionOut, fullMaxAbs, kl: klDivergence(ref, cand) };
}

/** The whole-vocabulary checks over a prompt's teacher-forced positions. */
export interface FullVocabulary {
  positions: number;
  /** Largest error over the union of both sides' top-k, and at how many positions it is beyond atol + rtol * |reference|. */
  unionMaxAbs: number;
  unionOutOfTolerance: number;
  /** Largest error anywhere in the rows (reported). */
  fullMaxAbs: number;
  /** Largest per-position KL(reference || candidate) and where; at how many positions it exceeds the policy's maxKl. */
  maxKl: number;
  maxKlPosition: number;
  klOutOfTolerance: number;
  withinTolerance: boolean;
}

export interface TeacherForced {
  prefill: LogitStats;
  decode: LogitStats;
  /** max |error| over the reference's top-k, per position (the chart in the HTML report). */
  perPositionMaxAbs: number[];
  /** KL(reference || candidate) over the full vocabulary, per position. */
  perPositionKl: number[];
  full: FullVocabulary;
  /**
   * The verdict's figures: the reference's top-k agreement (logitAgreement) widened to the full
   * rows. maxAbs is the largest error over the union of both sides' top-k, outOfTolerance counts
   * the positions failing any check, and withinTolerance also requires the union's error within
   * atol + rtol * |reference| and every position's KL within maxKl.
   */
  agreement: LogitAgreement;
}

/** The larger of two errors, NaN if either is. */
function worst(a: number, b: number): number {
  return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b);
}

/**
 * Both sides' logits on the reference's tokens. Positions 0..promptLen-1 are the prefill
 * (the last of them predicts the first generated token); the rest are decode positions.
 * Every position's full rows are reduced here (rowFigures) to a few figures per position.
 */
export function teacherForced(ref: Float32Array[], cand: Float32Array[], promptLen: number, tol: Tolerance): TeacherForced {
  const refTop = ref.map((r) => topK(r, TOLERANCE_TOPK));
  const rows = ref.map((r, p) => rowFigures(r, cand[p]!, refTop[p]!, tol));
  // The reference's top-k may skip a NaN: its whole rows are checked too.
  const refRowBad = ref.map((r) => r.some((v) => !Number.isFinite(v)));
  const withRefRows = (a: LogitAgreement, from: number, to: number): LogitAgreement => {
    const reference = Math.max(a.nonFinite.reference, refRowBad.slice(from, to).filter(Boolean).length);
    const nonFinite = { reference, candidate: a.nonFinite.candidate };
    return { ...a, nonFinite, withinTolerance: a.withinTolerance && reference === 0 };
  };
  const klOut = (f: RowFigures) => !(f.kl <= tol.maxKl);
  const perPositionMaxAbs = refTop.map((t, p) => Math.max(...t.ids.map((id, j) => Math.abs(cand[p]![id]! - t.values[j]!))));
  const section = (from: number, to: number): LogitStats => {
    const a = withRefRows(logitAgreement(refTop.slice(from, to), cand.slice(from, to), tol), from, to);
    const part = rows.slice(from, to);
    const kl = part.reduce((sum, f) => sum + f.kl, 0);
    return {
      positions: to - from,
      maxAbs: a.maxAbs,
      maxRel: a.maxRel,
      top1Agreement: a.top1Agreement,
      meanKl: to > from ? kl / (to - from) : 0,
      unionMaxAbs: part.reduce((m, f) => worst(m, f.unionMaxAbs), 0),
      fullMaxAbs: part.reduce((m, f) => worst(m, f.fullMaxAbs), 0),
      maxKl: part.reduce((m, f) => worst(m, f.kl), 0),
    };
  };
  let maxKlPosition = 0;
  rows.forEach((f, p) => {
    if (!(f.kl <= rows[maxKlPosition]!.kl)) maxKlPosition = p;
  });
  const unionOutOfTolerance = rows.filter((f) => f.unionOut).length;
  const klOutOfTolerance = rows.filter(klOut).length;
  const full: FullVocabulary = {
    positions: rows.length,
    unionMaxAbs: rows.reduce((m, f) => worst(m, f.unionMaxAbs), 0),
    unionOutOfTolerance,
    fullMaxAbs: rows.reduce((m, f) => worst(m, f.fullMaxAbs), 0),
    maxKl: rows.length ? rows[maxKlPosition]!.kl : 0,
    maxKlPosition,
    klOutOfTolerance,
    withinTolerance: unionOutOfTolerance === 0 && klOutOfTolerance === 0,
  };
  const top = withRefRows(logitAgreement(refTop, cand, tol), 0, ref.length);
  // Positions failing any check: the reference's top-k (recomputed per position), the union, KL.
  const topOut = refTop.map((t, p) => t.ids.some((id, j) => !(Math.abs(cand[p]![id]! - t.values[j]!) <= tol.atol + tol.rtol * Math.abs(t.values[j]!))) || refRowBad[p]! || cand[p]!.some((v) => !Number.isFinite(v)));
  const outOfTolerance = rows.filter((f, p) => topOut[p] || f.unionOut || klOut(f)).length;
  return {
    prefill: section(0, promptLen),
    decode: section(promptLen, ref.length),
    perPositionMaxAbs,
    perPositionKl: rows.map((f) => f.kl),
    full,
    agreement: { ...top, maxAbs: worst(top.maxAbs, full.unionMaxAbs), outOfTolerance, withinTolerance: top.withinTolerance && full.withinTolerance },
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
export function promptVerdict(tokens: TokenVerdict, tf: TeacherForced, tol: Tolerance, against = ''): PromptVerdict {
  const a = tf.agreement;
  const { reference, candidate } = a.nonFinite;
  if (reference > 0 || candidate > 0) {
    const side = reference > 0 && candidate > 0 ? 'both sides' : reference > 0 ? 'the reference' : 'the candidate';
    return {
      verdict: 'mismatch',
      reason: `non-finite logits (NaN/Inf) on ${side}: reference at ${reference}, candidate at ${candidate} of ${a.positions} teacher-forced positions; non-finite logits never match`,
    };
  }
  const f = tf.full;
  const e = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : String(x));
  const failed = [
    ...(f.unionOutOfTolerance ? [`${f.unionOutOfTolerance} beyond atol ${tol.atol} + rtol ${tol.rtol} over both sides' top-${TOLERANCE_TOPK}`] : []),
    ...(f.klOutOfTolerance ? [`${f.klOutOfTolerance} with KL above ${tol.maxKl}`] : []),
  ];
  const logitWhy =
    `teacher-forced logits: max |error| ${e(a.maxAbs)} over both sides' top-${TOLERANCE_TOPK} (${e(f.fullMaxAbs)} over the full row), ` +
    `max KL ${e(f.maxKl)} over the full vocabulary (position ${f.maxKlPosition}), ` +
    `${a.outOfTolerance} of ${a.positions} positions out of tolerance${failed.length ? ` (${failed.join(', ')})` : ''}, top-1 agreement ${(a.top1Agreement * 100).toFixed(1)}%`;
  if (tokens.status === 'mismatch') return { verdict: 'mismatch', reason: `tokens part${against} at ${tokens.position}: ${tokens.reason}` };
  if (!a.withinTolerance) return { verdict: 'mismatch', reason: logitWhy };
  if (tokens.status === 'tolerated') return { verdict: 'tolerated', reason: `tokens part${against} at ${tokens.position} on a near-tie (${against ? 'floor' : 'reference'} margin ${tokens.margin.toFixed(4)}); ${logitWhy}` };
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
