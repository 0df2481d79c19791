/**
 * The seed's loading and launch flags, shared by generate, compare and bench:
 * `--use_meta_tensor` (the name of how fusegen always loads), `--checkpoint_path` (weights
 * from the shards a checkpoint description or a safetensors index lists), and `--world_size`
 * and `--local_rank` (the layer split across devices, and the launcher's rank).
 */
import { openCheckpoint, type Checkpoint } from '../arch/checkpoint.js';
import { descriptionDir } from '../checkpoint/description.js';
import { UsageError } from '../errors.js';
import { intAtLeast, text, type OptionSpec } from './options.js';

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

export const worldSizeOption: OptionSpec<number> = {
  flag: 'world_size',
  arg: 'n',
  help: "ranks: the WGSL engine splits the model's layers across this many WebGPU devices (the first holds the embedding, the last the LM head, the hidden state crosses between them), so a model larger than one GPU runs; one process drives every rank. With one GPU the ranks share it (the output says so)",
  default: 1,
  env: 'WORLD_SIZE',
  parse: intAtLeast(1),
};

export const localRankOption: OptionSpec<number> = {
  flag: 'local_rank',
  arg: 'n',
  help: 'rank of this process, as a launcher (deepspeed, torchrun) sets it: local rank 0 drives every device; another rank prints one line and exits 0',
  default: 0,
  env: 'LOCAL_RANK',
  parse: intAtLeast(0),
};

/**
 * A launcher starts one process per rank, but one fusegen process drives all of them: the
 * line a rank other than 0 prints before it exits 0, or undefined for rank 0. A rank at or
 * past the world size is refused.
 */
export function otherRankLine(localRank: number, worldSize: number): string | undefined {
  if (localRank >= worldSize) throw new UsageError('--local_rank', `${localRank} is not below --world_size ${worldSize}`);
  if (localRank === 0) return undefined;
  return `local rank ${localRank} of ${worldSize}: nothing to do, local rank 0 drives every device`;
}

/** Every rank holds at least one layer: refused before anything loads. */
export function checkWorldSize(worldSize: number, ckpt: Checkpoint): void {
  if (worldSize > ckpt.dims.numLayers) throw new UsageError('--world_size', `${worldSize} ranks for the ${ckpt.dims.numLayers} layers of ${ckpt.configPath}: each rank holds at least one layer`);
}

export const saveOption: OptionSpec<string | undefined> = {
  flag: 'save_mp_checkpoint_path',
  arg: 'dir',
  help: "save the kernel-injected model here in the form that loads fastest (the WGSL engine's GPU buffers as uploaded, one file per rank; or the ORT-injected graph and its external data), with config, tokenizer and a manifest; --model DIR runs it. An earlier save there is replaced, any other non-empty directory refused",
  parse: text,
};
