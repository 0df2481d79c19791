/**
 * The checks every command runs on the checkpoint and the device before any export or run
 * (issue 23 item 6): the device's execution provider is installed, the tokenizer loads and
 * turns the prompts into ids the model has, and the lengths fit the model. Flag-only checks
 * live beside each command's option table; these need the checkpoint.
 */
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import { join } from 'node:path';
import type { Checkpoint } from '../arch/checkpoint.js';
import { InputError, UnsupportedError } from '../errors.js';
import { CUDA_MISSING, cudaInstalled } from '../runtime/ort.js';
import { encode, loadTokenizer } from '../pipeline/tokenizer.js';
import type { Device } from '../pipeline/types.js';
import type { Engine } from './options.js';

/** --device cuda needs onnxruntime-node's CUDA execution provider, which ships separately (README). */
export function checkDevice(device: Device, engines: readonly Engine[]): void {
  // Hugging Face transformers picks its own device (FUSEGEN_HF_DEVICE); the WGSL engine runs on Dawn.
  if (device === 'cuda' && engines.some((e) => e === 'ort' || e === 'transformersjs') && !cudaInstalled()) throw new UnsupportedError('--device', CUDA_MISSING);
}

function quoted(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}...` : s);
}

/**
 * Loads the checkpoint's tokenizer and encodes `prompts` as the pipelines will (special tokens
 * added). A tokenizer that cannot load, gives a prompt no ids, or gives ids outside the model's
 * vocabulary (an empty or mismatched tokenizer.json) is refused naming tokenizer.json.
 * Returns the tokenizer and each prompt's length in tokens.
 */
export async function checkPrompts(ckpt: Checkpoint, prompts: readonly string[]): Promise<{ tokenizer: PreTrainedTokenizer; lengths: number[] }> {
  const tokenizer = await loadTokenizer(ckpt);
  const file = join(ckpt.dir, 'tokenizer.json');
  const vocab = ckpt.dims.vocabSize;
  const lengths = prompts.map((p) => {
    const ids = encode(tokenizer, p);
    if (ids.length === 0) throw new InputError(file, `encodes the prompt ${quoted(p)} to no tokens`);
    const bad = ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= vocab);
    if (bad >= 0) throw new InputError(file, `encodes the prompt ${quoted(p)} to ids outside the model's vocabulary of ${vocab} (id ${String(ids[bad])} at position ${bad}): an empty or mismatched tokenizer`);
    return ids.length;
  });
  return { tokenizer, lengths };
}
