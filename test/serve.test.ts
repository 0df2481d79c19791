/**
 * fusegen serve on loopback (issue 28 item 1): every route, streaming, cancellation, timeouts,
 * malformed requests, and continuous batching: concurrent requests that join a running batch
 * at different steps get exactly the tokens each gets alone.
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { main } from '../src/cli/main.js';
import { createPipeline } from '../src/pipeline/ds-pipeline.js';
import { ALL_FUSIONS } from '../src/pipeline/injected.js';
import { decodeText, encode } from '../src/pipeline/tokenizer.js';
import type { TextGenerationPipeline } from '../src/pipeline/types.js';
import type { WgslPipeline } from '../src/pipeline/wgsl.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { FIRST_QUERY, scaledFixture } from '../fixtures/defects.js';
import type { CompareReport } from '../src/report/compare-report.js';
import { buildServer, type Server } from '../serve/server.js';

const KEY = 'test-key';
const PROMPTS = ['DeepSpeed is', 'The capital of France is a city with', 'Hello', 'Once upon a time there was a little'];

interface Completion {
  choices: Array<{ text: string; finish_reason: string; logprobs: { tokens: string[]; token_logprobs: Array<number | null>; top_logprobs: Array<Record<string, number> | null> } | null }>;
  usage: { prompt_tokens: number; completion_tokens: number };
}

async function serveOn(pipeline: TextGenerationPipeline, extra: Partial<Parameters<typeof buildServer>[0]> = {}): Promise<{ server: Server; url: string }> {
  const server = await buildServer({ pipeline, modelName: 'tiny', maxBatch: 4, maxTokensLimit: 64, bodyLimit: 64 * 1024, requestTimeoutMs: 30_000, apiKey: KEY, ...extra });
  const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  return { server, url };
}

function post(url: string, path: string, body: unknown, key: string | undefined = KEY, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) }, body: typeof body === 'string' ? body : JSON.stringify(body), ...(signal ? { signal } : {}) });
}

async function complete(url: string, body: Record<string, unknown>): Promise<Completion> {
  const r = await post(url, '/v1/completions', body);
  expect(r.status, await r.clone().text()).toBe(200);
  return (await r.json()) as Completion;
}

/** Generated ids, as the server names them with return_tokens_as_token_ids. */
function idsOf(c: Completion): number[] {
  return c.choices[0]!.logprobs!.tokens.map((t) => Number(t.replace('token_id:', '')));
}

async function* sse(r: Response): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const part of r.body!) {
    buf += decoder.decode(part as Uint8Array, { stream: true });
    for (let i; (i = buf.indexOf('\n\n')) >= 0; ) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (event.startsWith('data: ')) yield event.slice(6);
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('fusegen serve (ORT-injected tiny-llama on the CPU)', () => {
  let pipe: TextGenerationPipeline;
  let server: Server;
  let url: string;
  const alone = new Map<string, number[]>();
  /** Rows each engine step carried. */
  const carried: number[] = [];

  beforeAll(async () => {
    pipe = await createPipeline(openCheckpoint(tinyModelDir('llama')), { kind: 'ort', fusions: ALL_FUSIONS }, { device: 'cpu', dtype: 'float32', maxTokens: 64 });
    for (const p of PROMPTS) alone.set(p, (await pipe.generate({ prompts: [p], maxNewTokens: 12, doSample: false, ignoreEos: true })).sequences[0]!.newIds);
    const steps = pipe.steps!.bind(pipe);
    pipe.steps = () => {
      const access = steps();
      const step = access.stepper.step.bind(access.stepper);
      access.stepper.step = (input, needLogits) => (carried.push(input.tokens.length), step(input, needLogits));
      return access;
    };
    ({ server, url } = await serveOn(pipe));
  });
  afterAll(async () => {
    await server?.close();
    await pipe?.dispose();
  });

  it('answers /health without a key, and every other route only with it', async () => {
    expect((await fetch(`${url}/health`)).status).toBe(200);
    const noKey = await fetch(`${url}/v1/models`);
    expect(noKey.status).toBe(401);
    expect(((await noKey.json()) as { error: { type: string } }).error.type).toBe('authentication_error');
    expect((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const models = (await (await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } })).json()) as { data: Array<{ id: string; max_model_len: number }> };
    expect(models.data.map((m) => [m.id, m.max_model_len])).toEqual([['tiny', 64]]);
  });

  it('batches concurrent requests that join at different steps, each getting exactly its tokens alone', async () => {
    const rows: number[] = [];
    const observe = server.batcher.onStep;
    server.batcher.onStep = (n, ms) => {
      rows.push(n);
      observe?.(n, ms);
    };
    // Staggered: later requests join a batch already decoding, with prompts of other lengths.
    const results = await Promise.all(
      PROMPTS.map(async (prompt, i) => {
        await sleep(i * 5);
        return complete(url, { prompt, max_tokens: 12, temperature: 0, ignore_eos: true, logprobs: 0, return_tokens_as_token_ids: true });
      }),
    );
    server.batcher.onStep = observe;
    results.forEach((r, i) => expect(idsOf(r)).toEqual(alone.get(PROMPTS[i]!)));
    expect(Math.max(...rows)).toBeGreaterThan(1); // they shared steps
  });

  it('steps only the leading rows up to the last busy slot: a request alone costs one row, not every slot', async () => {
    carried.length = 0;
    const r = await complete(url, { prompt: PROMPTS[2], max_tokens: 12, temperature: 0, ignore_eos: true, logprobs: 0, return_tokens_as_token_ids: true });
    expect(idsOf(r)).toEqual(alone.get(PROMPTS[2]!));
    expect(carried.length).toBe(12);
    expect(new Set(carried)).toEqual(new Set([1]));
  });

  it('queues requests beyond the batch slots and still answers each as alone', async () => {
    const many = [...PROMPTS, ...PROMPTS, ...PROMPTS]; // 12 requests, 4 slots
    const results = await Promise.all(many.map((prompt) => complete(url, { prompt, max_tokens: 12, temperature: 0, ignore_eos: true, logprobs: 0, return_tokens_as_token_ids: true })));
    results.forEach((r, i) => expect(idsOf(r)).toEqual(alone.get(many[i]!)));
    expect(server.batcher.stats).toMatchObject({ running: 0, waiting: 0 });
  });

  it('streams the same text as the whole answer, then usage and [DONE]', async () => {
    const body = { prompt: PROMPTS[1], max_tokens: 12, temperature: 0, ignore_eos: true };
    const whole = await complete(url, body);
    const r = await post(url, '/v1/completions', { ...body, stream: true, stream_options: { include_usage: true } });
    expect(r.headers.get('content-type')).toContain('text/event-stream');
    const events = [];
    for await (const e of sse(r)) events.push(e);
    expect(events[events.length - 1]).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: Array<{ text: string; finish_reason: string | null }>; usage?: { completion_tokens: number } });
    const usage = chunks.pop()!;
    expect(usage.usage?.completion_tokens).toBe(12);
    expect(chunks.map((c) => c.choices[0]!.text).join('')).toBe(whole.choices[0]!.text);
    expect(chunks.length).toBeGreaterThan(3); // token by token, not at the end
    expect(chunks[chunks.length - 1]!.choices[0]!.finish_reason).toBe('length');
  });

  it('streams text that continues the prompt as the whole sequence decoded at once gives it, token by token', async () => {
    const { tokenizer } = pipe.steps!();
    for (const prompt of PROMPTS) {
      const c = await complete(url, { prompt, max_tokens: 40, temperature: 0, ignore_eos: true, logprobs: 0, return_tokens_as_token_ids: true });
      const ids = encode(tokenizer, prompt);
      expect(c.choices[0]!.text).toBe(decodeText(tokenizer, [...ids, ...idsOf(c)]).slice(decodeText(tokenizer, ids).length));
    }
  });

  it('returns logprobs of the model itself: the teacher-forced log-softmax at each generated token', async () => {
    const prompt = PROMPTS[0]!;
    const c = await complete(url, { prompt, max_tokens: 6, temperature: 0, ignore_eos: true, logprobs: 3, return_tokens_as_token_ids: true });
    const ids = idsOf(c);
    const promptIds = encode((pipe.steps!()).tokenizer, prompt);
    const [rows] = await pipe.score([[...promptIds, ...ids]], [promptIds.length - 1]);
    ids.forEach((id, i) => {
      const row = rows![i]!;
      const lse = Math.log(row.reduce((a, v) => a + Math.exp(v), 0));
      expect(c.choices[0]!.logprobs!.token_logprobs[i]).toBeCloseTo(row[id]! - lse, 4);
      const top = c.choices[0]!.logprobs!.top_logprobs[i]!;
      expect(Object.keys(top)).toHaveLength(3);
      expect(top[`token_id:${id}`]).toBeCloseTo(row[id]! - lse, 4); // greedy: the chosen token is the top one
    });
  });

  it('echo with max_tokens 0 gives the prompt logprobs (the first token has none)', async () => {
    const c = await complete(url, { prompt: PROMPTS[3], max_tokens: 0, echo: true, logprobs: 1 });
    const n = encode((pipe.steps!()).tokenizer, PROMPTS[3]!).length;
    expect(c.choices[0]!.text).toBe(PROMPTS[3]);
    expect(c.choices[0]!.logprobs!.token_logprobs).toHaveLength(n);
    expect(c.choices[0]!.logprobs!.token_logprobs[0]).toBeNull();
    expect(c.choices[0]!.logprobs!.token_logprobs.slice(1).every((v) => typeof v === 'number' && v < 0)).toBe(true);
    expect(c.usage.completion_tokens).toBe(0);
  });

  it('ends the text before a stop string, with finish_reason stop', async () => {
    const whole = (await complete(url, { prompt: PROMPTS[2], max_tokens: 12, temperature: 0, ignore_eos: true })).choices[0]!.text;
    const stop = whole.slice(Math.floor(whole.length / 2), Math.floor(whole.length / 2) + 3);
    const c = await complete(url, { prompt: PROMPTS[2], max_tokens: 12, temperature: 0, ignore_eos: true, stop: [stop] });
    expect(c.choices[0]!.finish_reason).toBe('stop');
    expect(c.choices[0]!.text).toBe(whole.slice(0, whole.indexOf(stop)));
  });

  it('samples reproducibly by seed', async () => {
    const body = { prompt: PROMPTS[0], max_tokens: 12, temperature: 1.5, top_p: 0.95, ignore_eos: true };
    const a = await complete(url, { ...body, seed: 7 });
    const b = await complete(url, { ...body, seed: 7 });
    const c = await complete(url, { ...body, seed: 8 });
    expect(a.choices[0]!.text).toBe(b.choices[0]!.text);
    expect(c.choices[0]!.text).not.toBe(a.choices[0]!.text);
  });

  it('stops generating for a client that disconnects', async () => {
    const ac = new AbortController();
    const r = await post(url, '/v1/completions', { prompt: PROMPTS[0], max_tokens: 50, temperature: 0, ignore_eos: true, stream: true }, KEY, ac.signal);
    const it = sse(r);
    await it.next(); // the first token arrived: the request is in the batch
    const steps = server.batcher.steps;
    ac.abort();
    for (let i = 0; i < 100 && server.batcher.stats.running > 0; i++) await sleep(10);
    expect(server.batcher.stats.running).toBe(0);
    expect(server.batcher.steps - steps).toBeLessThan(45);
  });

  it('refuses malformed requests with a 4xx JSON error naming the field, and keeps serving', async () => {
    const cases: Array<[unknown, number, RegExp]> = [
      ['{"prompt": ', 400, /JSON|body/i],
      [{ max_tokens: 4 }, 400, /prompt/],
      [{ prompt: 'a', frequency_penalty: 0.5 }, 400, /frequency_penalty: not implemented/],
      [{ prompt: 'a', suffix: 'x' }, 400, /suffix: not a field/],
      [{ prompt: 'a', max_tokens: 65 }, 400, /max_tokens 65 is over this server's limit/],
      [{ prompt: 'a', max_tokens: -1 }, 400, /max_tokens/],
      [{ prompt: 'a', temperature: 'hot' }, 400, /temperature/],
      [{ prompt: [1, -2] }, 400, /prompt/],
      [{ prompt: [1, 99999] }, 400, /token id 99999 is beyond the model's vocabulary/],
      [{ prompt: 'x '.repeat(60), max_tokens: 30 }, 400, /over the 64 positions/],
      [{ prompt: 'a', model: 'gpt-4' }, 404, /'gpt-4' does not exist/],
      [{ prompt: 'a'.repeat(70 * 1024) }, 413, /body|large/i],
    ];
    for (const [body, status, message] of cases) {
      const r = await post(url, '/v1/completions', body);
      const text = await r.text();
      expect([r.status, text]).toEqual([status, expect.stringMatching(message)]);
      expect(JSON.parse(text)).toHaveProperty('error.message');
    }
    expect((await post(url, '/v1/nothing', {})).status).toBe(404);
    expect((await post(url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] })).status).toBe(400); // no chat template in this tokenizer
    expect((await fetch(`${url}/health`)).status).toBe(200);
  });

  it('counts requests, tokens and latencies in /metrics', async () => {
    const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text();
    const value = (name: string) => Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1]);
    expect(value('fusegen_generation_tokens_total')).toBeGreaterThan(100);
    expect(value('fusegen_time_to_first_token_seconds_count')).toBeGreaterThan(15);
    expect(text).toMatch(/fusegen_requests_total\{route="\/v1\/completions",status="400"\} [1-9]/);
    expect(text).toMatch(/^fusegen_num_requests_running 0$/m);
  });
});

describe('fusegen serve: timeouts and chat templates', () => {
  let pipe: TextGenerationPipeline;
  let dir: string;
  beforeAll(async () => {
    // tiny-llama with a chat template (the fixture's tokenizer has none).
    dir = mkdtempSync(join(tmpdir(), 'fusegen-chat-'));
    cpSync(tinyModelDir('llama'), dir, { recursive: true });
    const cfgPath = join(dir, 'tokenizer_config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    cfg.chat_template = "{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' ' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";
    writeFileSync(cfgPath, JSON.stringify(cfg));
    pipe = await createPipeline(openCheckpoint(dir), { kind: 'ort', fusions: ALL_FUSIONS }, { device: 'cpu', dtype: 'float32', maxTokens: 64 });
  });
  afterAll(async () => {
    await pipe?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers chat completions through the template, as completions on the templated prompt', async () => {
    const { server, url } = await serveOn(pipe);
    try {
      const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }];
      const r = await post(url, '/v1/chat/completions', { messages, max_tokens: 8, temperature: 0, ignore_eos: true });
      expect(r.status).toBe(200);
      const chat = (await r.json()) as { object: string; choices: Array<{ message: { role: string; content: string } }> };
      expect(chat.object).toBe('chat.completion');
      const templated = '<|system|> Be brief. <|user|> Hello there <|assistant|>';
      const ids = pipe.steps!().tokenizer.encode(templated, { add_special_tokens: false });
      const plain = await complete(url, { prompt: ids, max_tokens: 8, temperature: 0, ignore_eos: true });
      expect(chat.choices[0]!.message).toEqual({ role: 'assistant', content: plain.choices[0]!.text });
    } finally {
      await server.close();
    }
  });

  it('ends a request past --request_timeout_s with 504, and the batch goes on', async () => {
    const { server, url } = await serveOn(pipe, { requestTimeoutMs: 2 });
    try {
      const r = await post(url, '/v1/completions', { prompt: 'Hello', max_tokens: 60, temperature: 0, ignore_eos: true });
      expect(r.status).toBe(504);
      expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/timed out/);
      expect(server.batcher.stats.running).toBe(0);
    } finally {
      await server.close();
    }
  });
});

describe('fusegen serve on the command line', () => {
  it.each([
    [['--kernels', 'wgsl'], /--kernels: .*add --use_kernel/],
    [['--max_model_len', '100000'], /--max_model_len: 100000 exceeds the model's/],
    [['--port', '70000'], /--port: 70000 is not a TCP port/],
    [['--hf_baseline'], /unknown option '--hf_baseline'/],
    [['--num_kv_blocks', '64'], /--num_kv_blocks: the ort pipeline holds a whole cache per slot .*WGSL engine/],
  ])('refuses %j in one line with exit 2', async (args, message) => {
    const err: string[] = [];
    const code = await main(['serve', '--model', tinyModelDir('llama'), ...args], { out: () => {}, err: (l) => err.push(l) });
    expect(code).toBe(2);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(message);
  });
});

describe('fusegen serve on the WGSL engine (lavapipe): rows join mid-batch, prompts beside decode rows', () => {
  it('gives each staggered request exactly its tokens alone, stepping only the leading rows', async () => {
    const pipe = await createPipeline(openCheckpoint(tinyModelDir('llama')), { kind: 'wgsl' }, { device: 'webgpu', dtype: 'float32', maxTokens: 64 });
    // A step budget of 8 tokens: prompts joining running rows go in by chunks of 2-8 tokens.
    const { server, url } = await serveOn(pipe, { maxBatchedTokens: 8 });
    try {
      const alone = [];
      for (const p of PROMPTS) alone.push((await pipe.generate({ prompts: [p], maxNewTokens: 10, doSample: false, ignoreEos: true })).sequences[0]!.newIds);
      // Every step's rows: (new tokens, start position).
      const steps: Array<Array<[number, number]>> = [];
      const engine = (pipe as WgslPipeline).engine;
      const step = engine.step.bind(engine);
      engine.step = (input, needLogits) => {
        steps.push(input.tokens.map((t, b) => [t.length, input.start[b]!]));
        return step(input, needLogits);
      };
      const results = await Promise.all(
        PROMPTS.map(async (prompt, i) => {
          await sleep(i * 10);
          return complete(url, { prompt, max_tokens: 10, temperature: 0, ignore_eos: true, logprobs: 0, return_tokens_as_token_ids: true });
        }),
      );
      results.forEach((r, i) => expect(idsOf(r)).toEqual(alone[i]));
      // A prompt's chunk went in beside rows decoding from their caches, within the step budget, and a step carried fewer rows than the slots.
      const mixed = steps.filter((rows) => rows.some(([n]) => n > 1) && rows.some(([n, start]) => n === 1 && start > 0));
      expect(mixed.length).toBeGreaterThan(0);
      for (const rows of mixed) expect(rows.length * Math.max(...rows.map(([n]) => n))).toBeLessThanOrEqual(8);
      expect(steps.some((rows) => rows.some(([n, start]) => n > 1 && start > 0))).toBe(true); // a prompt continued from its own earlier chunk
      expect(steps.some((rows) => rows.length < 4)).toBe(true);

      // Prompt logprobs (echo) need the engine alone: requests that arrive meanwhile wait for them, and get their tokens alone.
      const echo = { prompt: `${PROMPTS[1]} ${PROMPTS[3]} ${PROMPTS[1]}`, max_tokens: 0, echo: true, logprobs: 2 };
      const quiet = await complete(url, echo);
      const [echoed, during] = await Promise.all([
        complete(url, echo),
        Promise.all(PROMPTS.map(async (prompt) => (await sleep(2), complete(url, { prompt, max_tokens: 10, temperature: 0, ignore_eos: true, logprobs: 0, return_tokens_as_token_ids: true })))),
      ]);
      during.forEach((r, i) => expect(idsOf(r)).toEqual(alone[i]));
      expect(echoed.choices[0]!.logprobs).toEqual(quiet.choices[0]!.logprobs);
    } finally {
      await server.close();
    }

    // The same engine with a paged KV cache too small for every request at once: each still gets
    // exactly its tokens alone, some after being preempted and recomputed.
    const paged = await serveOn(pipe, { maxBatchedTokens: 8, paging: { blockSize: 4, blocks: 12 } });
    try {
      const alone = [];
      for (const p of PROMPTS) alone.push((await pipe.generate({ prompts: [p], maxNewTokens: 10, doSample: false, ignoreEos: true })).sequences[0]!.newIds);
      const results = await Promise.all(PROMPTS.map((prompt) => complete(paged.url, { prompt, max_tokens: 10, temperature: 0, ignore_eos: true, logprobs: 0, return_tokens_as_token_ids: true })));
      results.forEach((r, i) => expect(idsOf(r)).toEqual(alone[i]));
      expect(paged.server.batcher.stats.preemptions).toBeGreaterThan(0);
      expect(paged.server.batcher.pool!.freeBlocks).toBe(11);
      const metrics = await (await fetch(`${paged.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text();
      expect(Number(metrics.match(/^fusegen_num_preemptions_total (\d+)/m)![1])).toBe(paged.server.batcher.stats.preemptions);
      expect(metrics).toMatch(/^fusegen_kv_cache_usage_perc 0$/m);
    } finally {
      await paged.server.close();
      await pipe.dispose();
    }
  });
});

describe('compare --candidate_url against fusegen serve (issue 28: the served engine proven like an in-process one)', () => {
  const pipes: TextGenerationPipeline[] = [];
  const servers: Server[] = [];
  const scratch: string[] = [];
  let identical: string;
  let defect: string;

  async function serving(dir: string, kind: 'ort' | 'wgsl'): Promise<string> {
    const pipe = await createPipeline(openCheckpoint(dir), kind === 'wgsl' ? { kind: 'wgsl' } : { kind: 'ort', fusions: ALL_FUSIONS }, { device: kind === 'wgsl' ? 'webgpu' : 'cpu', dtype: 'float32', maxTokens: 64 });
    pipes.push(pipe);
    const { server, url } = await serveOn(pipe, { apiKey: undefined });
    servers.push(server);
    return url;
  }

  beforeAll(async () => {
    identical = await serving(tinyModelDir('llama'), 'wgsl');
    // A second instance serving a copy whose first query weight is scaled by 1.05.
    const copy = scaledFixture('llama', FIRST_QUERY, 1.05, 'served').dir;
    scratch.push(copy);
    defect = await serving(copy, 'ort');
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    for (const p of pipes) await p.dispose();
    for (const d of scratch) rmSync(d, { recursive: true, force: true });
  });

  async function compare(url: string): Promise<{ code: number; out: string[]; report: CompareReport; summary: string; html: string }> {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-serve-compare-'));
    scratch.push(dir);
    const out: string[] = [];
    const err: string[] = [];
    const summaryMd = join(dir, 'summary.md');
    const code = await main(['compare', '--model', tinyModelDir('llama'), '--num_inputs', '2', '--min_length', '20', '--max_length', '30', '--report_dir', dir, '--summary_md', summaryMd, '--candidate_url', url], { out: (l) => out.push(l), err: (l) => err.push(l) });
    const file = readdirSync(dir).find((f) => f.endsWith('.json'));
    expect(file, [...out, ...err].join('\n')).toBeDefined();
    return { code, out: [...out, ...err], report: JSON.parse(readFileSync(join(dir, file!), 'utf8')) as CompareReport, summary: readFileSync(summaryMd, 'utf8'), html: readFileSync(join(dir, file!.replace(/\.json$/, '.html')), 'utf8') };
  }

  it('passes for the WGSL engine served from the reference checkpoint, on teacher-forced log-probabilities with ids', async () => {
    const r = await compare(identical);
    expect(r.code, r.out.join('\n')).toBe(0);
    expect(r.report.settings.compared).toBe('logprobs');
    expect(r.report.settings.remote?.candidate).toMatchObject({ prompt: 'ids', tokens: 'ids', promptLogprobs: true });
    expect(r.report.summary.mismatches).toBe(0);
    // The Markdown summary and the HTML name the served candidate and what was compared, not a pipeline that did not run.
    for (const text of [r.summary, r.html]) {
      expect(text).toContain(`served at ${identical}`);
      expect(text).toContain('top-5 log-probabilities');
    }
    expect(r.summary).not.toContain('plain graph');
  });

  it('fails for a second instance serving a planted defect (first query x1.05)', async () => {
    const r = await compare(defect);
    expect(r.code, r.out.join('\n')).toBe(1);
    expect(r.report.summary.mismatches).toBe(2);
  });
});
