/**
 * Speed verdicts with statistics. One compare run printed `decode speedup: 0.64x`, later runs
 * 0.91-1.60x on the same machine: a bare ratio of two medians says nothing about how far it can
 * be trusted. So a speed ratio is reported with a bootstrap confidence interval, and called a
 * difference only where the interval excludes 1.
 *
 * The method: each side's samples are grouped by run (a run's decode-step times, or its one time
 * to first token). A bootstrap replicate resamples the runs with replacement and, inside each
 * chosen run, its steps with replacement (a two-level bootstrap: run-to-run variation and
 * step-to-step variation both count), computes the statistic (median, p90 or mean) on each side and
 * takes their ratio. The estimate is the median of the replicates' ratios, the interval their
 * 2.5th and 97.5th percentiles (95%, percentile method). The random numbers come from a seeded
 * generator (mulberry32), recorded with the interval: the same samples always give the same
 * interval.
 */
import { uniform } from '../pipeline/random.js';

/** One timed generate run's raw timings, kept in the reports so intervals can be recomputed. */
export interface RunSamples {
  /** From the call to the first generated token (tokenization and prefill), ms. */
  firstTokenMs: number;
  /** Wall time of each decode step after the first token, in order, ms. */
  decodeStepMs: number[];
  /** The whole generate call, ms. */
  totalMs: number;
}

export type Statistic = 'median' | 'p90' | 'mean';

/** A ratio of one statistic of two sides' samples, with its bootstrap confidence interval. */
export interface RatioInterval {
  statistic: Statistic;
  /** What the bootstrap resampled: decode steps inside runs and the runs, or one figure per run. */
  over: 'steps and runs' | 'runs';
  /** Set where one side was a single recorded figure (an old baseline without samples), held fixed. */
  fixed?: 'numerator' | 'denominator';
  /** The median of the bootstrap ratios. */
  estimate: number;
  low: number;
  high: number;
  /** Confidence level of [low, high]: 0.95. */
  level: number;
  resamples: number;
  seed: number;
  /** The interval excludes 1: the two sides differ. */
  significant: boolean;
}

export const BOOTSTRAP = { resamples: 2000, level: 0.95, seed: 42 } as const;

/** A side of a ratio: samples grouped by run, or one fixed figure. */
export type Side = number[][] | number;

/** mulberry32 (pipeline/random.ts's seeded uniform stream), under the name the tests use. */
export const mulberry32 = uniform;

/** The k-th smallest of a[0..n) (0-based), partially reordering a: a[0..k) <= a[k] <= a(k..n). */
function select(a: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  while (hi > lo) {
    const pivot = a[(lo + hi) >> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return a[k]!;
}

/**
 * The statistic of a[0..n), as perf.ts defines it: the median averages the two middle values of an
 * even count, p90 is the nearest-rank percentile. Reorders a.
 */
export function statisticOf(a: Float64Array, n: number, s: Statistic): number {
  if (n === 0) return NaN;
  if (s === 'mean') {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += a[i]!;
    return sum / n;
  }
  if (s === 'p90') return select(a, n, Math.min(n - 1, Math.max(0, Math.ceil(0.9 * n) - 1)));
  const m = n >> 1;
  if (n % 2) return select(a, n, m);
  const lower = select(a, n, m - 1);
  let upper = Infinity;
  for (let i = m; i < n; i++) upper = Math.min(upper, a[i]!);
  return (lower + upper) / 2;
}

/** Quantile q of sorted xs, interpolated between order statistics. */
function quantile(sorted: Float64Array, q: number): number {
  const pos = q * (sorted.length - 1);
  const i = Math.floor(pos);
  const f = pos - i;
  // a + (b - a) f, not a (1 - f) + b f: equal neighbours give a itself, so quantiles of a
  // constant stay equal and in order (the other form rounds them apart).
  return i + 1 < sorted.length ? sorted[i]! + (sorted[i + 1]! - sorted[i]!) * f : sorted[i]!;
}

/** One side's resampler: fills a buffer with a two-level resample and returns its statistic. */
function resampler(side: Side, s: Statistic): ((rng: () => number) => number) | null {
  if (typeof side === 'number') return Number.isFinite(side) && side > 0 ? () => side : null;
  const groups = side.filter((g) => g.length > 0 && g.every((x) => Number.isFinite(x)));
  if (groups.length === 0 || groups.length !== side.length) return null;
  const buf = new Float64Array(groups.length * Math.max(...groups.map((g) => g.length)));
  return (rng) => {
    let k = 0;
    for (let i = 0; i < groups.length; i++) {
      const g = groups[Math.floor(rng() * groups.length)]!;
      for (let j = 0; j < g.length; j++) buf[k++] = g[Math.floor(rng() * g.length)]!;
    }
    return statisticOf(buf, k, s);
  };
}

/**
 * statistic(numerator) / statistic(denominator) with its bootstrap interval. For times (ms), a
 * reference numerator over a candidate denominator is the candidate's speedup: above 1 faster.
 * An empty or non-finite side gives an interval of NaN, never significant.
 */
export function bootstrapRatio(numerator: Side, denominator: Side, statistic: Statistic, options: Partial<typeof BOOTSTRAP> = {}): RatioInterval {
  const { resamples, level, seed } = { ...BOOTSTRAP, ...options };
  const grouped = [numerator, denominator].filter((x): x is number[][] => typeof x !== 'number');
  const over: RatioInterval['over'] = grouped.some((g) => g.some((run) => run.length > 1)) ? 'steps and runs' : 'runs';
  const fixed: RatioInterval['fixed'] = typeof numerator === 'number' ? 'numerator' : typeof denominator === 'number' ? 'denominator' : undefined;
  const base = { statistic, over, ...(fixed ? { fixed } : {}), level, resamples, seed };
  const num = resampler(numerator, statistic);
  const den = resampler(denominator, statistic);
  if (!num || !den) return { ...base, estimate: NaN, low: NaN, high: NaN, significant: false };
  const rng = mulberry32(seed);
  const ratios = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) ratios[b] = num(rng) / den(rng);
  ratios.sort();
  const tail = (1 - level) / 2;
  const estimate = quantile(ratios, 0.5);
  const low = Math.min(quantile(ratios, tail), estimate);
  const high = Math.max(quantile(ratios, 1 - tail), estimate);
  if (![low, high, estimate].every(Number.isFinite)) return { ...base, estimate: NaN, low: NaN, high: NaN, significant: false };
  return { ...base, estimate, low, high, significant: low > 1 || high < 1 };
}

/** Each run's decode-step times: the groups of a two-level bootstrap. */
export function decodeSteps(samples: RunSamples[]): number[][] {
  return samples.map((s) => s.decodeStepMs);
}

/** Each run's time to first token, a group of one. */
export function firstTokens(samples: RunSamples[]): number[][] {
  return samples.map((s) => [s.firstTokenMs]);
}

/** A sample as reports keep it: milliseconds to 0.1 us. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1e4) / 1e4;
}

/** The samples a report keeps of measured generate runs. */
export function runSamples(runs: Array<{ totalMs: number; result: { timings: { firstTokenMs: number; decodeStepMs: number[] } } }>): RunSamples[] {
  return runs.map((r) => ({ firstTokenMs: roundMs(r.result.timings.firstTokenMs), decodeStepMs: r.result.timings.decodeStepMs.map(roundMs), totalMs: roundMs(r.totalMs) }));
}

/**
 * The regression a speed ratio (this run over a baseline, above 1 faster) shows, and whether it
 * fails a gate that allows `maxRegressionPct`: only a significant slowdown (the whole interval
 * below 1) whose estimate is more than the allowed percentage.
 */
export function regression(ratio: RatioInterval, maxRegressionPct: number): { regressionPct: number; significant: boolean; fails: boolean } {
  const regressionPct = (1 - ratio.estimate) * 100;
  const significant = ratio.significant && ratio.high < 1;
  return { regressionPct, significant, fails: significant && regressionPct > maxRegressionPct };
}

const num2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');

/**
 * A ratio for people: `1.52x (95% CI 1.41-1.63x)` when the interval excludes 1, else
 * `no significant difference (0.98x, 95% CI 0.91-1.06x)`; `n/a` without an estimate.
 * `times` is the multiplication sign to use (`x` on a console, `×` on a page).
 */
export function ratioText(r: RatioInterval, times = 'x', dash = '-'): string {
  if (!Number.isFinite(r.estimate)) return 'n/a';
  const ci = `${Math.round(r.level * 100)}% CI ${num2(r.low)}${dash}${num2(r.high)}${times}`;
  return r.significant ? `${num2(r.estimate)}${times} (${ci})` : `no significant difference (${num2(r.estimate)}${times}, ${ci})`;
}
