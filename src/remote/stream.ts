/**
 * A streaming client for an OpenAI-compatible `POST {url}/v1/completions` with `stream: true`
 * (server-sent events), as a load generator measures a server (vLLM's `vllm bench serve`,
 * benchmark_serving.py's async_request_openai_completions):
 *
 * - the send time and the arrival time of every chunk that carries text (performance.now()),
 *   the concatenated text, the server's `usage` (vLLM, TGI and llama.cpp send it with
 *   `stream_options: {include_usage: true}`; the last one seen wins, since some servers send
 *   running counts) and the finish reason;
 * - a request that fails is recorded, never thrown: its error kind (HTTP status, connection
 *   refused or reset, timeout, malformed stream, an error event, no text at all, cancelled).
 *
 * The event stream is parsed by eventsource-parser. A chunk's text is `choices[0].text` (the
 * completions shape of vLLM, TGI, llama.cpp, SGLang) or `choices[0].delta.content` (the chat
 * shape, which TGI's OpenAI-compatible messages API streams).
 */
import { createParser, type EventSourceMessage, type ParseError } from 'eventsource-parser';
import { UsageError } from '../errors.js';

/** Why a request failed; `http` carries the status. */
export type StreamErrorKind = 'http' | 'refused' | 'reset' | 'timeout' | 'malformed' | 'server_error' | 'empty' | 'cancelled' | 'network';

export interface StreamError {
  kind: StreamErrorKind;
  /** The HTTP status, for `http`. */
  status?: number;
  message: string;
}

/** The server's own token counts (OpenAI's `usage`), when it sent them. */
export interface CompletionUsage {
  promptTokens?: number;
  completionTokens?: number;
}

export interface StreamRecord {
  /** performance.now() just before the request went out. */
  sentAt: number;
  /** Arrival of every chunk that carried text, in order. */
  chunkTimes: number[];
  /**
   * When the answer ended: the arrival of the last chunk that carried a choice (vLLM's end of a
   * request: a trailing usage-only chunk does not count), or the failure's time.
   */
  endAt: number;
  text: string;
  usage?: CompletionUsage;
  finishReason?: string;
  /** The stream ended with `data: [DONE]`. */
  done: boolean;
  error?: StreamError;
}

export interface StreamRequest {
  /** The server's base URL (normalizeServerUrl). */
  url: string;
  model: string;
  prompt: string;
  maxTokens: number;
  apiKey?: string;
  /** The whole request, answer streamed to the end included. */
  timeoutMs: number;
  /** Aborts the request from outside (a point's deadline, Ctrl-C): recorded as `cancelled`. */
  signal?: AbortSignal;
  /** vLLM's ignore_eos: generate max_tokens whatever the model says. */
  ignoreEos?: boolean;
}

/** One text for a record's error, such as `http 500: Internal Server Error` or `timeout: ...`. */
export function errorKey(e: StreamError): string {
  return e.kind === 'http' ? `http_${e.status ?? 0}` : e.kind;
}

function headers(apiKey: string | undefined, json: boolean): Record<string, string> {
  return { ...(json ? { 'Content-Type': 'application/json' } : {}), Accept: json ? 'text/event-stream' : 'application/json', ...(apiKey ? { Authorization: `Bearer ${apiKey}` } : {}) };
}

function clip(s: string, n = 200): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > n ? `${one.slice(0, n)}...` : one;
}

/** Every error code along an error's causes (undici nests them: `fetch failed` -> SocketError, AggregateError -> each address's). */
function errorCodes(e: unknown, out: string[] = [], depth = 0): string[] {
  if (depth > 6 || typeof e !== 'object' || e === null) return out;
  const x = e as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof x.code === 'string') out.push(x.code);
  if (Array.isArray(x.errors)) for (const inner of x.errors) errorCodes(inner, out, depth + 1);
  errorCodes(x.cause, out, depth + 1);
  return out;
}

function innermostMessage(e: unknown): string {
  let m = e instanceof Error ? e.message : String(e);
  let at: unknown = e;
  for (let i = 0; i < 6 && typeof at === 'object' && at !== null && 'cause' in at && (at as { cause?: unknown }).cause; i++) {
    at = (at as { cause: unknown }).cause;
    if (at instanceof Error && at.message) m = `${m}: ${at.message}`;
  }
  return m;
}

/** A thrown fetch or body error as a kind: connection refused, reset or closed mid-answer, else `network`. */
function classify(e: unknown): StreamError {
  const codes = errorCodes(e);
  const message = innermostMessage(e);
  if (codes.includes('ECONNREFUSED')) return { kind: 'refused', message };
  if (codes.some((c) => c === 'ECONNRESET' || c === 'UND_ERR_SOCKET' || c === 'EPIPE' || c === 'UND_ERR_CLOSED')) return { kind: 'reset', message };
  return { kind: 'network', message };
}

/** A finite non-negative integer from a JSON field, else undefined. */
function count(x: unknown): number | undefined {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 ? x : undefined;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Larger than any one chunk a server sends: a stream that buffers more without an event is malformed. */
const MAX_EVENT_CHARS = 1 << 20;

/**
 * Reads an event stream into `record`: text chunks with their arrival times, usage, finish reason,
 * `[DONE]`. Calls `fail` on a malformed or error event (which stops the reading) and `choiceAt`
 * with the arrival of each chunk that carried a choice.
 */
async function readEvents(res: Response, record: StreamRecord, fail: (e: StreamError) => void, choiceAt: (t: number) => void, failed: () => boolean): Promise<void> {
  // Every event a read delivers arrived at that read: the parser calls back within feed().
  let now = 0;
  const onEvent = (ev: EventSourceMessage) => {
    if (failed()) return;
    const data = ev.data.trim();
    if (data === '[DONE]') {
      record.done = true;
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      fail({ kind: 'malformed', message: clip(`an event's data is not JSON: ${data}`) });
      return;
    }
    if (!isObject(json)) {
      fail({ kind: 'malformed', message: clip(`an event's data is not a JSON object: ${data}`) });
      return;
    }
    // vLLM and TGI report a failure inside an open stream as an error event.
    const error = json['error'];
    if (error !== undefined && error !== null) {
      fail({ kind: 'server_error', message: clip(isObject(error) && typeof error['message'] === 'string' ? error['message'] : JSON.stringify(error)) });
      return;
    }
    const choices = json['choices'];
    if (Array.isArray(choices) && choices.length > 0 && isObject(choices[0])) {
      const c = choices[0];
      const delta = c['delta'];
      const piece = typeof c['text'] === 'string' ? c['text'] : isObject(delta) && typeof delta['content'] === 'string' ? delta['content'] : '';
      if (piece.length > 0) {
        record.chunkTimes.push(now);
        record.text += piece;
      }
      choiceAt(now);
      if (typeof c['finish_reason'] === 'string' && c['finish_reason'] !== '') record.finishReason = c['finish_reason'];
    }
    const usage = json['usage'];
    if (isObject(usage)) {
      const prompt = count(usage['prompt_tokens']);
      const completion = count(usage['completion_tokens']);
      record.usage = { ...(prompt !== undefined ? { promptTokens: prompt } : {}), ...(completion !== undefined ? { completionTokens: completion } : {}) };
    }
  };
  const parser = createParser({
    onEvent,
    onError: (e: ParseError) => {
      // Unknown fields are ignored, as the SSE spec says; a buffer that grows without an event is no stream.
      if (e.type === 'max-buffer-size-exceeded') fail({ kind: 'malformed', message: `more than ${MAX_EVENT_CHARS} characters without an event` });
    },
    maxBufferSize: MAX_EVENT_CHARS,
  });
  const decoder = new TextDecoder();
  if (!res.body) return;
  for await (const bytes of res.body) {
    now = performance.now();
    parser.feed(decoder.decode(bytes, { stream: true }));
    if (failed()) return;
  }
  // A last event without its blank line still counts.
  parser.feed(`${decoder.decode()}\n\n`);
}

/** Sends one streamed completion and records it; never throws. */
export async function streamCompletion(req: StreamRequest): Promise<StreamRecord> {
  const timeout = AbortSignal.timeout(req.timeoutMs);
  // Aborted when an event is malformed or reports an error, to stop the transfer.
  const local = new AbortController();
  const signal = AbortSignal.any([timeout, local.signal, ...(req.signal ? [req.signal] : [])]);
  const body = {
    model: req.model,
    prompt: req.prompt,
    max_tokens: req.maxTokens,
    stream: true,
    stream_options: { include_usage: true },
    ...(req.ignoreEos ? { ignore_eos: true } : {}),
  };
  const record: StreamRecord = { sentAt: performance.now(), chunkTimes: [], endAt: NaN, text: '', done: false };
  let lastChoiceAt = NaN;
  let failure: StreamError | undefined;
  const fail = (e: StreamError) => {
    failure ??= e;
    local.abort();
  };
  // Why the signal fired, asked before the thrown error is read: an abort surfaces as a bare AbortError.
  const aborted = (): StreamError | undefined => {
    if (timeout.aborted) return { kind: 'timeout', message: `no complete answer within ${req.timeoutMs / 1000} s` };
    if (req.signal?.aborted) return { kind: 'cancelled', message: 'cancelled before the answer finished (the point ended or the run was interrupted)' };
    return undefined;
  };
  try {
    const res = await fetch(`${req.url}/v1/completions`, { method: 'POST', headers: headers(req.apiKey, true), body: JSON.stringify(body), signal });
    const type = res.headers.get('content-type') ?? '';
    if (res.status !== 200) {
      const text = await res.text().catch(() => '');
      failure = { kind: 'http', status: res.status, message: clip(`${res.status} ${res.statusText}${text ? `: ${text}` : ''}`) };
    } else if (!type.toLowerCase().startsWith('text/event-stream')) {
      const text = await res.text().catch(() => '');
      failure = { kind: 'malformed', message: clip(`answered ${type || 'no content type'}, not an event stream (stream: true): ${text}`) };
    } else {
      await readEvents(res, record, fail, (t) => (lastChoiceAt = t), () => failure !== undefined);
    }
  } catch (e) {
    failure ??= aborted() ?? classify(e);
  }
  const end = performance.now();
  if (!failure && record.chunkTimes.length === 0) failure = { kind: 'empty', message: `the stream ended without text${record.finishReason ? ` (finish_reason ${record.finishReason})` : ''}` };
  if (failure) {
    record.error = failure;
    record.endAt = end;
  } else {
    record.endAt = Number.isFinite(lastChoiceAt) ? lastChoiceAt : end;
  }
  return record;
}

/**
 * The ids `GET {url}/v1/models` lists. Every failure is one UsageError naming --url (the server
 * could not be asked) or --served_model (it answered, but not with a model list).
 */
export async function listModels(url: string, apiKey: string | undefined, timeoutMs: number): Promise<string[]> {
  let res: Response;
  let text: string;
  try {
    res = await fetch(`${url}/v1/models`, { headers: headers(apiKey, false), signal: AbortSignal.timeout(timeoutMs) });
    text = await res.text();
  } catch (e) {
    const why = (e as Error).name === 'TimeoutError' ? { kind: 'timeout', message: `no answer within ${timeoutMs / 1000} s` } : classify(e);
    throw new UsageError('--url', `GET ${url}/v1/models failed (${why.kind}: ${clip(why.message, 160)})`);
  }
  if (res.status !== 200) throw new UsageError('--url', `GET ${url}/v1/models answered ${clip(`${res.status} ${res.statusText}: ${text}`, 160)}${res.status === 401 || res.status === 403 ? ' (is --api_key right?)' : ''}; name the model with --served_model to skip this`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UsageError('--served_model', `GET ${url}/v1/models answered no JSON (${clip(text, 80)}); name the model with --served_model`);
  }
  const data = isObject(json) ? json['data'] : undefined;
  if (!Array.isArray(data)) throw new UsageError('--served_model', `GET ${url}/v1/models answered no model list ("data"); name the model with --served_model`);
  return data.map((m) => (isObject(m) && typeof m['id'] === 'string' ? m['id'] : '')).filter((id) => id !== '');
}
