/**
 * `fusegen serve`: an OpenAI-compatible HTTP server (fastify) over a pipeline's own steps,
 * continuously batched (batcher.ts). Routes: POST /v1/completions and /v1/chat/completions
 * (streamed as server-sent events on request), GET /v1/models, /health, /metrics.
 *
 * Requests are validated by JSON schema before any work; a field the server does not implement
 * is refused by name (a penalty it would silently skip changes the answer), never ignored.
 * Errors are OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with a 4xx for
 * the client's mistakes; nothing a request sends takes the server down.
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import { FusegenError, UsageError } from '../src/errors.js';
import { logSumExp } from '../src/pipeline/common.js';
import { decodeText, encode } from '../src/pipeline/tokenizer.js';
import type { StepAccess, TextGenerationPipeline } from '../src/pipeline/types.js';
import { ContinuousBatcher, topLogprobs, type GeneratedToken, type Job, type JobResult, type PagingOptions } from './batcher.js';
import { ServeMetrics } from './metrics.js';

export interface ServeOptions {
  pipeline: TextGenerationPipeline;
  /** The name clients send as `model` and /v1/models lists. */
  modelName: string;
  /** Requests in the running batch at once (KV slots). */
  maxBatch: number;
  /** Tokens a step may carry while prompts join running rows (chunked prefill); default 512. */
  maxBatchedTokens?: number;
  /** The KV block pool, where the engine pages its cache (the WGSL engine); elsewhere each slot holds a whole cache. */
  paging?: PagingOptions;
  /** Checked on every route but /health when set. */
  apiKey?: string;
  /** Largest max_tokens a request may ask. */
  maxTokensLimit: number;
  /** Largest request body, bytes. */
  bodyLimit: number;
  /** A request still unfinished after this long ends (504, or an error event when streaming). */
  requestTimeoutMs: number;
}

export interface Server {
  app: FastifyInstance;
  batcher: ContinuousBatcher;
  metrics: ServeMetrics;
  close(): Promise<void>;
}

class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly type = status === 401 ? 'authentication_error' : status === 404 ? 'not_found_error' : 'invalid_request_error',
  ) {
    super(message);
  }
}

const UNSUPPORTED_AT = { presence_penalty: 0, frequency_penalty: 0, repetition_penalty: 1, best_of: 1, n: 1 } as const;
const integer = { type: 'integer' } as const;
const tokenIds = { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 } as const;
const sampling = {
  model: { type: 'string' },
  max_tokens: { type: 'integer', minimum: 0 },
  max_completion_tokens: { type: 'integer', minimum: 0 },
  temperature: { type: 'number', minimum: 0, maximum: 2 },
  top_p: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
  top_k: { type: 'integer', minimum: -1 },
  seed: integer,
  stop: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 8 }, { type: 'null' }] },
  stream: { type: 'boolean' },
  stream_options: { type: 'object', properties: { include_usage: { type: 'boolean' } }, additionalProperties: false },
  min_tokens: { type: 'integer', minimum: 0 },
  ignore_eos: { type: 'boolean' },
  user: { type: 'string' },
  ...Object.fromEntries(Object.entries(UNSUPPORTED_AT).map(([k, v]) => [k, { type: 'number', enum: [v] }])),
  logit_bias: { type: 'object', maxProperties: 0 },
} as const;

const completionSchema = {
  type: 'object',
  required: ['prompt'],
  additionalProperties: false,
  properties: {
    ...sampling,
    prompt: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 }, tokenIds, { type: 'array', items: tokenIds, minItems: 1 }] },
    logprobs: { anyOf: [{ type: 'integer', minimum: 0, maximum: 20 }, { type: 'null' }] },
    echo: { type: 'boolean' },
    return_tokens_as_token_ids: { type: 'boolean' },
    return_token_ids: { type: 'boolean' },
    prompt_logprobs: { anyOf: [{ type: 'integer', minimum: 0, maximum: 20 }, { type: 'null' }] },
  },
} as const;

const chatSchema = {
  type: 'object',
  required: ['messages'],
  additionalProperties: false,
  properties: {
    ...sampling,
    messages: { type: 'array', minItems: 1, items: { type: 'object', required: ['role', 'content'], properties: { role: { enum: ['system', 'user', 'assistant'] }, content: { type: 'string' }, name: { type: 'string' } }, additionalProperties: false } },
    logprobs: { type: 'boolean' },
    top_logprobs: { type: 'integer', minimum: 0, maximum: 20 },
  },
} as const;

type Body = Record<string, unknown> & {
  model?: string;
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
  stop?: string | string[] | null;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  min_tokens?: number;
  ignore_eos?: boolean;
};
type CompletionBody = Body & { prompt: string | string[] | number[] | number[][]; logprobs?: number | null; echo?: boolean; return_tokens_as_token_ids?: boolean; return_token_ids?: boolean; prompt_logprobs?: number | null };
type ChatBody = Body & { messages: Array<{ role: string; content: string }>; logprobs?: boolean; top_logprobs?: number };

export async function buildServer(o: ServeOptions): Promise<Server> {
  const access: StepAccess | undefined = o.pipeline.steps?.();
  if (!access) throw new UsageError('--hf_baseline', "the reference libraries run its own generate loop; fusegen serve batches fusegen's own steps: serve the plain, ORT-injected or WGSL pipeline");
  const { tokenizer } = access;
  const batcher = new ContinuousBatcher(access, o.maxBatch, o.maxBatchedTokens, o.paging);
  const metrics = new ServeMetrics(() => batcher.stats);
  batcher.onStep = (rows) => metrics.batchRows.observe(rows);
  const app = Fastify({ bodyLimit: o.bodyLimit, logger: false, ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false } } });
  const created = Math.floor(Date.now() / 1000);

  app.addHook('onRequest', async (req) => {
    if (!o.apiKey || req.url === '/health') return;
    if (req.headers.authorization !== `Bearer ${o.apiKey}`) throw new RequestError(401, 'missing or wrong API key (Authorization: Bearer KEY)');
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.requests.inc({ route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
  });
  app.setErrorHandler((err: Error & { validation?: unknown; statusCode?: number; validationContext?: string }, _req, reply) => {
    if (err instanceof RequestError) return reply.status(err.status).send(errorBody(err.message, err.type, err.param));
    if (err instanceof FusegenError) return reply.status(400).send(errorBody(err.message, 'invalid_request_error', err.culprit));
    if (err.validation) return reply.status(400).send(validationError(err.validation as AjvError[]));
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    return reply.status(status).send(errorBody(status === 500 ? `internal error: ${err.message}` : err.message, status === 500 ? 'server_error' : 'invalid_request_error', null));
  });
  app.setNotFoundHandler((req, reply) => reply.status(404).send(errorBody(`no route ${req.method} ${req.url}`, 'not_found_error', null)));

  app.get('/health', async () => ({ status: 'ok' }));
  app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4').send(await metrics.text()));
  app.get('/v1/models', async () => ({
    object: 'list',
    data: [{ id: o.modelName, object: 'model', created, owned_by: 'fusegen', max_model_len: access.maxTokens, pipeline: o.pipeline.info.name, dtype: o.pipeline.info.dtype, device: o.pipeline.info.device }],
  }));

  app.post('/v1/completions', { schema: { body: completionSchema } }, async (req, reply) => {
    const body = req.body as CompletionBody;
    checkModel(body.model, o.modelName);
    const prompts = promptsOf(body.prompt, tokenizer, access.ckpt.dims.vocabSize);
    const k = body.logprobs ?? undefined;
    const common = requestCommon(body, o, access);
    const echo = body.echo === true;
    const asIds = body.return_tokens_as_token_ids === true;
    if (common.maxTokens === 0 && !echo) throw new RequestError(400, 'max_tokens 0 generates nothing: it is for echo with logprobs', 'max_tokens');
    if (body.stream && prompts.length > 1) throw new RequestError(400, 'stream takes one prompt', 'prompt');
    if (body.stream && common.maxTokens === 0) throw new RequestError(400, 'max_tokens 0 does not stream: send it without stream', 'max_tokens');
    const id = `cmpl-${randomId()}`;
    const tokenText = (t: number) => (asIds ? `token_id:${t}` : decodeText(tokenizer, [t], false));
    if (body.stream) {
      const p = prompts[0]!;
      return streamJob(reply, o, batcher, metrics, { ...common, promptIds: p.ids, logprobs: k !== undefined, topLogprobs: k ?? 0 }, (delta, tokens, finish, offset) => ({
        id, object: 'text_completion', created: now(), model: o.modelName,
        choices: [{ index: 0, text: delta, logprobs: k === undefined ? null : legacyLogprobs(tokens, tokenText, offset), finish_reason: finish }],
      }), echo ? p.text ?? decodeText(tokenizer, p.ids) : '');
    }
    const finished = await Promise.all(prompts.map((p) => common.maxTokens === 0 ? { text: '', tokens: [], finishReason: 'length' as const } : runJob(reply, o, batcher, metrics, { ...common, promptIds: p.ids, logprobs: k !== undefined, topLogprobs: k ?? 0 })));
    const choices = [];
    const promptK = body.prompt_logprobs ?? undefined;
    for (const [i, p] of prompts.entries()) {
      const f = finished[i]!;
      let text = f.text;
      let tokens = f.tokens;
      const scored = (echo && k !== undefined) || promptK !== undefined ? await promptLogprobs(batcher, o.pipeline, p.ids, Math.max(k ?? 0, promptK ?? 0)) : undefined;
      if (echo) {
        text = (p.text ?? decodeText(tokenizer, p.ids)) + text;
        if (k !== undefined) tokens = [...scored!.map(({ t, text }) => ({ t: { ...t, top: t.top?.slice(0, k) }, text })), ...tokens];
      }
      const choice: Record<string, unknown> = { index: i, text, logprobs: k === undefined ? null : legacyLogprobs(tokens, tokenText, 0), finish_reason: f.finishReason };
      // vLLM's extras: the ids themselves, and the prompt's logprobs by id ({id: {logprob, rank, decoded_token}}, the prompt's own token among them).
      if (body.return_token_ids) Object.assign(choice, { prompt_token_ids: p.ids, token_ids: f.tokens.map(({ t }) => t.id) });
      if (promptK !== undefined) choice['prompt_logprobs'] = scored!.map(({ t }, j) => (j === 0 ? null : vllmLogprobs(t, promptK, tokenizer)));
      choices.push(choice);
    }
    const promptTokens = prompts.reduce((a, p) => a + p.ids.length, 0);
    const completionTokens = finished.reduce((a, f) => a + f.tokens.length, 0);
    return { id, object: 'text_completion', created: now(), model: o.modelName, choices, usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } };
  });

  app.post('/v1/chat/completions', { schema: { body: chatSchema } }, async (req, reply) => {
    const body = req.body as ChatBody;
    checkModel(body.model, o.modelName);
    if (!tokenizer.chat_template) throw new RequestError(400, `model ${o.modelName} has no chat template (tokenizer_config.json chat_template): use /v1/completions`, 'messages');
    const text = tokenizer.apply_chat_template(body.messages as never, { tokenize: false, add_generation_prompt: true }) as string;
    // The template writes the special tokens itself.
    const ids = tokenizer.encode(text, { add_special_tokens: false });
    const common = requestCommon(body, o, access);
    const k = body.logprobs ? (body.top_logprobs ?? 0) : undefined;
    const id = `chatcmpl-${randomId()}`;
    const job = { ...common, promptIds: ids, logprobs: k !== undefined, topLogprobs: k ?? 0 };
    const content = (tokens: Array<{ t: GeneratedToken }>) => (k === undefined ? null : { content: tokens.map(({ t }) => ({ token: decodeText(tokenizer, [t.id], false), logprob: t.logprob, top_logprobs: (t.top ?? []).map((a) => ({ token: decodeText(tokenizer, [a.id], false), logprob: a.logprob })) })) });
    if (body.stream) {
      let first = true;
      return streamJob(reply, o, batcher, metrics, job, (delta, tokens, finish) => {
        const d = first ? { role: 'assistant', content: delta } : delta ? { content: delta } : {};
        first = false;
        return { id, object: 'chat.completion.chunk', created: now(), model: o.modelName, choices: [{ index: 0, delta: d, logprobs: content(tokens), finish_reason: finish }] };
      }, '');
    }
    const f = await runJob(reply, o, batcher, metrics, job);
    return {
      id, object: 'chat.completion', created: now(), model: o.modelName,
      choices: [{ index: 0, message: { role: 'assistant', content: f.text }, logprobs: content(f.tokens), finish_reason: f.finishReason }],
      usage: { prompt_tokens: ids.length, completion_tokens: f.tokens.length, total_tokens: ids.length + f.tokens.length },
    };
  });

  return {
    app,
    batcher,
    metrics,
    async close() {
      await batcher.close();
      await app.close();
    },
  };
}

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** The first schema violation in words, naming the field (an unimplemented option by what it would have to be). */
function validationError(errors: AjvError[]) {
  const e = errors[0]!;
  const field = e.instancePath.replace(/^\//, '').replaceAll('/', '.');
  if (e.keyword === 'additionalProperties') {
    const name = String(e.params.additionalProperty);
    return errorBody(`${field ? `${field}.` : ''}${name}: not a field fusegen serve implements`, 'invalid_request_error', name);
  }
  if (field in UNSUPPORTED_AT) return errorBody(`${field}: not implemented; only ${UNSUPPORTED_AT[field as keyof typeof UNSUPPORTED_AT]} (its default) is accepted`, 'invalid_request_error', field);
  return errorBody(`${field || 'body'}: ${e.message ?? e.keyword}`, 'invalid_request_error', field || null);
}

function errorBody(message: string, type: string, param: string | null) {
  return { error: { message, type, param, code: null } };
}

function checkModel(model: string | undefined, served: string): void {
  if (model !== undefined && model !== served) throw new RequestError(404, `the model '${model}' does not exist; this server serves '${served}'`, 'model');
}

/** The prompt forms the completions API takes, as token ids (and the text, where given as text). */
function promptsOf(prompt: CompletionBody['prompt'], tokenizer: PreTrainedTokenizer, vocab: number): Array<{ ids: number[]; text?: string }> {
  if (typeof prompt === 'string') return [{ ids: encode(tokenizer, prompt), text: prompt }];
  const out = prompt.every((p) => typeof p === 'number') ? [{ ids: prompt as number[] }] : (prompt as Array<string | number[]>).map((p) => (typeof p === 'string' ? { ids: encode(tokenizer, p), text: p } : { ids: p }));
  const beyond = out.flatMap((p) => p.ids).find((id) => id >= vocab);
  if (beyond !== undefined) throw new RequestError(400, `token id ${beyond} is beyond the model's vocabulary of ${vocab}`, 'prompt');
  return out;
}

interface Common extends Omit<Job, 'promptIds' | 'logprobs' | 'topLogprobs'> {
  stops: string[];
  includeUsage: boolean;
}

function requestCommon(body: Body, o: ServeOptions, access: StepAccess): Common {
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? 16;
  if (maxTokens > o.maxTokensLimit) throw new RequestError(400, `max_tokens ${maxTokens} is over this server's limit of ${o.maxTokensLimit}`, 'max_tokens');
  const V = access.ckpt.dims.vocabSize;
  return {
    maxTokens,
    sampling: { temperature: body.temperature ?? 1, topP: body.top_p ?? 1, topK: body.top_k !== undefined && body.top_k > 0 ? Math.min(body.top_k, V) : 0, seed: body.seed ?? Math.floor(Math.random() * 2 ** 31) },
    minTokens: body.min_tokens ?? 0,
    ignoreEos: body.ignore_eos ?? false,
    stops: body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop,
    includeUsage: body.stream_options?.include_usage === true,
  };
}

/**
 * The text of a growing list of ids, released only where it is final: not while bytes of an
 * unfinished character are pending (U+FFFD), and not a tail that may still become a stop
 * string. A stop string ends the text before it. Incremental as vLLM's detokenizer is: each
 * token decodes a short window (from a few tokens back) against the same window without it,
 * so a step costs the same at token 1000 as at token 1.
 */
class TextStream {
  private readonly ids: number[];
  /** Window start, and where the text already released ends within the ids. */
  private prefixOffset = 0;
  private readOffset: number;
  /** Everything decoded so far (released or held back). */
  private decoded = '';
  private sent = 0;
  text = '';
  stopped = false;

  constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly stops: string[],
    prompt: number[],
  ) {
    // The text continues the prompt: the first token's text is read in the context of the prompt's
    // last few tokens (a word-initial token keeps its space, as the whole sequence decoded gives it).
    this.ids = prompt.slice(-PROMPT_CONTEXT);
    this.readOffset = this.ids.length;
  }

  /** The id's new final text ('' while held back). */
  push(id: number): string {
    this.ids.push(id);
    const before = decodeText(this.tokenizer, this.ids.slice(this.prefixOffset, this.readOffset));
    const after = decodeText(this.tokenizer, this.ids.slice(this.prefixOffset));
    // A window is cut only where it decodes to whole characters: bytes that may still form one
    // (or never will, as random weights emit) stay in it, so the text equals the ids decoded at once.
    if (after.length > before.length && !after.includes('\uFFFD')) {
      this.decoded += after.slice(before.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
    }
    const full = this.decoded;
    const hit = this.stops.map((s) => full.indexOf(s, Math.max(0, this.sent - s.length + 1))).filter((i) => i >= 0);
    if (hit.length) {
      this.stopped = true;
      return this.take(full.slice(0, Math.min(...hit)));
    }
    let safe = full.length;
    for (const s of this.stops) for (let n = Math.min(s.length - 1, full.length); n > 0; n--) if (full.endsWith(s.slice(0, n))) safe = Math.min(safe, full.length - n);
    return this.take(full.slice(0, safe));
  }

  /** Whatever was held back, at the end (no stop string came). */
  flush(): string {
    if (this.stopped) return '';
    const window = this.ids.slice(this.prefixOffset);
    this.decoded += decodeText(this.tokenizer, window).slice(decodeText(this.tokenizer, window.slice(0, this.readOffset - this.prefixOffset)).length);
    this.readOffset = this.ids.length;
    this.prefixOffset = this.ids.length;
    return this.take(this.decoded);
  }

  private take(upTo: string): string {
    if (upTo.length <= this.sent) return '';
    const delta = upTo.slice(this.sent);
    this.sent = upTo.length;
    this.text = upTo;
    return delta;
  }
}

/** Prompt tokens a completion's text is decoded against (vLLM's detokenizer starts 5 back too). */
const PROMPT_CONTEXT = 5;

interface Finished {
  text: string;
  tokens: Array<{ t: GeneratedToken; text: string }>;
  finishReason: 'stop' | 'length';
}

/** The request's signal: its timeout, and the client going away before the answer is sent. */
function requestSignal(reply: FastifyReply, o: ServeOptions): AbortSignal {
  const gone = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) gone.abort();
  });
  return AbortSignal.any([gone.signal, AbortSignal.timeout(o.requestTimeoutMs)]);
}

async function runJob(reply: FastifyReply, o: ServeOptions, batcher: ContinuousBatcher, metrics: ServeMetrics, job: Omit<Job, 'signal' | 'onToken'> & { stops: string[] }): Promise<Finished> {
  const text = new TextStream(batcher.tokenizer, job.stops, job.promptIds);
  const tokens: Finished['tokens'] = [];
  const timing = tokenTimer(metrics);
  const signal = requestSignal(reply, o);
  const r = await submit(batcher, {
    ...job,
    signal,
    onToken: (t) => {
      timing.token();
      tokens.push({ t, text: text.push(t.id) });
      return text.stopped;
    },
  });
  if (r.finishReason === 'abort') throw abortError(signal);
  text.flush();
  timing.done(r, job.promptIds.length, tokens.length);
  return { text: text.text, tokens, finishReason: r.finishReason };
}

async function streamJob(
  reply: FastifyReply,
  o: ServeOptions,
  batcher: ContinuousBatcher,
  metrics: ServeMetrics,
  job: Omit<Job, 'signal' | 'onToken'> & { stops: string[]; includeUsage: boolean },
  chunk: (delta: string, tokens: Array<{ t: GeneratedToken; text: string }>, finish: string | null, offset: number) => unknown,
  head: string,
): Promise<void> {
  const text = new TextStream(batcher.tokenizer, job.stops, job.promptIds);
  const timing = tokenTimer(metrics);
  const signal = requestSignal(reply, o);
  const send = (data: unknown) => reply.raw.write(`data: ${JSON.stringify(data)}\n\n`);
  let offset = 0; // characters of the answer sent so far
  const piece = (delta: string, tokens: Array<{ t: GeneratedToken; text: string }>, finish: string | null) => {
    const c = chunk(delta, tokens, finish, offset);
    offset += delta.length;
    return c;
  };
  reply.hijack();
  reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  if (head) send(piece(head, [], null));
  let count = 0;
  try {
    const r = await submit(batcher, {
      ...job,
      signal,
      onToken: (t) => {
        timing.token();
        count++;
        const delta = text.push(t.id);
        if (delta || job.logprobs) send(piece(delta, [{ t, text: delta }], null));
        return text.stopped;
      },
    });
    if (r.finishReason === 'abort') {
      if (!reply.raw.destroyed) send(errorBody(abortError(signal).message, 'timeout', null));
    } else {
      const rest = text.flush();
      send(piece(rest, [], r.finishReason));
      timing.done(r, job.promptIds.length, count);
      if (job.includeUsage) send({ id: 'usage', object: 'text_completion', created: now(), model: o.modelName, choices: [], usage: { prompt_tokens: job.promptIds.length, completion_tokens: count, total_tokens: job.promptIds.length + count } });
    }
  } catch (e) {
    send(errorBody((e as Error).message, e instanceof FusegenError ? 'invalid_request_error' : 'server_error', null));
  }
  reply.raw.end('data: [DONE]\n\n');
}

/** The batcher's refusals (a prompt too long for a slot) as the client's error. */
async function submit(batcher: ContinuousBatcher, job: Job): Promise<JobResult> {
  try {
    return await batcher.submit(job);
  } catch (e) {
    if (e instanceof FusegenError) throw new RequestError(400, e.message, e.culprit);
    throw e;
  }
}

function abortError(signal: AbortSignal): RequestError {
  const timedOut = signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError';
  return timedOut ? new RequestError(504, 'the request timed out before it finished (--request_timeout_s)', null, 'timeout') : new RequestError(499, 'the client closed the connection', null, 'cancelled');
}

function tokenTimer(metrics: ServeMetrics) {
  const arrived = performance.now();
  let last: number | undefined;
  return {
    token() {
      const t = performance.now();
      if (last === undefined) metrics.ttft.observe((t - arrived) / 1000);
      else metrics.itl.observe((t - last) / 1000);
      last = t;
    },
    done(r: JobResult, promptTokens: number, generated: number) {
      metrics.e2e.observe((performance.now() - arrived) / 1000);
      metrics.queueTime.observe(r.queuedMs / 1000);
      metrics.promptTokens.inc(promptTokens);
      metrics.generationTokens.inc(generated);
      metrics.finished.inc({ finish_reason: r.finishReason });
    },
  };
}

/** Prompt logprobs (echo): the teacher-forced pass over the prompt, alone on the engine; the first token has none. */
async function promptLogprobs(batcher: ContinuousBatcher, pipeline: TextGenerationPipeline, ids: number[], k: number): Promise<Array<{ t: GeneratedToken; text: string }>> {
  const rows = await batcher.exclusive(() => pipeline.score([ids], [0]));
  const tokenizer = batcher.tokenizer;
  // Each prompt token's text: what it adds to the prompt decoded (so text_offset indexes the echoed text).
  // Token i's text starts where the prompt decoded up to it ends, taken as the least such length
  // from i on: bytes of one character decode to several U+FFFD before they complete it.
  const whole = decodeText(tokenizer, ids);
  const starts = ids.map((_, i) => decodeText(tokenizer, ids.slice(0, i)).length);
  for (let i = ids.length - 1, least = whole.length; i >= 0; i--) starts[i] = least = Math.min(least, starts[i]!);
  const text = (i: number) => whole.slice(starts[i], i + 1 < ids.length ? starts[i + 1] : whole.length);
  const out: Array<{ t: GeneratedToken; text: string }> = [{ t: { id: ids[0]! }, text: text(0) }];
  for (let i = 1; i < ids.length; i++) {
    const row = rows[0]![i - 1]!;
    const lse = logSumExp(row);
    out.push({ t: { id: ids[i]!, logprob: row[ids[i]!]! - lse, rank: rankOf(row, ids[i]!), top: k > 0 ? topLogprobs(row, k, lse) : [] }, text: text(i) });
  }
  return out;
}

/** 1-based rank of `id` in a logits row (ties count for it). */
function rankOf(row: ArrayLike<number>, id: number): number {
  let above = 0;
  for (let i = 0; i < row.length; i++) if (row[i]! > row[id]!) above++;
  return above + 1;
}

/** One position in vLLM's prompt_logprobs form: the top k and the token itself, by id, with rank and text. */
function vllmLogprobs(t: GeneratedToken, k: number, tokenizer: PreTrainedTokenizer): Record<string, { logprob: number; rank: number; decoded_token: string }> {
  const top = (t.top ?? []).slice(0, k);
  const entry = (id: number, logprob: number, rank: number) => [String(id), { logprob, rank, decoded_token: decodeText(tokenizer, [id], false) }] as const;
  const out = Object.fromEntries(top.map((a, r) => entry(a.id, a.logprob, r + 1)));
  if (!(String(t.id) in out)) Object.assign(out, Object.fromEntries([entry(t.id, t.logprob!, t.rank!)]));
  return out;
}

/**
 * The completions API's logprobs object (tokens, token_logprobs, top_logprobs, text_offset).
 * text_offset indexes the answer's own text (a client splits an echoed prompt off there): each
 * token's offset is `start` plus the text released before it.
 */
function legacyLogprobs(tokens: Array<{ t: GeneratedToken; text: string }>, tokenText: (id: number) => string, start: number) {
  let at = start;
  const textOffset = tokens.map(({ text }) => {
    const here = at;
    at += text.length;
    return here;
  });
  return {
    tokens: tokens.map(({ t }) => tokenText(t.id)),
    token_logprobs: tokens.map(({ t }) => t.logprob ?? null),
    top_logprobs: tokens.map(({ t }) => (t.top ? Object.fromEntries(t.top.map((a) => [tokenText(a.id), a.logprob])) : null)),
    text_offset: textOffset,
  };
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}

function randomId(): string {
  return Math.random().toString(36).slice(2, 14);
}
