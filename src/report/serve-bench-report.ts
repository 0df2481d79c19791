/**
 * The report of `fusegen bench --url`: a load test of an OpenAI-compatible server, as plain,
 * versioned data. A report kind of its own beside the bench report (bench-report.ts), whose
 * rows are in-process pipelines on a local checkpoint (model directory, device, dtype): a remote
 * server has none of those. Its JSON Schema and validator are in serve-bench-validate.ts; files
 * are named `<timestamp>-<random>-<served model>-bench-serve.json` (and `.html`).
 *
 * Metrics are vllm bench serve's (benchmark_serving.py calculate_metrics): per point, request,
 * output-token and total-token throughput over the point's duration; TTFT, TPOT ((e2e - ttft) /
 * (output tokens - 1), requests of more than one token), ITL (every gap between consecutive text
 * chunks) and end-to-end latency; goodput (requests per second meeting every SLO given).
 */
import type { Environment } from './environment.js';

export const SERVE_BENCH_SCHEMA = 'fusegen.bench-serve/1';

/** Mean, median, p90 and p99 (numpy's linear interpolation, as vLLM computes them), ms. NaN where nothing was measured. */
export interface ServeStats {
  mean: number;
  median: number;
  p90: number;
  p99: number;
}

/** How a point loads the server. */
export type ServeLoad =
  /** One request at a time. */
  | { mode: 'synchronous' }
  /** That many requests in flight: each client sends its next as soon as one finishes. */
  | { mode: 'concurrency'; concurrency: number }
  /** Arrivals at `requestRate` per second ('inf': all at once), gamma inter-arrival times of shape `burstiness` (1: Poisson). */
  | { mode: 'rate'; requestRate: number | 'inf'; burstiness: number };

/** The service-level objectives of goodput (vLLM's --goodput): a request is good when it meets every one given. */
export interface ServeSlo {
  ttftMs?: number;
  tpotMs?: number;
  e2eMs?: number;
}

export interface ServePoint {
  load: ServeLoad;
  /** The prompts' length in tokens, for a --prompt_lengths sweep. */
  promptLength?: number;
  /** What ended the point: all --num_prompts sent, --max_seconds passed, or Ctrl-C. */
  stoppedBy: 'num_prompts' | 'max_seconds' | 'interrupt';
  /** From the first send to the last request's end, s. */
  durationS: number;
  sent: number;
  completed: number;
  failed: number;
  /** Failed requests by kind: `http_500`, `refused`, `reset`, `timeout`, `malformed`, `server_error`, `empty`, `cancelled`, `network`, `no_usage`. */
  errors: Record<string, number>;
  /** The first failure of each kind, as the client saw it. */
  errorExamples: Record<string, string>;
  /** The most requests in flight at once, counted by the client. */
  peakConcurrency: number;
  /** Over completed requests: the server's prompt_tokens where it sent usage, else the tokenizer's count (0 where neither). */
  inputTokens: number;
  /** Over completed requests, counted as `tokenCounting` says. */
  outputTokens: number;
  /** The server's usage.completion_tokens summed over the completed requests that carried it (null: none did). */
  serverOutputTokens: number | null;
  /** Completed requests whose tokenizer count and usage.completion_tokens differ (counted with --tokenizer only). */
  tokenCountMismatches: number;
  requestThroughput: number;
  outputThroughput: number;
  totalTokenThroughput: number;
  /** With SLOs: good requests per second. */
  goodput?: number;
  goodRequests?: number;
  ttftMs: ServeStats;
  tpotMs: ServeStats;
  itlMs: ServeStats;
  e2eMs: ServeStats;
}

export interface ServeBenchReport {
  schema: typeof SERVE_BENCH_SCHEMA;
  status: 'complete' | 'interrupted';
  createdAt: string;
  /** The server: its base URL (never a key) and the model name sent. */
  target: { url: string; model: string };
  settings: {
    numPrompts: number;
    maxSeconds: number;
    timeoutS: number;
    /** --max_new_tokens: each request's max_tokens, unless its --prompts_file line gives one. */
    maxTokens: number;
    ignoreEos: boolean;
    seed: number;
    prompts: 'compare-prompts' | 'fixed-length' | 'file';
    promptsFile?: string;
    tokenizer?: string;
    /** How output tokens were counted: the model's tokenizer on the returned text, or the server's usage. */
    tokenCounting: 'tokenizer' | 'usage';
    slo?: ServeSlo;
  };
  environment: Environment;
  points: ServePoint[];
}

/** `concurrency 8`, `rate 2/s (burstiness 1)`, `rate inf`, `synchronous`, then the prompt length where there is one. */
export function serveLoadName(load: ServeLoad): string {
  switch (load.mode) {
    case 'synchronous':
      return 'synchronous';
    case 'concurrency':
      return `concurrency ${load.concurrency}`;
    case 'rate':
      return load.requestRate === 'inf' ? 'rate inf' : `rate ${load.requestRate}/s${load.burstiness === 1 ? '' : ` (burstiness ${load.burstiness})`}`;
  }
}

export function servePointName(p: Pick<ServePoint, 'load' | 'promptLength'>): string {
  return `${serveLoadName(p.load)}${p.promptLength !== undefined ? `, prompt ${p.promptLength}` : ''}`;
}
