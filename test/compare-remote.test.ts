/**
 * compare --reference_url / --candidate_url (issue 28 item 3): a side served over the OpenAI
 * completions API. The documented answers of vLLM, TGI and llama.cpp read into one shape
 * (test/data/remote/complete-*.json); then the CLI end to end against fake servers on loopback
 * (fixtures/completions-server.ts) that answer from real fusegen pipelines of the tiny fixtures:
 * an identical copy passes, a planted defect fails, a server without log-probabilities is
 * compared on its text and says so, a server whose tokenizer differs and flags that make no
 * sense with a URL are refused in one line with exit 2.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOGPROB_TOLERANCE, logprobAgreement, logprobPosition, logprobRow, type LogprobRow } from '../compare/tolerance.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { serveCompletions, type FakeServer, type FakeServerOptions } from '../fixtures/completions-server.js';
import { FIRST_QUERY, scaledFixture } from '../fixtures/defects.js';
import { COMPARE_PROMPTS } from '../fixtures/prompts.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { createPipeline } from '../src/pipeline/ds-pipeline.js';
import { loadDetokenizer } from '../src/pipeline/detokenize.js';
import { TokenTexts } from '../src/pipeline/remote.js';
import { encode, loadTokenizer } from '../src/pipeline/tokenizer.js';
import type { TextGenerationPipeline } from '../src/pipeline/types.js';
import { normalizeServerUrl, parseCompletion, parseModels, servedIds, type ServedCompletion } from '../src/remote/completions.js';
import type { CompareReport } from '../src/report/compare-report.js';
import { validateCompareReport } from '../src/report/compare-validate.js';
import { inProcessCli } from './helpers.js';

const DATA = join(import.meta.dirname, 'data', 'remote');
const LLAMA = tinyModelDir('llama');

function fixture(name: string): { source: string; endpoint: string; request?: Record<string, unknown>; response: unknown } {
  return JSON.parse(readFileSync(join(DATA, name), 'utf8')) as { source: string; endpoint: string; request?: Record<string, unknown>; response: unknown };
}

/** A fixture's answer read as the client reads it for the fixture's own request. */
function parsed(name: string): ServedCompletion {
  const f = fixture(name);
  const r = f.request ?? {};
  const prompt = r['prompt'];
  const k = (r['logprobs'] ?? r['n_probs']) as number | undefined;
  return parseCompletion(f.response, {
    where: `${f.endpoint} (${name})`,
    echo: r['echo'] === true,
    ...(Array.isArray(prompt) ? { promptLength: prompt.length, promptIds: prompt as number[] } : {}),
    ...(k ? { topK: k } : {}),
  });
}

const ids = (top: Array<{ token: { id?: number; text?: string } }> | null | undefined) => (top ?? []).map((a) => a.token.id ?? a.token.text);

describe('the documented completion answers of vLLM, TGI and llama.cpp, in one shape', () => {
  it('every contract fixture names the documentation page it was written from', () => {
    const files = readdirSync(DATA).filter((f) => f.startsWith('complete-'));
    expect(files.length).toBeGreaterThanOrEqual(9);
    for (const f of files) expect(fixture(f).source, f).toMatch(/^https:\/\/\S+/);
  });

  it('vLLM, echo with return_tokens_as_token_ids: ids for every token, the prompt apart, the chosen token beside the top-k left out of it', () => {
    const c = parsed('complete-vllm-echo-token-ids.json');
    expect(servedIds(c)).toEqual([17354, 1701]);
    expect(c.text).toBe(' brown fox'); // the echoed prompt's text cut at text_offset
    expect(c.finishReason).toBe('length');
    expect(c.usage).toEqual({ promptTokens: 3, completionTokens: 2 });
    expect(c.promptSteps!.map((s) => s.token.id)).toEqual([1, 450, 4996]);
    expect(c.promptSteps![0]!.logprob).toBeNull();
    expect(c.promptSteps![1]!.logprob).toBe(-9.5625);
    // 450 is listed as the prompt's token, ranked below the top-2: not one of them.
    expect(ids(c.promptSteps![1]!.top)).toEqual([13, 29902]);
    expect(c.steps![0]!.top).toEqual([{ token: { id: 17354 }, logprob: -0.6875 }, { token: { id: 322 }, logprob: -2.3125 }]);
  });

  it("vLLM, prompt_logprobs and return_token_ids: the prompt's top-k by id, the generated ids from token_ids while logprobs name tokens by text", () => {
    const c = parsed('complete-vllm-prompt-logprobs.json');
    expect(servedIds(c)).toEqual([17354, 1701]);
    expect(c.promptTokenIds).toEqual([1, 450, 4996]);
    expect(c.promptSteps).toHaveLength(3);
    expect(c.promptSteps![0]).toEqual({ token: { id: 1 }, logprob: null, top: null });
    expect(c.promptSteps![1]!.logprob).toBe(-9.5625);
    expect(ids(c.promptSteps![1]!.top)).toEqual([13, 29902]); // rank 7 is not of the top-2
    expect(c.promptSteps![2]!.top).toEqual([{ token: { id: 937 }, logprob: -1.3125 }, { token: { id: 4996 }, logprob: -1.4375 }]);
    expect(c.steps!.map((s) => s.token)).toEqual([{ text: ' brown' }, { text: ' fox' }]);
    expect(ids(c.steps![1]!.top)).toEqual([' fox', ' dog']);
  });

  it('TGI: text only, no log-probabilities, its token count in usage', () => {
    const c = parsed('complete-tgi.json');
    expect(c.text).toBe(' brown fox jumps over the lazy dog');
    expect(c.steps).toBeUndefined();
    expect(servedIds(c)).toBeUndefined();
    expect(c.usage?.promptTokens).toBe(3);
    expect(c.model).toBe('meta-llama/Llama-2-7b-hf');
  });

  it("llama.cpp: the native route's ids and top logprobs; the OpenAI route's legacy form by text and its earlier form by id", () => {
    const native = parsed('complete-llamacpp-native.json');
    expect(servedIds(native)).toEqual([17354, 1701]);
    expect(native.finishReason).toBe('length'); // stop_type limit
    expect(native.steps![1]!.top).toEqual([{ token: { id: 1701, text: ' fox' }, logprob: -0.1875 }, { token: { id: 11203, text: ' dog' }, logprob: -3.0625 }]);
    expect(native.usage?.promptTokens).toBe(3);

    const legacy = parsed('complete-llamacpp-v1-legacy.json');
    expect(servedIds(legacy)).toBeUndefined(); // token texts, which the pipeline maps through the tokenizer
    expect(legacy.steps!.map((s) => [s.token.text, s.logprob])).toEqual([[' brown', -0.6875], [' fox', -0.1875]]);
    expect(ids(legacy.steps![0]!.top)).toEqual([' brown', ' and']);

    const content = parsed('complete-llamacpp-v1-content.json');
    expect(servedIds(content)).toEqual([17354, 1701, 2]);
    expect(content.finishReason).toBe('stop');
    expect(ids(content.steps![2]!.top)).toEqual([2, 29889]);
  });

  it("/v1/models: OpenAI's list (vLLM, llama.cpp) and TGI's single model object", () => {
    expect(parseModels(fixture('complete-vllm-models.json').response, 'GET /v1/models')).toEqual(['meta-llama/Llama-2-7b-hf']);
    expect(parseModels(fixture('complete-llamacpp-models.json').response, 'GET /v1/models')).toEqual(['../models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf']);
    expect(parseModels(fixture('complete-tgi-models.json').response, 'GET /v1/models')).toEqual(['meta-llama/Llama-2-7b-hf']);
  });

  it('a malformed answer is one line naming where and what', () => {
    const base = fixture('complete-vllm-echo-token-ids.json').response as { choices: Array<Record<string, unknown>> };
    const broken = (edit: (c: Record<string, unknown>) => void) => {
      const r = structuredClone(base);
      edit(r.choices[0]!);
      return () => parseCompletion(r, { where: 'POST /v1/completions', echo: true, promptLength: 3 });
    };
    expect(broken((c) => ((c['logprobs'] as Record<string, unknown[]>)['token_logprobs'] = [null, -1])), 'a short list').toThrow(/^POST \/v1\/completions: choices\[0\]\.logprobs\.token_logprobs is not a list as long as tokens \(5\)$/);
    expect(broken((c) => ((c['logprobs'] as Record<string, unknown[]>)['token_logprobs']![2] = 'high')), 'a string').toThrow(/token_logprobs\[2\] is "high", not a log-probability/);
    expect(broken((c) => ((c['logprobs'] as Record<string, unknown[]>)['token_logprobs']![2] = 0.5)), 'a probability').toThrow(/token_logprobs\[2\] is 0\.5, not a log-probability/);
    expect(broken((c) => delete c['text']), 'no text').toThrow(/choices\[0\]\.text is not a string/);
    expect(() => parseCompletion({ error: { message: 'boom' } }, { where: 'POST /v1/completions' })).toThrow(/neither "choices" nor "content" in the answer \(error: \{"message":"boom"\}\)/);
    expect(() => parseModels({ data: [{ object: 'model' }] }, 'GET /v1/models')).toThrow(/data\[0\] has no "id"/);
  });

  it('server URLs: http(s) only, no credentials, a trailing /v1 dropped', () => {
    expect(normalizeServerUrl('http://127.0.0.1:8000/v1/', '--candidate_url')).toBe('http://127.0.0.1:8000');
    expect(() => normalizeServerUrl('ftp://host', '--candidate_url')).toThrow(/^--candidate_url: "ftp:\/\/host": expected an http/);
    expect(() => normalizeServerUrl('http://user:pw@host', '--candidate_url')).toThrow(/holds credentials: give the key with --api_key/);
  });
});

describe('log-probability agreement (compare/tolerance.ts)', () => {
  const row = (ids: number[], values: number[]): LogprobRow => ({ top: { ids, values } });
  it('an id one side lists and the other does not counts by how far it lies above the other side\'s k-th, never more', () => {
    const ref = row([1, 2, 3], [-0.5, -1.5, -3]);
    // The candidate lifts id 9 (absent from the reference's top-3) to -1: at least 2 above the reference's k-th (-3).
    const cand = row([1, 9, 2], [-0.6, -1, -1.6]);
    const f = logprobPosition(ref, cand, 3);
    expect(f.unionMaxAbs).toBeCloseTo(2, 12);
    expect(f.top1).toBe(true);
    expect(f.kl).toBeGreaterThan(0.01);
    // A near-tie at the edge (id 3 against id 4 at the k-th) is no difference at all.
    const edge = logprobPosition(row([1, 2, 3], [-0.5, -1.5, -3]), row([1, 2, 4], [-0.5, -1.5, -3]), 3);
    expect(edge.unionMaxAbs).toBe(0);
    expect(edge.kl).toBeLessThan(1e-12);
  });

  it('an in-process side gives every id exactly, from its logits row', () => {
    const logits = Float32Array.from([2, 1, 0, -1, 5]);
    const full = logprobRow(logits, 2);
    const z = Math.log([2, 1, 0, -1, 5].reduce((s, x) => s + Math.exp(x), 0));
    expect(full.top.ids).toEqual([4, 0]);
    expect(full.top.values[0]).toBeCloseTo(5 - z, 6);
    // The served side lists the same top-2 at their true values: exact on both sides, no difference.
    const served = row([4, 0], [5 - z, 2 - z]);
    // One that lists id 1 second claims id 0 (logit 2) below it: off by at least 2 - 1.
    expect(logprobPosition(full, row([4, 1], [5 - z, 1 - z]), 2).unionMaxAbs).toBeCloseTo(1, 6);
    expect(logprobPosition(full, served, 2).unionMaxAbs).toBeLessThan(1e-6);
    const a = logprobAgreement([full, full], [served, row([0, 4], [-0.1, -3])], LOGPROB_TOLERANCE.float32!);
    expect(a.positions).toBe(2);
    expect(a.top1Agreement).toBe(0.5);
    expect(a.maxAbsPosition).toBe(1);
    expect(a.withinTolerance).toBe(false);
    expect(a.outOfTolerance).toBe(1);
  });

  it('NaN is never within tolerance', () => {
    const a = logprobAgreement([logprobRow(Float32Array.from([NaN, 1, 2]), 2)], [row([2, 1], [-0.3, -1.3])], LOGPROB_TOLERANCE.float32!);
    expect(a.nonFinite).toEqual({ reference: 1, candidate: 0 });
    expect(a.withinTolerance).toBe(false);
  });
});

describe('token texts to ids (servers that name tokens by text)', () => {
  it("a token's text in context maps back to its id; raw vocabulary strings under their own rendering; a text ids share maps to none; other words are inconsistent", async () => {
    const ckpt = openCheckpoint(LLAMA);
    const tokenizer = await loadTokenizer(ckpt);
    const texts = new TokenTexts(tokenizer, ckpt.dir, ckpt.dims.vocabSize);
    const words = encode(tokenizer, 'The quick brown fox').slice(1);
    const inContext = words.map((id) => tokenizer.decode([tokenizer.encode('a', { add_special_tokens: false }).at(-1)!, id], { skip_special_tokens: false }).slice(1));
    expect(inContext.some((t) => t.startsWith(' '))).toBe(true); // the leading space a lone decode strips
    expect(inContext.map((text) => texts.id({ text }, 'in-context'))).toEqual(words);
    expect(texts.renderingOf(inContext.map((text) => ({ text })), words)).toBe('in-context');
    const raw = words.map((id) => loadDetokenizer(ckpt.dir).token(id)!);
    expect(raw.some((t) => t.includes('▁'))).toBe(true);
    expect(texts.renderingOf(raw.map((text) => ({ text })), words)).toBe('vocabulary');
    expect(raw.map((text) => texts.id({ text }, 'vocabulary'))).toEqual(words);
    // Every partial UTF-8 byte renders as U+FFFD: a text many ids share names none of them.
    expect(Array.from({ length: ckpt.dims.vocabSize }, (_, id) => tokenizer.decode([id], { skip_special_tokens: false })).filter((t) => t === '\uFFFD').length).toBeGreaterThan(1);
    expect(texts.id({ text: '\uFFFD' }, 'in-context')).toBeUndefined();
    // Texts of these ids, with or without the leading space, are consistent; other words are not.
    expect(texts.consistent([...inContext.map((text) => ({ text: text.trimStart() }))], words)).toBe(true);
    expect(texts.consistent([{ text: ' nothing-like-it' }], [words[0]!])).toBe(false);
  });
});

describe('compare against a served model, through the CLI', () => {
  const pipes: TextGenerationPipeline[] = [];
  const servers: FakeServer[] = [];
  /** Temporary directories (the defect's copy, report directories), removed at the end. */
  const scratch: string[] = [];
  let identical: FakeServer;
  let defect: FakeServer;
  let textOnly: FakeServer;
  let noEcho: FakeServer;
  let otherTokenizer: FakeServer;
  let otherTokenizerText: FakeServer;
  let twoModels: FakeServer;
  let keyed: FakeServer;
  let llamaCpp: FakeServer;

  /** A server answering from fusegen's ORT-injected pipeline on `dir` (float32, the CPU). */
  async function serving(dir: string, ...options: FakeServerOptions[]): Promise<FakeServer[]> {
    const ckpt = openCheckpoint(dir);
    const pipe = await createPipeline(ckpt, { kind: 'ort' }, { device: 'cpu', dtype: 'float32', maxTokens: 64 });
    pipes.push(pipe);
    const tokenizer = await loadTokenizer(ckpt);
    const out: FakeServer[] = [];
    for (const o of options) out.push(await serveCompletions({ pipe, tokenizer, vocabSize: ckpt.dims.vocabSize }, o));
    servers.push(...out);
    return out;
  }

  beforeAll(async () => {
    const tgi: FakeServerOptions = { idPrompts: false, logprobs: false, echo: false, extras: 'ignore' };
    // As llama.cpp's server: the OpenAI route names tokens by text and echoes nothing, the native route gives ids.
    const llama: FakeServerOptions = { extras: 'refuse', echo: false, native: true };
    [identical, textOnly, noEcho, twoModels, keyed, llamaCpp] = (await serving(LLAMA, {}, tgi, { echo: false }, { models: ['a', 'b'] }, { apiKey: 'sesame' }, llama)) as [FakeServer, FakeServer, FakeServer, FakeServer, FakeServer, FakeServer];
    // A served copy whose first query weight is scaled by 1.05: the tokens may stay, the log-probabilities move.
    const copy = scaledFixture('llama', FIRST_QUERY, 1.05, 'served').dir;
    scratch.push(copy);
    [defect] = (await serving(copy, {})) as [FakeServer];
    [otherTokenizer, otherTokenizerText] = (await serving(tinyModelDir('gpt2'), {}, tgi)) as [FakeServer, FakeServer];
  });

  afterAll(async () => {
    for (const s of servers) await s.close();
    for (const p of pipes) await p.dispose();
    for (const d of scratch) rmSync(d, { recursive: true, force: true });
  });

  const SHORT = ['--num_inputs', '2', '--min_length', '20', '--max_length', '30'];

  async function compare(args: string[]): Promise<{ code: number; out: string[]; err: string[]; report?: CompareReport; dir: string }> {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-remote-'));
    scratch.push(dir);
    const r = await inProcessCli(['compare', '--model', LLAMA, ...SHORT, '--report_dir', dir, ...args]);
    const file = readdirSync(dir).find((f) => f.endsWith('.json'));
    const report = file ? (JSON.parse(readFileSync(join(dir, file), 'utf8')) as CompareReport) : undefined;
    return { ...r, dir, ...(report ? { report } : {}) };
  }

  function refused(r: { code: number; out: string[]; err: string[]; dir: string }, what: RegExp): void {
    expect(r.code, r.err.join('\n')).toBe(2);
    expect(r.err).toHaveLength(1);
    expect(r.err[0]).toMatch(what);
    expect(r.out).toEqual([]);
    expect(readdirSync(r.dir)).toEqual([]); // no partial report
  }

  it('an identical copy served with log-probabilities passes, teacher-forced, and the report says which side was served', async () => {
    const r = await compare(['--candidate_url', `${identical.url}/v1`]);
    expect(r.code, [...r.out, ...r.err].join('\n')).toBe(0);
    const report = r.report!;
    validateCompareReport(report);
    expect(report.settings.compared).toBe('logprobs');
    expect(report.settings.remote).toEqual({ candidate: { url: identical.url, model: 'fusegen-test', api: 'openai', prompt: 'ids', topLogprobs: 5, promptLogprobs: true, tokens: 'ids', notes: [] } });
    expect(report.tolerance.logprobs).toEqual(LOGPROB_TOLERANCE.float32);
    expect(report.speed).toBeNull();
    expect(report.summary).toEqual({ matches: 2, tolerated: 0, mismatches: 0, errored: 0 });
    for (const p of report.prompts) {
      expect(p.candidate.ids).toEqual(p.reference.ids);
      expect(p.logits).toBeNull();
      expect(p.logprobs!.from).toBe('teacher-forced');
      expect(p.logprobs!.prefill!.positions + p.logprobs!.decode.positions).toBe(p.reference.ids.length + encode(await loadTokenizer(openCheckpoint(LLAMA)), p.prompt).length - 1);
      expect(p.logprobs!.decode.maxAbs).toBeLessThan(LOGPROB_TOLERANCE.float32!.maxAbs);
      expect(p.logprobs!.decode.top1Agreement).toBe(1);
    }
    expect(r.out).toContain("compared: top-5 log-probabilities, teacher-forced on the reference's tokens");
    expect(r.out.some((l) => l.startsWith(`candidate: ${identical.url} (served model "fusegen-test"`))).toBe(true);
    // Both sides saw the same tokens: the generation requests carried the tokenizer's ids, greedy, min_length as min_tokens.
    const tokenizer = await loadTokenizer(openCheckpoint(LLAMA));
    const generations = identical.requests.filter((b) => b['echo'] !== true && Number(b['max_tokens']) > 4);
    expect(generations.map((b) => b['prompt'])).toEqual(COMPARE_PROMPTS.slice(0, 2).map((p) => encode(tokenizer, p)));
    for (const b of generations) {
      expect(b['temperature']).toBe(0);
      expect(b['min_tokens']).toBe(20 - (b['prompt'] as number[]).length);
    }
  });

  it('a served copy with a planted defect (first query x1.05) fails the gate on its log-probabilities', async () => {
    const r = await compare(['--candidate_url', defect.url]);
    expect(r.code, [...r.out, ...r.err].join('\n')).toBe(1);
    const report = r.report!;
    validateCompareReport(report);
    expect(report.summary.mismatches).toBe(2);
    for (const p of report.prompts) {
      expect(p.verdict).toBe('mismatch');
      expect(Math.max(p.logprobs!.prefill!.maxAbs, p.logprobs!.decode.maxAbs)).toBeGreaterThan(10 * LOGPROB_TOLERANCE.float32!.maxAbs);
      expect(p.reason).toMatch(/teacher-forced log-probabilities: .* positions out of tolerance \(\|Δ\| above 0\.0005/);
    }
    expect(report.gate.reasons.join()).toMatch(/2 prompt\(s\) mismatch beyond the float32 tolerance/);
    expect(r.out.some((l) => l.startsWith('gate: FAIL'))).toBe(true);
  });

  it('a server that echoes no prompt is compared on the log-probabilities of its generated steps', async () => {
    const r = await compare(['--candidate_url', noEcho.url]);
    expect(r.code, [...r.out, ...r.err].join('\n')).toBe(0);
    expect(r.report!.settings.remote!.candidate!.promptLogprobs).toBe(false);
    for (const p of r.report!.prompts) {
      expect(p.logprobs!.from).toBe('generation');
      expect(p.logprobs!.prefill).toBeNull();
      expect(p.logprobs!.decode.positions).toBe(p.reference.ids.length);
    }
    expect(r.out).toContain('compared: top-5 log-probabilities, of the generated steps up to the first divergence');
  });

  it("a server whose OpenAI route gives only token texts is read through llama.cpp's native route, which gives ids", async () => {
    const r = await compare(['--candidate_url', llamaCpp.url]);
    expect(r.code, [...r.out, ...r.err].join('\n')).toBe(0);
    expect(r.report!.settings.remote!.candidate).toMatchObject({ api: 'llama.cpp', tokens: 'ids', topLogprobs: 5, promptLogprobs: false });
    for (const p of r.report!.prompts) expect(p.logprobs!.from).toBe('generation');
    const native = llamaCpp.requests.filter((b) => 'n_predict' in b && Number(b['n_predict']) > 4);
    expect(native).toHaveLength(2);
    for (const b of native) expect(b).toMatchObject({ n_probs: 5, return_tokens: true, temperature: 0 });
  });

  it('a server without log-probabilities or token ids (TGI) is compared on its texts, and the report says so', async () => {
    const r = await compare(['--candidate_url', textOnly.url]);
    expect(r.code, [...r.out, ...r.err].join('\n')).toBe(0);
    const report = r.report!;
    validateCompareReport(report);
    expect(report.settings.compared).toBe('tokens');
    expect(report.settings.remote!.candidate).toMatchObject({ prompt: 'text', topLogprobs: 0, promptLogprobs: false, tokens: 'text' });
    expect(report.settings.remote!.candidate!.notes.join(' | ')).toMatch(/no log-probabilities: tokens only.*only text: generated texts are compared/);
    for (const p of report.prompts) {
      expect(p.verdict).toBe('match');
      expect(p.reason).toMatch(/^texts only \(.* returns no log-probabilities and no token ids\): identical$/);
      expect(p.logprobs).toBeUndefined();
    }
    expect(r.out).toContain('compared: tokens only');
    expect(r.out.some((l) => /^summary: 2 match, .*\(float32, cpu, tokens only\)$/.test(l))).toBe(true);
    // Its prompts went as text (it refuses ids), each held to the tokenizer's count by usage.
    expect(textOnly.requests.filter((b) => Number(b['max_tokens']) > 4).every((b) => typeof b['prompt'] === 'string')).toBe(true);
  });

  it('either side may be served: a served reference against the in-process candidate, or two servers', async () => {
    const r = await compare(['--reference_url', identical.url]);
    expect(r.code, [...r.out, ...r.err].join('\n')).toBe(0);
    expect(r.report!.settings.remote).toEqual({ reference: expect.objectContaining({ url: identical.url }) });
    expect(r.report!.settings.reference).toBeUndefined();
    expect(r.out).toContain(`reference: ${identical.url} (served model "fusegen-test", /v1/completions)`);
    // Both served: two deployments against each other; one echoes no prompt, so both are read on their generated steps.
    const both = await compare(['--reference_url', identical.url, '--candidate_url', noEcho.url]);
    expect(both.code, [...both.out, ...both.err].join('\n')).toBe(0);
    expect(Object.keys(both.report!.settings.remote!)).toEqual(['reference', 'candidate']);
    for (const p of both.report!.prompts) expect(p.logprobs!.from).toBe('generation');
  });

  it("a server whose tokenizer differs from --model's is refused in one line, by its tokens' text or its token count", async () => {
    refused(await compare(['--candidate_url', otherTokenizer.url]), new RegExp(`^error: --candidate_url ${otherTokenizer.url}: the server's tokenizer disagrees with --model's .*: its text for the ids it generated is .*; token ids would not be comparable$`));
    refused(await compare(['--candidate_url', otherTokenizerText.url]), /: the server's tokenizer disagrees with --model's .*: it counts \d+ tokens in the probe text .*, --model's tokenizer \d+; token ids would not be comparable$/);
  });

  it('the served model: the only one listed, else --served_model, which must be listed', async () => {
    refused(await compare(['--candidate_url', twoModels.url]), /^error: --candidate_url http:\/\/127\.0\.0\.1:\d+: serves 2 models \("a", "b"\): name one with --served_model$/);
    refused(await compare(['--candidate_url', twoModels.url, '--served_model', 'c']), /serves no model "c" \(--served_model\); GET \/v1\/models lists "a", "b"$/);
    const r = await compare(['--candidate_url', twoModels.url, '--served_model', 'b']);
    expect(r.code, [...r.out, ...r.err].join('\n')).toBe(0);
    expect(r.report!.settings.remote!.candidate!.model).toBe('b');
  });

  it('--api_key is sent as a bearer token and never written to the report', async () => {
    refused(await compare(['--candidate_url', keyed.url]), /GET \/v1\/models answered HTTP 401: invalid api key \(does it need --api_key\?\)$/);
    refused(await compare(['--candidate_url', keyed.url, '--api_key', 'wrong']), /answered HTTP 401: invalid api key \(is --api_key right\?\)$/);
    const r = await compare(['--candidate_url', keyed.url, '--api_key', 'sesame']);
    expect(r.code, [...r.out, ...r.err].join('\n')).toBe(0);
    expect(JSON.stringify(r.report)).not.toContain('sesame');
    expect(r.report!.command).toContain('***');
  });

  it('an unreachable server and a malformed answer are refused in one line naming the URL', async () => {
    const gone = Fastify();
    const url = await gone.listen({ host: '127.0.0.1', port: 0 });
    await gone.close();
    refused(await compare(['--candidate_url', url]), new RegExp(`^error: --candidate_url ${url}: GET /v1/models: cannot reach the server \\(.*ECONNREFUSED`));
    const garbled = Fastify();
    garbled.get('/v1/models', async () => ({ data: [{ id: 'm' }] }));
    garbled.post('/v1/completions', async () => ({ choices: [{ text: 'x', logprobs: { tokens: ['a'], token_logprobs: [-1, -2] } }] }));
    const g = await garbled.listen({ host: '127.0.0.1', port: 0 });
    try {
      refused(await compare(['--candidate_url', g]), new RegExp(`^error: --candidate_url ${g}: malformed answer: POST /v1/completions: choices\\[0\\]\\.logprobs\\.token_logprobs is not a list as long as tokens \\(1\\)$`));
    } finally {
      await garbled.close();
    }
  });

  it('flags that make no sense with a URL are refused in one line before anything is asked', async () => {
    const before = identical.requests.length;
    const cases: Array<[string[], RegExp]> = [
      [['--candidate_url', identical.url, '--use_kernel'], /^error: --use_kernel: builds fusegen's candidate pipeline; with --candidate_url the candidate is the served model$/],
      [['--candidate_url', identical.url, '--candidate_model', LLAMA], /^error: --candidate_model: builds fusegen's candidate pipeline/],
      [['--candidate_url', identical.url, '--save_mp_checkpoint_path', join(tmpdir(), 'x')], /^error: --save_mp_checkpoint_path: builds/],
      [['--reference_url', identical.url, '--reference', 'hf'], /^error: --reference: picks the library of the in-process reference; with --reference_url the reference is the served model$/],
      [['--candidate_url', identical.url, '--baseline', 'x.json'], /^error: --baseline: compares decode speed, which is not measured with --candidate_url/],
      [['--candidate_url', identical.url, '--dtype', 'int8'], /^error: --dtype: int8: no log-probability bounds are measured for a served int8 model \(measured: float32, float16\)/],
      [['--candidate_url', 'ftp://127.0.0.1'], /^error: --candidate_url: "ftp:\/\/127\.0\.0\.1": expected an http:\/\/ or https:\/\/ URL$/],
      [['--served_model', 'm'], /^error: --served_model: names the model a server serves: add --reference_url or --candidate_url$/],
      [['--api_key', 'k'], /^error: --api_key: is sent to a server: add --reference_url or --candidate_url$/],
    ];
    for (const [args, what] of cases) refused(await compare(args), what);
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-remote-'));
    scratch.push(dir);
    const noModel = await inProcessCli(['compare', '--candidate_url', identical.url, ...SHORT, '--report_dir', dir]);
    refused({ ...noModel, dir }, /^error: --model: is required with --candidate_url: the tokenizer and the config come from the checkpoint directory$/);
    expect(identical.requests.length).toBe(before);
  });
});
