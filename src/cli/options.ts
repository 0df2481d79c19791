/**
 * Command options, each defined once in a typed table that drives commander (flags, help,
 * defaults) and the parsed, typed result. Flag names keep the seed's snake_case.
 */
import { totalmem } from 'node:os';
import { CapacityError, UsageError } from '../errors.js';
import type { ModelDims } from '../arch/spec.js';

/**
 * What a command gives main for a second Ctrl-C: a synchronous writer of its partial report
 * (what finished so far), or undefined when there is nothing to write.
 */
export type AbortWriter = (() => void) | undefined;

export interface OptionSpec<T> {
  /** Flag without dashes, e.g. `batch_size`. */
  flag: string;
  /** Value placeholder; absent for boolean switches. */
  arg?: string;
  help: string;
  /** Default value, or a function of the other parsed options (resolved after parsing). */
  default?: T;
  /** Environment variable that provides the default, as the seed reads LOCAL_RANK. */
  env?: string;
  parse?: (raw: string, flag: string) => T;
}

export type OptionTable<O> = { [K in keyof O]-?: OptionSpec<O[K]> };

export function intAtLeast(min: number) {
  return (raw: string, flag: string): number => {
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n)) throw new UsageError(`--${flag}`, `expected an integer, got "${raw}"`);
    if (n < min) throw new UsageError(`--${flag}`, `must be at least ${min}, got ${n}`);
    return n;
  };
}

export function oneOf<T extends string>(choices: readonly T[], aliases: Record<string, T> = {}) {
  return (raw: string, flag: string): T => {
    const v = aliases[raw] ?? raw;
    if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${flag}`, `expected one of ${choices.join(', ')}, got "${raw}"`);
    return v as T;
  };
}

export function text(raw: string, flag: string): string {
  if (raw.trim() === '') throw new UsageError(`--${flag}`, 'must not be empty');
  return raw;
}

/**
 * --accuracy_level, shared by the commands: MatMulNBits' accuracy_level in ORT-injected int8/int4
 * graphs (InjectionPlan.accuracyLevel). Refused where no quantized ORT graph runs.
 */
export const accuracyLevelOption: OptionSpec<0 | 4 | undefined> = {
  flag: 'accuracy_level',
  arg: 'level',
  help: 'ORT-injected int8/int4: 4 multiplies int8 activations (default on cpu), 0 float ones (default elsewhere)',
  parse: (raw, flag) => Number(oneOf(['0', '4'])(raw, flag)) as 0 | 4,
};

/** `onOrt`: the command's optimized side is fusegen's ONNX Runtime graph (not the WGSL kernels or the reference). */
export function checkAccuracyLevel(level: 0 | 4 | undefined, dtype: string, onOrt = true): void {
  if (level === undefined) return;
  if (dtype !== 'int8' && dtype !== 'int4') throw new UsageError('--accuracy_level', `applies to --dtype int8 or int4, not ${dtype}`);
  if (!onOrt) throw new UsageError('--accuracy_level', "applies to fusegen's ONNX Runtime graphs, not --hf_baseline or the WGSL kernels");
}

/**
 * The KV cache a run would hold (batch x capacity x layers x 2 x KV heads x head dim, 4 bytes a
 * value at most), against the host's memory: sizes derived from the checkpoint, checked before
 * anything is allocated, so `--batch_size 1e9` is one line naming the flag, not a RangeError.
 */
export function checkKvBudget(batchSize: number, maxTokens: number, dims: ModelDims, limitBytes = totalmem()): void {
  const perToken = dims.numLayers * 2 * dims.numKvHeads * dims.headDim * 4;
  const bytes = batchSize * maxTokens * perToken;
  if (bytes <= limitBytes) return;
  const gib = (b: number) => `${(b / 2 ** 30).toPrecision(3)} GiB`;
  const flag = batchSize > 1 ? '--batch_size' : '--max_tokens';
  throw new CapacityError(flag, `${batchSize} sequences x ${maxTokens} tokens of KV cache need ${gib(bytes)}, more than this host's ${gib(limitBytes)} of memory`);
}

/** --allow_nonfinite, shared by the commands: NaN/Inf weights are refused at load unless given. */
export const allowNonfiniteOption: OptionSpec<boolean> = {
  flag: 'allow_nonfinite',
  help: 'run a checkpoint whose weights hold NaN or Inf values (refused at load otherwise); compare still never matches non-finite logits',
  default: false,
};

/** --dtype, shared by the commands: the seed's names plus int4, with bf16/fp32/fp16 aliases. */
export function dtypeOption<D extends string>(choices: readonly D[], help: string): OptionSpec<D | undefined> {
  return { flag: 'dtype', arg: 'type', help, parse: oneOf<D>(choices, { bf16: 'bfloat16', fp32: 'float32', fp16: 'float16' } as unknown as Record<string, D>) };
}
