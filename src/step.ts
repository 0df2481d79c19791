/**
 * The contract between fusegen's generate loop (src/pipeline/loop.ts) and every engine that runs
 * its own steps (the ONNX Runtime injected graph, the WGSL kernels): it sits below both, so that
 * an engine knows the loop's types without importing the pipeline.
 */

export interface StepInput {
  /** tokens[b]: row b's new tokens; they start at position start[b]. */
  tokens: number[][];
  start: number[];
  /** Per row, the index (into its new tokens) whose logits decide the next token. */
  last: number[];
  /** Ids to mask to -inf before choosing (end-of-sequence during min_new_tokens). */
  suppress: number[];
  /**
   * The tokens are the ids the engine chose in the previous step, still on its device
   * (`tokens` then holds placeholders of length 1). Only for engines with `feedsBack`.
   */
  fromDevice?: boolean;
  /**
   * With a paged KV cache (`begin`'s `paging`): row b's blocks in order, block i holding its
   * positions i * blockSize ..; they must cover every position up to the row's last new token
   * (an idle row's throwaway token too). A scheduler keeps a block for such rows.
   */
  blockTables?: number[][];
}

/** A KV cache paged from a pool (vLLM's PagedAttention): `blocks` blocks of `blockSize` positions, any row any block. */
export interface KvPaging {
  blockSize: number;
  blocks: number;
}

/**
 * An engine's step. With `logits` it returns [B, V] float32 logits of the `last` positions;
 * an engine that can pick greedy tokens itself (argmax on the device) may return `ids` instead
 * when logits are not needed.
 */
export interface Stepper {
  /**
   * Greedy steps without logits can take their tokens from the previous step on the device,
   * and `step` submits its work before it first awaits: the loop then starts step t + 1 before
   * step t's ids are back, so the device never waits for the host.
   */
  readonly feedsBack?: boolean;
  /**
   * With `feedsBack`: how many steps may be submitted beyond the one being read (default 1).
   * Two keep the device busy while the host waits for a readback and encodes the next step.
   */
  readonly stepsAhead?: number;
  /** Whether `begin` takes `paging` (a block pool in place of a cache of `capacity` positions a row). */
  readonly pagedKv?: boolean;
  /** Sizes the engine for `batch` rows of up to `capacity` positions; with `paging` the KV cache is a block pool, each step's rows naming their blocks. */
  begin(batch: number, capacity: number, paging?: KvPaging): void | Promise<void>;
  step(input: StepInput, needLogits: boolean): Promise<{ logits?: Float32Array; ids?: number[] }>;
  end(): void;
}
