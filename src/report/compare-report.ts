/**
 * The compare report: plain data, versioned. `compare` builds it, the JSON and HTML
 * reporters see only this object. Bump COMPARE_SCHEMA when a field changes meaning.
 */

import type { Environment } from './environment.js';
import type { RatioInterval, RunSamples } from './speed-stats.js';

export const COMPARE_SCHEMA = 'fusegen.compare/1';

export type Verdict = 'match' | 'tolerated' | 'mismatch' | 'errored';

/** Teacher-forced logits of the candidate against the reference, on the reference's tokens. */
export interface LogitStats {
  positions: number;
  maxAbs: number;
  maxRel: number;
  top1Agreement: number;
  /** Mean KL(reference || candidate) over positions, in nats, over the full vocabulary. */
  meanKl: number;
  /**
   * The full rows' figures (compare/metrics.ts rowFigures), absent in reports written before
   * compare looked past the reference's top-10: the largest |error| over the union of both sides'
   * top-10 and over the whole row, and the largest per-position KL.
   */
  unionMaxAbs?: number;
  fullMaxAbs?: number;
  maxKl?: number;
}

/** Log-probabilities of a served side against the other side's, over positions (compare/tolerance.ts logprobAgreement). */
export interface LogprobStats {
  positions: number;
  /** Largest |Δ logprob| over the union of both sides' top-k (a lower bound where one side does not list an id). */
  maxAbs: number;
  /** Largest and mean KL(reference || candidate) of the union's renormalized mass, in nats. */
  maxKl: number;
  meanKl: number;
  top1Agreement: number;
}

/** A side served over HTTP (compare --reference_url / --candidate_url) and what its server gave. */
export interface RemoteSide {
  url: string;
  /** The model name requests carry: the only one GET /v1/models lists, or --served_model. */
  model: string;
  /** The OpenAI completions API, or llama.cpp's native /completion (token ids where the other gives text). */
  api: 'openai' | 'llama.cpp';
  /** Prompts went as token ids, or as text where the server takes no ids (its token counts checked). */
  prompt: 'ids' | 'text';
  /** Top log-probabilities it returns per position; 0: none. */
  topLogprobs: number;
  /** It returns the prompt's log-probabilities (echo): teacher-forced comparison. */
  promptLogprobs: boolean;
  /** Its generated tokens: ids, token texts mapped through the tokenizer, or only the whole text. */
  tokens: 'ids' | 'text-tokens' | 'text';
  /** What was given up, in words. */
  notes: string[];
}

export interface TriageRun {
  /**
   * What was changed. ORT: `cpu` (same graph on the CPU), `plain` (all fusions off), `no-<fusion>`,
   * `unquantized`. WGSL: `wgsl-float32` (float32 weights), `ort-plain-cpu` (fusegen's plain ONNX graph on the CPU).
   */
  variant: string;
  /** The backend the rerun ran on (absent in reports written before triage reran WGSL candidates on WGSL). */
  backend?: 'ort' | 'wgsl';
  verdict: Exclude<Verdict, 'errored'>;
  maxAbs: number;
  /** The rerun's mean teacher-forced KL, its share of the candidate's, and whether that share is small enough to blame the change (compare/run.ts TRIAGE_EXPLAINS); absent in older reports. */
  meanKl?: number;
  errorShare?: number;
  explains?: boolean;
}

export interface PromptResult {
  index: number;
  prompt: string;
  verdict: Verdict;
  /** Why, in one line (the tolerance rule that decided, or the error). */
  reason: string;
  reference: { ids: number[]; tokens: string[]; text: string };
  candidate: { ids: number[]; tokens: string[]; text: string };
  /** First generated position where the tokens differ; null when identical. */
  firstDivergence: number | null;
  /** difflib.SequenceMatcher ratio of the two generated texts, as the seed prints it. */
  similarity: number;
  /** Token-level diff of the generated ids (the `diff` package), as runs of equal/removed/added tokens. */
  diff: Array<{ kind: 'equal' | 'removed' | 'added'; tokens: string[] }>;
  logits: { prefill: LogitStats; decode: LogitStats; perPositionMaxAbs: number[] } | null;
  /**
   * Where a side is served (settings.compared is logprobs): top-k log-probabilities instead of
   * logits, teacher-forced on the reference's tokens (prefill and decode positions), or where the
   * server echoes no prompt, of the generated steps up to the sides' first divergence (decode only).
   */
  logprobs?: { from: 'teacher-forced' | 'generation'; prefill: LogprobStats | null; decode: LogprobStats; perPositionMaxAbs: number[]; perPositionKl: number[] };
  /**
   * float16/int8/int4: the reference's own error at the candidate's dtype (fusegen's plain graph on the
   * reference checkpoint, teacher-forced, worst position) and the bounds the candidate was held to.
   */
  floor?: {
    unionMaxAbs: number;
    maxKl: number;
    top1Agreement: number;
    bounds: { atol: number; maxKl: number; minTop1Agreement: number };
    /** The candidate against the floor itself (both at this dtype, on the reference's tokens): what a defect adds beyond the shared quantization error. Absent in reports written before it was measured. */
    paired?: { unionMaxAbs: number; maxKl: number; top1Agreement: number };
  };
  /**
   * A candidate checkpoint: the candidate against its own pipeline on the reference checkpoint
   * (the twin, same dtype, on the reference's tokens, worst position): the checkpoint's own effect.
   */
  twin?: { unionMaxAbs: number; maxKl: number; top1Agreement: number };
  /** Only for mismatches: reruns that say whether the device kernel, a fusion or quantization is to blame. */
  triage?: {
    /** The backend that was compared and whose reruns triage ran (absent in older reports, which reran ORT). */
    backend?: 'ort' | 'wgsl';
    runs: TriageRun[];
    blame: string;
  };
}

export interface PipelineSpeed {
  pipeline: string;
  ttftMs: number;
  tpotMedianMs: number;
  tpotP90Ms: number;
  decodeTokensPerSec: number;
  prefillTokensPerSec: number;
  /** Per-token latency against context position: [position, ms] of the measured run. */
  perPosition: Array<[number, number]>;
  /** Every timed run's raw timings, for the intervals (absent in reports written before they were kept). */
  samples?: RunSamples[];
}

/**
 * Candidate against reference, each a ratio with its bootstrap interval (speed-stats.ts), oriented
 * so that above 1 is the candidate better: reference statistic over candidate statistic of times.
 */
export interface SpeedIntervals {
  /** Time per output token, median: the decode speedup. */
  tpotMedian: RatioInterval;
  tpotP90: RatioInterval;
  /** Mean decode-step time: decode tokens/s. */
  decodeThroughput: RatioInterval;
  /** Time to first token (one per run), and so prefill tokens/s. */
  ttft: RatioInterval;
}

/** The comparison of this run's candidate speed with a baseline report's. */
export interface BaselineCheck {
  file: string;
  decodeTokensPerSec: number;
  /** How much slower this run's decode is: (1 - speedRatio.estimate) x 100 where there is an interval. */
  regressionPct: number;
  maxRegressionPct: number;
  /**
   * Median time per output token, the baseline's over this run's (above 1: this run faster), with
   * its interval; a baseline without samples is held at its recorded median (fixed: numerator).
   * Absent in reports written before the gate had statistics (a bare ratio of tokens/s then).
   */
  speedRatio?: RatioInterval;
  /** The slowdown is significant: the whole interval is below 1. The gate fails only then, and only beyond maxRegressionPct. */
  significant?: boolean;
}

export interface CompareReport {
  schema: typeof COMPARE_SCHEMA;
  status: 'complete' | 'interrupted' | 'failed';
  /** Set when status is not complete: what stopped the run. */
  stoppedBy?: string;
  createdAt: string;
  command: string[];
  /** parameters: the candidate checkpoint's (float tensors as stored), which a --baseline must share; absent in reports written before it was recorded. */
  model: { dir: string; modelType: string; candidateDir: string; parameters?: number };
  settings: {
    dtype: string;
    device: string;
    /**
     * What ran the reference: transformers.js on fusegen's plain export, or Hugging Face
     * transformers itself (`--reference hf`). Absent in reports written before the flag existed,
     * which all ran transformers.js.
     */
    reference?: 'transformersjs' | 'hf';
    /**
     * The dtype the reference ran: float32 beside a floored dtype (float16, int8, int4), the
     * candidate's elsewhere. Absent in reports written before float16 was floored (then float16's
     * reference ran float16, every other dtype's float32).
     */
    referenceDtype?: string;
    useKernel: boolean;
    /** The injected backend: ort, wgsl, or none without kernel injection. */
    kernels: 'ort' | 'wgsl' | 'none';
    /** Present (true) when the run was given --allow_nonfinite: NaN/Inf weights were read, not refused. */
    allowNonfinite?: boolean;
    batchSize: number;
    numInputs: number;
    minLength: number;
    maxLength: number;
    /** MatMulNBits' accuracy_level of a quantized ORT-injected candidate. */
    accuracyLevel?: 0 | 4;
    /**
     * What the verdicts rest on: full logits rows (both sides in-process), top-k log-probabilities
     * (a side is served), or the generated tokens alone (a server that returns no log-probabilities).
     * Absent in reports written before sides could be served, which compared logits.
     */
    compared?: 'logits' | 'logprobs' | 'tokens';
    /** The served side(s) (--reference_url, --candidate_url). */
    remote?: { reference?: RemoteSide; candidate?: RemoteSide };
  };
  /** The policy's row for the dtype (compare/tolerance.ts); maxKl is absent in reports written before it was gated. */
  tolerance: {
    atol: number;
    rtol: number;
    maxKl?: number;
    minTop1Agreement: number;
    nearTie: number;
    topN: number;
    gate: boolean;
    /** float16/int8/int4: logits judged against the floor (each prompt's `floor`) by these factors instead of atol/rtol/maxKl/minTop1Agreement. */
    /** The candidate held to the floor's error of the reference (factor, absolute, ...), and to the floor itself (paired; absent in older reports). */
    /** `device`: where the floor ran (compare/tolerance.ts floorDevice); absent in reports written before it could differ from the candidate's. */
    floor?: { pipeline: 'plain'; device?: string; factor: number; absolute: number; klAbsolute: number; top1Slack: number; paired?: { atol: number; maxKl: number } };
    /** A candidate checkpoint: its bounds against the twin (its own pipeline on the reference checkpoint; compare/tolerance.ts TWIN_POLICY). */
    twin?: { atol: number; maxKl: number };
    /** With a served side: the log-probability bounds (compare/tolerance.ts LOGPROB_TOLERANCE) that replace atol/rtol/maxKl. */
    logprobs?: { topK: number; maxAbs: number; maxKl: number; minTop1Agreement: number };
  };
  environment: Environment & {
    /** Execution providers that really ran each pipeline's nodes (from profiling). */
    executionProviders: Record<string, string[]>;
    adapter: string | null;
    /** With `--reference hf`: the Python side's versions and the torch device it ran on. */
    hf?: { python: string; torch: string; transformers: string; device: 'cpu' | 'cuda'; deviceName: string };
  };
  fusions: Record<string, number>;
  prompts: PromptResult[];
  speed: {
    reference: PipelineSpeed;
    candidate: PipelineSpeed;
    /** Reference over candidate median time per output token: the ratio of the two medians. */
    decodeSpeedup: number;
    /** The ratios with bootstrap intervals (absent in reports written before samples were kept). */
    intervals?: SpeedIntervals;
  } | null;
  summary: { matches: number; tolerated: number; mismatches: number; errored: number };
  gate: {
    exitCode: 0 | 1;
    reasons: string[];
    baseline?: BaselineCheck;
  };
}

/** What ran the reference, in words. */
/** A served side in words: its URL and the model it serves. */
export function servedLine(side: RemoteSide): string {
  return `the model "${side.model}" served at ${side.url}`;
}

/** What the verdicts rest on with a served side, in words (undefined: logits, both sides in process). */
export function comparedLine(r: CompareReport): string | undefined {
  const t = r.tolerance.logprobs;
  if (r.settings.compared === 'logprobs' && t) return `top-${t.topK} log-probabilities: |Δ| ≤ ${t.maxAbs} over both sides' ids, KL ≤ ${t.maxKl} over their mass, top-1 agreement ≥ ${t.minTop1Agreement}`;
  if (r.settings.compared === 'tokens') return 'the generated tokens only (the server returns no log-probabilities)';
  return undefined;
}

export function referenceLine(r: CompareReport): string {
  const served = r.settings.remote?.reference;
  if (served) return servedLine(served);
  if ((r.settings.reference ?? 'transformersjs') === 'transformersjs') return `transformers.js ${r.environment.transformersJs} on fusegen's plain ONNX export`;
  const hf = r.environment.hf;
  return hf ? `Hugging Face transformers ${hf.transformers} (torch ${hf.torch}, Python ${hf.python}, ${hf.device}${hf.deviceName ? `: ${hf.deviceName}` : ''})` : 'Hugging Face transformers';
}
