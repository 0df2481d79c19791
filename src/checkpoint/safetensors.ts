/**
 * Safetensors files: the lowest layer of the checkpoint reader.
 *
 * Layout: a little-endian u64 N, then N bytes of UTF-8 JSON header, then the data section.
 * Header entries are `name -> { dtype, shape, data_offsets: [begin, end] }` with offsets relative
 * to the data section, plus an optional `__metadata__` string map. Headers are untrusted: every
 * field is checked before any offset is used, and tensor data is read lazily by offset, so a
 * multi-GB checkpoint never sits in memory at once.
 */
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { InputError } from '../errors.js';

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  file: string;
  /** absolute byte offset in file */
  byteOffset: number;
  byteLength: number;
}

/** One or more safetensors files seen as one name -> tensor map. Tensors are read lazily, by offset, on demand: nothing reads a whole file into memory. */
export interface TensorStore {
  names(): string[];
  has(name: string): boolean;
  /** InputError naming the missing tensor and the checkpoint dir/file when absent. */
  info(name: string): TensorInfo;
  /** Exactly that tensor's bytes (little-endian, as stored). */
  readRaw(name: string): Uint8Array;
  /**
   * F32/F16/BF16 converted to float32 (exact: every F16/BF16 value is a float32); other dtypes -> InputError.
   * Float tensors read through readFloat32 or readRaw are checked for NaN/Inf as they are read
   * (unless the store was opened with allowNonfinite): InputError `<file>: <tensor>`.
   */
  readFloat32(name: string): Float32Array;
  /**
   * Elements [start, start + count) of the tensor in its flat (row-major) order, as readFloat32
   * gives them, reading only those bytes from the file: how a tensor is streamed in bounded
   * chunks. Checked for NaN/Inf as readFloat32 is. Optional: stores without it are read whole.
   * With `into` (at least `count` long) the values land there and a view of it is returned, so a
   * streamed load reuses one buffer instead of allocating a chunk per read.
   */
  readFloat32Range?(name: string, start: number, count: number, into?: Float32Array): Float32Array;
  /** The raw bytes of elements [start, start + count), as readRaw gives them (checked alike); `into` as for readFloat32Range. */
  readRawRange?(name: string, start: number, count: number, into?: Uint8Array): Uint8Array;
  close(): void;
}

export interface TensorToWrite {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  tensors: TensorInfo[];
}

export const SINGLE_WEIGHTS_NAME = 'model.safetensors';
export const INDEX_NAME = 'model.safetensors.index.json';

const BYTES_PER_ELEMENT: Record<SafetensorsDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};
const DTYPES = Object.keys(BYTES_PER_ELEMENT) as SafetensorsDType[];

/** Same cap as the reference implementation (MAX_HEADER_SIZE), so a corrupt length cannot make us allocate gigabytes. */
const MAX_HEADER_BYTES = 100_000_000;
/**
 * Budgets checked on the raw header bytes before JSON.parse, so a hostile header is refused in
 * one linear byte scan instead of after seconds of parsing and gigabytes of JS objects. A real
 * header nests 3 deep ({name: {shape: [..]}}); the largest public checkpoints (MoE models with
 * every expert a tensor) hold under 100k tensors.
 */
export const HEADER_LIMITS = { maxDepth: 16, maxEntries: 200_000, maxElements: 5_000_000 } as const;

export interface OpenOptions {
  /** Do not refuse NaN/Inf values in float tensors as they are read (--allow_nonfinite). */
  allowNonfinite?: boolean;
}
/** Per-syscall transfer size: a single read/write above 2 GiB fails on some platforms. */
const IO_CHUNK = 1 << 30;
/** Safetensors data is little-endian; on a big-endian host typed-array views need a byte swap. */
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const q = (s: string): string => JSON.stringify(s);
const fmtShape = (shape: readonly number[]): string => `[${shape.join(',')}]`;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Element count, or undefined when the product leaves the safe-integer range. */
function numelOf(shape: readonly number[]): number | undefined {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return undefined;
  }
  return n;
}

function isValidShape(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0);
}

// ---------------------------------------------------------------------------------------------
// Float16 / BFloat16 conversion. Conversions go through float32 bit patterns so that rounding is
// decided on exact integers (round to nearest, ties to even), never on inexact float arithmetic.

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function f32BitsToF16Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) {
    // Inf stays Inf; NaN keeps its top payload bits and is forced quiet so it cannot become Inf.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const he = exp - 112; // rebias 127 -> 15
  if (he >= 31) return sign | 0x7c00; // above the half range even before rounding
  if (he <= 0) {
    // Half subnormal (or zero): value = m * 2^-24 with m = mant24 * 2^(exp-126).
    if (he < -10) return sign; // below 2^-25: rounds to (signed) zero
    const m24 = mant | 0x800000;
    const shift = 14 - he; // 14..24
    let m = m24 >>> shift;
    const rem = m24 & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (m & 1) === 1)) m++; // may carry into the smallest normal: still correct
    return sign | m;
  }
  let bits = (he << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (bits & 1) === 1)) bits++; // carry may reach 0x7c00 = Inf, as it should
  return sign | bits;
}

function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    // Subnormal: normalise so the leading 1 becomes the implicit bit.
    let e = 113;
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

function f32BitsToBf16Bits(u: number): number {
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return (u >>> 16) | 0x40; // quiet NaN, never Inf
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16; // u < 2^32 - 2^16 here, so no wrap
}

/** IEEE binary16 bits of `x` rounded to float32 first (the name's contract), then to half, ties to even. */
export function float32ToFloat16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToF16Bits(scratchU32[0]!);
}

export function float16BitsToFloat32(h: number): number {
  scratchU32[0] = f16BitsToF32Bits(h & 0xffff);
  return scratchF32[0]!;
}

/** bfloat16 bits of `x` rounded to float32 first, then to bfloat16, ties to even. */
export function float32ToBFloat16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToBf16Bits(scratchU32[0]!);
}

/**
 * float32 values to bfloat16 bits into `out` (at least as long), ties to even on the exact bits:
 * Inf stays Inf, a NaN stays a quiet NaN with its top payload bits, subnormals round like any other
 * value (bfloat16 has float32's exponent range). The WGSL engine's bfloat16 weights.
 */
export function float32ArrayToBFloat16Bits(src: Float32Array, out: Uint16Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToBf16Bits(bits[i]!);
  return out;
}

export function bfloat16BitsToFloat32(b: number): number {
  scratchU32[0] = (b & 0xffff) << 16;
  return scratchF32[0]!;
}

/** f16 bits -> f32 bits for all 65536 halves; built on first F16 read (256 KiB). */
let f16Table: Uint32Array | undefined;
function f16ToF32Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

// ---------------------------------------------------------------------------------------------
// Reading

function readFully(fd: number, buf: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, Math.min(buf.length - done, IO_CHUNK), position + done);
    if (n === 0) {
      throw new InputError(file, `unexpected end of file at byte ${position + done} (the file shrank after it was opened?)`);
    }
    done += n;
  }
}

function openForRead(file: string): number {
  try {
    return openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(file, code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? (e as Error).message})`);
  }
}

/**
 * One pass over JSON bytes (outside strings): the nesting depth, the members of the top-level
 * object, and the values in all (array elements plus object members) must stay within budget.
 * Cheap and allocation-free; refusals name the file and the budget broken. Malformed JSON passes
 * through to JSON.parse, which names the syntax error.
 */
export function checkJsonBudget(bytes: Uint8Array, file: string, what: string, limits: { maxDepth: number; maxEntries: number; maxElements: number }): void {
  let depth = 0;
  let entries = 0;
  let elements = 0;
  let inString = false;
  let empty = true; // the current container has no value yet
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (inString) {
      if (b === 0x5c) i++; // backslash: skip the escaped byte
      else if (b === 0x22) inString = false;
      continue;
    }
    switch (b) {
      case 0x22: // "
        inString = true;
        if (empty && depth > 0) {
          empty = false;
          elements++;
          if (depth === 1) entries++;
        }
        break;
      case 0x5b: // [
      case 0x7b: // {
        if (empty && depth > 0) {
          elements++;
          if (depth === 1) entries++;
        }
        if (++depth > limits.maxDepth) throw new InputError(file, `${what} nests deeper than ${limits.maxDepth} levels at byte ${i}`);
        empty = true;
        break;
      case 0x5d: // ]
      case 0x7d: // }
        depth--;
        empty = false;
        break;
      case 0x2c: // ,
        elements++;
        if (depth === 1 && ++entries > limits.maxEntries) throw new InputError(file, `${what} has more than ${limits.maxEntries} entries (tensors)`);
        if (elements > limits.maxElements) throw new InputError(file, `${what} has more than ${limits.maxElements} JSON values`);
        empty = false;
        break;
      case 0x20:
      case 0x09:
      case 0x0a:
      case 0x0d:
      case 0x3a: // :
        break;
      default:
        if (empty && depth > 0) {
          empty = false;
          elements++;
          if (depth === 1) entries++;
        }
    }
  }
}

/** Parses and validates the header of an open file. Every check names the file and the tensor. */
function parseHeader(fd: number, file: string): SafetensorsHeader {
  const size = fstatSync(fd).size;
  if (size < 8) throw new InputError(file, `file is ${size} bytes, shorter than the 8-byte header length`);
  const prefix = new Uint8Array(8);
  readFully(fd, prefix, 0, file);
  const n = new DataView(prefix.buffer).getBigUint64(0, true);
  if (n > BigInt(size - 8)) {
    throw new InputError(file, `header length ${n} runs past the end of the file (${size} bytes)`);
  }
  const headerLength = Number(n);
  if (headerLength > MAX_HEADER_BYTES) {
    throw new InputError(file, `header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const headerBytes = new Uint8Array(headerLength);
  readFully(fd, headerBytes, 8, file);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new InputError(file, 'header is not valid UTF-8');
  }
  checkJsonBudget(headerBytes, file, 'header', HEADER_LIMITS);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json)) throw new InputError(file, 'header is not a JSON object');

  const dataStart = 8 + headerLength;
  const dataLength = size - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) throw new InputError(file, '__metadata__ is not a JSON object');
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw new InputError(file, `__metadata__ ${q(k)} is not a string (${JSON.stringify(v)})`);
        metadata[k] = v;
      }
      continue;
    }
    const what = `tensor ${q(name)}`;
    if (!isPlainObject(entry)) throw new InputError(file, `${what} entry is not a JSON object`);
    const dtype = entry['dtype'];
    if (typeof dtype !== 'string' || !(DTYPES as string[]).includes(dtype)) {
      throw new InputError(file, `${what} has unknown dtype ${JSON.stringify(dtype)} (expected one of ${DTYPES.join(', ')})`);
    }
    const shape = entry['shape'];
    if (!isValidShape(shape)) {
      throw new InputError(file, `${what} shape ${JSON.stringify(shape)} is not an array of non-negative integers`);
    }
    const offsets = entry['data_offsets'];
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0) ||
      (offsets[0] as number) > (offsets[1] as number)
    ) {
      throw new InputError(file, `${what} data_offsets ${JSON.stringify(offsets)} are not two integers [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) {
      throw new InputError(file, `${what} data_offsets [${begin}, ${end}] run past the end of the data section (${dataLength} bytes)`);
    }
    const numel = numelOf(shape);
    const expected = numel === undefined ? undefined : numel * BYTES_PER_ELEMENT[dtype as SafetensorsDType];
    if (expected === undefined || !Number.isSafeInteger(expected) || end - begin !== expected) {
      throw new InputError(
        file,
        `${what} data_offsets [${begin}, ${end}] do not match dtype ${dtype} and shape ${fmtShape(shape)} (${expected ?? 'too many'} bytes)`,
      );
    }
    tensors.push({ name, dtype: dtype as SafetensorsDType, shape, file, byteOffset: dataStart + begin, byteLength: end - begin });
  }

  // Overlap: sorted by start, non-empty ranges are disjoint iff each starts at or after the previous end
  // (empty tensors own no bytes, so they may sit anywhere). Gaps are tolerated.
  const byStart = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 1; i < byStart.length; i++) {
    const prev = byStart[i - 1]!;
    const t = byStart[i]!;
    if (t.byteOffset < prev.byteOffset + prev.byteLength) {
      const r = (x: TensorInfo): string => `[${x.byteOffset - dataStart}, ${x.byteOffset - dataStart + x.byteLength}]`;
      throw new InputError(file, `tensors ${q(prev.name)} ${r(prev)} and ${q(t.name)} ${r(t)} overlap`);
    }
  }
  return { metadata, tensors };
}

/** Header only (metadata and tensor table), without keeping the file open. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openForRead(path);
  try {
    return parseHeader(fd, path);
  } finally {
    closeSync(fd);
  }
}

interface NonfiniteCount {
  count: number;
  first: number;
  /** The first non-finite value (NaN, Infinity or -Infinity), for the message. */
  value: number;
}

/** NaN/Inf among float32 bit patterns (exponent all ones). `swapped`: the words are big-endian (-1) or host order (0). */
function countNonfinite32(words: Uint32Array, swapped: 0 | -1): NonfiniteCount {
  let count = 0;
  let first = -1;
  for (let i = 0; i < words.length; i++) {
    const w = swapped ? ((words[i]! & 0xff) << 24) | ((words[i]! & 0xff00) << 8) | ((words[i]! >>> 8) & 0xff00) | (words[i]! >>> 24) : words[i]!;
    if ((w & 0x7f800000) === 0x7f800000 && count++ === 0) first = i;
  }
  if (count === 0) return { count, first, value: 0 };
  return { count, first, value: bitsToFloat32(swapped ? Buffer.from(new Uint32Array([words[first]!]).buffer).swap32().readUInt32LE(0) : words[first]!) };
}

/**
 * NaN/Inf among little-endian half bit patterns: `expMask` 0x7c00 (F16) or 0x7f80 (BF16). A
 * first pass reads two halves per 32-bit word: adding the exponent's lowest bit to the masked
 * exponent carries into the half's top bit exactly when the exponent is all ones, and no carry
 * crosses into the other half, so OR-ing the sums says whether any half is non-finite (3-4x
 * faster than one half at a time). Only then are they counted one by one.
 */
function countNonfinite16(halves: Uint16Array, expMask: number, hostLe: boolean): NonfiniteCount {
  if (hostLe && !anyExponentAllOnes(halves, expMask)) return { count: 0, first: -1, value: 0 };
  let count = 0;
  let first = -1;
  for (let i = 0; i < halves.length; i++) {
    const h = hostLe ? halves[i]! : ((halves[i]! & 0xff) << 8) | (halves[i]! >>> 8);
    if ((h & expMask) === expMask && count++ === 0) first = i;
  }
  if (count === 0) return { count, first, value: 0 };
  const h = hostLe ? halves[first]! : ((halves[first]! & 0xff) << 8) | (halves[first]! >>> 8);
  return { count, first, value: expMask === 0x7c00 ? float16BitsToFloat32(h) : bfloat16BitsToFloat32(h) };
}

/** Whether any host-order half has its exponent (`expMask`) all ones: two at a time through 32-bit words. */
function anyExponentAllOnes(halves: Uint16Array, expMask: number): boolean {
  const low = expMask & -expMask; // the exponent's lowest bit
  const mask2 = (expMask | (expMask << 16)) >>> 0;
  const add2 = (low | (low << 16)) >>> 0;
  const allOnes = (h: number) => (h & expMask) === expMask;
  let i = 0;
  // Word-aligned start: a view may begin mid-word.
  if (halves.byteOffset % 4 !== 0 && halves.length > 0) {
    if (allOnes(halves[0]!)) return true;
    i = 1;
  }
  const words = new Uint32Array(halves.buffer, halves.byteOffset + i * 2, (halves.length - i) >> 1);
  let acc = 0;
  let w = 0;
  // Four words an iteration: V8 runs it at 2-3x the rate of one (6-7 GB/s here).
  for (const end = words.length - 3; w < end; w += 4) acc |= ((words[w]! & mask2) + add2) | ((words[w + 1]! & mask2) + add2) | ((words[w + 2]! & mask2) + add2) | ((words[w + 3]! & mask2) + add2);
  for (; w < words.length; w++) acc |= (words[w]! & mask2) + add2;
  if ((acc & 0x80008000) !== 0) return true;
  const tail = i + words.length * 2;
  return tail < halves.length && allOnes(halves[tail]!);
}

/** The first n elements of a caller's buffer, which must hold them. */
function fit<T extends Uint8Array | Float32Array>(into: T, n: number): T {
  if (into.length < n) throw new Error(`buffer of ${into.length} elements cannot take ${n}`);
  return into.subarray(0, n) as T;
}

function bitsToFloat32(u: number): number {
  scratchU32[0] = u;
  return scratchF32[0]!;
}

class FileTensorStore implements TensorStore {
  private closed = false;

  constructor(
    /** What to blame for a missing tensor: the file, or the checkpoint directory. */
    private readonly source: string,
    private readonly tensors: Map<string, TensorInfo>,
    private readonly fds: Map<string, number>,
    private readonly allowNonfinite = false,
  ) {}

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.get(name);
    return { ...t, shape: [...t.shape] };
  }

  readRaw(name: string): Uint8Array {
    const t = this.get(name);
    return this.readRawRange(name, 0, t.byteLength / BYTES_PER_ELEMENT[t.dtype]);
  }

  readRawRange(name: string, start: number, count: number, into?: Uint8Array): Uint8Array {
    const t = this.get(name);
    const size = BYTES_PER_ELEMENT[t.dtype];
    this.checkRange(t, start, count);
    const buf = into ? fit(into, count * size) : new Uint8Array(count * size);
    this.readInto(t, buf, start * size);
    if (!this.allowNonfinite) {
      if (t.dtype === 'F32') this.checkFinite(t, countNonfinite32(new Uint32Array(buf.buffer, buf.byteOffset, count), HOST_LE ? 0 : -1), start, count);
      else if (t.dtype === 'F16' || t.dtype === 'BF16') this.checkFinite(t, countNonfinite16(new Uint16Array(buf.buffer, buf.byteOffset, count), t.dtype === 'F16' ? 0x7c00 : 0x7f80, HOST_LE), start, count);
    }
    return buf;
  }

  readFloat32(name: string): Float32Array {
    const t = this.get(name);
    return this.readFloat32Range(name, 0, t.byteLength / BYTES_PER_ELEMENT[t.dtype]);
  }

  readFloat32Range(name: string, start: number, count: number, into?: Float32Array): Float32Array {
    const t = this.get(name);
    const numel = count;
    if (t.dtype === 'F32') {
      this.checkRange(t, start, count);
      const out = into ? fit(into, numel) : new Float32Array(numel);
      this.readInto(t, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), start * 4);
      if (!HOST_LE) Buffer.from(out.buffer, out.byteOffset, out.byteLength).swap32();
      if (!this.allowNonfinite) this.checkFinite(t, countNonfinite32(new Uint32Array(out.buffer, out.byteOffset, numel), 0), start, count);
      return out;
    }
    if (t.dtype === 'F16' || t.dtype === 'BF16') {
      this.checkRange(t, start, count);
      // Streamed reads (into given) reuse one buffer for the halves too.
      const halves = into ? this.halfScratch(numel) : new Uint16Array(numel);
      this.readInto(t, new Uint8Array(halves.buffer, halves.byteOffset, numel * 2), start * 2);
      if (!HOST_LE) Buffer.from(halves.buffer, halves.byteOffset, numel * 2).swap16();
      const result = into ? fit(into, numel) : new Float32Array(numel);
      const out = new Uint32Array(result.buffer, result.byteOffset, numel);
      // Checked as converted: a half is NaN/Inf iff its exponent bits are all ones.
      let bad = 0;
      let first = -1;
      if (t.dtype === 'F16') {
        const table = f16ToF32Table();
        for (let i = 0; i < numel; i++) {
          const h = halves[i]!;
          out[i] = table[h]!;
          if ((h & 0x7c00) === 0x7c00 && bad++ === 0) first = i;
        }
      } else {
        for (let i = 0; i < numel; i++) {
          const h = halves[i]!;
          out[i] = h << 16;
          if ((h & 0x7f80) === 0x7f80 && bad++ === 0) first = i;
        }
      }
      if (!this.allowNonfinite) this.checkFinite(t, { count: bad, first, value: first < 0 ? 0 : result[first]! }, start, count);
      return result;
    }
    throw new InputError(t.file, `tensor ${q(name)} has dtype ${t.dtype}; only F32, F16 and BF16 can be read as float32`);
  }

  private scratch16: Uint16Array | undefined;

  /** A reused buffer of at least n halves (streamed F16/BF16 reads). */
  private halfScratch(n: number): Uint16Array {
    if (!this.scratch16 || this.scratch16.length < n) this.scratch16 = new Uint16Array(n);
    return this.scratch16;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }

  /** `found` counts within elements [start, start + count) of the tensor; its `first` is relative to start. */
  private checkFinite(t: TensorInfo, found: NonfiniteCount, start: number, count: number): void {
    if (found.count === 0) return;
    const numel = t.byteLength / BYTES_PER_ELEMENT[t.dtype];
    const of = start === 0 && count === numel ? `${numel} values` : `the ${count} values at flat indices ${start}..${start + count - 1} (of ${numel})`;
    throw new InputError(
      `${t.file}: ${t.name}`,
      `${found.count} of ${of} are not finite (first at flat index ${start + found.first}: ${found.value}); pass --allow_nonfinite to run it anyway`,
    );
  }

  private checkRange(t: TensorInfo, start: number, count: number): void {
    const numel = t.byteLength / BYTES_PER_ELEMENT[t.dtype];
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 0 || start + count > numel) {
      throw new Error(`tensor ${q(t.name)}: elements [${start}, ${start + count}) are outside its ${numel}`);
    }
  }

  private get(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new InputError(this.source, `no tensor named ${q(name)} (${this.tensors.size} tensors present)`);
    return t;
  }

  /** Bytes of the tensor from `at` (relative to its first byte) into `buf`. */
  private readInto(t: TensorInfo, buf: Uint8Array, at = 0): void {
    const fd = this.fds.get(t.file);
    if (this.closed || fd === undefined) throw new Error(`TensorStore for ${this.source} is closed`);
    readFully(fd, buf, t.byteOffset + at, t.file);
  }
}

export function openSafetensorsFile(path: string, opts: OpenOptions = {}): TensorStore {
  const fd = openForRead(path);
  try {
    const { tensors } = parseHeader(fd, path);
    return new FileTensorStore(path, new Map(tensors.map((t) => [t.name, t])), new Map([[path, fd]]), opts.allowNonfinite ?? false);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Opens a checkpoint directory's weights: `model.safetensors`, or sharded files listed in `model.safetensors.index.json` ({"metadata":..., "weight_map": {name: file}}). Validates that every file named exists, that the index's names exist in their files, and that no name is in two shards. Missing weights -> InputError naming the directory and the files looked for. */
export function openCheckpointTensors(dir: string, opts: OpenOptions = {}): TensorStore {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new InputError(dir, 'checkpoint directory not found');
  }
  if (!isDir) throw new InputError(dir, 'not a directory');

  // Same preference order as transformers: the single file first, then the sharded index.
  const single = join(dir, SINGLE_WEIGHTS_NAME);
  if (isFile(single)) return openSafetensorsFile(single, opts);
  const indexPath = join(dir, INDEX_NAME);
  if (!isFile(indexPath)) {
    const bin = ['pytorch_model.bin', 'pytorch_model.bin.index.json'].filter((f) => existsSync(join(dir, f)));
    const hint = bin.length > 0 ? `; found ${bin.join(', ')}, but only safetensors weights are supported` : '';
    throw new InputError(dir, `no weights found: looked for ${SINGLE_WEIGHTS_NAME} and ${INDEX_NAME}${hint}`);
  }

  return openSafetensorsIndex(indexPath, opts);
}

/**
 * A `model.safetensors.index.json` ({"metadata":..., "weight_map": {name: file}}), its shards
 * relative to its own directory. Validates that every file named exists, that the index's names
 * exist in their files, that no name is listed twice or in two shards.
 */
export function openSafetensorsIndex(indexPath: string, opts: OpenOptions = {}): TensorStore {
  const dir = dirname(indexPath);
  const weightMap = readWeightMap(indexPath, dir);
  // Group tensor names by shard, in index order; check every shard exists before opening any.
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of weightMap) {
    const list = byShard.get(shard);
    if (list) list.push(name);
    else byShard.set(shard, [name]);
  }
  for (const [shard, names] of byShard) {
    if (!isFile(join(dir, shard))) {
      const more = names.length > 1 ? ` (and ${names.length - 1} more)` : '';
      throw new InputError(indexPath, `weight_map maps ${q(names[0]!)}${more} to shard ${q(shard)}, which does not exist in ${dir}`);
    }
  }
  return openShardFiles(dir, indexPath, [...byShard].map(([shard, names]) => ({ file: join(dir, shard), shard, names })), opts);
}

/**
 * Shard files (each checked to exist) seen as one store. `names`: what the index says the
 * shard holds, each checked to be in it. A tensor in two shards is refused naming both.
 * `source` is blamed for a missing tensor, `listing` for a tensor the listing misplaces.
 */
export function openShardFiles(source: string, listing: string, shards: ReadonlyArray<{ file: string; shard: string; names?: readonly string[] }>, opts: OpenOptions = {}): TensorStore {
  const fds = new Map<string, number>();
  try {
    const tensors = new Map<string, TensorInfo>();
    for (const { file, shard, names } of shards) {
      const fd = openForRead(file);
      fds.set(file, fd);
      const header = parseHeader(fd, file);
      const inShard = new Set(header.tensors.map((t) => t.name));
      for (const name of names ?? []) {
        if (!inShard.has(name)) {
          throw new InputError(listing, `weight_map maps ${q(name)} to shard ${q(shard)}, but that file has no tensor ${q(name)}`);
        }
      }
      for (const t of header.tensors) {
        const other = tensors.get(t.name);
        if (other) {
          throw new InputError(file, `tensor ${q(t.name)} is also in shard ${q(basename(other.file))}; a tensor must be in exactly one shard`);
        }
        tensors.set(t.name, t);
      }
    }
    return new FileTensorStore(source, tensors, fds, opts.allowNonfinite ?? false);
  } catch (e) {
    for (const fd of fds.values()) closeSync(fd);
    throw e;
  }
}

/**
 * The first member name that a JSON object's text repeats (JSON.parse keeps the last silently):
 * of the top-level object, or with `member` of the object that is that top-level member's
 * value. The text must be valid JSON (parse it first).
 */
export function repeatedKey(text: string, member?: string): string | undefined {
  const stack: Array<{ object: boolean; expectKey: boolean; target: boolean; keys?: Set<string> }> = [];
  let lastTopKey: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top?.object && top.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        top.expectKey = false;
        if (stack.length === 1) lastTopKey = key;
        if (top.keys) {
          if (top.keys.has(key)) return key;
          top.keys.add(key);
        }
      }
      i = j;
    } else if (c === 0x7b || c === 0x5b) {
      const object = c === 0x7b;
      const target = object && (member === undefined ? stack.length === 0 : stack.length === 1 && lastTopKey === member);
      stack.push({ object, expectKey: object, target, ...(target ? { keys: new Set<string>() } : {}) });
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
    } else if (c === 0x2c) {
      const top = stack[stack.length - 1];
      if (top?.object) top.expectKey = true;
    }
  }
  return undefined;
}

/** weight_map as name -> shard path relative to `dir`; shard paths may not escape `dir`. */
function readWeightMap(indexPath: string, dir: string): Map<string, string> {
  const size = statSync(indexPath).size;
  if (size > MAX_HEADER_BYTES) throw new InputError(indexPath, `is ${size} bytes, over the ${MAX_HEADER_BYTES}-byte limit for an index`);
  const bytes = readFileSync(indexPath);
  // The index lists each tensor once: the same budget as a header's (depth, values), its weight_map counted as values.
  checkJsonBudget(bytes, indexPath, 'index', { maxDepth: HEADER_LIMITS.maxDepth, maxEntries: HEADER_LIMITS.maxEntries, maxElements: HEADER_LIMITS.maxElements });
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new InputError(indexPath, `malformed JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json)) throw new InputError(indexPath, 'expected a JSON object');
  const wm = json['weight_map'];
  if (!isPlainObject(wm)) throw new InputError(indexPath, 'weight_map is missing or not a JSON object');
  const twice = repeatedKey(bytes.toString('utf8'), 'weight_map');
  if (twice !== undefined) throw new InputError(indexPath, `weight_map lists tensor ${q(twice)} twice; each tensor is listed once`);
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(wm)) {
    if (typeof shard !== 'string' || shard === '') {
      throw new InputError(indexPath, `weight_map entry ${q(name)} is not a file name (${JSON.stringify(shard)})`);
    }
    const rel = relative(dir, join(dir, shard));
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel) || isAbsolute(shard)) {
      throw new InputError(indexPath, `weight_map entry ${q(name)} names ${q(shard)}, which is outside the checkpoint directory`);
    }
    out.set(name, shard);
  }
  if (out.size === 0) throw new InputError(indexPath, 'weight_map is empty');
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Validates specs (programmer errors, hence plain Error) and returns each tensor's byte length. */
function planTensors(tensors: readonly TensorToWrite[]): number[] {
  const seen = new Set<string>();
  return tensors.map((t) => {
    if (t.name === '__metadata__') throw new Error('tensor name "__metadata__" is reserved');
    if (seen.has(t.name)) throw new Error(`tensor ${q(t.name)} is listed twice`);
    seen.add(t.name);
    if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') throw new Error(`tensor ${q(t.name)}: cannot write dtype ${String(t.dtype)}`);
    const numel = isValidShape(t.shape) ? numelOf(t.shape) : undefined;
    if (numel === undefined) throw new Error(`tensor ${q(t.name)}: invalid shape ${JSON.stringify(t.shape)}`);
    return numel * BYTES_PER_ELEMENT[t.dtype];
  });
}

/** The 8-byte length plus JSON header, padded with spaces to a multiple of 8 like the reference writer. */
function encodeHeader(tensors: readonly TensorToWrite[], sizes: readonly number[], metadata: Record<string, string> | undefined): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`metadata ${q(k)} must be a string`);
    }
    header['__metadata__'] = metadata;
  }
  let offset = 0;
  tensors.forEach((t, i) => {
    const size = sizes[i]!;
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  });
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/** Little-endian bytes of `values` in `dtype`. F32 on a little-endian host is a zero-copy view. */
function encodeValues(dtype: TensorToWrite['dtype'], values: Float32Array): Uint8Array {
  if (dtype === 'F32') {
    const view = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    return HOST_LE ? view : Buffer.from(view).swap32();
  }
  const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  if (dtype === 'F16') for (let i = 0; i < out.length; i++) out[i] = f32BitsToF16Bits(src[i]!);
  else for (let i = 0; i < out.length; i++) out[i] = f32BitsToBf16Bits(src[i]!);
  if (!HOST_LE) Buffer.from(out.buffer).swap16();
  return new Uint8Array(out.buffer);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, Math.min(bytes.length - done, IO_CHUNK));
}

/** Writes via a temp file in the target's directory, fsyncs, then renames: readers see the old file or the whole new one. */
function writeAtomically(target: string, body: (fd: number) => void): void {
  const dir = dirname(target);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx');
  try {
    body(fd);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, target);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw e;
  }
}

/**
 * Streams a safetensors file: the header is written from the specs, then each tensor's data is
 * produced by `fill` one at a time, so multi-GB checkpoints never sit in memory at once. `fill`
 * returns numel float32 values, converted to the tensor's dtype (F16/BF16: round to nearest even).
 * Metadata defaults to {format: "pt"}, which transformers requires when metadata is present.
 */
export function writeSafetensors(
  path: string,
  tensors: TensorToWrite[],
  fill: (t: TensorToWrite) => Float32Array,
  metadata: Record<string, string> | undefined = { format: 'pt' },
): void {
  const sizes = planTensors(tensors);
  const header = encodeHeader(tensors, sizes, metadata);
  writeAtomically(path, (fd) => {
    writeAll(fd, header);
    for (const t of tensors) {
      const values = fill(t);
      const numel = numelOf(t.shape)!;
      if (!(values instanceof Float32Array) || values.length !== numel) {
        const got = values instanceof Float32Array ? `${values.length} values` : 'not a Float32Array';
        throw new Error(`fill for tensor ${q(t.name)} shape ${fmtShape(t.shape)} must return a Float32Array of ${numel} values, got ${got}`);
      }
      writeAll(fd, encodeValues(t.dtype, values));
    }
  });
}

/**
 * Writes `model-0000i-of-0000n.safetensors` shards plus model.safetensors.index.json, packing
 * tensors in order so that no shard's tensor data exceeds maxShardBytes (the measure transformers
 * uses for max_shard_size). A single tensor larger than maxShardBytes gets a shard of its own.
 * The index is written last, so a reader never sees an index naming an unwritten shard.
 */
export function writeShardedSafetensors(
  dir: string,
  tensors: TensorToWrite[],
  fill: (t: TensorToWrite) => Float32Array,
  maxShardBytes: number,
): void {
  if (!Number.isSafeInteger(maxShardBytes) || maxShardBytes <= 0) throw new Error(`maxShardBytes must be a positive integer, got ${maxShardBytes}`);
  if (tensors.length === 0) throw new Error('writeShardedSafetensors needs at least one tensor');
  const sizes = planTensors(tensors);
  const shards: TensorToWrite[][] = [];
  let current: TensorToWrite[] = [];
  let currentBytes = 0;
  tensors.forEach((t, i) => {
    const size = sizes[i]!;
    if (current.length > 0 && currentBytes + size > maxShardBytes) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(t);
    currentBytes += size;
  });
  shards.push(current);

  const pad = (n: number): string => String(n).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, i) => {
    const file = `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`;
    writeSafetensors(join(dir, file), shard, fill, { format: 'pt' });
    for (const t of shard) weightMap[t.name] = file;
  });
  const totalSize = sizes.reduce((a, b) => a + b, 0);
  const index = new TextEncoder().encode(`${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2)}\n`);
  writeAtomically(join(dir, INDEX_NAME), (fd) => writeAll(fd, index));
}
