/**
 * A non-streaming client for servers that speak the OpenAI completions API (vLLM, TGI,
 * DeepSpeed-MII, llama.cpp's server, `fusegen serve`): `POST {url}/v1/completions`,
 * `GET {url}/v1/models`, and llama.cpp's native `POST {url}/completion`, which gives token ids
 * where its OpenAI route gives token text.
 *
 * Every engine answers in its own dialect of the format; parseCompletion reads them all into one
 * shape (ServedCompletion): the generated text, the generated tokens with their top-k
 * log-probabilities, and the prompt's tokens with theirs where the server echoes them. A token is
 * its id where the server gives one (vLLM's `token_id:123` strings with
 * `return_tokens_as_token_ids`, its `token_ids`, llama.cpp's `id`), else its text, which the
 * caller maps through the tokenizer (this layer has none).
 *
 * probeServer finds what a server supports by asking for everything first and giving up one
 * feature at a time where the server refuses the request (HTTP 400/422): token-id prompts,
 * log-probabilities, echo, vLLM's extra fields. What it gave up is said in `notes`, never
 * a failure.
 *
 * Every failure is one InputError naming the flag, the URL and what was wrong.
 */
import { InputError, UsageError } from '../errors.js';

/** Where a server is and how to reach it. */
export interface Endpoint {
  /** The base URL (normalizeServerUrl): the client adds `/v1/...`. */
  url: string;
  /** Sent as `Authorization: Bearer`; never written anywhere. */
  apiKey?: string;
  /** Each request, answer included. */
  timeoutMs: number;
  /** The flag that named the server (`--candidate_url`): every error blames it. */
  flag: string;
}

/** A request the server answered with an error, or an answer that is not what the API says. */
export class RemoteError extends InputError {
  constructor(
    readonly endpoint: Endpoint,
    /** The HTTP status, where the server answered with one. */
    readonly status: number | undefined,
    message: string,
  ) {
    super(`${endpoint.flag} ${endpoint.url}`, message);
    this.name = 'RemoteError';
  }
}

/**
 * A server's base URL: http(s) only, no credentials (they would end up in reports: --api_key
 * carries the key), no query; a trailing `/v1` and slashes are dropped.
 */
export function normalizeServerUrl(raw: string, flag: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(flag, `"${raw}" is not a URL (expected e.g. http://127.0.0.1:8000)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(flag, `"${raw}": expected an http:// or https:// URL`);
  if (u.username || u.password) throw new UsageError(flag, 'holds credentials: give the key with --api_key (sent as Authorization: Bearer, never written to a report)');
  if (u.search || u.hash) throw new UsageError(flag, `"${raw}": give the server's base URL, without a query or fragment`);
  return `${u.origin}${u.pathname.replace(/\/+$/, '').replace(/\/v1$/, '')}`;
}

/** A token as the server names it: its id where it gives one, else its text. */
export interface ServedToken {
  id?: number;
  text?: string;
}

export interface ServedAlternative {
  token: ServedToken;
  logprob: number;
}

/** One position: the token there, its log-probability, and the most likely tokens (most likely first). */
export interface ServedStep {
  token: ServedToken;
  /** null where the server gives none (the first prompt token has no prediction). */
  logprob: number | null;
  /** null where the server gave no top log-probabilities for this position. */
  top: ServedAlternative[] | null;
}

/** Every dialect's answer in one shape. */
export interface ServedCompletion {
  /** The generated text alone (an echoed prompt removed). */
  text: string;
  /** `stop` (end of sequence or a stop string) or `length`; other words as the server gave them; null when it gave none. */
  finishReason: string | null;
  /** The generated tokens with their log-probabilities, where the server listed them. */
  steps?: ServedStep[];
  /** Generated ids the server gave besides log-probabilities (vLLM's token_ids, llama.cpp's tokens). */
  tokenIds?: number[];
  /** The prompt's tokens with their log-probabilities (echo, or vLLM's prompt_logprobs); the first has no logprob. */
  promptSteps?: ServedStep[];
  /** The prompt as the server tokenized it (vLLM's prompt_token_ids). */
  promptTokenIds?: number[];
  /** The server's own counts. */
  usage?: { promptTokens?: number; completionTokens?: number };
  model?: string;
}

/** A malformed answer: what is wrong, where. */
class Malformed extends Error {}

type Json = Record<string, unknown>;

function isObject(x: unknown): x is Json {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function clip(s: string, n = 160): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > n ? `${one.slice(0, n)}...` : one;
}

/** `token_id:123` (vLLM's return_tokens_as_token_ids) is an id; anything else is text. */
function tokenOf(s: string): ServedToken {
  const m = /^token_id:(\d+)$/.exec(s);
  return m ? { id: Number(m[1]) } : { text: s };
}

const LOGPROB = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x <= 1e-6;

function logprobAt(x: unknown, where: string): number {
  if (!LOGPROB(x)) throw new Malformed(`${where} is ${clip(JSON.stringify(x) ?? 'undefined', 40)}, not a log-probability (a finite number <= 0)`);
  return Math.min(0, x);
}

function idAt(x: unknown, where: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) throw new Malformed(`${where} is ${clip(JSON.stringify(x) ?? 'undefined', 40)}, not a token id`);
  return x;
}

function idsAt(x: unknown, where: string): number[] {
  if (!Array.isArray(x)) throw new Malformed(`${where} is not a list of token ids`);
  return x.map((v, i) => idAt(v, `${where}[${i}]`));
}

function sortedTop(top: ServedAlternative[]): ServedAlternative[] {
  return [...top].sort((a, b) => b.logprob - a.logprob);
}

function sameToken(a: ServedToken, b: ServedToken): boolean {
  return a.id !== undefined && b.id !== undefined ? a.id === b.id : a.text !== undefined && a.text === b.text;
}

/**
 * Servers list the chosen token beside the top-k even where it ranks below them (vLLM, llama.cpp's
 * legacy form): then there is one entry more than asked, and that one is not of the top-k (every
 * unlisted token ranks below the top's last; a token further down would contradict that).
 */
function trimTop(top: ServedAlternative[], chosen: ServedToken, k: number | undefined): ServedAlternative[] {
  if (k === undefined || top.length <= k) return top;
  const without = top.filter((a) => !sameToken(a.token, chosen));
  return (without.length < top.length ? without : top).slice(0, k);
}

/** The legacy completions form: `{tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}`. */
function legacySteps(lp: Json, where: string, k: number | undefined): ServedStep[] {
  const { tokens, token_logprobs: chosen, top_logprobs: tops } = lp;
  if (!Array.isArray(tokens) || tokens.some((t) => typeof t !== 'string')) throw new Malformed(`${where}.tokens is not a list of strings`);
  if (!Array.isArray(chosen) || chosen.length !== tokens.length) throw new Malformed(`${where}.token_logprobs is not a list as long as tokens (${tokens.length})`);
  if (tops !== undefined && tops !== null && (!Array.isArray(tops) || tops.length !== tokens.length)) throw new Malformed(`${where}.top_logprobs is not a list as long as tokens (${tokens.length})`);
  return (tokens as string[]).map((t, i): ServedStep => {
    const c = chosen[i];
    const entry = Array.isArray(tops) ? tops[i] : null;
    let top: ServedAlternative[] | null = null;
    const token = tokenOf(t);
    if (isObject(entry)) top = trimTop(sortedTop(Object.entries(entry).map(([key, v]) => ({ token: tokenOf(key), logprob: logprobAt(v, `${where}.top_logprobs[${i}]["${clip(key, 20)}"]`) }))), token, k);
    else if (entry !== null && entry !== undefined) throw new Malformed(`${where}.top_logprobs[${i}] is not an object of token: logprob`);
    return { token, logprob: c === null ? null : logprobAt(c, `${where}.token_logprobs[${i}]`), top };
  });
}

/** One entry of the chat-style form (llama.cpp's, the chat API's): `{id?, token, logprob | prob, top_logprobs | top_probs}`. */
function entryToken(e: Json, where: string): { token: ServedToken; logprob: number } {
  const token: ServedToken = {};
  if (e['id'] !== undefined) token.id = idAt(e['id'], `${where}.id`);
  if (typeof e['token'] === 'string') {
    const t = tokenOf(e['token']);
    if (t.id !== undefined) token.id ??= t.id;
    else token.text = e['token'];
  }
  if (token.id === undefined && token.text === undefined) throw new Malformed(`${where} names no token (neither "id" nor "token")`);
  // llama.cpp's post_sampling_probs gives probabilities instead of log-probabilities.
  const p = e['prob'];
  const logprob = e['logprob'] !== undefined ? logprobAt(e['logprob'], `${where}.logprob`) : typeof p === 'number' && p >= 0 && p <= 1 ? Math.log(p) : logprobAt(undefined, `${where}.logprob`);
  return { token, logprob };
}

function contentSteps(list: unknown, where: string, k: number | undefined): ServedStep[] {
  if (!Array.isArray(list)) throw new Malformed(`${where} is not a list`);
  return list.map((e, i): ServedStep => {
    const w = `${where}[${i}]`;
    if (!isObject(e)) throw new Malformed(`${w} is not an object`);
    const { token, logprob } = entryToken(e, w);
    const alts = e['top_logprobs'] ?? e['top_probs'];
    let top: ServedAlternative[] | null = null;
    if (Array.isArray(alts)) {
      const listed = alts.map((a, j) => {
        if (!isObject(a)) throw new Malformed(`${w}.top_logprobs[${j}] is not an object`);
        return entryToken(a, `${w}.top_logprobs[${j}]`);
      });
      top = trimTop(sortedTop(listed), token, k);
    } else if (alts !== undefined && alts !== null) throw new Malformed(`${w}.top_logprobs is not a list`);
    return { token, logprob, top };
  });
}

/** vLLM's prompt_logprobs: per prompt token null (the first) or `{"<id>": {logprob, rank, decoded_token}}`, holding the top-k and the prompt's own token. */
function vllmPromptSteps(list: unknown, promptIds: number[] | undefined, where: string, k: number | undefined): ServedStep[] {
  if (!Array.isArray(list)) throw new Malformed(`${where} is not a list`);
  return list.map((e, i): ServedStep => {
    const own = promptIds?.[i];
    if (e === null) return { token: own === undefined ? {} : { id: own }, logprob: null, top: null };
    if (!isObject(e)) throw new Malformed(`${where}[${i}] is not an object of id: {logprob}`);
    const all = Object.entries(e).map(([k, v]) => {
      if (!/^\d+$/.test(k)) throw new Malformed(`${where}[${i}] has the key "${clip(k, 20)}", not a token id`);
      const lp = isObject(v) ? v['logprob'] : v;
      const rank = isObject(v) && typeof v['rank'] === 'number' ? v['rank'] : undefined;
      return { token: { id: Number(k) }, logprob: logprobAt(lp, `${where}[${i}]["${k}"].logprob`), rank };
    });
    const mine = own === undefined ? undefined : all.find((a) => a.token.id === own);
    // The prompt's own token is listed beside the top-k even where it ranks below them (trimTop).
    // Without the k asked for, its rank says it: a rank past the others' next is not of the top.
    const others = all.filter((a) => a !== mine);
    const extra = k === undefined && mine !== undefined && others.length > 0 && (mine.rank !== undefined ? mine.rank > others.length + 1 : others.every((a) => a.logprob > mine.logprob));
    const listed = trimTop(sortedTop((extra ? others : all).map(({ token, logprob }) => ({ token, logprob }))), own === undefined ? {} : { id: own }, k);
    return { token: own === undefined ? {} : { id: own }, logprob: mine ? mine.logprob : null, top: listed };
  });
}

export interface ParseContext {
  /** What was asked (`POST /v1/completions`), for the messages (the error's culprit names the server). */
  where: string;
  /** The request asked for echo: the first tokens of the logprobs are the prompt's. */
  echo?: boolean;
  /** How many tokens the prompt has, where the request sent ids (else the server's usage count is used). */
  promptLength?: number;
  /** The prompt's ids, where the request sent ids. */
  promptIds?: number[];
  /** The top log-probabilities asked for per position: an entry beyond them is the chosen token's (trimTop). */
  topK?: number;
}

function usageOf(u: unknown): ServedCompletion['usage'] {
  if (!isObject(u)) return undefined;
  const n = (x: unknown) => (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 ? x : undefined);
  const promptTokens = n(u['prompt_tokens']);
  const completionTokens = n(u['completion_tokens']);
  return { ...(promptTokens !== undefined ? { promptTokens } : {}), ...(completionTokens !== undefined ? { completionTokens } : {}) };
}

/** llama.cpp's native `/completion` answer. */
function parseNative(r: Json, where: string, k: number | undefined): ServedCompletion {
  if (typeof r['content'] !== 'string') throw new Malformed(`${where}: "content" is not a string`);
  const probs = r['completion_probabilities'] ?? r['probs'];
  const stop = r['stop_type'];
  const out: ServedCompletion = {
    text: r['content'],
    finishReason: stop === 'eos' || stop === 'word' ? 'stop' : stop === 'limit' ? 'length' : typeof stop === 'string' ? stop : null,
  };
  if (probs !== undefined && probs !== null) out.steps = contentSteps(probs, `${where}: completion_probabilities`, k);
  if (Array.isArray(r['tokens']) && r['tokens'].length > 0) out.tokenIds = idsAt(r['tokens'], `${where}: tokens`);
  const evaluated = r['tokens_evaluated'];
  if (typeof evaluated === 'number' && Number.isSafeInteger(evaluated)) out.usage = { promptTokens: evaluated, ...(typeof r['tokens_predicted'] === 'number' ? { completionTokens: r['tokens_predicted'] } : {}) };
  if (typeof r['model'] === 'string') out.model = r['model'];
  return out;
}

/** An OpenAI-style `{choices: [...]}` answer (vLLM, TGI, llama.cpp's /v1/completions, MII). */
function parseChoices(r: Json, c: ParseContext): ServedCompletion {
  const { where } = c;
  const choices = r['choices'];
  if (!Array.isArray(choices) || choices.length === 0) throw new Malformed(`${where}: "choices" is not a non-empty list`);
  const choice = choices[0];
  if (!isObject(choice)) throw new Malformed(`${where}: choices[0] is not an object`);
  if (typeof choice['text'] !== 'string') throw new Malformed(`${where}: choices[0].text is not a string`);
  const fr = choice['finish_reason'];
  // TGI says eos_token where the others say stop.
  const out: ServedCompletion = { text: choice['text'], finishReason: fr === 'eos_token' || fr === 'stop_sequence' ? 'stop' : typeof fr === 'string' ? fr : null };
  const usage = usageOf(r['usage']);
  if (usage) out.usage = usage;
  if (typeof r['model'] === 'string') out.model = r['model'];
  if (choice['token_ids'] !== undefined && choice['token_ids'] !== null) out.tokenIds = idsAt(choice['token_ids'], `${where}: choices[0].token_ids`);
  if (choice['prompt_token_ids'] !== undefined && choice['prompt_token_ids'] !== null) out.promptTokenIds = idsAt(choice['prompt_token_ids'], `${where}: choices[0].prompt_token_ids`);

  const lp = choice['logprobs'];
  let steps: ServedStep[] | undefined;
  let offsets: unknown;
  if (isObject(lp) && Array.isArray(lp['content'])) steps = contentSteps(lp['content'], `${where}: choices[0].logprobs.content`, c.topK);
  else if (isObject(lp)) {
    steps = legacySteps(lp, `${where}: choices[0].logprobs`, c.topK);
    offsets = lp['text_offset'];
  } else if (lp !== null && lp !== undefined && !Array.isArray(lp)) throw new Malformed(`${where}: choices[0].logprobs is neither null, a list nor an object`);
  // TGI's logprobs is a bare list of numbers (the chosen tokens', without the tokens): nothing to compare.

  const promptLength = c.promptLength ?? out.promptTokenIds?.length ?? out.usage?.promptTokens;
  if (steps && c.echo) {
    if (promptLength === undefined) throw new Malformed(`${where}: an echoed answer without the prompt's token count (usage.prompt_tokens)`);
    // A server that ignores echo lists only the generated tokens.
    const echoed = steps.length >= promptLength && (out.usage?.completionTokens === undefined || steps.length === promptLength + out.usage.completionTokens);
    if (echoed) {
      out.promptSteps = steps.slice(0, promptLength);
      steps = steps.slice(promptLength);
      const at = Array.isArray(offsets) ? offsets[promptLength] : undefined;
      if (typeof at === 'number' && at >= 0 && at <= out.text.length) out.text = out.text.slice(at);
    }
  }
  if (steps) out.steps = steps;
  const pl = choice['prompt_logprobs'];
  if (pl !== undefined && pl !== null) out.promptSteps = vllmPromptSteps(pl, out.promptTokenIds ?? c.promptIds, `${where}: choices[0].prompt_logprobs`, c.topK);
  return out;
}

/** Any dialect's completion answer in one shape; a malformed one is one line naming what is wrong. */
export function parseCompletion(json: unknown, c: ParseContext): ServedCompletion {
  if (!isObject(json)) throw new Malformed(`${c.where}: the answer is not a JSON object`);
  if ('choices' in json) return parseChoices(json, c);
  if ('content' in json) return parseNative(json, c.where, c.topK);
  const err = json['error'];
  throw new Malformed(`${c.where}: neither "choices" nor "content" in the answer${err !== undefined ? ` (error: ${clip(JSON.stringify(err), 120)})` : ''}`);
}

/** The model ids of a `/v1/models` answer: OpenAI's `{data: [{id}]}`, or one model object as TGI's documentation shows it. */
export function parseModels(json: unknown, where: string): string[] {
  const list = isObject(json) && Array.isArray(json['data']) ? json['data'] : isObject(json) && typeof json['id'] === 'string' ? [json] : undefined;
  if (!list) throw new Malformed(`${where}: no model list ("data": [{"id": ...}])`);
  return list.map((m, i) => {
    if (!isObject(m) || typeof m['id'] !== 'string' || m['id'] === '') throw new Malformed(`${where}: data[${i}] has no "id"`);
    return m['id'];
  });
}

/** The text of an error answer: OpenAI's `{error: {message}}`, TGI's `{error}`, vLLM's `{message}`, or the body. */
function errorText(body: string): string {
  try {
    const j: unknown = JSON.parse(body);
    if (isObject(j)) {
      const e = j['error'];
      if (isObject(e) && typeof e['message'] === 'string') return e['message'];
      if (typeof e === 'string') return e;
      if (typeof j['message'] === 'string') return j['message'];
      if (typeof j['detail'] === 'string') return j['detail'];
    }
  } catch {
    // not JSON: the body itself
  }
  return body;
}

/** The innermost cause of a failed fetch (`ECONNREFUSED`, a DNS failure). */
function networkWhy(e: unknown): string {
  let at: unknown = e;
  let why = e instanceof Error ? e.message : String(e);
  for (let i = 0; i < 5 && isObject(at) && at['cause']; i++) {
    at = at['cause'];
    const code = isObject(at) && typeof at['code'] === 'string' ? `${at['code']}` : '';
    if (at instanceof Error && at.message) why = code && !at.message.includes(code) ? `${code}: ${at.message}` : at.message;
  }
  return why;
}

/** One HTTP exchange: the parsed JSON, or a RemoteError with the status and the server's words. */
async function exchange(ep: Endpoint, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ json: unknown; where: string }> {
  const where = `${method} ${path}`;
  let res: Response;
  let text: string;
  try {
    res = await fetch(`${ep.url}${path}`, {
      method,
      headers: { Accept: 'application/json', ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...(ep.apiKey ? { Authorization: `Bearer ${ep.apiKey}` } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(ep.timeoutMs),
    });
    text = await res.text();
  } catch (e) {
    const timedOut = e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError');
    throw new RemoteError(ep, undefined, `${where}: ${timedOut ? `no answer within ${ep.timeoutMs / 1000} s` : `cannot reach the server (${clip(networkWhy(e), 120)})`}`);
  }
  if (!res.ok) {
    const key = res.status === 401 || res.status === 403 ? ` (${ep.apiKey ? 'is --api_key right?' : 'does it need --api_key?'})` : '';
    throw new RemoteError(ep, res.status, `${where} answered HTTP ${res.status}: ${clip(errorText(text) || res.statusText, 200)}${key}`);
  }
  try {
    return { json: JSON.parse(text), where };
  } catch {
    throw new RemoteError(ep, res.status, `${where} answered with something that is not JSON: ${JSON.stringify(clip(text, 80))}`);
  }
}

function malformed<T>(ep: Endpoint, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof Malformed) throw new RemoteError(ep, undefined, `malformed answer: ${e.message}`);
    throw e;
  }
}

/** The served models' ids. */
export async function listModels(ep: Endpoint): Promise<string[]> {
  const { json, where } = await exchange(ep, 'GET', '/v1/models');
  return malformed(ep, () => parseModels(json, where));
}

/** A greedy completion request, in what the server is known to take. */
export interface CompletionParams {
  model: string;
  /** Token ids (the completions API takes a list of ints), or text where the server takes only text. */
  prompt: number[] | string;
  maxTokens: number;
  /** End of sequence suppressed until this many tokens (vLLM's min_tokens; sent only with `extras`). */
  minTokens?: number;
  seed?: number;
  /** Top log-probabilities per step (0 or absent: none). */
  logprobs?: number;
  /** The prompt's log-probabilities too (echo; with `extras` also vLLM's prompt_logprobs). */
  echo?: boolean;
  /** vLLM's extra fields: ids instead of token text, min_tokens, prompt_logprobs. */
  extras?: boolean;
}

/** Which route answers: the OpenAI completions API, or llama.cpp's native one (token ids with n_probs). */
export type Dialect = 'openai' | 'llama.cpp';

function openaiBody(p: CompletionParams): Json {
  const body: Json = { model: p.model, prompt: p.prompt, max_tokens: p.maxTokens, temperature: 0, stream: false };
  if (p.seed !== undefined) body['seed'] = p.seed;
  if (p.logprobs) body['logprobs'] = p.logprobs;
  if (p.echo && p.logprobs) body['echo'] = true;
  if (p.extras) {
    body['return_tokens_as_token_ids'] = true;
    body['return_token_ids'] = true;
    if (p.minTokens) body['min_tokens'] = p.minTokens;
    if (p.echo && p.logprobs) body['prompt_logprobs'] = p.logprobs;
  }
  return body;
}

function nativeBody(p: CompletionParams): Json {
  // temperature 0 is greedy there too; the prompt cache is off so that every answer is computed alike.
  return { prompt: p.prompt, n_predict: p.maxTokens, temperature: 0, n_probs: p.logprobs ?? 0, return_tokens: true, cache_prompt: false, stream: false, ...(p.seed !== undefined ? { seed: p.seed } : {}) };
}

/** One completion, parsed. */
export async function complete(ep: Endpoint, p: CompletionParams, dialect: Dialect = 'openai'): Promise<ServedCompletion> {
  const { json, where } = dialect === 'openai' ? await exchange(ep, 'POST', '/v1/completions', openaiBody(p)) : await exchange(ep, 'POST', '/completion', nativeBody(p));
  const sent = Array.isArray(p.prompt) ? { promptLength: p.prompt.length, promptIds: p.prompt } : {};
  return malformed(ep, () => parseCompletion(json, { where, echo: Boolean(p.echo && p.logprobs), ...(p.logprobs ? { topK: p.logprobs } : {}), ...sent }));
}

/** What a server was found to support (probeServer). */
export interface ServerCapabilities {
  dialect: Dialect;
  /** Prompts go as token ids, or as text where the server takes only text (TGI). */
  prompt: 'ids' | 'text';
  /** Top log-probabilities the server returns per generated step (0: none). */
  topLogprobs: number;
  /** It returns the prompt's log-probabilities (echo, or vLLM's prompt_logprobs): teacher-forced scoring works. */
  promptLogprobs: boolean;
  /** Generated tokens come as ids, as token text (mapped through the tokenizer), or only as the whole text. */
  tokens: 'ids' | 'text-tokens' | 'text';
  /** It took vLLM's extra fields (min_tokens among them). */
  extras: boolean;
  /** What was given up, in words. */
  notes: string[];
}

/** A request's features, richest first: the ladder probeServer climbs down. */
interface Attempt {
  prompt: 'ids' | 'text';
  logprobs: boolean;
  echo: boolean;
  extras: boolean;
}

const LADDER: Attempt[] = (['ids', 'text'] as const).flatMap((prompt) =>
  [
    { logprobs: true, echo: true, extras: true },
    { logprobs: true, echo: true, extras: false },
    { logprobs: true, echo: false, extras: true },
    { logprobs: true, echo: false, extras: false },
    { logprobs: false, echo: false, extras: false },
  ].map((a) => ({ prompt, ...a })),
);

/** A refusal of the request's content (a field it does not take), as opposed to the server failing. */
function refusedRequest(e: unknown): boolean {
  return e instanceof RemoteError && (e.status === 400 || e.status === 422);
}

/** The generated ids of an answer, where the server gave them. */
export function servedIds(c: ServedCompletion): number[] | undefined {
  if (c.tokenIds) return c.tokenIds;
  if (c.steps && c.steps.length > 0 && c.steps.every((s) => s.token.id !== undefined)) return c.steps.map((s) => s.token.id!);
  return undefined;
}

/**
 * Finds what a server supports by asking for everything (token-id prompt, `topK` log-probabilities,
 * echo, vLLM's extras) and giving up one feature at a time where it refuses the request (HTTP 400
 * or 422). Any other failure (unreachable, 401, 404, 5xx, a malformed answer) is thrown as it is.
 * Where the OpenAI route gives neither token ids nor the prompt's log-probabilities, llama.cpp's
 * native route is tried for ids. Returns the capabilities and the probe's own answer.
 */
export async function probeServer(
  ep: Endpoint,
  model: string,
  probe: { ids: number[]; text: string; maxTokens: number },
  topK: number,
): Promise<{ caps: ServerCapabilities; answer: ServedCompletion }> {
  const refusals: string[] = [];
  for (const a of LADDER) {
    const params: CompletionParams = { model, prompt: a.prompt === 'ids' ? probe.ids : probe.text, maxTokens: probe.maxTokens, seed: 0, ...(a.logprobs ? { logprobs: topK } : {}), echo: a.echo, extras: a.extras };
    let answer: ServedCompletion;
    try {
      answer = await complete(ep, params);
    } catch (e) {
      if (!refusedRequest(e)) throw e;
      refusals.push((e as RemoteError).message.slice((e as RemoteError).culprit.length + 2));
      continue;
    }
    const caps = capabilitiesOf(a, answer);
    if (refusals.length) caps.notes.unshift(`richer requests were refused (${clip(refusals[0]!, 120)})`);
    if (caps.tokens !== 'ids' && !caps.promptLogprobs && a.prompt === 'ids') {
      const native = await tryNative(ep, { ...params, logprobs: topK });
      if (native) return native;
    }
    return { caps, answer };
  }
  throw new RemoteError(ep, 400, `refuses every form of greedy completion request fusegen sends (last: ${clip(refusals.at(-1) ?? '', 160)})`);
}

/** What an answer to an attempt shows the server does. */
function capabilitiesOf(a: Attempt, answer: ServedCompletion): ServerCapabilities {
  const notes: string[] = [];
  const topLogprobs = Math.max(0, ...(answer.steps ?? []).map((s) => s.top?.length ?? 0));
  const promptLogprobs = (answer.promptSteps ?? []).some((s) => s.top !== null && s.top.length > 0) && a.prompt === 'ids';
  const ids = servedIds(answer) !== undefined;
  const tokens = ids ? 'ids' : answer.steps && answer.steps.length > 0 ? 'text-tokens' : 'text';
  if (a.prompt === 'text') notes.push('it takes no token-id prompts: prompts go as text, and its token counts are checked against the tokenizer');
  if (topLogprobs === 0) notes.push('it returns no log-probabilities: tokens only');
  else if (!promptLogprobs) notes.push("it returns no log-probabilities of the prompt (no echo): log-probabilities are compared on the generated steps, up to the sides' first divergence");
  if (tokens === 'text-tokens') notes.push('it names tokens by their text: mapped to ids through the tokenizer');
  if (tokens === 'text') notes.push('it returns only text: generated texts are compared');
  return { dialect: 'openai', prompt: a.prompt, topLogprobs, promptLogprobs, tokens, extras: a.extras, notes };
}

/** llama.cpp's native route, where it answers with ids; undefined where there is none (404) or it refuses. */
async function tryNative(ep: Endpoint, params: CompletionParams): Promise<{ caps: ServerCapabilities; answer: ServedCompletion } | undefined> {
  let answer: ServedCompletion;
  try {
    answer = await complete(ep, params, 'llama.cpp');
  } catch (e) {
    if (e instanceof RemoteError) return undefined;
    throw e;
  }
  if (servedIds(answer) === undefined) return undefined;
  const topLogprobs = Math.max(0, ...(answer.steps ?? []).map((s) => s.top?.length ?? 0));
  const notes = ["llama.cpp's native /completion answers with token ids: used instead of /v1/completions", 'it returns no log-probabilities of the prompt: log-probabilities are compared on the generated steps'];
  if (topLogprobs === 0) notes.push('it returns no log-probabilities: tokens only');
  return { caps: { dialect: 'llama.cpp', prompt: 'ids', topLogprobs, promptLogprobs: false, tokens: 'ids', extras: false, notes }, answer };
}
