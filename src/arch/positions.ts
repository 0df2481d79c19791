/**
 * Positions, computed in one place for every lowering (plain graph, injected graph, WGSL
 * engine): rotary inverse frequencies for each scaling type fusegen implements, ALiBi slopes,
 * and the rotary settings read from either layout Hugging Face has written:
 *   4.x: top-level `rope_theta`, `rope_scaling: {rope_type | type, factor, ...}`
 *   5.x: `rope_parameters: {rope_type, rope_theta, factor, ...}`
 * As HF's modeling_rope_utils keeps one table from rope_type to its function, so does this
 * file; a type without an entry is refused, never approximated.
 */
import type { RawConfig } from '../checkpoint/config.js';
import { InputError, UnsupportedError } from '../errors.js';

export type RopeType = 'default' | 'linear' | 'dynamic' | 'llama3';

export interface Rope {
  type: RopeType;
  theta: number;
  /** linear, dynamic, llama3. */
  factor?: number;
  /** llama3. */
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositions?: number;
  /** Share of each head that rotates (GPT-NeoX's rotary_pct, GPT-J's rotary_dim / head_dim); 1 when absent. */
  partialFactor: number;
  /** Rotating dimensions given as a count (GPT-J's rotary_dim), which the factor may not give exactly. */
  dims?: number;
}

/** Dimensions of each head that rotate: HF's int(head_dim * partial_rotary_factor), or the count given. */
export function rotaryDim(rope: Rope, headDim: number): number {
  return rope.dims ?? Math.floor(headDim * rope.partialFactor);
}

const f32 = Math.fround;

/** torch's float32 `1 / theta ** (arange(0, D, 2) / D)`, element by element. */
function defaultInvFreq(D: number, theta: number): Float32Array {
  return Float32Array.from({ length: D / 2 }, (_, i) => f32(1 / f32(theta ** f32((2 * i) / D))));
}

/** HF's _compute_llama3_parameters: long wavelengths slowed by `factor`, a smooth band between. */
function llama3InvFreq(inv: Float32Array, r: Required<Pick<Rope, 'factor' | 'lowFreqFactor' | 'highFreqFactor' | 'originalMaxPositions'>>): Float32Array {
  const lowWavelen = r.originalMaxPositions / r.lowFreqFactor;
  const highWavelen = r.originalMaxPositions / r.highFreqFactor;
  return inv.map((f) => {
    const wavelen = f32(f32(2 * Math.PI) / f);
    if (wavelen > lowWavelen) return f32(f / r.factor);
    if (wavelen < highWavelen) return f;
    const smooth = f32(f32(f32(r.originalMaxPositions / wavelen) - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor));
    return f32(f32(f32(1 - smooth) * f32(f / r.factor)) + f32(smooth * f));
  });
}

/**
 * Inverse rotary frequencies [D/2] in float32, as torch computes them. `dynamic` (NTK) equals
 * `default` while the run stays within max_position_embeddings, which checkCapacity enforces.
 * With partial rotary the pairs past rotaryDim / 2 get frequency 0 (cos 1, sin 0: unchanged), so
 * every lowering rotates whole heads in rotate-half form; rotaryHeadOrder says how the spec's
 * q/k views lay the head out for that.
 */
export function ropeInvFreq(rope: Rope, headDim: number): Float32Array {
  const inv = scaledInvFreq(rope, defaultInvFreq(rotaryDim(rope, headDim), rope.theta));
  const out = new Float32Array(headDim / 2);
  out.set(inv);
  return out;
}

function scaledInvFreq(rope: Rope, inv: Float32Array): Float32Array {
  switch (rope.type) {
    case 'default':
    case 'dynamic':
      return inv;
    case 'linear':
      return inv.map((f) => f32(f / rope.factor!));
    case 'llama3':
      return llama3InvFreq(inv, rope as Required<Rope>);
  }
}

/**
 * The order in which a spec's q and k views take each head's dimensions so that the model's
 * rotary layout becomes rotate-half over the whole head (dimension i paired with i + D/2, the
 * pass-through pairs at frequency 0). Attention scores are dot products of q and k, so the same
 * permutation of both changes nothing else (the KV cache holds permuted keys; values are not
 * permuted). `interleaved`: GPT-J's rotate_every_two pairs (2i, 2i + 1); otherwise rotate-half
 * over the first rotaryDim dimensions (GPT-NeoX's partial rotary) pairs (i, i + rotaryDim / 2).
 * The identity for a whole-head rotate-half model.
 */
export function rotaryHeadOrder(headDim: number, rotary: number, interleaved: boolean): number[] {
  const half = rotary / 2;
  const passHalf = (headDim - rotary) / 2;
  const pass = (k: number) => Array.from({ length: passHalf }, (_, i) => rotary + k * passHalf + i);
  const rot = (k: number) => Array.from({ length: half }, (_, i) => (interleaved ? 2 * i + k : k * half + i));
  return [...rot(0), ...pass(0), ...rot(1), ...pass(1)];
}

/** Row ranges of `heads` heads of headDim rows each, head h starting at start(h), taken in `order`. */
export function headRows(heads: number, headDim: number, start: (h: number) => number, order?: number[]): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (let h = 0; h < heads; h++) {
    for (const j of order ?? Array.from({ length: headDim }, (_, i) => i)) {
      const row = start(h) + j;
      const last = ranges[ranges.length - 1];
      if (last && last[0] + last[1] === row) last[1]++;
      else ranges.push([row, 1]);
    }
  }
  return ranges;
}

/** BLOOM's per-head slopes: a geometric sequence, interleaved when H is not a power of 2. */
export function alibiSlopes(heads: number): number[] {
  const p2 = 2 ** Math.floor(Math.log2(heads));
  const base = 2 ** -(2 ** -(Math.log2(p2) - 3));
  const slopes = Array.from({ length: p2 }, (_, i) => base ** (i + 1));
  if (p2 !== heads) {
    const extraBase = 2 ** -(2 ** -(Math.log2(2 * p2) - 3));
    const remaining = Math.min(p2, heads - p2);
    for (let i = 0; i < remaining; i++) slopes.push(extraBase ** (2 * i + 1));
  }
  return slopes;
}

/** The keys a rope settings object may hold, per type (closed world: any other key is refused). */
const ROPE_KEYS: Record<RopeType, readonly string[]> = {
  default: [],
  linear: ['factor'],
  dynamic: ['factor', 'original_max_position_embeddings'],
  llama3: ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'],
};

function num(obj: Record<string, unknown>, key: string, where: string, sep = '.'): number {
  const v = obj[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new InputError(`${where}${sep}${key}`, `expected a positive number, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Reads the rotary settings of a llama-family config in either layout. The 5.x
 * `rope_parameters` wins; a config that also carries a different top-level `rope_theta` is
 * refused as ambiguous rather than guessed.
 */
export interface RopeAliases {
  /** Theta when neither layout gives one. */
  defaultTheta?: number;
  /** Partial factor when neither layout gives one. */
  defaultPartial?: number;
  /** Top-level 4.x names of the theta and the partial factor (GPT-NeoX: rotary_emb_base, rotary_pct). */
  thetaKey?: string;
  partialKey?: string;
}

export function readRope(config: RawConfig, path: string, aliases: RopeAliases = {}): Rope {
  const defaultTheta = aliases.defaultTheta ?? 10000;
  const params = config['rope_parameters'];
  const scaling = config['rope_scaling'];
  let obj: Record<string, unknown>;
  let where: string;
  if (params !== undefined && params !== null) {
    where = `${path}: rope_parameters`;
    if (typeof params !== 'object' || Array.isArray(params)) throw new InputError(where, `expected an object, got ${JSON.stringify(params)}`);
    obj = params as Record<string, unknown>;
    if (Object.values(obj).some((v) => typeof v === 'object' && v !== null && !Array.isArray(v))) {
      throw new UnsupportedError(where, 'rotary settings per layer type are not supported (one setting for every layer only)');
    }
    const top = config['rope_theta'];
    if (top !== undefined && top !== null && obj['rope_theta'] !== undefined && top !== obj['rope_theta']) {
      throw new InputError(`${path}: rope_theta`, `${JSON.stringify(top)} disagrees with rope_parameters.rope_theta ${JSON.stringify(obj['rope_theta'])}`);
    }
    if (scaling !== undefined && scaling !== null) throw new InputError(`${path}: rope_scaling`, 'given beside rope_parameters: one layout at a time');
  } else {
    where = `${path}: rope_scaling`;
    if (scaling !== undefined && scaling !== null && (typeof scaling !== 'object' || Array.isArray(scaling))) throw new InputError(where, `expected an object or null, got ${JSON.stringify(scaling)}`);
    obj = { ...((scaling as Record<string, unknown> | null | undefined) ?? {}) };
    for (const [key, as] of [['rope_theta', 'rope_theta'], [aliases.thetaKey, 'rope_theta'], ['partial_rotary_factor', 'partial_rotary_factor'], [aliases.partialKey, 'partial_rotary_factor']] as const) {
      if (key && config[key] !== undefined && config[key] !== null) obj[as] = num(config, key, path, ': ');
    }
  }
  // 4.x wrote `type`, later `rope_type`; both may be present and must agree.
  const type = obj['rope_type'] ?? obj['type'] ?? 'default';
  if (obj['rope_type'] !== undefined && obj['type'] !== undefined && obj['rope_type'] !== obj['type']) {
    throw new InputError(`${where}.type`, `"${String(obj['type'])}" disagrees with rope_type "${String(obj['rope_type'])}"`);
  }
  if (typeof type !== 'string' || !(type in ROPE_KEYS)) {
    throw new UnsupportedError(`${where}.rope_type`, `rope type ${JSON.stringify(type)} is not supported (supported: ${Object.keys(ROPE_KEYS).join(', ')})`);
  }
  const t = type as RopeType;
  const known = new Set(['rope_type', 'type', 'rope_theta', 'partial_rotary_factor', ...ROPE_KEYS[t]]);
  for (const k of Object.keys(obj)) {
    if (!known.has(k)) throw new UnsupportedError(`${where}.${k}`, `unknown key for rope type "${t}": fusegen refuses what it cannot account for`);
  }
  const theta = obj['rope_theta'] === undefined ? defaultTheta : num(obj, 'rope_theta', where);
  const partialFactor = obj['partial_rotary_factor'] === undefined ? (aliases.defaultPartial ?? 1) : num(obj, 'partial_rotary_factor', where);
  if (partialFactor > 1) throw new InputError(`${where}.partial_rotary_factor`, `${partialFactor} exceeds 1`);
  const rope: Rope = { type: t, theta, partialFactor };
  if (t === 'default') return rope;
  rope.factor = num(obj, 'factor', where);
  if (t === 'dynamic' && obj['original_max_position_embeddings'] !== undefined) rope.originalMaxPositions = num(obj, 'original_max_position_embeddings', where);
  if (t === 'llama3') {
    rope.lowFreqFactor = num(obj, 'low_freq_factor', where);
    rope.highFreqFactor = num(obj, 'high_freq_factor', where);
    rope.originalMaxPositions = num(obj, 'original_max_position_embeddings', where);
    if (rope.highFreqFactor <= rope.lowFreqFactor) throw new InputError(`${where}.high_freq_factor`, `must exceed low_freq_factor ${rope.lowFreqFactor}`);
  }
  return rope;
}
