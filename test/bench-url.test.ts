/**
 * `fusegen bench --url`: a load generator for OpenAI-compatible servers (issue 28 item 2). Each
 * test starts its own fake server (fastify on 127.0.0.1, port 0) that streams completions in the
 * chunk shapes of vLLM, TGI's messages API and llama.cpp's server (test/data/remote/stream-*.json,
 * written from their documentation) with controlled delays, counts the requests in flight and
 * records when each arrived. Nothing leaves the loopback; every loop is bounded.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { arrivalTimes, loadServeTokenizer, pointFigures, runServeBench, type ServeBenchOptions, type ServeOutcome } from '../bench/serve-load.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { main } from '../src/cli/main.js';
import { streamCompletion, type StreamRecord } from '../src/remote/stream.js';
import type { ServeBenchReport } from '../src/report/serve-bench-report.js';
import { validateServeBenchReport } from '../src/report/serve-bench-validate.js';
import { loadReports } from '../src/report/dashboard.js';
import { interruptTwice } from './helpers.js';

type Shape = 'vllm-completions' | 'tgi-messages' | 'llamacpp-completions';
type Behaviour = 'ok' | 'http500' | 'reset' | 'reset-mid' | 'stall' | 'malformed';

interface ShapeFixture {
  source: string;
  textChunk: unknown;
  lastTextChunk?: unknown;
  finishChunk?: unknown;
  usageChunk?: unknown;
  done: boolean;
}

const FIXTURES = join(import.meta.dirname, 'data', 'remote');
const shapeOf = (s: Shape) => JSON.parse(readFileSync(join(FIXTURES, `stream-${s}.json`), 'utf8')) as ShapeFixture;

/** Words the tiny GPT-2 tokenizer reads as one token each: the fake server's output tokens. */
const WORDS = [' the', ' and', ' of', ' to', ' a', ' in', ' is'];
const textOf = (n: number) => Array.from({ length: n }, (_, k) => WORDS[k % WORDS.length]!).join('');

interface FakeOptions {
  shape?: Shape;
  ttftMs?: number | ((i: number) => number);
  itlMs?: number;
  models?: string[];
  /** false: the server sends no usage at all. */
  usage?: boolean;
  /** Added to usage.completion_tokens: a server whose count disagrees with the text. */
  usageOffset?: number;
  /** What request i (0-based, in arrival order) gets. */
  behave?: (i: number) => Behaviour;
}

interface Fake {
  url: string;
  /** Per request, in arrival order: performance.now() at arrival, requests in flight then (itself included), body, Authorization. */
  arrivals: Array<{ at: number; inFlight: number; body: Record<string, unknown>; auth: string | undefined }>;
  maxInFlight: number;
  modelAuth: Array<string | undefined>;
}

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

/** Fills a fixture's template: "$TEXT", "$MODEL" and the usage counts. */
function fill(template: unknown, values: Record<string, string | number>): unknown {
  if (typeof template === 'string') return Object.hasOwn(values, template) ? values[template] : template;
  if (Array.isArray(template)) return template.map((x) => fill(x, values));
  if (template && typeof template === 'object') return Object.fromEntries(Object.entries(template).map(([k, v]) => [k, fill(v, values)]));
  return template;
}

function withoutUsage(chunk: unknown): unknown {
  if (!chunk || typeof chunk !== 'object') return chunk;
  const { usage: _, ...rest } = chunk as Record<string, unknown>;
  return rest;
}

async function fakeServer(o: FakeOptions = {}): Promise<Fake> {
  const shape = shapeOf(o.shape ?? 'vllm-completions');
  const app = Fastify({ logger: false, forceCloseConnections: true });
  apps.push(app);
  const fake: Fake = { url: '', arrivals: [], maxInFlight: 0, modelAuth: [] };
  let inFlight = 0;
  app.get('/v1/models', async (req) => {
    fake.modelAuth.push(req.headers.authorization);
    return { object: 'list', data: (o.models ?? ['fake-model']).map((id) => ({ id, object: 'model', created: 0, owned_by: 'fake' })) };
  });
  app.post('/v1/completions', (req, reply) => {
    const i = fake.arrivals.length;
    const body = req.body as Record<string, unknown>;
    const behaviour = o.behave?.(i) ?? 'ok';
    inFlight++;
    fake.maxInFlight = Math.max(fake.maxInFlight, inFlight);
    fake.arrivals.push({ at: performance.now(), inFlight, body, auth: req.headers.authorization });
    if (behaviour === 'http500') {
      inFlight--;
      void reply.code(500).send({ object: 'error', message: 'fake failure', type: 'InternalServerError', code: 500 });
      return;
    }
    reply.hijack();
    const res = reply.raw;
    const timers: NodeJS.Timeout[] = [];
    let open = true;
    res.on('close', () => {
      if (open) inFlight--;
      open = false;
      timers.forEach(clearTimeout);
    });
    if (behaviour === 'reset') {
      res.socket?.resetAndDestroy();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const n = Number(body['max_tokens']);
    const words = textOf(n).match(/ \w+/g)!;
    const values = { $MODEL: String(body['model']), $PROMPT_TOKENS: 7, $COMPLETION_TOKENS: n + (o.usageOffset ?? 0), $TOTAL_TOKENS: 7 + n + (o.usageOffset ?? 0) };
    const send = (chunk: unknown) => res.write(`data: ${JSON.stringify(o.usage === false ? withoutUsage(chunk) : chunk)}\n\n`);
    const ttft = typeof o.ttftMs === 'function' ? o.ttftMs(i) : (o.ttftMs ?? 20);
    const itl = o.itlMs ?? 5;
    const at = (ms: number, f: () => void) => timers.push(setTimeout(() => open && f(), ms));
    words.forEach((word, k) => {
      if (behaviour === 'stall' && k >= 2) return;
      if (behaviour === 'reset-mid' && k === 2) return at(ttft + k * itl, () => res.socket?.resetAndDestroy());
      if (behaviour === 'reset-mid' && k > 2) return;
      if (behaviour === 'malformed' && k === 1) return at(ttft + k * itl, () => res.write('data: {"choices": [{"text": " cut\n\n'));
      if (behaviour === 'malformed' && k > 1) return;
      const last = k === n - 1;
      at(ttft + k * itl, () => send(fill(last && shape.lastTextChunk ? shape.lastTextChunk : shape.textChunk, { ...values, $TEXT: word })));
    });
    if (behaviour !== 'ok') return;
    at(ttft + (n - 1) * itl + 1, () => {
      if (shape.finishChunk) send(fill(shape.finishChunk, values));
      if (shape.usageChunk && o.usage !== false) send(fill(shape.usageChunk, values));
      if (shape.done) res.write('data: [DONE]\n\n');
      res.end();
    });
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  fake.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return fake;
}

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function cli(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['bench', ...args], { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

function reportIn(dir: string): ServeBenchReport {
  const files = readdirSync(dir).filter((f) => f.endsWith('-bench-serve.json'));
  expect(files).toHaveLength(1);
  const report = JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as ServeBenchReport;
  validateServeBenchReport(report);
  return report;
}

const tmp = (what: string) => mkdtempSync(join(tmpdir(), `fusegen-bench-url-${what}-`));
const gaps = (ts: number[]) => ts.slice(1).map((t, i) => t - ts[i]!);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const cv = (xs: number[]) => {
  const m = mean(xs);
  return Math.sqrt(mean(xs.map((x) => (x - m) ** 2))) / m;
};

describe('the streaming client (src/remote/stream.ts)', () => {
  it.each(['vllm-completions', 'tgi-messages', 'llamacpp-completions'] as const)('reads the %s chunk shape: text, one arrival per text chunk, usage, finish reason, [DONE]', async (shape) => {
    expect(shapeOf(shape).source).toMatch(/^https:\/\//);
    const fake = await fakeServer({ shape, ttftMs: 10, itlMs: 3 });
    const r = await streamCompletion({ url: fake.url, model: 'fake-model', prompt: 'Hello', maxTokens: 5, timeoutMs: 5000, apiKey: 'sekret' });
    expect(r.error).toBeUndefined();
    expect(r.text).toBe(textOf(5));
    // llama.cpp's final chunk carries a choice with empty text: not a token's arrival.
    expect(r.chunkTimes).toHaveLength(5);
    expect(r.usage).toEqual({ promptTokens: 7, completionTokens: 5 });
    expect(r.finishReason).toBe('length');
    expect(r.done).toBe(true);
    expect(r.chunkTimes[0]! - r.sentAt).toBeGreaterThanOrEqual(9);
    expect(r.endAt).toBeGreaterThanOrEqual(r.chunkTimes[4]!);
    expect(fake.arrivals[0]!.body).toMatchObject({ model: 'fake-model', prompt: 'Hello', max_tokens: 5, stream: true, stream_options: { include_usage: true } });
    expect(fake.arrivals[0]!.auth).toBe('Bearer sekret');
  });

  it('records each failure by kind: HTTP status, refused, reset before and during the answer, malformed, timeout', async () => {
    const kinds: Behaviour[] = ['http500', 'reset', 'reset-mid', 'malformed', 'stall'];
    const fake = await fakeServer({ behave: (i) => kinds[i]! });
    const ask = () => streamCompletion({ url: fake.url, model: 'm', prompt: 'p', maxTokens: 6, timeoutMs: 400 });
    const got: StreamRecord[] = [];
    for (let i = 0; i < kinds.length; i++) got.push(await ask());
    expect(got.map((r) => r.error?.kind)).toEqual(['http', 'reset', 'reset', 'malformed', 'timeout']);
    expect(got[0]!.error!.status).toBe(500);
    expect(got[0]!.error!.message).toContain('fake failure');
    // The stalled answer delivered two tokens before it stopped: kept, but the request failed.
    expect(got[4]!.chunkTimes).toHaveLength(2);
    expect(got[4]!.endAt - got[4]!.sentAt).toBeGreaterThanOrEqual(390);
    const refused = await streamCompletion({ url: `http://127.0.0.1:${await closedPort()}`, model: 'm', prompt: 'p', maxTokens: 2, timeoutMs: 2000 });
    expect(refused.error?.kind).toBe('refused');
  });
});

describe('bench --url', () => {
  it('measures TTFT, TPOT, ITL and E2E as vllm bench serve defines them, within a tolerance of the injected delays', async () => {
    const fake = await fakeServer({ ttftMs: 40, itlMs: 5 });
    const dir = tmp('timing');
    const r = await cli(['--url', fake.url, '--num_prompts', '6', '--max_new_tokens', '8', '--report_dir', dir]);
    expect(r.code, r.err.join('\n')).toBe(0);
    const report = reportIn(dir);
    expect(report.target).toEqual({ url: fake.url, model: 'fake-model' });
    expect(report.settings.tokenCounting).toBe('usage');
    const p = report.points[0]!;
    expect(p.load).toEqual({ mode: 'synchronous' });
    expect([p.sent, p.completed, p.failed, p.peakConcurrency]).toEqual([6, 6, 0, 1]);
    expect(p.outputTokens).toBe(48);
    expect(p.inputTokens).toBe(42); // usage.prompt_tokens 7 a request
    expect(p.ttftMs.median).toBeGreaterThanOrEqual(40);
    expect(p.ttftMs.median).toBeLessThan(65);
    expect(p.itlMs.median).toBeGreaterThanOrEqual(4);
    expect(p.itlMs.median).toBeLessThan(10);
    // (e2e - ttft) / (8 - 1) = the 5 ms gap; e2e / 8 would be about 9.4.
    expect(p.tpotMs.median).toBeGreaterThanOrEqual(4.5);
    expect(p.tpotMs.median).toBeLessThan(7.5);
    expect(p.e2eMs.median).toBeGreaterThanOrEqual(75);
    expect(p.e2eMs.median).toBeLessThan(110);
    expect(p.requestThroughput).toBeCloseTo(6 / p.durationS, 6);
    expect(p.outputThroughput).toBeCloseTo(48 / p.durationS, 6);
    expect(p.totalTokenThroughput).toBeCloseTo(90 / p.durationS, 6);
    // The unmeasured test request first, then the point's six, one at a time.
    expect(fake.arrivals).toHaveLength(7);
    expect(Math.max(...fake.arrivals.map((a) => a.inFlight))).toBe(1);
    expect(r.out).toContain('============ Serving Benchmark Result ============');
    expect(r.out.find((l) => l.startsWith('Median TTFT (ms):'))).toMatch(/^Median TTFT \(ms\): +\d+\.\d\d$/);
    expect(r.out.at(-1)).toMatch(/^reports: .*-fake-model-bench-serve\.json, .*-fake-model-bench-serve\.html$/);
    expect(readFileSync(join(dir, readdirSync(dir).find((f) => f.endsWith('.html'))!), 'utf8')).toContain('fusegen bench --url');
  });

  it('reaches each concurrency of the sweep, and no more (counted by the server)', async () => {
    const fake = await fakeServer({ ttftMs: 30, itlMs: 5 });
    const dir = tmp('concurrency');
    const r = await cli(['--url', fake.url, '--concurrency', '1,4', '--num_prompts', '12', '--max_new_tokens', '4', '--report_dir', dir]);
    expect(r.code, r.err.join('\n')).toBe(0);
    const report = reportIn(dir);
    expect(report.points.map((p) => [p.load, p.sent, p.completed, p.peakConcurrency])).toEqual([
      [{ mode: 'concurrency', concurrency: 1 }, 12, 12, 1],
      [{ mode: 'concurrency', concurrency: 4 }, 12, 12, 4],
    ]);
    // Arrival 0 is the test request; then 12 for each point.
    const peak = (from: number, to: number) => Math.max(...fake.arrivals.slice(from, to).map((a) => a.inFlight));
    expect(fake.arrivals).toHaveLength(25);
    expect(peak(1, 13)).toBe(1);
    expect(peak(13, 25)).toBe(4);
    // Four at a time: three rounds of about 45 ms, not twelve.
    expect(report.points[1]!.durationS).toBeLessThan(report.points[0]!.durationS * 0.6);
    expect(r.err.filter((l) => /^\[\d\/2\] concurrency/.test(l))).toEqual(['[1/2] concurrency 1', '[2/2] concurrency 4']);
  });

  it('sends Poisson arrivals at the mean rate asked for (seeded), and gamma ones steadier with --burstiness 4', async () => {
    const run = async (extra: string[]) => {
      const fake = await fakeServer({ ttftMs: 1, itlMs: 1 });
      const dir = tmp('rate');
      const r = await cli(['--url', fake.url, '--request_rate', '100', '--num_prompts', '120', '--max_new_tokens', '2', '--seed', '7', '--report_dir', dir, ...extra]);
      expect(r.code, r.err.join('\n')).toBe(0);
      const at = fake.arrivals.slice(1).map((a) => a.at);
      expect(at).toHaveLength(120);
      return { report: reportIn(dir), rate: (at.length - 1) / ((at.at(-1)! - at[0]!) / 1000), cv: cv(gaps(at)) };
    };
    const poisson = await run([]);
    expect(poisson.report.points[0]!.load).toEqual({ mode: 'rate', requestRate: 100, burstiness: 1 });
    expect(poisson.rate).toBeGreaterThan(85);
    expect(poisson.rate).toBeLessThan(117);
    // Exponential gaps: coefficient of variation 1 (evenly spaced sends would give about 0).
    expect(poisson.cv).toBeGreaterThan(0.75);
    expect(poisson.cv).toBeLessThan(1.35);
    const steady = await run(['--burstiness', '4']);
    expect(steady.rate).toBeGreaterThan(85);
    expect(steady.rate).toBeLessThan(117);
    // Gamma of shape 4: 1/sqrt(4) = 0.5.
    expect(steady.cv).toBeGreaterThan(0.3);
    expect(steady.cv).toBeLessThan(0.7);
  });

  it('counts goodput: requests per second meeting every SLO given', async () => {
    // The test request is arrival 0; then odd arrivals answer after 10 ms, even ones after 120 ms.
    const fake = await fakeServer({ ttftMs: (i) => (i % 2 ? 10 : 120), itlMs: 2 });
    const dir = tmp('goodput');
    const summary = join(dir, 'summary.md');
    const r = await cli(['--url', fake.url, '--num_prompts', '6', '--max_new_tokens', '3', '--slo', 'ttft=60', '--report_dir', dir, '--summary_md', summary]);
    expect(r.code, r.err.join('\n')).toBe(0);
    const p = reportIn(dir).points[0]!;
    expect(p.goodRequests).toBe(3);
    expect(p.goodput).toBeCloseTo(3 / p.durationS, 6);
    expect(r.out.find((l) => l.startsWith('Request goodput (req/s):'))).toMatch(/\(3 good\)$/);
    // The Markdown summary (--summary_md, and $GITHUB_STEP_SUMMARY): the point's row with its goodput under the SLO.
    const text = readFileSync(summary, 'utf8');
    expect(text).toContain('SLO: ttft ≤ 60 ms');
    expect(text).toMatch(new RegExp(`\\| synchronous \\| 6 \\| 0 \\| [0-9.]+ \\| [0-9.]+ \\| [0-9.]+ \\| [0-9.]+ \\| [0-9]+ \\| ${p.goodput!.toFixed(2)} \\|`));
    expect(r.out).toContain(`summary: ${summary}`);
  });

  it('counts failures by kind (500, reset, stalled past --timeout_s) and measures only the answers that completed', async () => {
    const kinds: Behaviour[] = ['http500', 'reset-mid', 'stall', 'ok'];
    const fake = await fakeServer({ behave: (i) => (i === 0 ? 'ok' : kinds[(i - 1) % 4]!) });
    const dir = tmp('errors');
    const t = performance.now();
    const r = await cli(['--url', fake.url, '--concurrency', '8', '--num_prompts', '8', '--max_new_tokens', '6', '--timeout_s', '0.5', '--report_dir', dir, '--summary_md', join(dir, 'summary.md')]);
    expect(r.code, r.err.join('\n')).toBe(0);
    expect(performance.now() - t).toBeLessThan(5000);
    const p = reportIn(dir).points[0]!;
    expect(p.errors).toEqual({ http_500: 2, reset: 2, timeout: 2 });
    expect([p.sent, p.completed, p.failed]).toEqual([8, 2, 6]);
    expect(p.outputTokens).toBe(12);
    expect(p.errorExamples['http_500']).toContain('500');
    expect(r.out).toContain(`${'Errors by kind:'.padEnd(40)} http_500 2, reset 2, timeout 2`);
    expect(readFileSync(join(dir, 'summary.md'), 'utf8')).toContain('**6 failed requests**:\n- concurrency 8: http\\_500 2, reset 2, timeout 2'); // Markdown-escaped
  });

  it('stops a point at --max_seconds: its requests in flight finish, the rest are not sent', async () => {
    const fake = await fakeServer({ ttftMs: 100, itlMs: 5 });
    const dir = tmp('max-seconds');
    const r = await cli(['--url', fake.url, '--num_prompts', '100', '--max_new_tokens', '2', '--max_seconds', '0.35', '--report_dir', dir]);
    expect(r.code, r.err.join('\n')).toBe(0);
    const p = reportIn(dir).points[0]!;
    expect(p.stoppedBy).toBe('max_seconds');
    expect(p.sent).toBeGreaterThanOrEqual(2);
    expect(p.sent).toBeLessThanOrEqual(4);
    expect(p.completed).toBe(p.sent);
    expect(p.durationS).toBeLessThan(0.7);
  });

  it('counts output tokens with --tokenizer, reports the server usage beside them and where they disagree; --prompt_lengths builds prompts of that many tokens', async () => {
    const fake = await fakeServer({ ttftMs: 5, itlMs: 2, usageOffset: 1 });
    const dir = tmp('tokenizer');
    const tok = tinyModelDir('gpt2');
    const r = await cli(['--url', fake.url, '--tokenizer', tok, '--prompt_lengths', '12,30', '--num_prompts', '4', '--max_new_tokens', '5', '--report_dir', dir]);
    expect(r.code, r.err.join('\n')).toBe(0);
    const report = reportIn(dir);
    expect(report.settings).toMatchObject({ tokenCounting: 'tokenizer', tokenizer: tok, prompts: 'fixed-length' });
    expect(report.points.map((p) => [p.promptLength, p.outputTokens, p.serverOutputTokens, p.tokenCountMismatches])).toEqual([
      [12, 20, 24, 4],
      [30, 20, 24, 4],
    ]);
    expect(r.out).toContain(`${"Server's usage (generated tokens):".padEnd(40)} 24 (differs from the tokenizer on 4 requests)`);
    const counter = await loadServeTokenizer(tok);
    const lengths = fake.arrivals.slice(1).map((a) => counter.count(String(a.body['prompt'])));
    expect(lengths).toEqual([12, 12, 12, 12, 30, 30, 30, 30]);
    expect(new Set(fake.arrivals.slice(1, 5).map((a) => a.body['prompt'])).size).toBe(4);
  });

  it('sends --prompts_file lines in turn with their own max_tokens, and --api_key as a bearer token that no report holds', async () => {
    const fake = await fakeServer({ shape: 'llamacpp-completions', ttftMs: 5, itlMs: 2 });
    const dir = tmp('file');
    const file = join(dir, 'prompts.jsonl');
    writeFileSync(file, '{"prompt": "first"}\n\n{"prompt": "second", "max_tokens": 3}\n');
    const r = await cli(['--url', `${fake.url}/v1/`, '--api_key', 'sekret-key', '--prompts_file', file, '--num_prompts', '4', '--max_new_tokens', '6', '--report_dir', dir]);
    expect(r.code, r.err.join('\n')).toBe(0);
    expect(fake.arrivals.slice(1).map((a) => [a.body['prompt'], a.body['max_tokens']])).toEqual([['first', 6], ['second', 3], ['first', 6], ['second', 3]]);
    expect([...fake.modelAuth, ...fake.arrivals.map((a) => a.auth)].every((a) => a === 'Bearer sekret-key')).toBe(true);
    const report = reportIn(dir);
    expect(report.points[0]!.outputTokens).toBe(18);
    expect(report.target.url).toBe(fake.url);
    for (const f of readdirSync(dir)) expect(readFileSync(join(dir, f), 'utf8')).not.toContain('sekret-key');
    // The dashboard lists the run beside bench and compare runs.
    expect(loadReports(dir).runs.map((x) => x.kind)).toEqual(['serve']);
  });

  it('a first Ctrl-C stops sending: the requests in flight finish, the point is kept, no later point runs', async () => {
    const fake = await fakeServer({ ttftMs: 20, itlMs: 2 });
    let answered = 0;
    const o: ServeBenchOptions = {
      url: fake.url, model: 'fake-model', sets: [{ requests: [{ prompt: 'p', maxTokens: 3 }] }], loads: [{ mode: 'concurrency', concurrency: 2 }, { mode: 'concurrency', concurrency: 4 }],
      numPrompts: 50, maxSeconds: 10, timeoutS: 5, seed: 0, ignoreEos: false, maxTokens: 3, prompts: 'compare-prompts',
    };
    const report = await runServeBench(o, (p) => (answered = p.answered), () => answered >= 3);
    expect(report.status).toBe('interrupted');
    expect(report.points).toHaveLength(1);
    const p = report.points[0]!;
    expect(p.stoppedBy).toBe('interrupt');
    expect(p.sent).toBeLessThan(6);
    expect(p.completed).toBe(p.sent);
    expect(fake.arrivals).toHaveLength(p.sent);
    expect(() => validateServeBenchReport(report)).not.toThrow();
  });

  it('a second Ctrl-C stops at once and still writes the points that finished, marked interrupted (child process)', async () => {
    // Arrival 0 is the test request, 1-5 the first point's; the second point's answers take 3 s.
    const fake = await fakeServer({ ttftMs: (i) => (i > 5 ? 3000 : 5), itlMs: 2 });
    const dir = tmp('ctrl-c');
    const args = ['bench', '--url', fake.url, '--concurrency', '1,2', '--num_prompts', '5', '--max_new_tokens', '3', '--report_dir', dir];
    const r = await interruptTwice(args, { stream: 'stderr', re: /\[2\/2\] concurrency 2/ });
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/interrupted: 1 finished point written to .*-bench-serve\.json/);
    const report = reportIn(dir);
    expect(report.status).toBe('interrupted');
    expect(report.points.map((p) => p.load)).toEqual([{ mode: 'concurrency', concurrency: 1 }]);
    expect(r.stdout).toBe('');
  });
});

describe('bench --url refuses bad input with one line and exit 2, before any report', () => {
  const refused = async (args: string[], culprit: string, says: string) => {
    const dir = tmp('refused');
    const r = await cli([...args, '--report_dir', dir]);
    expect(r.err, r.err.join('\n')).toHaveLength(1);
    expect(r.err[0]!.startsWith(`error: ${culprit}: `), r.err[0]).toBe(true);
    expect(r.err[0]).toContain(says);
    expect(r.out).toEqual([]);
    expect(r.code).toBe(2);
    expect(readdirSync(dir)).toEqual([]);
  };

  it('flags of the wrong side, bad values and combinations', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    await refused(['--url', url, '--device', 'webgpu'], '--device', 'not to --url');
    await refused(['--url', url, '--profile'], '--profile', 'not to --url');
    await refused(['--url', url, '--repeats', '3'], '--repeats', 'not to --url');
    await refused(['--concurrency', '4'], '--concurrency', 'give --url URL');
    await refused(['--num_prompts', '7'], '--num_prompts', 'give --url URL');
    await refused(['--url', 'ftp://127.0.0.1/'], '--url', 'http:// or https://');
    await refused(['--url', 'http://user:pw@127.0.0.1:1'], '--url', 'credentials');
    await refused(['--url', url, '--prompt_lengths', '128'], '--prompt_lengths', 'give --tokenizer DIR');
    await refused(['--url', url, '--burstiness', '2'], '--burstiness', 'give --request_rate too');
    await refused(['--url', url, '--request_rate', '0'], '--request_rate', 'above 0');
    await refused(['--url', url, '--slo', 'ttft=fast'], '--slo', 'expected a number');
    await refused(['--url', url, '--slo', 'ttfb=5'], '--slo', 'unknown objective "ttfb"');
    await refused(['--url', url, '--tokenizer', '/nonexistent/tok'], '--tokenizer', 'no such directory');
  });

  it('a malformed --prompts_file line, named by file and line number', async () => {
    const dir = tmp('bad-file');
    const file = join(dir, 'p.jsonl');
    writeFileSync(file, '{"prompt": "ok"}\n{"prompt": "ok", "max_tokens": 0}\n');
    await refused(['--url', 'http://127.0.0.1:1', '--prompts_file', file], `${file}:2`, '"max_tokens" must be an integer of at least 1');
    writeFileSync(file, '{"prompt": "ok"}\n\n{"prompt": "cut\n');
    await refused(['--url', 'http://127.0.0.1:1', '--prompts_file', file], `${file}:3`, 'not JSON');
  });

  it('what the server answers: nothing listening, several models, no usage without --tokenizer, a test request that never finishes', async () => {
    await refused(['--url', `http://127.0.0.1:${await closedPort()}`], '--url', 'failed (refused');
    const two = await fakeServer({ models: ['a', 'b'] });
    await refused(['--url', two.url], '--served_model', 'serves 2 models (a, b): name one with --served_model');
    const silent = await fakeServer({ usage: false });
    await refused(['--url', silent.url], '--tokenizer', 'sent no usage');
    const stuck = await fakeServer({ behave: () => 'stall' });
    const t = performance.now();
    await refused(['--url', stuck.url, '--timeout_s', '0.3'], '--url', 'failed: timeout');
    expect(performance.now() - t).toBeLessThan(3000);
  });
});

describe('the load generator\'s pieces', () => {
  it('draws seeded gamma arrivals: mean 1/rate (the last at n/rate, as vLLM rescales), coefficient of variation 1/sqrt(burstiness)', () => {
    for (const b of [1, 4, 0.5]) {
      const t = arrivalTimes(20_000, 50, b, 3);
      expect(t.at(-1)).toBeCloseTo(20_000 / 50, 6);
      expect(cv(gaps([0, ...t]))).toBeGreaterThan((1 / Math.sqrt(b)) * 0.95);
      expect(cv(gaps([0, ...t]))).toBeLessThan((1 / Math.sqrt(b)) * 1.05);
    }
    expect(arrivalTimes(5, 10, 1, 9)).toEqual(arrivalTimes(5, 10, 1, 9));
    expect(arrivalTimes(5, 10, 1, 9)).not.toEqual(arrivalTimes(5, 10, 1, 10));
    expect(arrivalTimes(3, 'inf', 1, 1)).toEqual([0, 0, 0]);
  });

  it('computes the figures as benchmark_serving.py does: TPOT over requests of more than one token, numpy percentiles, goodput with every SLO', () => {
    const rec = (ttft: number, gapsMs: number[], usage: number): ServeOutcome => {
      const times = [ttft];
      for (const g of gapsMs) times.push(times.at(-1)! + g);
      return { spec: { prompt: 'p', maxTokens: 9 }, record: { sentAt: 0, chunkTimes: times, endAt: times.at(-1)!, text: 'x', usage: { promptTokens: 2, completionTokens: usage }, done: true } };
    };
    const failed: ServeOutcome = { spec: { prompt: 'p', maxTokens: 9 }, record: { sentAt: 0, chunkTimes: [], endAt: 5, text: '', done: false, error: { kind: 'http', status: 503, message: '503' } } };
    const outcomes = [rec(10, [4, 6], 3), rec(30, [10, 10], 3), rec(20, [], 1), failed];
    const f = pointFigures(outcomes, 2, undefined, { ttftMs: 25, tpotMs: 8 });
    expect([f.completed, f.failed, f.errors]).toEqual([3, 1, { http_503: 1 }]);
    // TPOTs: (20 - 10) / 2 = 5 and (50 - 30) / 2 = 10; the one-token request has none (0 for goodput).
    expect(f.tpotMs.mean).toBe(7.5);
    expect(f.itlMs.median).toBe(8); // gaps 4, 6, 10, 10
    expect(f.ttftMs.p90).toBeCloseTo(28, 10); // numpy: 10, 20, 30 at 90% -> 28
    // Good: the first (ttft 10, tpot 5) and the third (ttft 20, tpot 0); not the second (ttft 30).
    expect(f.goodRequests).toBe(2);
    expect(f.goodput).toBe(1);
    expect([f.outputTokens, f.inputTokens, f.requestThroughput, f.outputThroughput]).toEqual([7, 6, 1.5, 3.5]);
  });
});
