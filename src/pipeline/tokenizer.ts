/**
 * The checkpoint's tokenizer through transformers.js, offline, with errors that name the file.
 * Encoding is transformers.js's; ids become text through detokenize.ts (as Hugging Face
 * tokenizers decodes them), which loadTokenizer also installs as the tokenizer's own decode.
 */
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { join } from 'node:path';
import type { Checkpoint } from '../arch/checkpoint.js';
import { InputError } from '../errors.js';
import { loadDetokenizer, type Detokenizer } from './detokenize.js';

// Models come from local directories only: never the network.
env.allowRemoteModels = false;
env.allowLocalModels = true;

export function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}

const DETOKENIZERS = new WeakMap<PreTrainedTokenizer, Detokenizer>();

/**
 * The tokenizer, left-padding, whose decode (and batch_decode) gives Hugging Face's text:
 * transformers.js's own decode differs for equal ids (see detokenize.ts). A decoder type
 * fusegen does not implement is refused here, with tokenizer.json's culprit field.
 */
export async function loadTokenizer(ckpt: Pick<Checkpoint, 'dir'>): Promise<PreTrainedTokenizer> {
  const detokenizer = loadDetokenizer(ckpt.dir);
  const tokenizer = await AutoTokenizer.from_pretrained(ckpt.dir).catch((e: unknown) => {
    throw new InputError(join(ckpt.dir, 'tokenizer.json'), `transformers.js cannot load the tokenizer (${firstLine(e)})`);
  });
  tokenizer.padding_side = 'left';
  DETOKENIZERS.set(tokenizer, detokenizer);
  // decode() checks its input and converts tensors, then calls decode_single with plain ids.
  tokenizer.decode_single = (ids, { skip_special_tokens = false, clean_up_tokenization_spaces = null }) =>
    detokenizer.decode(ids.map(Number), clean_up_tokenization_spaces === null ? { skipSpecialTokens: skip_special_tokens } : { skipSpecialTokens: skip_special_tokens, cleanUpTokenizationSpaces: clean_up_tokenization_spaces });
  // transformers.js refuses an empty list; Hugging Face decodes it to "".
  const checkedDecode = tokenizer.decode.bind(tokenizer);
  tokenizer.decode = (ids, args) => (Array.isArray(ids) && ids.length === 0 ? '' : checkedDecode(ids, args));
  return tokenizer;
}

/** Text of token ids as Hugging Face decodes them (`decode(ids, skip_special_tokens)`), for a tokenizer from loadTokenizer. */
export function decodeText(tokenizer: PreTrainedTokenizer, ids: readonly number[], skipSpecialTokens = true): string {
  const detokenizer = DETOKENIZERS.get(tokenizer);
  if (!detokenizer) throw new Error('fusegen: decodeText needs a tokenizer from loadTokenizer (it carries the tokenizer.json decoder)');
  return detokenizer.decode(ids, { skipSpecialTokens });
}

/** Token ids as the seed's tokenizer call makes them: special tokens (BOS) added. */
export function encode(tokenizer: PreTrainedTokenizer, text: string): number[] {
  return tokenizer.encode(text, { add_special_tokens: true });
}

/** The request's prompt ids: given ones, else the prompts tokenized. */
export function promptIds(tokenizer: PreTrainedTokenizer, request: { prompts: string[]; promptTokens?: number[][] }): number[][] {
  return request.promptTokens ?? request.prompts.map((p) => encode(tokenizer, p));
}

/** The id used to pad batches: the tokenizer's pad token, else end-of-sequence (as the seed sets it). */
export function padId(tokenizer: PreTrainedTokenizer, eos: number[]): number {
  const id = tokenizer.pad_token_id ?? eos[0];
  return typeof id === 'number' ? id : 0;
}
