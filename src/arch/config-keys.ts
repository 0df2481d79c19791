/**
 * Closed-world config reading: every key of config.json and generation_config.json is either
 * used (read and checked by the architecture spec), harmless (it leaves the math unchanged,
 * with the reason written here), harmless only at its default (refused otherwise, with the
 * reason), or unknown: an unknown key is refused, never ignored. A key fusegen misread would
 * change both sides of a comparison alike, so the gate could not catch it.
 */
import type { RawConfig } from '../checkpoint/config.js';
import { UnsupportedError } from '../errors.js';

/** What a key means to fusegen. */
export type KeyRule =
  | { use: true }
  /** Leaves the forward pass and the decoding unchanged, whatever its value. */
  | { harmless: string }
  /** Harmless at `value` (null and absent count as the default too); refused otherwise. */
  | { only: unknown; why: string };

export type KeyTable = Record<string, KeyRule>;

export const USED: KeyRule = { use: true };

const DROPOUT = { harmless: 'dropout is off at inference' };
const OUTPUTS = { harmless: 'chooses what Hugging Face returns, not how it is computed' };
const TRAINING = { harmless: 'only used when training or initializing weights' };
const HEADS = { harmless: 'belongs to heads other than the causal LM head' };

/** Keys every Hugging Face config may carry (PretrainedConfig's own), for every architecture. */
export const COMMON_KEYS: KeyTable = {
  model_type: USED,
  architectures: { harmless: 'names the Hugging Face class; fusegen picks the architecture by model_type' },
  transformers_version: { harmless: 'the version of the library that wrote the file' },
  _name_or_path: { harmless: 'where the writer loaded the model from' },
  _commit_hash: { harmless: 'the Hub revision the writer loaded' },
  torch_dtype: { harmless: "the weights' storage dtype; fusegen reads each tensor's dtype from the safetensors header and computes in --dtype" },
  dtype: { harmless: "the weights' storage dtype (transformers 5's name for torch_dtype); fusegen reads each tensor's dtype from the header" },
  use_cache: { harmless: 'a KV cache gives the same logits as recomputing' },
  output_past: { harmless: 'the old name of use_cache' },
  initializer_range: TRAINING,
  init_std: TRAINING,
  gradient_checkpointing: TRAINING,
  use_bfloat16: TRAINING,
  tf_legacy_loss: TRAINING,
  output_hidden_states: OUTPUTS,
  output_attentions: OUTPUTS,
  return_dict: OUTPUTS,
  torchscript: { harmless: 'exports for TorchScript; same math' },
  chunk_size_feed_forward: { harmless: 'chunks the feed-forward over positions: the same products' },
  _attn_implementation: { harmless: 'which attention kernel Hugging Face runs (eager, sdpa, flash): the same math' },
  _attn_implementation_autoset: { harmless: 'records that Hugging Face chose the attention kernel itself' },
  id2label: HEADS,
  label2id: HEADS,
  num_labels: HEADS,
  problem_type: HEADS,
  finetuning_task: HEADS,
  task_specific_params: { harmless: "defaults for Hugging Face's pipelines of other tasks" },
  tokenizer_class: { harmless: 'fusegen loads tokenizer.json whatever class wrote it' },
  prefix: { harmless: "Hugging Face's text-generation pipeline prepends it; the seed's DSPipeline and fusegen tokenize the prompt as given" },
  bos_token_id: { harmless: 'the tokenizer adds BOS; the model config only records it' },
  pad_token_id: { harmless: 'padded positions are masked out, whatever their id' },
  eos_token_id: USED,
  sep_token_id: HEADS,
  decoder_start_token_id: { harmless: 'encoder-decoder models only' },
  tie_encoder_decoder: { harmless: 'encoder-decoder models only' },
  cross_attention_hidden_size: { harmless: 'only read with add_cross_attention, which is refused' },
  is_decoder: { harmless: 'a causal LM is a decoder whatever the flag says' },
  is_encoder_decoder: { only: false, why: 'encoder-decoder models are not causal LMs' },
  add_cross_attention: { only: false, why: 'cross-attention layers are not supported' },
  pruned_heads: { only: {}, why: 'pruned attention heads are not supported' },
  pretraining_tp: { harmless: 'Hugging Face 4.x sliced the projections into this many parts: the same products' },
  fusegen_fixture: { harmless: "fusegen's own fixture provenance (name and seed)" },
  // Generation settings that older configs carry at the top level (Hugging Face derives a
  // generation config from them when generation_config.json is absent).
  ...generationDefaults(),
};

/**
 * generation_config.json: the seed passes max_new_tokens and do_sample itself (--max_new_tokens,
 * --greedy); temperature, top_k and top_p shape sampling as in Hugging Face's generate;
 * anything that would change the chosen tokens otherwise is refused away from its default.
 */
export const GENERATION_KEYS: KeyTable = {
  transformers_version: COMMON_KEYS['transformers_version']!,
  _from_model_config: { harmless: 'records that Hugging Face derived this file from config.json' },
  bos_token_id: COMMON_KEYS['bos_token_id']!,
  pad_token_id: COMMON_KEYS['pad_token_id']!,
  eos_token_id: USED,
  decoder_start_token_id: COMMON_KEYS['decoder_start_token_id']!,
  output_attentions: OUTPUTS,
  output_hidden_states: OUTPUTS,
  use_cache: COMMON_KEYS['use_cache']!,
  ...generationDefaults(),
  ...assistedDecoding(),
};

/** Settings of Hugging Face's generate that act only with an assistant model or a compiler, which the seed never passes. */
function assistedDecoding(): KeyTable {
  const assistant = { harmless: 'acts only when generate is given an assistant model (speculative decoding), which the seed never passes' };
  const engine = { harmless: "how Hugging Face's generate runs (compilation, cache sizing, chunked prefill, batching): the same tokens" };
  return {
    assistant_confidence_threshold: assistant,
    assistant_early_exit: assistant,
    assistant_ensemble_weight: assistant,
    assistant_lookbehind: assistant,
    target_lookbehind: assistant,
    num_assistant_tokens: assistant,
    num_assistant_tokens_schedule: assistant,
    is_assistant: assistant,
    max_matching_ngram_size: assistant,
    speculation_type: assistant,
    use_mtp: assistant,
    cache_config: engine,
    compile_config: engine,
    disable_compile: engine,
    continuous_batching_config: engine,
    max_cache_len: engine,
    prefill_chunk_size: engine,
    low_memory: { harmless: 'only read by contrastive search, which penalty_alpha (refused) turns on' },
  };
}

function generationDefaults(): KeyTable {
  const changesTokens = 'changes which tokens are chosen, and fusegen does not implement it';
  const beams = 'beam search is not supported';
  return {
    max_length: { harmless: 'the run length comes from --max_new_tokens, as the seed passes max_new_tokens' },
    max_new_tokens: { harmless: 'the run length comes from --max_new_tokens, as the seed passes it' },
    do_sample: { harmless: '--greedy decides, as the seed passes do_sample itself' },
    temperature: USED,
    top_k: USED,
    top_p: USED,
    output_scores: OUTPUTS,
    output_logits: OUTPUTS,
    return_dict_in_generate: OUTPUTS,
    cache_implementation: { harmless: "the layout of Hugging Face's KV cache: the same values" },
    min_length: { only: 0, why: changesTokens },
    min_new_tokens: { only: null, why: changesTokens },
    num_return_sequences: { only: 1, why: 'one sequence per prompt' },
    repetition_penalty: { only: 1, why: changesTokens },
    no_repeat_ngram_size: { only: 0, why: changesTokens },
    encoder_no_repeat_ngram_size: { only: 0, why: changesTokens },
    bad_words_ids: { only: null, why: changesTokens },
    forced_bos_token_id: { only: null, why: changesTokens },
    forced_eos_token_id: { only: null, why: changesTokens },
    suppress_tokens: { only: null, why: changesTokens },
    begin_suppress_tokens: { only: null, why: changesTokens },
    exponential_decay_length_penalty: { only: null, why: changesTokens },
    remove_invalid_values: { only: false, why: changesTokens },
    renormalize_logits: { only: false, why: changesTokens },
    typical_p: { only: 1, why: changesTokens },
    epsilon_cutoff: { only: 0, why: changesTokens },
    eta_cutoff: { only: 0, why: changesTokens },
    min_p: { only: null, why: changesTokens },
    penalty_alpha: { only: null, why: changesTokens },
    guidance_scale: { only: null, why: changesTokens },
    sequence_bias: { only: null, why: changesTokens },
    constraints: { only: null, why: changesTokens },
    force_words_ids: { only: null, why: changesTokens },
    encoder_repetition_penalty: { only: 1, why: changesTokens },
    dola_layers: { only: null, why: changesTokens },
    top_h: { only: null, why: changesTokens },
    token_healing: { only: false, why: changesTokens },
    watermarking_config: { only: null, why: changesTokens },
    prompt_lookup_num_tokens: { only: null, why: 'prompt-lookup decoding is not supported' },
    stop_strings: { only: null, why: 'stopping at strings is not supported: runs stop at end-of-sequence or the length' },
    max_time: { only: null, why: 'a time limit would make the tokens depend on the machine' },
    num_beams: { only: 1, why: beams },
    num_beam_groups: { only: 1, why: beams },
    diversity_penalty: { only: 0, why: beams },
    length_penalty: { harmless: 'only read by beam search, which is refused' },
    early_stopping: { harmless: 'only read by beam search, which is refused' },
  };
}

/** Null and absent count as the default; otherwise the values must be equal as JSON. */
function atDefault(value: unknown, only: unknown): boolean {
  return value === undefined || value === null || JSON.stringify(value) === JSON.stringify(only);
}

/**
 * Throws on the first key that is unknown, or known but at a value fusegen refuses. `table`
 * is the architecture's own (used keys and its harmless ones) over the common keys.
 */
export function checkConfigKeys(config: RawConfig, path: string, table: KeyTable, what = 'config key'): void {
  for (const [key, value] of Object.entries(config)) {
    const rule = table[key];
    if (!rule) throw new UnsupportedError(`${path}: ${key}`, `unknown ${what}: fusegen refuses what it cannot account for rather than ignore it`);
    if ('only' in rule && !atDefault(value, rule.only)) {
      throw new UnsupportedError(`${path}: ${key}`, `${JSON.stringify(value)} is not supported: ${rule.why}`);
    }
  }
}

/** How a key is classed, for the README's table and the tests. */
export function classify(rule: KeyRule): 'used' | 'harmless' | 'default only' {
  return 'use' in rule ? 'used' : 'harmless' in rule ? 'harmless' : 'default only';
}
