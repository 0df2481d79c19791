import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import {
  buildFixtureTokenizer,
  EXPECTED_HE_IS_WORKING_ON,
  TOKENIZER_FAMILIES,
  type FixtureTokenizer,
  type TokenizerFamily,
} from '../fixtures/tokenizers.js';
import { SEED_PROMPTS } from '../fixtures/prompts.js';

const PROMPTS = SEED_PROMPTS;

/** The special token a family puts in front of every encoding, if any. */
const PREPENDED: Record<TokenizerFamily, number | null> = { gpt2: null, opt: 2, bloom: null, llama: 1 };

const utf8Length = (s: string) => Buffer.byteLength(s, 'utf8');

let root = '';

beforeAll(() => {
  // Offline: local files only, never the hub, and no cache writes.
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useFSCache = false;
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'fusegen-tok-'));
});

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

async function load(family: TokenizerFamily, fixture: FixtureTokenizer): Promise<PreTrainedTokenizer> {
  const dir = path.join(root, family);
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(fixture.files)) fs.writeFileSync(path.join(dir, name), text);
  // An absolute path is not a valid hub id, so transformers.js reads it as a directory as is.
  return AutoTokenizer.from_pretrained(dir, { local_files_only: true });
}

describe.each(TOKENIZER_FAMILIES)('fixture tokenizer: %s', (family) => {
  const fixture = buildFixtureTokenizer(family);
  let tok: PreTrainedTokenizer;

  beforeAll(async () => {
    tok = await load(family, fixture);
  });

  it('is deterministic and writes the three HF tokenizer files', () => {
    const again = buildFixtureTokenizer(family);
    expect(Object.keys(fixture.files).sort()).toEqual(['special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
    for (const [name, text] of Object.entries(fixture.files)) expect(again.files[name]).toBe(text);
    for (const text of Object.values(fixture.files)) expect(() => JSON.parse(text)).not.toThrow();
  });

  it('has vocabSize entries with contiguous ids, and the special ids it reports', () => {
    const json = JSON.parse(fixture.files['tokenizer.json']!) as { model: { vocab: Record<string, number>; merges: [string, string][] } };
    const ids = Object.values(json.model.vocab).sort((a, b) => a - b);
    expect(ids.length).toBe(fixture.vocabSize);
    expect(ids.every((id, i) => id === i)).toBe(true);
    expect(tok.get_vocab().size).toBe(fixture.vocabSize);
    // Every merge's parts and result are in the vocabulary (a valid, self-contained BPE).
    for (const [a, b] of json.model.merges) {
      expect(json.model.vocab[a]).toBeTypeOf('number');
      expect(json.model.vocab[b]).toBeTypeOf('number');
      expect(json.model.vocab[a + b]).toBeTypeOf('number');
    }
    expect(fixture.vocabSize).toBeGreaterThan(1000);
    expect(fixture.vocabSize).toBeLessThan(4000);
    expect(tok.eos_token_id).toBe(fixture.eosTokenId);
    expect(tok.bos_token_id ?? null).toBe(fixture.bosTokenId);
    expect(tok.unk_token_id ?? null).toBe(fixture.unkTokenId);
    if (fixture.padTokenId !== null) expect(tok.pad_token_id).toBe(fixture.padTokenId);
  });

  it('round-trips the eight prompts through encode/decode', () => {
    for (const prompt of PROMPTS) {
      const ids = tok.encode(prompt);
      expect(tok.decode(ids, { skip_special_tokens: true })).toBe(prompt);
      expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < fixture.vocabSize)).toBe(true);
    }
  });

  it('follows the family BOS convention', () => {
    const special = new Set(tok.all_special_ids);
    for (const prompt of PROMPTS) {
      const ids = tok.encode(prompt);
      const bare = tok.encode(prompt, { add_special_tokens: false });
      const want = PREPENDED[family];
      if (want === null) {
        expect(ids).toEqual(bare);
        expect(ids.some((id) => special.has(id))).toBe(false);
      } else {
        expect(ids[0]).toBe(want);
        expect(ids.slice(1)).toEqual(bare);
        expect(bare.some((id) => special.has(id))).toBe(false);
      }
    }
    expect(tok.encode('He is working on')).toEqual(EXPECTED_HE_IS_WORKING_ON[family]);
  });

  it('really merges: common words are single tokens and prompts need fewer tokens than bytes', () => {
    // Byte-level families spell a leading space into the word; llama prepends "▁" itself.
    const word = family === 'llama' ? 'the' : ' the';
    const the = tok.encode(word, { add_special_tokens: false });
    expect(the).toHaveLength(1);
    expect(tok.decode(the)).toBe(word);
    for (const prompt of PROMPTS) {
      const bare = tok.encode(prompt, { add_special_tokens: false });
      expect(bare.length).toBeLessThan(utf8Length(prompt) / 2);
    }
  });

  it('round-trips characters outside the vocabulary (byte-level / byte_fallback)', () => {
    for (const text of ['日本', 'Grüße aus Köln, naïve café', 'emoji 🚀 and tab\tnew\nline', 'two  spaces  and trailing ']) {
      const ids = tok.encode(text);
      expect(ids).not.toContain(fixture.unkTokenId ?? -1);
      expect(tok.decode(ids, { skip_special_tokens: true })).toBe(text);
    }
    if (family === 'llama') {
      // 日 = E6 97 A5: three byte-fallback tokens <0xE6> <0x97> <0xA5> (ids 3 + byte).
      const ids = tok.encode('日', { add_special_tokens: false });
      expect(ids.slice(-3)).toEqual([3 + 0xe6, 3 + 0x97, 3 + 0xa5]);
    }
  });
});

describe('buildFixtureTokenizer options', () => {
  it('keeps the requested number of merges', () => {
    const small = buildFixtureTokenizer('gpt2', { merges: 100 });
    expect(small.vocabSize).toBe(256 + 100 + 1);
    expect(small.eosTokenId).toBe(356);
    const opt = buildFixtureTokenizer('opt', { merges: 100 });
    expect(opt.vocabSize).toBe(4 + 256 + 100);
    const json = JSON.parse(opt.files['tokenizer.json']!) as { model: { merges: unknown[] } };
    expect(json.model.merges).toHaveLength(100);
  });

  it('rejects bad merge counts', () => {
    expect(() => buildFixtureTokenizer('gpt2', { merges: -1 })).toThrow(RangeError);
    expect(() => buildFixtureTokenizer('gpt2', { merges: 1.5 })).toThrow(RangeError);
    expect(() => buildFixtureTokenizer('gpt2', { merges: 50001 })).toThrow(RangeError);
  });
});
