/**
 * `fusegen bench --url`: a load generator for any OpenAI-compatible `/v1/completions` server
 * (vLLM, TGI, SGLang, DeepSpeed-MII, llama.cpp's server), with vllm bench serve's modes and
 * metric definitions (benchmark_serving.py):
 *
 * - modes: synchronous (one request at a time); a concurrency sweep (that many requests in
 *   flight, each client sending its next as soon as one finishes: vLLM's --max-concurrency with
 *   every request queued at once); a request-rate sweep (gamma-distributed inter-arrival times of
 *   shape --burstiness and mean 1/rate, burstiness 1 being Poisson; the arrival times rescaled so
 *   the last falls at n/rate, as vLLM does to steady throughput across seeds; rate inf sends all
 *   at once), seeded;
 * - metrics per point: request, output-token and total-token throughput over the point's
 *   duration (first send to last answer); TTFT, TPOT ((e2e - ttft) / (output tokens - 1), over
 *   requests of more than one token; 0 for goodput otherwise, as vLLM), ITL (every gap between
 *   consecutive text chunks), E2E: mean, median, p90, p99 (numpy's linear percentiles); goodput
 *   (requests per second meeting every SLO given: metric <= SLO); failures counted by kind;
 * - every loop is bounded: --num_prompts requests and --max_seconds of sending per point, each
 *   request within --timeout_s, and whatever is still open (max_seconds + timeout_s + 2 s) after
 *   the start cancelled; a server that stops answering cannot hold a run.
 */
import { readFileSync } from 'node:fs';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import { COMPARE_PROMPTS } from '../fixtures/prompts.js';
import { InputError } from '../src/errors.js';
import { hashSeed, uniform } from '../src/pipeline/random.js';
import { decodeText, loadTokenizer } from '../src/pipeline/tokenizer.js';
import { errorKey, streamCompletion, type StreamRecord } from '../src/remote/stream.js';
import { environment } from '../src/report/environment.js';
import { SERVE_BENCH_SCHEMA, servePointName, type ServeBenchReport, type ServeLoad, type ServePoint, type ServeSlo, type ServeStats } from '../src/report/serve-bench-report.js';

export type { ServeBenchReport, ServeLoad, ServePoint, ServeSlo };

/** One request's input: its prompt, max_tokens, and the prompt's length in tokens where a tokenizer counted it. */
export interface ServeRequestSpec {
  prompt: string;
  maxTokens: number;
  promptTokens?: number;
}

/** A prompt set the sweep runs every load point with: one per --prompt_lengths entry, else the one set. */
export interface ServePromptSet {
  promptLength?: number;
  requests: ServeRequestSpec[];
}

/** The model's tokenizer, as bench --url uses it: output tokens counted on the returned text as vLLM counts them. */
export interface ServeTokenizer {
  dir: string;
  tokenizer: PreTrainedTokenizer;
  /** Tokens of `text` without special tokens (vLLM: tokenizer(text, add_special_tokens=False)). */
  count: (text: string) => number;
}

export async function loadServeTokenizer(dir: string): Promise<ServeTokenizer> {
  const tokenizer = await loadTokenizer({ dir });
  return { dir, tokenizer, count: (text) => (text === '' ? 0 : tokenizer.encode(text, { add_special_tokens: false }).length) };
}

// ---------------------------------------------------------------------------------------------
// Prompts

/** The seed's compare prompts, each with max_tokens `maxTokens` (and its length where a tokenizer counts it). */
export function comparePromptSet(maxTokens: number, tok?: ServeTokenizer): ServePromptSet {
  return { requests: COMPARE_PROMPTS.map((prompt) => ({ prompt, maxTokens, ...(tok ? { promptTokens: tok.count(prompt) } : {}) })) };
}

/**
 * `count` prompts of `length` tokens, cut from the seed's compare prompts at different offsets and
 * decoded to text. A cut that does not re-encode to `length` tokens (a merge across the cut) is
 * trimmed or extended a token at a time, a few times; the length it ends at is recorded.
 */
export function fixedLengthPromptSet(tok: ServeTokenizer, length: number, count: number, maxTokens: number): ServePromptSet {
  const source = tok.tokenizer.encode(COMPARE_PROMPTS.join(' '), { add_special_tokens: false });
  const requests: ServeRequestSpec[] = [];
  for (let i = 0; i < count; i++) {
    const offset = (i * 7) % source.length;
    let take = length;
    let prompt = '';
    let tokens = 0;
    for (let attempt = 0; attempt < 8; attempt++) {
      const ids = Array.from({ length: take }, (_, k) => source[(offset + k) % source.length]!);
      prompt = decodeText(tok.tokenizer, ids);
      tokens = tok.count(prompt);
      if (tokens === length) break;
      take = Math.max(1, take + (length - tokens));
    }
    requests.push({ prompt, maxTokens, promptTokens: tokens });
  }
  return { promptLength: length, requests };
}

/**
 * `--prompts_file`: JSON Lines, one `{"prompt": "...", "max_tokens"?: n}` a line (blank lines
 * skipped). A malformed line is refused with one line naming the file and line number.
 */
export function readPromptsFile(file: string, defaultMaxTokens: number, tok?: ServeTokenizer): ServePromptSet {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(file, `cannot read the prompts file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const requests: ServeRequestSpec[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const at = `${file}:${i + 1}`;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new InputError(at, 'not JSON (expected {"prompt": "...", "max_tokens"?: n} on each line)');
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new InputError(at, 'not a JSON object (expected {"prompt": "...", "max_tokens"?: n})');
    const o = json as Record<string, unknown>;
    const extra = Object.keys(o).filter((k) => k !== 'prompt' && k !== 'max_tokens');
    if (extra.length) throw new InputError(at, `unknown field "${extra[0]}" (a line holds "prompt" and optionally "max_tokens")`);
    if (typeof o['prompt'] !== 'string' || o['prompt'] === '') throw new InputError(at, '"prompt" must be a non-empty string');
    const mt = o['max_tokens'];
    if (mt !== undefined && !(typeof mt === 'number' && Number.isSafeInteger(mt) && mt >= 1)) throw new InputError(at, `"max_tokens" must be an integer of at least 1, got ${JSON.stringify(mt)}`);
    requests.push({ prompt: o['prompt'], maxTokens: (mt as number | undefined) ?? defaultMaxTokens, ...(tok ? { promptTokens: tok.count(o['prompt']) } : {}) });
  });
  if (requests.length === 0) throw new InputError(file, 'holds no prompts (one {"prompt": "..."} a line)');
  return { requests };
}

// ---------------------------------------------------------------------------------------------
// Arrivals

/** A standard normal draw (Box-Muller) from uniform draws. */
function normal(u: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
}

/** A Gamma(shape, 1) draw: Marsaglia and Tsang's method; shape < 1 by Gamma(shape + 1) x U^(1/shape). */
export function gammaDraw(u: () => number, shape: number): number {
  if (shape < 1) return gammaDraw(u, shape + 1) * (1 - u()) ** (1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normal(u);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const w = 1 - u();
    if (w < 1 - 0.0331 * x ** 4 || Math.log(w) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/**
 * Send times of `n` requests in seconds from the start, as vLLM's get_request draws them:
 * inter-arrival times Gamma(shape = burstiness, scale = 1 / (rate x burstiness)) (mean 1/rate;
 * burstiness 1 is Poisson, smaller is burstier, larger steadier), summed, then rescaled so the
 * last falls at n / rate. Rate 'inf': all at 0. Seeded: the same seed gives the same times.
 */
export function arrivalTimes(n: number, rate: number | 'inf', burstiness: number, seed: number): number[] {
  if (rate === 'inf' || n === 0) return new Array<number>(n).fill(0);
  const u = uniform(seed);
  const theta = 1 / (rate * burstiness);
  const times: number[] = [];
  let t = 0;
  for (let i = 0; i < n; i++) {
    t += gammaDraw(u, burstiness) * theta;
    times.push(t);
  }
  const scale = n / rate / t;
  return times.map((x) => x * scale);
}

// ---------------------------------------------------------------------------------------------
// Metrics

/** numpy's default percentile (linear interpolation between closest ranks), as vLLM reports them. */
export function percentileLinear(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(s.length - 1, lo + 1);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export function serveStats(xs: readonly number[]): ServeStats {
  if (xs.length === 0) return { mean: NaN, median: NaN, p90: NaN, p99: NaN };
  return { mean: xs.reduce((a, b) => a + b, 0) / xs.length, median: percentileLinear(xs, 50), p90: percentileLinear(xs, 90), p99: percentileLinear(xs, 99) };
}

/** A request as sent and as answered. */
export interface ServeOutcome {
  spec: ServeRequestSpec;
  record: StreamRecord;
}

export type PointFigures = Omit<ServePoint, 'load' | 'promptLength' | 'stoppedBy' | 'peakConcurrency'>;

/**
 * A point's figures from its requests, as benchmark_serving.py's calculate_metrics computes them.
 * Output tokens: the tokenizer's count of the returned text when there is one (usage beside it,
 * with the requests where they differ), else the server's usage (a request without it fails as
 * `no_usage`).
 */
export function pointFigures(outcomes: readonly ServeOutcome[], durationS: number, tok: ServeTokenizer | undefined, slo?: ServeSlo): PointFigures {
  const errors: Record<string, number> = {};
  const errorExamples: Record<string, string> = {};
  const failed = (kind: string, message: string) => {
    errors[kind] = (errors[kind] ?? 0) + 1;
    errorExamples[kind] ??= message;
  };
  const ttfts: number[] = [];
  const tpots: number[] = [];
  const itls: number[] = [];
  const e2es: number[] = [];
  let completed = 0;
  let good = 0;
  let inputTokens = 0;
  let outputTokens = 0;
  let serverOutput = 0;
  let withUsage = 0;
  let mismatches = 0;
  for (const { spec, record: r } of outcomes) {
    if (r.error) {
      failed(errorKey(r.error), r.error.message);
      continue;
    }
    const server = r.usage?.completionTokens;
    const out = tok ? tok.count(r.text) : server;
    if (out === undefined) {
      failed('no_usage', 'the stream carried no usage.completion_tokens to count output tokens by (give --tokenizer)');
      continue;
    }
    completed++;
    if (server !== undefined) {
      serverOutput += server;
      withUsage++;
      if (tok && server !== out) mismatches++;
    }
    outputTokens += out;
    inputTokens += r.usage?.promptTokens ?? spec.promptTokens ?? 0;
    const ttft = r.chunkTimes[0]! - r.sentAt;
    const e2e = r.endAt - r.sentAt;
    ttfts.push(ttft);
    e2es.push(e2e);
    for (let i = 1; i < r.chunkTimes.length; i++) itls.push(r.chunkTimes[i]! - r.chunkTimes[i - 1]!);
    const tpot = out > 1 ? (e2e - ttft) / (out - 1) : 0;
    if (out > 1) tpots.push(tpot);
    if (slo && (slo.ttftMs === undefined || ttft <= slo.ttftMs) && (slo.tpotMs === undefined || tpot <= slo.tpotMs) && (slo.e2eMs === undefined || e2e <= slo.e2eMs)) good++;
  }
  const per = (x: number) => (durationS > 0 ? x / durationS : NaN);
  return {
    durationS,
    sent: outcomes.length,
    completed,
    failed: outcomes.length - completed,
    errors,
    errorExamples,
    inputTokens,
    outputTokens,
    serverOutputTokens: withUsage > 0 ? serverOutput : null,
    tokenCountMismatches: mismatches,
    requestThroughput: per(completed),
    outputThroughput: per(outputTokens),
    totalTokenThroughput: per(inputTokens + outputTokens),
    ...(slo ? { goodput: per(good), goodRequests: good } : {}),
    ttftMs: serveStats(ttfts),
    tpotMs: serveStats(tpots),
    itlMs: serveStats(itls),
    e2eMs: serveStats(e2es),
  };
}

// ---------------------------------------------------------------------------------------------
// Running

export interface ServeBenchOptions {
  url: string;
  model: string;
  apiKey?: string;
  sets: ServePromptSet[];
  loads: ServeLoad[];
  numPrompts: number;
  maxSeconds: number;
  timeoutS: number;
  seed: number;
  ignoreEos: boolean;
  maxTokens: number;
  slo?: ServeSlo;
  tokenizer?: ServeTokenizer;
  prompts: ServeBenchReport['settings']['prompts'];
  promptsFile?: string;
}

/** Where a sweep is: its point, and requests answered there so far. */
export interface ServeProgress {
  point: number;
  points: number;
  what: string;
  answered: number;
  planned: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits until performance.now() reaches `at`, in slices short enough to notice `stop`. */
async function sleepUntil(at: number, stop: () => boolean): Promise<void> {
  for (let left = at - performance.now(); left > 0 && !stop(); left = at - performance.now()) await sleep(Math.min(left, 50));
}

/** Runs one point: its requests as its load sends them, each recorded. Returns when every sent request has ended. */
export async function runPoint(o: ServeBenchOptions, set: ServePromptSet, load: ServeLoad, seed: number, interrupted: () => boolean, answered: (n: number) => void = () => {}): Promise<{ outcomes: ServeOutcome[]; durationS: number; peakConcurrency: number; stoppedBy: ServePoint['stoppedBy'] }> {
  const t0 = performance.now();
  const sendUntil = t0 + o.maxSeconds * 1000;
  // The point's global deadline: a request still open this long after the start is cancelled.
  const deadline = new AbortController();
  const hard = setTimeout(() => deadline.abort(), (o.maxSeconds + o.timeoutS + 2) * 1000);
  const outcomes: ServeOutcome[] = [];
  let next = 0;
  let inFlight = 0;
  let peak = 0;
  let stoppedBy: ServePoint['stoppedBy'] = 'num_prompts';
  const mayStart = (at = performance.now()): boolean => {
    if (next >= o.numPrompts) return false;
    if (interrupted()) stoppedBy = 'interrupt';
    else if (at >= sendUntil) stoppedBy = 'max_seconds';
    else return true;
    return false;
  };
  const send = async (i: number): Promise<void> => {
    const spec = set.requests[i % set.requests.length]!;
    inFlight++;
    peak = Math.max(peak, inFlight);
    const record = await streamCompletion({ url: o.url, model: o.model, prompt: spec.prompt, maxTokens: spec.maxTokens, timeoutMs: o.timeoutS * 1000, signal: deadline.signal, ignoreEos: o.ignoreEos, ...(o.apiKey ? { apiKey: o.apiKey } : {}) });
    inFlight--;
    outcomes.push({ spec, record });
    answered(outcomes.length);
  };
  try {
    if (load.mode === 'rate') {
      const times = arrivalTimes(o.numPrompts, load.requestRate, load.burstiness, seed);
      const sent: Array<Promise<void>> = [];
      while (mayStart()) {
        const at = t0 + times[next]! * 1000;
        // An arrival after the sending window is not waited for.
        if (!mayStart(at)) break;
        await sleepUntil(at, interrupted);
        if (!mayStart()) break;
        sent.push(send(next++));
      }
      await Promise.all(sent);
    } else {
      const clients = load.mode === 'synchronous' ? 1 : load.concurrency;
      const client = async () => {
        while (mayStart()) await send(next++);
      };
      await Promise.all(Array.from({ length: Math.min(clients, o.numPrompts) }, client));
    }
  } finally {
    clearTimeout(hard);
  }
  return { outcomes, durationS: (performance.now() - t0) / 1000, peakConcurrency: peak, stoppedBy };
}

/** The request the run starts with, not measured (vLLM's initial test run): the first prompt of the first set. */
export function probe(o: ServeBenchOptions): Promise<StreamRecord> {
  const spec = o.sets[0]!.requests[0]!;
  return streamCompletion({ url: o.url, model: o.model, prompt: spec.prompt, maxTokens: spec.maxTokens, timeoutMs: o.timeoutS * 1000, ignoreEos: o.ignoreEos, ...(o.apiKey ? { apiKey: o.apiKey } : {}) });
}

/**
 * Every prompt set at every load, one point after another. `live` gets the report as soon as it
 * exists; its points grow as they finish (a second Ctrl-C writes it as it stands). A first Ctrl-C
 * (`interrupted`) stops sending: the point's requests in flight finish, the point is kept (stopped
 * by `interrupt`), and no later point runs.
 */
export async function runServeBench(o: ServeBenchOptions, progress: (p: ServeProgress) => void, interrupted: () => boolean, live?: (r: ServeBenchReport) => void): Promise<ServeBenchReport> {
  const report: ServeBenchReport = {
    schema: SERVE_BENCH_SCHEMA,
    status: 'complete',
    createdAt: new Date().toISOString(),
    target: { url: o.url, model: o.model },
    settings: {
      numPrompts: o.numPrompts,
      maxSeconds: o.maxSeconds,
      timeoutS: o.timeoutS,
      maxTokens: o.maxTokens,
      ignoreEos: o.ignoreEos,
      seed: o.seed,
      prompts: o.prompts,
      ...(o.promptsFile !== undefined ? { promptsFile: o.promptsFile } : {}),
      ...(o.tokenizer ? { tokenizer: o.tokenizer.dir } : {}),
      tokenCounting: o.tokenizer ? 'tokenizer' : 'usage',
      ...(o.slo ? { slo: o.slo } : {}),
    },
    environment: environment(),
    points: [],
  };
  live?.(report);
  const plan = o.sets.flatMap((set) => o.loads.map((load) => ({ set, load })));
  for (const [i, { set, load }] of plan.entries()) {
    if (interrupted()) break;
    const what = servePointName({ load, ...(set.promptLength !== undefined ? { promptLength: set.promptLength } : {}) });
    progress({ point: i + 1, points: plan.length, what, answered: 0, planned: o.numPrompts });
    const seed = hashSeed(`${o.seed}/${what}`);
    const run = await runPoint(o, set, load, seed, interrupted, (answered) => progress({ point: i + 1, points: plan.length, what, answered, planned: o.numPrompts }));
    report.points.push({
      load,
      ...(set.promptLength !== undefined ? { promptLength: set.promptLength } : {}),
      stoppedBy: run.stoppedBy,
      peakConcurrency: run.peakConcurrency,
      ...pointFigures(run.outcomes, run.durationS, o.tokenizer, o.slo),
    });
  }
  if (interrupted()) report.status = 'interrupted';
  return report;
}

// ---------------------------------------------------------------------------------------------
// The console

const row = (label: string, value: string) => `${label.padEnd(40)} ${value}`;
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
/** vLLM's `{s:{c}^{n}}` with n = 50: the title centred in the fill, the odd one to the right. */
const rule = (title: string, fill = '-') => {
  const t = title;
  const left = Math.floor((50 - t.length) / 2);
  return `${fill.repeat(Math.max(0, left))}${t}${fill.repeat(Math.max(0, 50 - left - t.length))}`;
};

/** A point's summary in the layout of vllm bench serve's "Serving Benchmark Result". */
export function summaryLines(p: ServePoint, report: Pick<ServeBenchReport, 'settings'>): string[] {
  const lines = [rule(' Serving Benchmark Result ', '='), row('Point:', servePointName(p))];
  lines.push(row('Successful requests:', String(p.completed)), row('Failed requests:', String(p.failed)));
  if (p.failed) lines.push(row('Errors by kind:', Object.entries(p.errors).map(([k, n]) => `${k} ${n}`).join(', ')));
  if (p.load.mode === 'concurrency') lines.push(row('Maximum request concurrency:', String(p.load.concurrency)));
  if (p.load.mode === 'rate' && p.load.requestRate !== 'inf') lines.push(row('Request rate configured (RPS):', f2(p.load.requestRate)));
  if (p.load.mode === 'rate' && p.load.requestRate !== 'inf') lines.push(row('Burstiness factor:', `${p.load.burstiness} (${p.load.burstiness === 1 ? 'Poisson process' : 'Gamma distribution'})`));
  if (p.stoppedBy !== 'num_prompts') lines.push(row('Stopped by:', p.stoppedBy === 'max_seconds' ? `--max_seconds ${report.settings.maxSeconds} (${p.sent} of ${report.settings.numPrompts} sent)` : `Ctrl-C (${p.sent} of ${report.settings.numPrompts} sent)`));
  lines.push(row('Benchmark duration (s):', f2(p.durationS)), row('Total input tokens:', String(p.inputTokens)), row('Total generated tokens:', String(p.outputTokens)));
  if (report.settings.tokenCounting === 'tokenizer') {
    lines.push(row("Server's usage (generated tokens):", p.serverOutputTokens === null ? 'not sent' : `${p.serverOutputTokens}${p.tokenCountMismatches ? ` (differs from the tokenizer on ${p.tokenCountMismatches} request${p.tokenCountMismatches === 1 ? '' : 's'})` : ' (agrees)'}`));
  }
  lines.push(row('Request throughput (req/s):', f2(p.requestThroughput)));
  if (p.goodput !== undefined) lines.push(row('Request goodput (req/s):', `${f2(p.goodput)} (${p.goodRequests} good)`));
  lines.push(row('Output token throughput (tok/s):', f2(p.outputThroughput)), row('Total Token throughput (tok/s):', f2(p.totalTokenThroughput)), row('Peak concurrent requests:', String(p.peakConcurrency)));
  const block = (title: string, short: string, s: ServeStats) => [rule(title), row(`Mean ${short} (ms):`, f2(s.mean)), row(`Median ${short} (ms):`, f2(s.median)), row(`P90 ${short} (ms):`, f2(s.p90)), row(`P99 ${short} (ms):`, f2(s.p99))];
  lines.push(...block('Time to First Token', 'TTFT', p.ttftMs), ...block('Time per Output Token (excl. 1st token)', 'TPOT', p.tpotMs), ...block('Inter-token Latency', 'ITL', p.itlMs), ...block('End-to-end Latency', 'E2EL', p.e2eMs));
  lines.push('='.repeat(50));
  return lines;
}
