/**
 * Token ids to text as Hugging Face tokenizers (Rust) decodes them, `decode(ids,
 * skip_special_tokens=True)`: the goldens' texts of the four fixture architectures, then
 * decoder cases written down from tokenizers' source (decoders/*.rs, byte_level.rs,
 * metaspace.rs, tokenizer/mod.rs) where transformers.js gives other text for the same ids.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURE_ARCHS, tinyModelDir } from '../fixtures/checkpoints.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { UnsupportedError } from '../src/errors.js';
import { finishSequences } from '../src/pipeline/common.js';
import { loadTokenizer } from '../src/pipeline/tokenizer.js';
import { loadGolden } from './helpers.js';

const FFFD = '\uFFFD';
const root = mkdtempSync(join(tmpdir(), 'fusegen-decode-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const tokenizers = new Map<string, Promise<PreTrainedTokenizer>>();
function fixtureTokenizer(arch: string): Promise<PreTrainedTokenizer> {
  let t = tokenizers.get(arch);
  if (!t) tokenizers.set(arch, (t = loadTokenizer({ dir: tinyModelDir(arch as never) })));
  return t;
}

function vocabOf(dir: string): Record<string, number> {
  return (JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } }).model.vocab;
}

let dirs = 0;
/** A checkpoint directory holding only the two tokenizer files. */
function tokenizerDir(tokenizerJson: object, config: object = {}): string {
  const dir = join(root, `tok-${dirs++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ clean_up_tokenization_spaces: false, ...config }));
  return dir;
}

const special = (id: number, content: string, extra: object = {}) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true, ...extra });

function tokenizerJson(vocab: Record<string, number>, decoder: unknown, extra: object = {}): object {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
    ...extra,
  };
}

describe('the Hugging Face goldens decode to their text', () => {
  it('every prompt alone, all four architectures: finishSequences and decode give the golden text', async () => {
    for (const arch of FIXTURE_ARCHS) {
      const tok = await fixtureTokenizer(arch);
      const eos = openCheckpoint(tinyModelDir(arch)).eosTokenIds;
      for (const g of loadGolden(arch).single) {
        const [seq] = finishSequences(tok, [g.prompt], [g.input_ids], [g.new_ids], eos);
        expect(seq!.text, `${arch}: ${g.prompt}`).toBe(g.text);
        expect(tok.decode([...g.input_ids, ...g.new_ids], { skip_special_tokens: true }), `${arch}: ${g.prompt}`).toBe(g.text);
      }
    }
  });

  it('every row of the left-padded batch, all four architectures, with and without its padding', async () => {
    for (const arch of FIXTURE_ARCHS) {
      const tok = await fixtureTokenizer(arch);
      const eos = openCheckpoint(tinyModelDir(arch)).eosTokenIds;
      const { batch } = loadGolden(arch);
      // The pipelines hand finishSequences each row's prompt without its padding.
      const prompts = batch.input_ids.map((row, b) => row.filter((_, i) => batch.attention_mask[b]![i] === 1));
      const seqs = finishSequences(tok, batch.prompts, prompts, batch.rows.map((r) => r.new_ids), eos);
      seqs.forEach((seq, b) => {
        expect(seq.text, `${arch}: ${seq.prompt}`).toBe(batch.rows[b]!.text);
        expect(tok.decode([...batch.input_ids[b]!, ...batch.rows[b]!.new_ids], { skip_special_tokens: true }), `${arch}: ${seq.prompt}`).toBe(batch.rows[b]!.text);
      });
    }
  });
});

describe('ByteFallback (the llama fixture: Replace, ByteFallback, Fuse, Strip)', () => {
  const vocab = vocabOf(tinyModelDir('llama'));
  const byte = (...bs: number[]) => bs.map((b) => vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`]!);
  const piece = (p: string) => vocab[p]!;
  const decode = async (ids: number[], skip = true) => (await fixtureTokenizer('llama')).decode(ids, { skip_special_tokens: skip });

  it('a valid run is its string; an invalid one is one U+FFFD per byte, valid bytes in it included', async () => {
    expect(await decode(byte(0xe6, 0x97, 0xa5))).toBe('日');
    expect(await decode(byte(0x41, 0x42))).toBe('AB');
    expect(await decode([1, piece('▁He'), piece('ology'), ...byte(0x3a, 0xe2)])).toBe(`Heology${FFFD}${FFFD}`);
    expect(await decode(byte(0x97))).toBe(FFFD);
    expect(await decode(byte(0xc0, 0xaf))).toBe(FFFD.repeat(2));
    expect(await decode(byte(0xed, 0xa0, 0x80))).toBe(FFFD.repeat(3));
  });

  it('a run cut mid-character counts every byte it has', async () => {
    expect(await decode(byte(0xe6, 0x97))).toBe(FFFD.repeat(2));
    expect(await decode(byte(0xf0, 0x9f, 0x98))).toBe(FFFD.repeat(3));
    expect(await decode(byte(0xf0, 0x9f, 0x98, 0x80))).toBe('😀');
    expect(await decode([piece('▁the'), ...byte(0xe6, 0x97)])).toBe(`the${FFFD}${FFFD}`);
  });

  it('normal pieces end a run: each run is judged alone; special tokens go before the runs are formed', async () => {
    expect(await decode([piece('▁the'), ...byte(0x41, 0xe6), piece('▁b'), ...byte(0xe6, 0x97, 0xa5)])).toBe(`the${FFFD}${FFFD} b日`);
    expect(await decode([...byte(0xe6), piece('▁b'), ...byte(0x97, 0xa5)])).toBe(`${FFFD} b${FFFD}${FFFD}`);
    // Skipped special tokens leave one run: E6 97 A5.
    expect(await decode([...byte(0xe6), 2, ...byte(0x97, 0xa5)])).toBe('日');
    expect(await decode([...byte(0xe6), 2, ...byte(0x97, 0xa5)], false)).toBe(`${FFFD}</s>${FFFD}${FFFD}`);
    // A byte-order mark is text like any other character.
    expect(await decode([...byte(0xef, 0xbb, 0xbf), piece('a')])).toBe('\uFEFFa');
  });
});

describe('ByteLevel', () => {
  // Byte b has id b (spelled as GPT-2 spells it), then a merged piece, a piece outside the byte
  // alphabet, and two added tokens: a special one and a plain one spelled in the alphabet.
  const chars: string[] = [];
  for (let b = 0, n = 0; b < 256; b++) {
    const direct = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    chars.push(String.fromCodePoint(direct ? b : 256 + n++));
  }
  const vocab: Record<string, number> = Object.fromEntries(chars.map((c, b) => [c, b]));
  Object.assign(vocab, { 'Ġthe': 256, '日本': 257, 'Ġ,': 258 });
  const json = tokenizerJson(vocab, { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true }, {
    added_tokens: [special(259, '<|endoftext|>'), special(260, 'Ġhello', { special: false })],
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  });
  const load = (config: object = {}) => loadTokenizer({ dir: tokenizerDir(json, config) });

  it('joins every token\'s bytes and decodes them lossily: one U+FFFD per invalid subpart; a piece outside the alphabet is its UTF-8', async () => {
    const tok = await load();
    const d = (ids: number[], skip = true) => tok.decode(ids, { skip_special_tokens: skip });
    expect(d([0xe6, 0x97, 256])).toBe(`${FFFD} the`);
    expect(d([0xc0, 0xaf])).toBe(FFFD.repeat(2));
    expect(d([0xed, 0xa0, 0x80])).toBe(FFFD.repeat(3));
    expect(d([0xf4, 0x90, 0x80, 0x80])).toBe(FFFD.repeat(4));
    expect(d([0xf0, 0x9f, 0x98, 0x41])).toBe(`${FFFD}A`);
    expect(d([0xff, 0xef, 0xbb, 0xbf, 0x61])).toBe(`${FFFD}\uFEFFa`);
    // 日本 has no byte spelling, so its UTF-8 (E6 97 A5 E6 9C AC) joins the stream.
    expect(d([0xe6, 257, 0xa5])).toBe(`${FFFD}日本${FFFD}`);
    expect(d([257])).toBe('日本');
    // Added tokens go through the decoder too: Ġ is a space. Special ones go when skipped.
    expect(d([0xe6, 260, 0x97])).toBe(`${FFFD} hello${FFFD}`);
    expect(d([0xe6, 259, 0x97, 0xa5])).toBe('日');
    expect(d([0xe6, 259, 0x97, 0xa5], false)).toBe(`${FFFD}<|endoftext|>${FFFD}${FFFD}`);
    // Ids the tokenizer has no token for are dropped; no ids, no text.
    expect(d([0x41, 9999, 0x42], false)).toBe('AB');
    expect(d([])).toBe('');
  });

  it('clean-up: off unless tokenizer_config.json asks, and never for BPE models (transformers 5.7+) unless forced', async () => {
    expect((await load()).decode([256, 258], { skip_special_tokens: true })).toBe(' the ,');
    expect((await load({ clean_up_tokenization_spaces: true })).decode([256, 258], { skip_special_tokens: true })).toBe(' the ,');
    const forced = await load({ clean_up_tokenization_spaces: true, clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: true });
    expect(forced.decode([256, 258], { skip_special_tokens: true })).toBe(' the,');
  });
});

describe('other decoders of the chain', () => {
  const vocab = { '▁▁a': 0, '▁b': 1, 'c▁d': 2, '😀😀x😀': 3, '<0x41>': 4, '<0xE6>': 5 };

  it('Metaspace drops every replacement character of the first token (unless never prepended) and spaces the rest', async () => {
    const decoder = (scheme: string) => ({ type: 'Metaspace', replacement: '▁', prepend_scheme: scheme, split: true });
    const always = await loadTokenizer({ dir: tokenizerDir(tokenizerJson(vocab, decoder('always'))) });
    expect(always.decode([0, 1, 2])).toBe('a bc d');
    expect(always.decode([1, 0])).toBe('b  a');
    const never = await loadTokenizer({ dir: tokenizerDir(tokenizerJson(vocab, decoder('never'))) });
    expect(never.decode([0, 1, 2])).toBe('  a bc d');
  });

  it('Replace takes its content literally, Strip counts characters, ByteFallback and Fuse run in the order given', async () => {
    const replace = await loadTokenizer({ dir: tokenizerDir(tokenizerJson(vocab, { type: 'Replace', pattern: { String: '▁' }, content: '$&' })) });
    expect(replace.decode([0, 1])).toBe('$&$&a$&b');
    const strip = await loadTokenizer({ dir: tokenizerDir(tokenizerJson(vocab, { type: 'Strip', content: '😀', start: 1, stop: 2 })) });
    expect(strip.decode([3])).toBe('😀x');
    // Strip before Fuse works per token, after it on the whole text.
    const chain = (decoders: object[]) => loadTokenizer({ dir: tokenizerDir(tokenizerJson(vocab, { type: 'Sequence', decoders })) });
    const perToken = await chain([{ type: 'ByteFallback' }, { type: 'Strip', content: '▁', start: 1, stop: 0 }, { type: 'Fuse' }]);
    expect(perToken.decode([4, 5, 1, 0])).toBe(`${FFFD}${FFFD}b▁a`);
    const whole = await chain([{ type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: '▁', start: 1, stop: 0 }]);
    expect(whole.decode([1, 0])).toBe('b▁▁a');
  });

  it('refuses a decoder type it does not implement, in one line naming tokenizer.json\'s decoder and the type', async () => {
    const dir = tokenizerDir(tokenizerJson(vocab, { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Frobnicate' }] }));
    const err = await loadTokenizer({ dir }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnsupportedError);
    const message = (err as Error).message;
    expect(message.split('\n')).toHaveLength(1);
    expect(message).toContain(`${join(dir, 'tokenizer.json')}: decoder.decoders[1]`);
    expect(message).toContain('"Frobnicate"');
  });

  it('an added token normalized on the way in decodes from its normalized form (tokenizers 0.23)', async () => {
    const json = tokenizerJson({ ...vocab, '<s>': 6 }, { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'Fuse' }] }, {
      added_tokens: [special(6, '<s>'), special(7, 'hi there', { special: false, normalized: true })],
      normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    });
    const tok = await loadTokenizer({ dir: tokenizerDir(json) });
    expect(tok.decode([6, 1, 7], { skip_special_tokens: true })).toBe(' b hi there');
    const bert = tokenizerJson(vocab, { type: 'Fuse' }, { added_tokens: [special(7, 'hi', { special: false, normalized: true })], normalizer: { type: 'BertNormalizer', clean_text: true } });
    await expect(loadTokenizer({ dir: tokenizerDir(bert) })).rejects.toThrow(/normalizer: normalizer type "BertNormalizer"/);
  });
});
