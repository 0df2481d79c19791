/**
 * The GGUF v3 container (llama.cpp's model file), written and read by fusegen itself, and the
 * two block quantizations the export offers, by fusegen's own code:
 *
 *   magic "GGUF", version u32 = 3, tensor count u64, metadata count u64,
 *   metadata: key (u64 length + UTF-8), value type u32, value (arrays: element type u32, count u64, elements),
 *   tensor infos: name, n_dims u32, dims u64[n_dims] (fastest first), ggml type u32, offset u64,
 *   padding to `general.alignment` (32), then the tensor data, each tensor at an aligned offset.
 *
 * Q8_0: blocks of 32 values along a row: an f16 scale d = amax / 127 and 32 int8 q = round(x / d).
 * Q4_0: blocks of 32: an f16 scale d = max / -8, max the value of largest magnitude with its sign,
 * and 16 bytes of nibbles q = min(15, trunc(x / d + 8.5)), element j in the low nibble of byte j and
 * element j + 16 in its high nibble. Both as llama.cpp's reference quantizers (ggml-quants.c
 * quantize_row_q8_0_ref / quantize_row_q4_0_ref): float32 arithmetic, the reciprocal of the
 * unrounded d, round half away from zero. test/llamacpp.test.ts holds them to a dequantizer
 * written from llama.cpp's definition.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { float32ToFloat16Bits } from '../checkpoint/safetensors.js';
import { InputError } from '../errors.js';
import type { GgufValue } from '../arch/gguf.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** ggml tensor types fusegen writes (ggml.h's enum ggml_type). */
export const GGML_TYPE = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;
export type GgmlTypeName = keyof typeof GGML_TYPE;

/** Values per block and bytes per block of each type. */
export const GGML_BLOCK: Record<GgmlTypeName, { values: number; bytes: number }> = {
  F32: { values: 1, bytes: 4 },
  F16: { values: 1, bytes: 2 },
  Q8_0: { values: 32, bytes: 34 },
  Q4_0: { values: 32, bytes: 18 },
};

/** GGUF metadata value types (gguf.h's enum gguf_type). */
const T = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STR: 8, ARR: 9, U64: 10, I64: 11, F64: 12 } as const;

/** Bytes of a tensor of `type` with `elements` values (a multiple of the block size). */
export function ggmlBytes(type: GgmlTypeName, elements: number): number {
  const b = GGML_BLOCK[type];
  if (elements % b.values !== 0) throw new Error(`fusegen: ${elements} values are not whole ${type} blocks of ${b.values}`);
  return (elements / b.values) * b.bytes;
}

const f32 = Math.fround;

/** C's roundf: half away from zero. */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** Q8_0 blocks of `x` (its length a multiple of 32), as quantize_row_q8_0_ref writes them. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const nb = x.length / 32;
  if (!Number.isInteger(nb)) throw new Error('fusegen: Q8_0 needs a multiple of 32 values');
  const out = new Uint8Array(nb * 34);
  const view = new DataView(out.buffer);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[i * 32 + j]!));
    const d = f32(amax / 127);
    const id = d ? f32(1 / d) : 0;
    view.setUint16(i * 34, float32ToFloat16Bits(d), true);
    for (let j = 0; j < 32; j++) view.setInt8(i * 34 + 2 + j, roundf(f32(x[i * 32 + j]! * id)));
  }
  return out;
}

/** Q4_0 blocks of `x` (its length a multiple of 32), as quantize_row_q4_0_ref writes them. */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const nb = x.length / 32;
  if (!Number.isInteger(nb)) throw new Error('fusegen: Q4_0 needs a multiple of 32 values');
  const out = new Uint8Array(nb * 18);
  const view = new DataView(out.buffer);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[i * 32 + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f32(max / -8);
    const id = d ? f32(1 / d) : 0;
    view.setUint16(i * 18, float32ToFloat16Bits(d), true);
    for (let j = 0; j < 16; j++) {
      // (int8_t)(x + 8.5f): truncation toward zero of a float32 sum, then at most 15.
      const q0 = Math.min(15, Math.trunc(f32(f32(x[i * 32 + j]! * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(f32(f32(x[i * 32 + 16 + j]! * id) + 8.5)));
      out[i * 18 + 2 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
    }
  }
  return out;
}

/** `values` (float32) as the bytes of a tensor of `type`. */
export function encodeTensor(values: Float32Array, type: GgmlTypeName): Uint8Array {
  switch (type) {
    case 'F32':
      return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    case 'F16': {
      const h = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) h[i] = float32ToFloat16Bits(values[i]!);
      return new Uint8Array(h.buffer);
    }
    case 'Q8_0':
      return quantizeQ8_0(values);
    case 'Q4_0':
      return quantizeQ4_0(values);
  }
}

/** A tensor's header entry: dims fastest first (GGUF order: [cols, rows] for a row-major matrix). */
export interface GgufTensorInfo {
  name: string;
  dims: number[];
  type: GgmlTypeName;
}

/** Little-endian bytes of the header, grown as written. */
class ByteWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  /** Appends n bytes that `write` puts at the given offset. */
  private put(n: number, write: (at: number) => void): void {
    this.room(n);
    write(this.length);
    this.length += n;
  }

  u32(v: number): void {
    this.put(4, (at) => this.buf.writeUInt32LE(v, at));
  }

  i32(v: number): void {
    this.put(4, (at) => this.buf.writeInt32LE(v, at));
  }

  u64(v: number): void {
    this.put(8, (at) => this.buf.writeBigUInt64LE(BigInt(v), at));
  }

  f32(v: number): void {
    this.put(4, (at) => this.buf.writeFloatLE(v, at));
  }

  u8(v: number): void {
    this.put(1, (at) => this.buf.writeUInt8(v, at));
  }

  str(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.put(bytes.length, (at) => bytes.copy(this.buf, at));
  }

  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.put(n, (at) => this.buf.fill(0, at, at + n));
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeValue(w: ByteWriter, v: GgufValue): void {
  const array = (elem: number, n: number, each: (i: number) => void) => {
    w.u32(T.ARR);
    w.u32(elem);
    w.u64(n);
    for (let i = 0; i < n; i++) each(i);
  };
  switch (v.type) {
    case 'u32':
      w.u32(T.U32);
      return w.u32(v.value);
    case 'i32':
      w.u32(T.I32);
      return w.i32(v.value);
    case 'u64':
      w.u32(T.U64);
      return w.u64(v.value);
    case 'f32':
      w.u32(T.F32);
      return w.f32(v.value);
    case 'bool':
      w.u32(T.BOOL);
      return w.u8(v.value ? 1 : 0);
    case 'str':
      w.u32(T.STR);
      return w.str(v.value);
    case 'str[]':
      return array(T.STR, v.value.length, (i) => w.str(v.value[i]!));
    case 'f32[]':
      return array(T.F32, v.value.length, (i) => w.f32(v.value[i]!));
    case 'i32[]':
      return array(T.I32, v.value.length, (i) => w.i32(v.value[i]!));
  }
}

/**
 * Writes a GGUF file: the header from `metadata` and `tensors`, then each tensor's bytes from
 * `data(i)` (called once per tensor, in order, so only one tensor is in memory at a time), each
 * checked against the size its type and dims give.
 */
export function writeGguf(path: string, metadata: Array<[string, GgufValue]>, tensors: GgufTensorInfo[], data: (i: number) => Uint8Array): { bytes: number; dataOffset: number } {
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, value] of metadata) {
    w.str(key);
    writeValue(w, value);
  }
  let offset = 0;
  const sizes = tensors.map((t) => ggmlBytes(t.type, t.dims.reduce((a, b) => a * b, 1)));
  for (const [i, t] of tensors.entries()) {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(GGML_TYPE[t.type]);
    w.u64(offset);
    offset += Math.ceil(sizes[i]! / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  }
  w.pad(GGUF_ALIGNMENT);
  const dataOffset = w.length;
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, w.bytes());
    let at = dataOffset;
    const zeros = new Uint8Array(GGUF_ALIGNMENT);
    for (const [i, t] of tensors.entries()) {
      const bytes = data(i);
      if (bytes.byteLength !== sizes[i]) throw new Error(`fusegen: GGUF tensor ${t.name} has ${bytes.byteLength} bytes, its ${t.type} [${t.dims.join(', ')}] takes ${sizes[i]}`);
      writeSync(fd, bytes);
      const pad = (GGUF_ALIGNMENT - (bytes.byteLength % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
      if (pad) writeSync(fd, zeros, 0, pad);
      at += bytes.byteLength + pad;
    }
    return { bytes: at, dataOffset };
  } finally {
    closeSync(fd);
  }
}

/** A parsed GGUF file: its metadata (values as JavaScript values) and tensor infos with absolute offsets. */
export interface GgufFile {
  version: number;
  metadata: Map<string, unknown>;
  /** Each key's GGUF value type (gguf_type), arrays as `array:<element type>`. */
  types: Map<string, string>;
  tensors: Array<GgufTensorInfo & { offset: number; bytes: number }>;
  dataOffset: number;
}

const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(T).map(([k, v]) => [v, k.toLowerCase()]));
const GGML_NAMES: Record<number, GgmlTypeName> = Object.fromEntries(Object.entries(GGML_TYPE).map(([k, v]) => [v, k as GgmlTypeName]));

/** Reads a GGUF file's header (metadata and tensor infos), as llama.cpp's gguf reader would; refuses anything else. */
export function readGguf(path: string): GgufFile {
  const fd = openSync(path, 'r');
  let pos = 0;
  let buf = Buffer.alloc(0);
  let bufStart = 0;
  const need = (n: number): Buffer => {
    if (pos + n > bufStart + buf.length) {
      const size = Math.max(n, 1 << 20);
      buf = Buffer.alloc(size);
      const got = readSync(fd, buf, 0, size, pos);
      if (got < n) throw new InputError(path, `truncated GGUF header at byte ${pos}`);
      buf = buf.subarray(0, got);
      bufStart = pos;
    }
    const out = buf.subarray(pos - bufStart, pos - bufStart + n);
    pos += n;
    return out;
  };
  const u32 = () => need(4).readUInt32LE(0);
  const u64 = () => Number(need(8).readBigUInt64LE(0));
  const str = () => need(u64()).toString('utf8');
  const scalar = (type: number): unknown => {
    switch (type) {
      case T.U8: return need(1).readUInt8(0);
      case T.I8: return need(1).readInt8(0);
      case T.U16: return need(2).readUInt16LE(0);
      case T.I16: return need(2).readInt16LE(0);
      case T.U32: return u32();
      case T.I32: return need(4).readInt32LE(0);
      case T.F32: return need(4).readFloatLE(0);
      case T.BOOL: return need(1).readUInt8(0) !== 0;
      case T.STR: return str();
      case T.U64: return u64();
      case T.I64: return Number(need(8).readBigInt64LE(0));
      case T.F64: return need(8).readDoubleLE(0);
      default: throw new InputError(path, `unknown GGUF value type ${type} at byte ${pos - 4}`);
    }
  };
  try {
    if (u32() !== GGUF_MAGIC) throw new InputError(path, 'not a GGUF file (no "GGUF" magic)');
    const version = u32();
    if (version !== GGUF_VERSION) throw new InputError(path, `GGUF version ${version}, fusegen reads version ${GGUF_VERSION}`);
    const nTensors = u64();
    const nKv = u64();
    const metadata = new Map<string, unknown>();
    const types = new Map<string, string>();
    for (let i = 0; i < nKv; i++) {
      const key = str();
      const type = u32();
      if (type === T.ARR) {
        const elem = u32();
        const n = u64();
        metadata.set(key, Array.from({ length: n }, () => scalar(elem)));
        types.set(key, `array:${TYPE_NAMES[elem]}`);
      } else {
        metadata.set(key, scalar(type));
        types.set(key, TYPE_NAMES[type] ?? String(type));
      }
    }
    const infos: Array<GgufTensorInfo & { offset: number }> = [];
    for (let i = 0; i < nTensors; i++) {
      const name = str();
      const nd = u32();
      const dims = Array.from({ length: nd }, () => u64());
      const t = u32();
      const type = GGML_NAMES[t];
      if (!type) throw new InputError(path, `tensor ${name}: ggml type ${t} is not one fusegen reads`);
      infos.push({ name, dims, type, offset: u64() });
    }
    const alignment = (metadata.get('general.alignment') as number | undefined) ?? GGUF_ALIGNMENT;
    const dataOffset = Math.ceil(pos / alignment) * alignment;
    const tensors = infos.map((t) => ({ ...t, offset: dataOffset + t.offset, bytes: ggmlBytes(t.type, t.dims.reduce((a, b) => a * b, 1)) }));
    return { version, metadata, types, tensors, dataOffset };
  } finally {
    closeSync(fd);
  }
}

/** The raw bytes of one tensor of a parsed file. */
export function readGgufTensor(path: string, file: GgufFile, name: string): Uint8Array {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new InputError(path, `no tensor "${name}"`);
  const out = Buffer.alloc(t.bytes);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, out, 0, t.bytes, t.offset);
  } finally {
    closeSync(fd);
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}
