/** The checkpoint's tokenizer through transformers.js, offline, with errors that name the file. */
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { join } from 'node:path';
import type { Checkpoint } from '../checkpoint/checkpoint.js';
import { InputError } from '../errors.js';

// Models come from local directories only: never the network.
env.allowRemoteModels = false;
env.allowLocalModels = true;

export function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}

export async function loadTokenizer(ckpt: Checkpoint): Promise<PreTrainedTokenizer> {
  const tokenizer = await AutoTokenizer.from_pretrained(ckpt.dir).catch((e: unknown) => {
    throw new InputError(join(ckpt.dir, 'tokenizer.json'), `transformers.js cannot load the tokenizer (${firstLine(e)})`);
  });
  tokenizer.padding_side = 'left';
  return tokenizer;
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
