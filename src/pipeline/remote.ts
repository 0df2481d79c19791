/**
 * A model served by an engine that speaks the OpenAI completions API (vLLM, TGI, DeepSpeed-MII,
 * llama.cpp's server, `fusegen serve`), as a TextGenerationPipeline: compare holds a deployment
 * to the same proof as an in-process pipeline (`compare --reference_url / --candidate_url`).
 *
 * The checkpoint directory still gives the tokenizer and the config: prompts go to the server as
 * token ids where it takes them, so both sides see the same tokens, and the run is refused at
 * create() when the server's tokenizer disagrees with the checkpoint's (its tokens for the probe
 * prompt, their text, its count of a text prompt's tokens).
 *
 * Generation is greedy, one request per prompt. A server gives log-probabilities, not logits:
 * generate records each step's top-k log-probabilities (margins between them are the logits'),
 * scoreLogprobs gives teacher-forced top-k log-probabilities where the server echoes the prompt's,
 * and score (full logits rows) is refused. What the server could not give (ServerCapabilities)
 * is said in `notes`, never a failure.
 */
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type { Checkpoint } from '../arch/checkpoint.js';
import { UnsupportedError } from '../errors.js';
import { complete, listModels, probeServer, RemoteError, servedIds, type CompletionParams, type Endpoint, type ServedAlternative, type ServedCompletion, type ServedStep, type ServedToken, type ServerCapabilities } from '../remote/completions.js';
import { checkCapacity, finishSequences, pipelineInfo } from './common.js';
import { loadDetokenizer } from './detokenize.js';
import { decodeText, encode, loadTokenizer, promptIds } from './tokenizer.js';
import type { DType, GenerateRequest, GenerateResult, PipelineInfo, TextGenerationPipeline, TopK } from './types.js';

export interface RemoteOptions {
  /** The server's base URL (normalizeServerUrl). */
  url: string;
  /** The flag that named it: every refusal blames it. */
  flag: string;
  apiKey?: string;
  /** The served model's name (--served_model); default the only one GET /v1/models lists. */
  model?: string;
  /** Per request (default 300 s: a long generation on a loaded server). */
  timeoutMs?: number;
  /** The precision the server is said to run (compare's --dtype): it picks the tolerance, nothing is sent. */
  dtype: DType;
  /** Prompt plus new tokens, as the other pipelines' KV-cache capacity. */
  maxTokens: number;
  /** Top log-probabilities asked for per position. */
  topK: number;
}

/** The probe prompt: words, digits, punctuation and characters outside ASCII, so that a tokenizer that differs shows. */
export const PROBE_TEXT = 'The quick brown fox, 42 times: “déjà vu” — naïve café.';
/** New tokens the probe asks for: enough to check their text against the tokenizer's. */
const PROBE_NEW_TOKENS = 4;

/**
 * Token text to id, for servers that name tokens by their text. Servers render a token either in
 * context (its text after a plain token, leading space kept: what vLLM's detokenizer gives) or as
 * the vocabulary's raw string (`Ġthe`, `▁the`). A text two ids share (partial UTF-8 bytes render
 * as U+FFFD) maps to none of them.
 */
export type TokenRendering = 'in-context' | 'vocabulary';

export class TokenTexts {
  private readonly maps = new Map<TokenRendering, Map<string, number>>();
  private readonly renders = new Map<TokenRendering, (id: number) => string | undefined>();

  constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly dir: string,
    private readonly vocabSize: number,
  ) {}

  /** Every id's text under `r`, built once on first use. */
  private map(r: TokenRendering): Map<string, number> {
    let m = this.maps.get(r);
    if (m) return m;
    const render = this.render(r);
    m = new Map();
    const shared = new Set<string>();
    for (let id = 0; id < this.vocabSize; id++) {
      const t = render(id);
      if (t === undefined || t === '') continue;
      if (m.has(t)) shared.add(t);
      else m.set(t, id);
    }
    for (const t of shared) m.delete(t);
    this.maps.set(r, m);
    return m;
  }

  private render(r: TokenRendering): (id: number) => string | undefined {
    let f = this.renders.get(r);
    if (!f) this.renders.set(r, (f = r === 'vocabulary' ? this.vocabularyText() : this.contextText()));
    return f;
  }

  private vocabularyText(): (id: number) => string | undefined {
    const detok = loadDetokenizer(this.dir);
    return (id) => detok.token(id);
  }

  /** A token's text after a plain anchor token: decoders that strip a leading space strip it from the anchor instead. */
  private contextText(): (id: number) => string {
    const anchorIds = this.tokenizer.encode('a', { add_special_tokens: false });
    const anchor = anchorIds[anchorIds.length - 1];
    const decode = (ids: number[]) => this.tokenizer.decode(ids, { skip_special_tokens: false });
    if (anchor === undefined) return (id) => decode([id]);
    const head = decode([anchor]);
    return (id) => {
      const both = decode([anchor, id]);
      return both.startsWith(head) ? both.slice(head.length) : decode([id]);
    };
  }

  /** The id of a served token under `r`, where its text names exactly one. */
  id(t: ServedToken, r: TokenRendering): number | undefined {
    if (t.id !== undefined) return t.id;
    return t.text === undefined ? undefined : this.map(r).get(t.text);
  }

  /**
   * Whether each token of `tokens` is a text of the id `ids` says: under either rendering, or its
   * lone decode, spaces aside (a server may strip the first token's leading space as a lone
   * decode does). A tokenizer that differs gives other words.
   */
  consistent(tokens: ServedToken[], ids: number[]): boolean {
    const lone = (id: number) => this.tokenizer.decode([id], { skip_special_tokens: false });
    return tokens.every((t, i) => {
      const id = ids[i]!;
      if (t.text === undefined) return t.id === id;
      const said = plain(t.text);
      return [this.render('in-context')(id), this.render('vocabulary')(id), lone(id)].some((x) => x !== undefined && plain(x) === said);
    });
  }

  /** The rendering under which most tokens of `tokens` are exactly the text of the id `ids` says. */
  renderingOf(tokens: ServedToken[], ids: number[]): TokenRendering {
    const exact = (r: TokenRendering) => tokens.filter((t, i) => t.text !== undefined && this.render(r)(ids[i]!) === t.text).length;
    return exact('vocabulary') > exact('in-context') ? 'vocabulary' : 'in-context';
  }

  /** The rendering under which every token of `tokens` names an id, if one does. */
  resolving(tokens: ServedToken[]): TokenRendering | undefined {
    return (['in-context', 'vocabulary'] as const).find((r) => tokens.every((t) => this.id(t, r) !== undefined));
  }
}

/**
 * A text without whitespace and U+FFFD: servers differ in the clean-up of spaces and hold back a
 * partial character at the end, not in the words, which are what a different tokenizer changes.
 */
function plain(s: string): string {
  return s.replace(/[\s\uFFFD]+/g, '');
}

function quote(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}...` : s);
}

export class RemotePipeline implements TextGenerationPipeline {
  private constructor(
    readonly info: PipelineInfo,
    /** The served model's name, as requests name it. */
    readonly model: string,
    readonly caps: ServerCapabilities,
    /** How the server renders tokens as text, where it names them so. */
    private readonly rendering: TokenRendering,
    private readonly endpoint: Endpoint,
    private readonly ckpt: Checkpoint,
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly texts: TokenTexts,
    private readonly o: RemoteOptions,
  ) {}

  /**
   * Finds the served model (--served_model, else the only one listed), what the server supports
   * (probeServer), and refuses one whose tokenizer disagrees with the checkpoint's.
   */
  static async create(ckpt: Checkpoint, o: RemoteOptions): Promise<RemotePipeline> {
    const t0 = performance.now();
    const ep: Endpoint = { url: o.url, flag: o.flag, timeoutMs: o.timeoutMs ?? 300_000, ...(o.apiKey ? { apiKey: o.apiKey } : {}) };
    const model = await servedModel(ep, o.model);
    const tokenizer = await loadTokenizer(ckpt);
    const texts = new TokenTexts(tokenizer, ckpt.dir, ckpt.dims.vocabSize);
    const probe = { ids: encode(tokenizer, PROBE_TEXT), text: PROBE_TEXT, maxTokens: PROBE_NEW_TOKENS };
    const { caps, answer } = await probeServer(ep, model, probe, o.topK);
    const rendering = await checkTokenizer(ep, model, caps, answer, probe, { ckpt, tokenizer, texts });
    const info = pipelineInfo('remote', ckpt, 'cpu', o.dtype, performance.now() - t0);
    // Where the model runs is the server's business: what fusegen knows of it is where it is and what it calls the model.
    info.executionProviders = [o.url, model];
    return new RemotePipeline(info, model, caps, rendering, ep, ckpt, tokenizer, texts, o);
  }

  /** The server's base URL. */
  get url(): string {
    return this.o.url;
  }

  validate(request: GenerateRequest): void {
    if (request.doSample) throw new UnsupportedError(this.o.flag, 'a served model is compared greedy only (temperature 0)');
    if (request.ignoreEos) throw new UnsupportedError(this.o.flag, 'ignore_eos is not part of the completions API');
    const rows = promptIds(this.tokenizer, request);
    checkCapacity(this.ckpt, this.o.maxTokens, Math.max(...rows.map((r) => r.length)), request.maxNewTokens);
  }

  private fail(message: string): RemoteError {
    return new RemoteError(this.endpoint, undefined, message);
  }

  /** A served token's id; a text that names no single id fails the request. */
  private idOf(t: ServedToken, where: string): number {
    const id = this.texts.id(t, this.rendering);
    if (id === undefined || id >= this.ckpt.dims.vocabSize) {
      // Partial UTF-8 characters render alike (U+FFFD): only ids tell such tokens apart.
      const hint = t.text !== undefined ? " (a text several ids share, or none has; a server that names tokens by id avoids this: vLLM's return_tokens_as_token_ids)" : '';
      throw this.fail(`${where}: the token ${t.text !== undefined ? quote(t.text) : String(t.id)} is no single id of --model's tokenizer${hint}`);
    }
    return id;
  }

  /** A step's top-k as ids and log-probabilities; alternatives whose text names no single id are left out. */
  private topOf(top: ServedAlternative[] | null): TopK {
    const out: TopK = { ids: [], values: [] };
    for (const a of (top ?? []).slice(0, this.o.topK)) {
      const id = this.texts.id(a.token, this.rendering);
      if (id === undefined || out.ids.includes(id)) continue;
      out.ids.push(id);
      out.values.push(a.logprob);
    }
    return out;
  }

  private params(prompt: number[] | string, maxTokens: number, extra: Partial<CompletionParams>): CompletionParams {
    return { model: this.model, prompt, maxTokens, extras: this.caps.extras, ...(this.caps.topLogprobs > 0 ? { logprobs: this.o.topK } : {}), ...extra };
  }

  /** The generated ids of an answer: the server's, its token texts mapped, or its text tokenized after the prompt's. */
  private generatedIds(answer: ServedCompletion, prompt: number[], where: string): number[] {
    const ids = servedIds(answer);
    if (ids) return ids;
    if (answer.steps && answer.steps.length > 0) return answer.steps.map((s, t) => this.idOf(s.token, `${where}, step ${t}`));
    const all = encode(this.tokenizer, decodeText(this.tokenizer, prompt) + answer.text);
    return all.length >= prompt.length && prompt.every((id, i) => all[i] === id) ? all.slice(prompt.length) : this.tokenizer.encode(answer.text, { add_special_tokens: false });
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    this.validate(request);
    const t0 = performance.now();
    const prompts = promptIds(this.tokenizer, request);
    const eos = this.ckpt.eosTokenIds;
    const generated: number[][] = [];
    const topKs: TopK[][] = [];
    let firstTokenMs = 0;
    for (const [b, ids] of prompts.entries()) {
      const where = `the prompt ${quote(request.prompts[b] ?? String(b))}`;
      // A server that takes only text gets the prompt's text; its token count is held to ours below.
      const prompt = this.caps.prompt === 'ids' ? ids : (request.promptTokens ? decodeText(this.tokenizer, ids) : request.prompts[b]!);
      const answer = await complete(this.endpoint, this.params(prompt, request.maxNewTokens, { seed: request.seed ?? 0, ...(request.minNewTokens ? { minTokens: request.minNewTokens } : {}) }), this.caps.dialect);
      if (b === 0) firstTokenMs = performance.now() - t0;
      const counted = answer.usage?.promptTokens;
      if (this.caps.prompt === 'text' && counted !== undefined && counted !== ids.length) {
        throw this.fail(`the server tokenized ${where} into ${counted} tokens, --model's tokenizer into ${ids.length}: its tokenizer differs`);
      }
      const newIds = this.generatedIds(answer, ids, where);
      const steps: ServedStep[] = answer.steps ?? [];
      const top = steps.map((s) => this.topOf(s.top));
      // The server stops at end of sequence without always listing the token: HF's sequences end with it.
      if (answer.finishReason === 'stop' && eos.length > 0 && !eos.includes(newIds[newIds.length - 1] ?? -1)) newIds.push(eos[0]!);
      generated.push(newIds);
      topKs.push(top);
    }
    const k = request.recordTopK ?? 0;
    const recorded = k > 0 && this.caps.topLogprobs > 0 ? topKs : undefined;
    return {
      sequences: finishSequences(this.tokenizer, request.prompts, prompts, generated, eos, recorded),
      promptLength: Math.max(...prompts.map((p) => p.length)),
      steps: Math.max(0, ...generated.map((g) => g.length)),
      // Non-streaming: the whole answer arrives at once, so no decode step is timed (bench streams).
      timings: { firstTokenMs, decodeStepMs: [], totalMs: performance.now() - t0 },
    };
  }

  /** Full logits rows are not what a server gives: compare reads scoreLogprobs instead. */
  async score(): Promise<Float32Array[][]> {
    throw new UnsupportedError(this.o.flag, 'a served model gives log-probabilities, not logits rows (scoreLogprobs)');
  }

  /**
   * Teacher-forced top-k log-probabilities, where the server echoes the prompt's (caps.promptLogprobs):
   * each row sent whole as the prompt with one new token; positions from[b] .. length - 1, position p
   * predicting token p + 1 (the last one the new token), as score's rows.
   */
  async scoreLogprobs(rows: number[][], from: number[]): Promise<TopK[][]> {
    if (!this.caps.promptLogprobs) throw new UnsupportedError(this.o.flag, "the server returns no log-probabilities of the prompt (echo): teacher-forced scoring needs them");
    const out: TopK[][] = [];
    for (const [b, row] of rows.entries()) {
      const answer = await complete(this.endpoint, this.params(row, 1, { echo: true, logprobs: this.o.topK }), this.caps.dialect);
      const echoed = answer.promptSteps;
      if (!echoed || echoed.length !== row.length) throw this.fail(`teacher-forced row ${b}: the answer holds ${echoed?.length ?? 'no'} prompt log-probabilities for ${row.length} tokens`);
      const positions: TopK[] = [];
      for (let p = from[b]!; p < row.length; p++) {
        const step = p + 1 < row.length ? echoed[p + 1]! : answer.steps?.[0];
        if (!step?.top?.length) throw this.fail(`teacher-forced row ${b}: no top log-probabilities at position ${p}`);
        positions.push(this.topOf(step.top));
      }
      out.push(positions);
    }
    return out;
  }

  async dispose(): Promise<void> {
    // Nothing held: every request is its own connection.
  }
}

/** --served_model, else the only model the server lists; several are refused naming them. */
async function servedModel(ep: Endpoint, named: string | undefined): Promise<string> {
  let listed: string[];
  try {
    listed = await listModels(ep);
  } catch (e) {
    // A server without /v1/models still serves a model named by --served_model.
    if (named !== undefined && e instanceof RemoteError && e.status === 404) return named;
    throw e;
  }
  if (named !== undefined) {
    if (!listed.includes(named)) throw new RemoteError(ep, undefined, `serves no model "${named}" (--served_model); GET /v1/models lists ${listed.map((m) => `"${m}"`).join(', ') || 'none'}`);
    return named;
  }
  if (listed.length === 1) return listed[0]!;
  if (listed.length === 0) throw new RemoteError(ep, undefined, 'GET /v1/models lists no model: name it with --served_model');
  throw new RemoteError(ep, undefined, `serves ${listed.length} models (${listed.map((m) => `"${m}"`).join(', ')}): name one with --served_model`);
}

/**
 * The server's tokenizer against the checkpoint's, on the probe: its tokens for the probe's ids
 * (echoed token texts must render those ids; the ids it generates must lie in the vocabulary and
 * their text must be the server's text), and its token count of the probe as text (usage). The
 * first disagreement refuses the run in one line. Returns how the server renders token texts.
 */
async function checkTokenizer(
  ep: Endpoint,
  model: string,
  caps: ServerCapabilities,
  answer: ServedCompletion,
  probe: { ids: number[]; text: string },
  t: { ckpt: Checkpoint; tokenizer: PreTrainedTokenizer; texts: TokenTexts },
): Promise<TokenRendering> {
  const differs = (what: string) => new RemoteError(ep, undefined, `the server's tokenizer disagrees with --model's (${t.ckpt.dir}): ${what}; token ids would not be comparable`);
  const vocab = t.ckpt.dims.vocabSize;
  let rendering: TokenRendering = 'in-context';
  if (caps.prompt === 'ids') {
    const echoed = answer.promptTokenIds ?? (answer.promptSteps?.every((s) => s.token.id !== undefined) ? answer.promptSteps.map((s) => s.token.id!) : undefined);
    if (echoed && echoed.join() !== probe.ids.join()) throw differs(`it read the probe's ${probe.ids.length} token ids as ${echoed.length} others`);
    const echoedTexts = answer.promptSteps?.filter((s) => s.token.id === undefined);
    if (echoedTexts?.length) {
      const echoedTokens = answer.promptSteps!.map((s) => s.token);
      if (!t.texts.consistent(echoedTokens, probe.ids)) throw differs(`its texts of the probe's tokens (${quote(echoedTexts.map((s) => s.token.text).join('|'))}) are not those ids'`);
      rendering = t.texts.renderingOf(echoedTokens, probe.ids);
    } else if (caps.tokens === 'text-tokens' && answer.steps) {
      rendering = t.texts.resolving(answer.steps.map((s) => s.token)) ?? rendering;
    }
    const ids = servedIds(answer) ?? (caps.tokens === 'text-tokens' ? answer.steps!.map((s) => t.texts.id(s.token, rendering)) : undefined);
    if (ids?.some((id) => id === undefined)) throw differs(`a generated token's text names no single id (${quote(answer.steps!.map((s) => s.token.text ?? '').join('|'))})`);
    const beyond = ids?.find((id) => id! >= vocab);
    if (beyond !== undefined) throw differs(`it generated the id ${beyond}, beyond the ${vocab} of --model's vocabulary`);
    if (ids && ids.length > 0 && answer.text !== '') {
      const whole = decodeText(t.tokenizer, [...probe.ids, ...(ids as number[])]);
      const head = decodeText(t.tokenizer, probe.ids);
      const mine = whole.startsWith(head) ? whole.slice(head.length) : decodeText(t.tokenizer, ids as number[]);
      if (plain(mine) !== plain(answer.text)) throw differs(`its text for the ids it generated is ${quote(answer.text)}, --model's tokenizer gives ${quote(mine)}`);
    }
  }
  // The probe as text: the server tokenizes it itself, and must count the checkpoint's tokens.
  let asText: ServedCompletion | undefined;
  try {
    asText = await complete(ep, { model, prompt: probe.text, maxTokens: 1, seed: 0 }, caps.dialect);
  } catch (e) {
    if (!(e instanceof RemoteError && (e.status === 400 || e.status === 422)) || caps.prompt === 'text') throw e;
  }
  const theirs = asText?.promptTokenIds;
  if (theirs && theirs.join() !== probe.ids.join()) throw differs(`it tokenizes the probe text into [${theirs.slice(0, 12).join(', ')}${theirs.length > 12 ? ', ...' : ''}], --model's tokenizer into [${probe.ids.slice(0, 12).join(', ')}${probe.ids.length > 12 ? ', ...' : ''}]`);
  const counted = asText?.usage?.promptTokens;
  if (counted !== undefined && counted !== probe.ids.length) throw differs(`it counts ${counted} tokens in the probe text ${quote(probe.text)}, --model's tokenizer ${probe.ids.length}`);
  if (asText && theirs === undefined && counted === undefined) caps.notes.push('it reports no prompt token count: the tokenizer was checked on token ids only');
  if (!asText && caps.prompt === 'ids') caps.notes.push('it takes no text prompt: the tokenizer was checked on token ids only');
  return rendering;
}
