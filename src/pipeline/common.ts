/** Pieces every pipeline shares: capacity checks, end-of-sequence handling, logits top-k. */
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type { Checkpoint } from '../arch/checkpoint.js';
import { openWeights } from '../arch/checkpoint.js';
import { CapacityError } from '../errors.js';
import { bytesPerWeight } from './dtypes.js';
import { decodeText } from './tokenizer.js';
import type { DType, Device, PipelineInfo, SequenceResult, TopK } from './types.js';

/**
 * Prompt plus new tokens must fit the KV cache (--max_tokens) and the model's positions.
 * `positionsCulprit`: the flag to blame when they do not fit the positions: --max_new_tokens where
 * the prompts are fixed (generate), the flag that set the prompt's length where one did (bench
 * --prompt_lengths).
 */
export function checkCapacity(ckpt: Checkpoint, maxTokens: number, promptLength: number, maxNewTokens: number, positionsCulprit = '--max_new_tokens'): void {
  const need = promptLength + maxNewTokens;
  const prompt = positionsCulprit === '--max_new_tokens' ? `the longest prompt (${promptLength} tokens)` : `a prompt of ${promptLength} tokens`;
  // The model's positions first: raising --max_tokens cannot fix that one.
  if (need > ckpt.dims.maxPositions) {
    throw new CapacityError(positionsCulprit, `${prompt} plus ${maxNewTokens} new tokens exceeds the model's ${ckpt.dims.maxPositions} positions (${ckpt.configPath})`);
  }
  // A sliding window is exact only while every key fits in it (Mistral, Qwen2).
  const window = ckpt.dims.slidingWindow;
  if (window !== undefined && need > window) {
    throw new CapacityError(`${ckpt.configPath}: sliding_window`, `${prompt} plus ${maxNewTokens} new tokens exceeds the attention window of ${window} tokens, which fusegen does not implement (runs must fit the window)`);
  }
  if (need > maxTokens) {
    throw new CapacityError('--max_tokens', `the longest prompt (${promptLength} tokens) plus --max_new_tokens ${maxNewTokens} needs ${need} tokens of KV cache; --max_tokens is ${maxTokens}`);
  }
}

/**
 * Cuts each row at its first end-of-sequence token (Hugging Face pads finished rows; some
 * loops keep generating for them) and decodes as the seed does: the whole sequence,
 * special tokens skipped, to the text Hugging Face tokenizers gives for the same ids.
 */
export function finishSequences(
  tokenizer: PreTrainedTokenizer,
  prompts: string[],
  promptIds: number[][],
  generated: number[][],
  eosIds: number[],
  topKs?: TopK[][],
): SequenceResult[] {
  return prompts.map((prompt, b) => {
    const row = generated[b]!;
    const eosAt = row.findIndex((t) => eosIds.includes(t));
    const newIds = eosAt >= 0 ? row.slice(0, eosAt + 1) : row;
    const ids = promptIds[b]!;
    const seq: SequenceResult = {
      prompt,
      promptIds: ids,
      newIds,
      finishReason: eosAt >= 0 ? 'eos' : 'length',
      text: decodeText(tokenizer, [...ids, ...newIds]),
      generatedText: decodeText(tokenizer, newIds),
    };
    if (topKs) seq.topK = topKs[b]!.slice(0, newIds.length);
    return seq;
  });
}

/** log Σ exp(row), stably: a logits row's log-probabilities are its logits minus this. */
export function logSumExp(row: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return max + Math.log(sum);
}

/** The k largest entries, largest first (ties: lower id first). */
export function topK(row: ArrayLike<number>, k: number): TopK {
  const ids: number[] = [];
  const values: number[] = [];
  if (k <= 0) return { ids, values };
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (ids.length === k && !(v > values[k - 1]!)) continue;
    // Insert at the sorted position; when full, the last entry falls off.
    let j = ids.length < k ? ids.length : k - 1;
    while (j > 0 && values[j - 1]! < v) {
      values[j] = values[j - 1]!;
      ids[j] = ids[j - 1]!;
      j--;
    }
    values[j] = v;
    ids[j] = i;
  }
  return { ids, values };
}

/** Parameters as stored in the checkpoint (float tensors only). */
export function parameterCount(ckpt: Checkpoint): number {
  if (ckpt.saved) return ckpt.saved.parameters;
  const store = openWeights(ckpt);
  try {
    let n = 0;
    for (const name of store.names()) {
      const info = store.info(name);
      if (info.dtype === 'F32' || info.dtype === 'F16' || info.dtype === 'BF16') n += info.shape.reduce((a, b) => a * b, 1);
    }
    return n;
  } finally {
    store.close();
  }
}


/** What a pipeline reports about itself; weight bytes from the dtype table (quantized: bits / 8). */
export function pipelineInfo(name: PipelineInfo['name'], ckpt: Checkpoint, device: Device, dtype: DType, loadMs: number): PipelineInfo {
  const parameters = parameterCount(ckpt);
  const bytesPerParameter = bytesPerWeight(dtype);
  return {
    name,
    device,
    dtype,
    modelDir: ckpt.dir,
    modelType: ckpt.modelType,
    executionProviders: [device],
    parameters,
    parameterBytes: Math.round(parameters * bytesPerParameter),
    loadMs,
  };
}
