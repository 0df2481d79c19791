/**
 * Token ids to text exactly as Hugging Face decodes them: `Tokenizer::decode(ids,
 * skip_special_tokens)` of the Rust `tokenizers` library (what transformers 5's AutoTokenizer
 * calls), following tokenizer.json's `decoder` spec, then transformers' clean-up as
 * tokenizer_config.json asks for it.
 *
 * Why not transformers.js's decode: for equal ids it gives different text. Its ByteFallback
 * decodes an invalid byte run with a lossy TextDecoder (`<0x3A><0xE2>` gives ":\uFFFD") where
 * HF emits one U+FFFD per byte of the run ("\uFFFD\uFFFD"), and drops a leading BOM; its
 * ByteLevel turns characters outside the byte alphabet into NUL bytes and leaves added tokens
 * undecoded; its Metaspace strips one leading space where HF drops every replacement character
 * of the first token; its Replace reads `$&` in the content as a pattern; its Strip counts
 * UTF-16 units; unknown ids become the unk token where HF drops them; clean-up defaults to on.
 *
 * What follows tokenizers' source (decoders/*.rs, pre_tokenizers/{byte_level,metaspace}.rs,
 * normalizers/replace.rs, tokenizer/mod.rs and added_vocabulary.rs, 0.23):
 * - ids: an added token's content first, else the model's vocabulary; ids with neither are
 *   dropped; with skip_special_tokens, tokens whose string is a special added token's content
 *   are dropped before any decoder runs.
 * - an added token with `normalized: true` under a normalizer decodes from its normalized form
 *   (tokenizers 0.23's `normalized_cache`); the few normalizers that can compute it here are
 *   below, any other is refused when a token needs it.
 * - the decoder chain works on the token list, step by step (Sequence), and the pieces left are
 *   joined; no decoder: tokens joined by spaces.
 * - transformers' `clean_up_tokenization` when tokenizer_config.json sets
 *   `clean_up_tokenization_spaces` (default off), skipped for BPE models since transformers 5.7
 *   unless `clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output` is set.
 *
 * Not covered: transformers tokenizer classes that rebuild their decoder in Python instead of
 * reading tokenizer.json's (GPT2Tokenizer, LlamaTokenizer, ...): this module decodes with the
 * decoder the file declares (the fixture tokenizers declare the one those classes build).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, UnsupportedError } from '../errors.js';

/** One decoder step: a token list in, a token list out (tokenizers' `decode_chain`). */
type Step = (tokens: string[]) => string[];

export interface DecodeOptions {
  skipSpecialTokens: boolean;
  /** Overrides tokenizer_config.json's clean_up_tokenization_spaces (after the BPE rule). */
  cleanUpTokenizationSpaces?: boolean;
}

/** The decoder types tokenizers knows (decoders/mod.rs); all are implemented here. */
export const DECODER_TYPES = ['BPEDecoder', 'ByteLevel', 'WordPiece', 'Metaspace', 'CTC', 'Sequence', 'Replace', 'Fuse', 'Strip', 'ByteFallback'] as const;

export class Detokenizer {
  constructor(
    private readonly added: ReadonlyMap<number, string>,
    private readonly vocab: ReadonlyMap<number, string>,
    private readonly special: ReadonlySet<string>,
    private readonly decoder: Step | null,
    /** Whether transformers would run clean_up_tokenization on this tokenizer's output. */
    readonly cleanUp: boolean,
  ) {}

  /** The token string tokenizers decodes for an id (`simple_id_to_token`, then the model's), if any. */
  token(id: number): string | undefined {
    return this.added.get(id) ?? this.vocab.get(id);
  }

  decode(ids: readonly number[], o: DecodeOptions): string {
    const tokens: string[] = [];
    for (const id of ids) {
      const t = this.token(id);
      if (t === undefined) continue;
      if (o.skipSpecialTokens && this.special.has(t)) continue;
      tokens.push(t);
    }
    const text = this.decoder ? this.decoder(tokens).join('') : tokens.join(' ');
    return (o.cleanUpTokenizationSpaces ?? this.cleanUp) ? cleanUpTokenization(text) : text;
  }
}

/** transformers' `clean_up_tokenization`: these replacements, in order. */
const CLEAN_UP: ReadonlyArray<[string, string]> = [[' .', '.'], [' ?', '?'], [' !', '!'], [' ,', ','], [" ' ", "'"], [" n't", "n't"], [" 'm", "'m"], [" 's", "'s"], [" 've", "'ve"], [" 're", "'re"]];

/** tokenizers' wordpiece::cleanup (WordPiece and CTC decoders): the same, with " do not" -> " don't" after " 'm". */
const WORDPIECE_CLEAN_UP: ReadonlyArray<[string, string]> = [...CLEAN_UP.slice(0, 7), [' do not', " don't"], ...CLEAN_UP.slice(7)];

function replaceAll(s: string, pairs: ReadonlyArray<[string, string]>): string {
  return pairs.reduce((t, [from, to]) => t.replaceAll(from, to), s);
}

export function cleanUpTokenization(s: string): string {
  return replaceAll(s, CLEAN_UP);
}

// ---------------------------------------------------------------------------------------------
// Building from the files

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads tokenizer.json and tokenizer_config.json (optional) of a checkpoint directory. */
export function loadDetokenizer(dir: string): Detokenizer {
  const read = (name: string, required: boolean): unknown => {
    const path = join(dir, name);
    if (!existsSync(path)) {
      if (required) throw new InputError(path, 'file not found (fusegen needs the fast tokenizer files)');
      return {};
    }
    try {
      return JSON.parse(readFileSync(path, 'utf8')) as unknown;
    } catch (e) {
      throw new InputError(path, `not valid JSON (${(e instanceof Error ? e.message : String(e)).split('\n')[0]})`);
    }
  };
  return buildDetokenizer(read('tokenizer.json', true), read('tokenizer_config.json', false), join(dir, 'tokenizer.json'), join(dir, 'tokenizer_config.json'));
}

/** From parsed tokenizer.json and tokenizer_config.json; the paths name culprits in errors. */
export function buildDetokenizer(tokenizerJson: unknown, tokenizerConfig: unknown, file = 'tokenizer.json', configFile = 'tokenizer_config.json'): Detokenizer {
  if (!isObject(tokenizerJson)) throw new InputError(file, 'not a JSON object');
  const model = tokenizerJson['model'];
  if (!isObject(model)) throw new InputError(`${file}: model`, 'missing or not an object');

  // The model's id -> token (BPE, WordPiece, WordLevel: token -> id; Unigram: [piece, score] by id).
  const vocab = new Map<number, string>();
  const tokenToId = new Map<string, number>();
  const v = model['vocab'];
  if (Array.isArray(v)) {
    v.forEach((entry, id) => {
      const piece = Array.isArray(entry) ? entry[0] : undefined;
      if (typeof piece !== 'string') throw new InputError(`${file}: model.vocab[${id}]`, 'not a [piece, score] pair');
      vocab.set(id, piece);
      if (!tokenToId.has(piece)) tokenToId.set(piece, id);
    });
  } else if (isObject(v)) {
    for (const [token, id] of Object.entries(v)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new InputError(`${file}: model.vocab`, `token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, not a non-negative integer`);
      vocab.set(id, token);
      tokenToId.set(token, id);
    }
  } else {
    throw new InputError(`${file}: model.vocab`, 'missing or neither an object nor an array');
  }

  // Added tokens: their id is the model's for the same string, else the one the file gives.
  const addedTokens = tokenizerJson['added_tokens'] ?? [];
  if (!Array.isArray(addedTokens)) throw new InputError(`${file}: added_tokens`, 'not an array');
  const added = new Map<number, string>();
  const special = new Set<string>();
  const normalizer = tokenizerJson['normalizer'] ?? null;
  let normalize: ((s: string) => string) | undefined;
  for (const [i, t] of addedTokens.entries()) {
    if (!isObject(t) || typeof t['content'] !== 'string' || typeof t['id'] !== 'number') throw new InputError(`${file}: added_tokens[${i}]`, 'needs a string content and a numeric id');
    const content = t['content'];
    if (content.length === 0) continue; // tokenizers ignores empty added tokens
    const id = tokenToId.get(content) ?? t['id'];
    let form = content;
    if (t['normalized'] === true && normalizer !== null) {
      normalize ??= buildNormalizer(normalizer, `${file}: normalizer`, content);
      form = normalize(content);
    }
    added.set(id, form);
    if (t['special'] === true) special.add(content);
  }

  const decoderSpec = tokenizerJson['decoder'] ?? null;
  const decoder = decoderSpec === null ? null : buildDecoder(decoderSpec, `${file}: decoder`);

  const config = isObject(tokenizerConfig) ? tokenizerConfig : {};
  const flag = (key: string): boolean => {
    const value = config[key];
    if (value === undefined || value === null) return false;
    if (typeof value !== 'boolean') throw new InputError(`${configFile}: ${key}`, `must be true or false, got ${JSON.stringify(value)}`);
    return value;
  };
  const modelType = typeof model['type'] === 'string' ? model['type'] : 'merges' in model ? 'BPE' : undefined;
  const cleanUp = flag('clean_up_tokenization_spaces') && (modelType !== 'BPE' || flag('clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output'));

  return new Detokenizer(added, vocab, special, decoder, cleanUp);
}

// ---------------------------------------------------------------------------------------------
// Decoders

function buildDecoder(spec: unknown, where: string): Step {
  if (!isObject(spec)) throw new InputError(where, 'not an object');
  const type = spec['type'];
  if (typeof type !== 'string') throw new UnsupportedError(where, 'a decoder without a "type" (a legacy layout fusegen does not read)');
  const str = (key: string, fallback?: string): string => {
    const value = spec[key] ?? fallback;
    if (typeof value !== 'string') throw new InputError(`${where}.${key}`, `${type} needs a string here`);
    return value;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const value = spec[key] ?? fallback;
    if (typeof value !== 'boolean') throw new InputError(`${where}.${key}`, `${type} needs true or false here`);
    return value;
  };
  const char = (key: string): string => {
    const value = str(key);
    if ([...value].length !== 1) throw new InputError(`${where}.${key}`, `${type} needs a single character here, got ${JSON.stringify(value)}`);
    return value;
  };
  const count = (key: string): number => {
    const value = spec[key] ?? 0;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new InputError(`${where}.${key}`, `${type} needs a non-negative integer here`);
    return value;
  };
  switch (type) {
    case 'Sequence': {
      const list = spec['decoders'];
      if (!Array.isArray(list)) throw new InputError(`${where}.decoders`, 'Sequence needs an array of decoders');
      const steps = list.map((d, i) => buildDecoder(d, `${where}.decoders[${i}]`));
      return (tokens) => steps.reduce((t, step) => step(t), tokens);
    }
    case 'ByteLevel':
      return byteLevel;
    case 'ByteFallback':
      return byteFallback;
    case 'Fuse':
      return (tokens) => [tokens.join('')];
    case 'Replace': {
      const replace = replacer(spec, where);
      return (tokens) => tokens.map(replace);
    }
    case 'Strip':
      return strip(char('content'), count('start'), count('stop'));
    case 'Metaspace':
      return metaspace(char('replacement'), prependScheme(spec, where));
    case 'WordPiece': {
      const prefix = str('prefix', '##');
      const cleanup = bool('cleanup', true);
      return (tokens) =>
        tokens.map((token, i) => {
          let t = token;
          if (i !== 0) t = t.startsWith(prefix) ? t.slice(prefix.length) : ` ${t}`;
          return cleanup ? wordpieceCleanup(t) : t;
        });
    }
    case 'BPEDecoder': {
      const suffix = str('suffix', '</w>');
      return (tokens) => tokens.map((t, i) => t.replaceAll(suffix, () => (i === tokens.length - 1 ? '' : ' ')));
    }
    case 'CTC': {
      const pad = str('pad_token', '<pad>');
      const delimiter = str('word_delimiter_token', '|');
      const cleanup = bool('cleanup', true);
      return (tokens) => {
        const out: string[] = [];
        tokens.forEach((token, i) => {
          if (i > 0 && token === tokens[i - 1]) return; // consecutive duplicates collapse
          let t = token.replaceAll(pad, () => '');
          if (cleanup) t = wordpieceCleanup(t).replaceAll(delimiter, () => ' ');
          if (t.length > 0) out.push(t);
        });
        return out;
      };
    }
    default:
      throw new UnsupportedError(where, `decoder type "${type}" is not one fusegen decodes as Hugging Face tokenizers does (${DECODER_TYPES.join(', ')})`);
  }
}

/** GPT-2's bytes_to_unicode: byte -> the character byte-level vocabularies spell it with. */
function byteToChar(): string[] {
  const direct = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(direct(b) ? b : next++));
  return out;
}
const BYTE_CHARS = byteToChar();
const CHAR_BYTES = new Map<string, number>(BYTE_CHARS.map((c, b) => [c, b]));

/** Lossy UTF-8 as Rust's `String::from_utf8_lossy`: one U+FFFD per maximal invalid subpart, BOM kept. */
const LOSSY = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
/** Strict UTF-8 as Rust's `String::from_utf8`; a BOM is kept as U+FEFF. */
const STRICT = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const UTF8 = new TextEncoder();

/** ByteLevel: every token's bytes (its characters mapped back, or its UTF-8 if one has no byte), joined, decoded lossily. */
function byteLevel(tokens: string[]): string[] {
  const bytes: number[] = [];
  for (const token of tokens) {
    const mapped: number[] = [];
    let all = true;
    for (const c of token) {
      const b = CHAR_BYTES.get(c);
      if (b === undefined) {
        all = false;
        break;
      }
      mapped.push(b);
    }
    if (all) bytes.push(...mapped);
    else bytes.push(...UTF8.encode(token));
  }
  return [LOSSY.decode(Uint8Array.from(bytes))];
}

/** The byte a `<0xNN>` token stands for: six UTF-8 bytes, and what `u8::from_str_radix(_, 16)` takes in between. */
function fallbackByte(token: string): number | undefined {
  if (token.length !== 6 || !token.startsWith('<0x') || !token.endsWith('>')) return undefined;
  const digits = token.slice(3, 5);
  if (!/^(?:[0-9A-Fa-f]{2}|\+[0-9A-Fa-f])$/.test(digits)) return undefined;
  return parseInt(digits, 16);
}

/** ByteFallback: a run of `<0xNN>` tokens becomes its string if valid UTF-8, else one U+FFFD per byte. */
function byteFallback(tokens: string[]): string[] {
  const out: string[] = [];
  let run: number[] = [];
  const flush = () => {
    if (run.length === 0) return;
    let text: string | undefined;
    try {
      text = STRICT.decode(Uint8Array.from(run));
    } catch {
      text = undefined;
    }
    if (text !== undefined) out.push(text);
    else for (let i = 0; i < run.length; i++) out.push('\uFFFD');
    run = [];
  };
  for (const token of tokens) {
    const b = fallbackByte(token);
    if (b !== undefined) {
      run.push(b);
      continue;
    }
    flush();
    out.push(token);
  }
  flush();
  return out;
}

/** Strip: up to `start` leading and `stop` trailing `content` characters off every token (code points). */
function strip(content: string, start: number, stop: number): Step {
  return (tokens) =>
    tokens.map((token) => {
      const chars = [...token];
      let from = 0;
      while (from < start && from < chars.length && chars[from] === content) from++;
      let to = chars.length;
      // tokenizers panics where the cuts cross; here they stop at each other.
      while (chars.length - to < stop && to > from && chars[to - 1] === content) to--;
      return chars.slice(from, to).join('');
    });
}

type PrependScheme = 'always' | 'first' | 'never';

/** Metaspace's prepend_scheme as tokenizers deserializes it (legacy add_prefix_space: false means never). */
function prependScheme(spec: Json, where: string): PrependScheme {
  const raw = spec['prepend_scheme'];
  if (raw !== undefined && raw !== 'always' && raw !== 'first' && raw !== 'never') throw new InputError(`${where}.prepend_scheme`, `must be "always", "first" or "never", got ${JSON.stringify(raw)}`);
  const scheme = (raw ?? 'always') as PrependScheme;
  if (spec['add_prefix_space'] === false) {
    if (scheme !== 'never') throw new InputError(`${where}.add_prefix_space`, 'add_prefix_space does not match declared prepend_scheme');
    return 'never';
  }
  return scheme;
}

/** Metaspace: the replacement character becomes a space, except in the first token (unless never prepended), where it goes. */
function metaspace(replacement: string, scheme: PrependScheme): Step {
  return (tokens) =>
    tokens.map((token, i) => {
      let out = '';
      for (const c of token) {
        if (c !== replacement) out += c;
        else if (!(i === 0 && scheme !== 'never')) out += ' ';
      }
      return out;
    });
}

/** Replace (decoder and normalizer): every match of a String or Regex pattern becomes `content`, taken literally. */
function replacer(spec: Json, where: string): (s: string) => string {
  const pattern = spec['pattern'];
  const content = spec['content'];
  if (typeof content !== 'string') throw new InputError(`${where}.content`, 'Replace needs a string here');
  if (isObject(pattern) && typeof pattern['String'] === 'string') {
    const literal = pattern['String'];
    return (s) => s.replaceAll(literal, () => content);
  }
  if (isObject(pattern) && typeof pattern['Regex'] === 'string') {
    let re: RegExp;
    try {
      re = new RegExp(pattern['Regex'], 'gu');
    } catch {
      throw new UnsupportedError(`${where}.pattern`, `Replace regex ${JSON.stringify(pattern['Regex'])} is not one JavaScript reads as tokenizers' (Oniguruma) does`);
    }
    return (s) => s.replace(re, () => content);
  }
  throw new InputError(`${where}.pattern`, 'Replace needs {"String": ...} or {"Regex": ...}');
}

function wordpieceCleanup(s: string): string {
  return replaceAll(s, WORDPIECE_CLEAN_UP);
}

// ---------------------------------------------------------------------------------------------
// Normalizers, only for the decoded form of `normalized: true` added tokens

const WHITESPACE_START = /^\p{White_Space}+/u;
const WHITESPACE_END = /\p{White_Space}+$/u;

function buildNormalizer(spec: unknown, where: string, token: string): (s: string) => string {
  if (!isObject(spec) || typeof spec['type'] !== 'string') throw new InputError(where, 'not an object with a "type"');
  const type = spec['type'];
  switch (type) {
    case 'Sequence': {
      const list = spec['normalizers'];
      if (!Array.isArray(list)) throw new InputError(`${where}.normalizers`, 'Sequence needs an array of normalizers');
      const steps = list.map((n, i) => buildNormalizer(n, `${where}.normalizers[${i}]`, token));
      return (s) => steps.reduce((t, step) => step(t), s);
    }
    case 'Prepend': {
      const prepend = spec['prepend'];
      if (typeof prepend !== 'string') throw new InputError(`${where}.prepend`, 'Prepend needs a string here');
      return (s) => (s.length > 0 ? prepend + s : s);
    }
    case 'Replace':
      return replacer(spec, where);
    case 'Lowercase':
      return (s) => Array.from(s, (c) => c.toLowerCase()).join('');
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD':
      return (s) => s.normalize(type);
    case 'Strip': {
      const left = spec['strip_left'] === true;
      const right = spec['strip_right'] === true;
      return (s) => {
        let t = s;
        if (left) t = t.replace(WHITESPACE_START, '');
        if (right) t = t.replace(WHITESPACE_END, '');
        return t;
      };
    }
    case 'ByteLevel':
      return (s) => Array.from(UTF8.encode(s), (b) => BYTE_CHARS[b]!).join('');
    default:
      throw new UnsupportedError(where, `normalizer type "${type}" is not one fusegen applies, and tokenizers decodes the normalized added token ${JSON.stringify(token)} through it`);
  }
}
