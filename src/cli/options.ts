/**
 * Command options, each defined once in a typed table that drives commander (flags, help,
 * defaults) and the parsed, typed result. Flag names keep the seed's snake_case.
 */
import { totalmem } from 'node:os';
import { CapacityError, UnsupportedError, UsageError } from '../errors.js';
import type { ModelDims } from '../arch/spec.js';
import { DTYPES as DTYPE_TABLE, dtypesFor, type Engine } from '../pipeline/dtypes.js';
import type { DType } from '../pipeline/types.js';

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
  /** What the flag does; --help adds the default (`default`, or `defaultHelp` where it is computed). */
  help: string;
  /** Default value, used when neither the flag nor its environment variable is given. */
  default?: T;
  /** The default in words, where it depends on other flags (shown by --help instead of `default`). */
  defaultHelp?: string;
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

/** A decimal number (12, 12.5, 0.25; no exponent, no sign) of at least `min`. */
export function decimalAtLeast(min: number) {
  return (raw: string, flag: string): number => {
    const n = Number(raw);
    if (!/^\d+(\.\d+)?$/.test(raw.trim()) || !Number.isFinite(n)) throw new UsageError(`--${flag}`, `expected a number such as 10 or 2.5, got "${raw}"`);
    if (n < min) throw new UsageError(`--${flag}`, `must be at least ${min}, got ${n}`);
    return n;
  };
}

export function oneOf<T extends string>(choices: readonly T[], aliases: Record<string, T> = {}) {
  return (raw: string, flag: string): T => {
    const v = Object.hasOwn(aliases, raw) ? aliases[raw]! : raw;
    if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${flag}`, `expected one of ${choices.join(', ')}, got "${raw}"`);
    return v as T;
  };
}

export function text(raw: string, flag: string): string {
  if (raw.trim() === '') throw new UsageError(`--${flag}`, 'must not be empty');
  return raw;
}

/**
 * A comma-separated list of `parse`'s values, e.g. `--batch_sizes 1,8`: every item present
 * (`1,,2` and a trailing comma are refused, not read as `1,2`) and none twice.
 */
export function listOf<T>(parse: (raw: string, flag: string) => T) {
  return (raw: string, flag: string): T[] => {
    const items = raw.split(',').map((s) => s.trim());
    const empty = items.findIndex((s) => s === '');
    if (empty >= 0) throw new UsageError(`--${flag}`, `item ${empty + 1} of "${raw}" is empty (expected a comma-separated list such as 1,8)`);
    const seen = new Set<string>();
    return items.map((s) => {
      const v = parse(s, flag);
      const key = String(v);
      if (seen.has(key)) throw new UsageError(`--${flag}`, `${key} is listed twice in "${raw}"`);
      seen.add(key);
      return v;
    });
  };
}

/** The default as --help shows it: `(default: 1)`, `(default: $LOCAL_RANK, else 0)`; none for switches. */
export function defaultNote(spec: Pick<OptionSpec<unknown>, 'arg' | 'default' | 'defaultHelp' | 'env'>): string {
  if (!spec.arg) return '';
  const shown = spec.defaultHelp ?? (spec.default === undefined ? undefined : Array.isArray(spec.default) ? spec.default.join(',') : String(spec.default));
  if (shown === undefined) return '';
  return spec.env ? ` (default: $${spec.env}, else ${shown})` : ` (default: ${shown})`;
}

// The kernels default and the engines are decided below the CLI (src/pipeline), re-exported for the commands.
export { kernelsFor } from '../pipeline/types.js';
export type { Engine };

export const ENGINE_NAMES: Record<Engine, string> = {
  transformersjs: 'the transformers.js reference (--hf_baseline)',
  hf: 'the Hugging Face transformers reference of generate (--hf_baseline --reference hf)',
  ort: "fusegen's ONNX Runtime graphs",
  wgsl: 'the WGSL engine',
  llamacpp: 'the llamacpp pipeline (llama.cpp through node-llama-cpp)',
};

/**
 * Every --dtype, once: which engines run it, read from the dtype table (src/pipeline/dtypes.ts)
 * that the pipelines read too. --help, the parser and the check before any work all read it,
 * so the help lists exactly what is accepted.
 */
export const DTYPES: Record<DType, readonly Engine[]> = Object.fromEntries((Object.keys(DTYPE_TABLE) as DType[]).map((d) => [d, DTYPE_TABLE[d].engines])) as Record<DType, readonly Engine[]>;

const DTYPE_ALIASES: Record<string, DType> = { bf16: 'bfloat16', fp32: 'float32', fp16: 'float16' };

export { dtypesFor };

/** `float32 | float16 | int8 | int4 | bfloat16 (bfloat16: only the Hugging Face ...)`: the accepted names, and where each is limited. */
export function dtypeHelp(engines: readonly Engine[]): string {
  const accepted = dtypesFor(engines);
  // Dtypes that not every engine runs, grouped by the engines that do: `int8, int4: only ...`.
  const groups = new Map<string, DType[]>();
  for (const d of accepted) {
    if (engines.every((e) => DTYPES[d].includes(e))) continue;
    const where = DTYPES[d].filter((e) => engines.includes(e)).map((e) => ENGINE_NAMES[e]).join(' and ');
    groups.set(where, [...(groups.get(where) ?? []), d]);
  }
  const limits = [...groups].map(([where, ds]) => `${ds.join(', ')}: only ${where}`);
  return `${accepted.join(' | ')}${limits.length ? ` (${limits.join('; ')})` : ''}`;
}

/**
 * --dtype for a command whose pipelines are `engines`: accepts exactly `dtypesFor(engines)`; a
 * dtype another command takes is refused saying where it runs. `help` follows the accepted list.
 */
export function dtypeOption(engines: readonly Engine[], help: string): OptionSpec<DType | undefined> {
  const accepted = dtypesFor(engines);
  return {
    flag: 'dtype',
    arg: 'type',
    help: `${dtypeHelp(engines)}; ${help}`,
    parse: (raw, flag) => {
      const v = Object.hasOwn(DTYPE_ALIASES, raw) ? DTYPE_ALIASES[raw]! : raw;
      if ((accepted as string[]).includes(v)) return v as DType;
      if (Object.hasOwn(DTYPES, v)) throw new UnsupportedError(`--${flag}`, `${v} runs only on ${DTYPES[v as DType].map((e) => ENGINE_NAMES[e]).join(' and ')}, not in this command; expected one of ${accepted.join(', ')}`);
      throw new UsageError(`--${flag}`, `expected one of ${accepted.join(', ')}, got "${raw}"`);
    },
  };
}

/** Refuses a dtype the engine that will run does not take (before any export). */
export function checkDtype(dtype: DType, engine: Engine): void {
  if (DTYPES[dtype].includes(engine)) return;
  const takes = dtypesFor([engine]);
  const where = DTYPES[dtype].map((e) => ENGINE_NAMES[e]).join(' and ');
  const why = DTYPE_TABLE[dtype].refused[engine];
  throw new UnsupportedError('--dtype', `${dtype} is not available for ${ENGINE_NAMES[engine]} (it takes ${takes.join(', ')}; ${dtype} runs on ${where})${why ? `: ${why}` : ''}`);
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
 * `flags` names what to blame (bench: --batch_sizes).
 */
export function checkKvBudget(batchSize: number, maxTokens: number, dims: ModelDims, limitBytes = totalmem(), flags: { batch: string; tokens: string } = { batch: '--batch_size', tokens: '--max_tokens' }): void {
  const perToken = dims.numLayers * 2 * dims.numKvHeads * dims.headDim * 4;
  const bytes = batchSize * maxTokens * perToken;
  if (bytes <= limitBytes) return;
  const gib = (b: number) => `${(b / 2 ** 30).toPrecision(3)} GiB`;
  const flag = batchSize > 1 ? flags.batch : flags.tokens;
  throw new CapacityError(flag, `${batchSize} sequences x ${maxTokens} tokens of KV cache need ${gib(bytes)}, more than this host's ${gib(limitBytes)} of memory`);
}

/** --allow_nonfinite, shared by the commands: NaN/Inf weights are refused at load unless given. */
export const allowNonfiniteOption: OptionSpec<boolean> = {
  flag: 'allow_nonfinite',
  help: 'run a checkpoint whose weights hold NaN or Inf values (refused at load otherwise); compare still never matches non-finite logits',
  default: false,
};
