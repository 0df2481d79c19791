/**
 * The seed's loading flags, shared by generate and bench: `--use_meta_tensor` (the name of how
 * fusegen always loads) and `--checkpoint_path` (weights from the shards a checkpoint
 * description or a safetensors index lists).
 */
import { openCheckpoint, type Checkpoint } from '../arch/checkpoint.js';
import { descriptionDir } from '../checkpoint/description.js';
import { text, type OptionSpec } from './options.js';

export const useMetaTensorOption: OptionSpec<boolean> = {
  flag: 'use_meta_tensor',
  help: "the seed's meta-tensor loading, which is how fusegen always loads, so the flag names the default: the model is built from its config and the weights stream from the safetensors files into the graph's external data or the GPU buffers in bounded chunks, never whole in host memory (the load's time and peak RSS: generate --test_performance, bench rows)",
  default: false,
};

export const checkpointPathOption: OptionSpec<string | undefined> = {
  flag: 'checkpoint_path',
  arg: 'path',
  help: 'where the weights are: the seed\'s checkpoint description ({"type": "ds_model", "checkpoints": [shard files relative to it], "version": 1.0}, or a directory holding ds_inference_config.json) or a model.safetensors.index.json; safetensors shards only. Config and tokenizer come from --model (default: the description\'s directory)',
  parse: text,
};

/** Opens --model (else `fallback`: the description's directory with --checkpoint_path, or the default model) with the weights --checkpoint_path lists. */
export function openModel(model: string | undefined, checkpointPath: string | undefined, allowNonfinite: boolean, fallback: () => string): Checkpoint {
  const dir = model ?? (checkpointPath !== undefined ? descriptionDir(checkpointPath) : fallback());
  return openCheckpoint(dir, { allowNonfinite, ...(checkpointPath !== undefined ? { checkpointPath } : {}) });
}
