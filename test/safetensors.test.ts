import { describe, it, expect, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InputError } from '../src/errors.js';
import {
  bfloat16BitsToFloat32,
  float16BitsToFloat32,
  float32ToBFloat16Bits,
  float32ToFloat16Bits,
  openCheckpointTensors,
  openSafetensorsFile,
  readSafetensorsHeader,
  writeSafetensors,
  writeShardedSafetensors,
  type TensorStore,
  type TensorToWrite,
} from '../src/checkpoint/safetensors.js';

const tmpDirs: string[] = [];
const stores: TensorStore[] = [];

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'fusegen-st-'));
  tmpDirs.push(d);
  return d;
}

function track(s: TensorStore): TensorStore {
  stores.push(s);
  return s;
}

afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of tmpDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** Writes a hand-made file: u64 length (default: the header's), header text, then `data` bytes. */
function rawFile(file: string, header: string | object, data: number | Uint8Array, declaredLength?: bigint): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(declaredLength ?? BigInt(h.length));
  const body = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data);
  fs.writeFileSync(file, Buffer.concat([len, h, body]));
  return file;
}

/** Asserts an InputError blaming `culprit` whose message contains every fragment. */
function expectInputError(fn: () => unknown, culprit: string, ...fragments: string[]): InputError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(InputError);
  const ie = err as InputError;
  expect(ie.culprit).toBe(culprit);
  for (const f of fragments) expect(ie.message).toContain(f);
  return ie;
}

function f32Bits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}

function fromF32Bits(u: number): number {
  return new Float32Array(new Uint32Array([u]).buffer)[0]!;
}

/** Independent oracle: every non-negative f16 value by formula, bits index = value order, 0x7c00 counted as 65536 (IEEE overflow rule). */
const F16_VALUES: number[] = [];
for (let bits = 0; bits <= 0x7c00; bits++) {
  const e = bits >> 10;
  const m = bits & 0x3ff;
  F16_VALUES.push(e === 0 ? m * 2 ** -24 : e === 31 ? 65536 : (1 + m / 1024) * 2 ** (e - 15));
}

function oracleF16(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65536) return sign | 0x7c00;
  let lo = 0;
  let hi = F16_VALUES.length - 1; // largest index with value <= a
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (F16_VALUES[mid]! <= a) lo = mid;
    else hi = mid - 1;
  }
  if (F16_VALUES[lo] === a) return sign | lo;
  const dLo = a - F16_VALUES[lo]!;
  const dHi = F16_VALUES[lo + 1]! - a;
  const pick = dLo < dHi ? lo : dHi < dLo ? lo + 1 : lo % 2 === 0 ? lo : lo + 1;
  return sign | pick;
}

/** Deterministic PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

describe('float16 conversion', () => {
  it('round-trips every non-NaN half exactly, and NaN halves stay NaN', () => {
    for (let h = 0; h < 65536; h++) {
      const f = float16BitsToFloat32(h);
      const isNaNHalf = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaNHalf) {
        expect(Number.isNaN(f)).toBe(true);
        expect(float32ToFloat16Bits(f) & 0x7c00).toBe(0x7c00);
        expect(float32ToFloat16Bits(f) & 0x3ff).not.toBe(0);
      } else if (float32ToFloat16Bits(f) !== h) {
        expect.fail(`half 0x${h.toString(16)} -> ${f} -> 0x${float32ToFloat16Bits(f).toString(16)}`);
      }
    }
    // Decoding agrees with the formula, including subnormals and the sign of zero.
    expect(float16BitsToFloat32(0x0001)).toBe(2 ** -24);
    expect(float16BitsToFloat32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(float16BitsToFloat32(0x0400)).toBe(2 ** -14);
    expect(float16BitsToFloat32(0x3c00)).toBe(1);
    expect(float16BitsToFloat32(0xc000)).toBe(-2);
    expect(float16BitsToFloat32(0x7bff)).toBe(65504);
    expect(float16BitsToFloat32(0x7c00)).toBe(Infinity);
    expect(float16BitsToFloat32(0xfc00)).toBe(-Infinity);
    expect(Object.is(float16BitsToFloat32(0x8000), -0)).toBe(true);
  });

  it('rounds to nearest, ties to even, in normal, subnormal and overflow ranges', () => {
    const cases: [number, number][] = [
      [1 + 2 ** -11, 0x3c00], // tie between 1 (even) and 1+2^-10 -> 1
      [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 (odd) and 0x3c02 -> 0x3c02
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie -> up
      [1 + 2 ** -11 - 2 ** -20, 0x3c00], // just below the tie -> down
      [-(1 + 3 * 2 ** -11), 0xbc02],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie between 0 and 2^-24 -> 0
      [-(2 ** -25), 0x8000],
      [2 ** -25 + 2 ** -40, 0x0001], // just above the tie
      [1.5 * 2 ** -24, 0x0002], // subnormal tie 1|2 -> 2
      [2.5 * 2 ** -24, 0x0002], // subnormal tie 2|3 -> 2
      [1023.5 * 2 ** -24, 0x0400], // largest subnormal tie carries into the smallest normal
      [2 ** -14 - 2 ** -30, 0x0400],
      [2 ** -30, 0x0000],
      [65504, 0x7bff],
      [65519.99, 0x7bff], // below the overflow threshold
      [65520, 0x7c00], // the tie between 65504 and 2^16 overflows to Inf
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [0, 0x0000],
      [-0, 0x8000],
      [1e-45, 0x0000], // float32 subnormal
    ];
    for (const [x, bits] of cases) {
      if (float32ToFloat16Bits(x) !== bits) {
        expect.fail(`${x}: expected 0x${bits.toString(16)}, got 0x${float32ToFloat16Bits(x).toString(16)}`);
      }
    }
    const nan = float32ToFloat16Bits(NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x3ff).not.toBe(0);
    // A NaN whose payload sits only in the low float32 bits must stay NaN, not turn into Inf.
    const lowNaN = float32ToFloat16Bits(fromF32Bits(0x7f800001));
    expect(lowNaN & 0x3ff).not.toBe(0);
  });

  it('matches a nearest-value oracle on 200k random float32 values', () => {
    const next = rng(12345);
    for (let i = 0; i < 200_000; i++) {
      // Bias exponents to the half range (incl. subnormals and overflow), with some fully random ones.
      const r = next();
      let u = r;
      if (i % 4 !== 0) u = ((r & 0x807fffff) | ((96 + (next() % 50)) << 23)) >>> 0;
      const x = fromF32Bits(u);
      if (Number.isNaN(x)) continue;
      const got = float32ToFloat16Bits(x);
      const want = oracleF16(x);
      if (got !== want) expect.fail(`${x} (0x${u.toString(16)}): expected 0x${want.toString(16)}, got 0x${got.toString(16)}`);
    }
  });
});

describe('bfloat16 conversion', () => {
  it('round-trips every non-NaN bfloat16 exactly', () => {
    for (let b = 0; b < 65536; b++) {
      const f = bfloat16BitsToFloat32(b);
      const isNaNB = (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;
      if (isNaNB) {
        expect(Number.isNaN(f)).toBe(true); // payload bits may be canonicalised by JS numbers
      } else {
        if (f32Bits(f) !== ((b << 16) >>> 0)) expect.fail(`bf16 0x${b.toString(16)} decoded to bits 0x${f32Bits(f).toString(16)}`);
        if (float32ToBFloat16Bits(f) !== b) expect.fail(`bf16 0x${b.toString(16)} did not round-trip`);
      }
    }
  });

  it('rounds to nearest, ties to even, and overflows to Inf', () => {
    expect(float32ToBFloat16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even (1)
    expect(float32ToBFloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie -> even (up)
    expect(float32ToBFloat16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(float32ToBFloat16Bits(-(1 + 2 ** -8 + 2 ** -20))).toBe(0xbf81);
    expect(float32ToBFloat16Bits(fromF32Bits(0x7f7fffff))).toBe(0x7f80); // float32 max rounds to Inf
    expect(float32ToBFloat16Bits(fromF32Bits(0x7f7f7fff))).toBe(0x7f7f);
    expect(float32ToBFloat16Bits(fromF32Bits(0x00008000))).toBe(0x0000); // subnormal tie -> even 0
    expect(float32ToBFloat16Bits(fromF32Bits(0x00018000))).toBe(0x0002); // subnormal tie -> even up
    expect(float32ToBFloat16Bits(-Infinity)).toBe(0xff80);
    const nan = float32ToBFloat16Bits(fromF32Bits(0x7f800001)); // payload only in the dropped bits
    expect(nan & 0x7f80).toBe(0x7f80);
    expect(nan & 0x7f).not.toBe(0);
  });

  it('matches a nearest-value oracle on random float32 values', () => {
    const next = rng(777);
    for (let i = 0; i < 100_000; i++) {
      const u = next();
      const x = fromF32Bits(u);
      if (Number.isNaN(x)) continue;
      const a = Math.abs(x);
      const loBits = (u & 0x7fff0000) >>> 16;
      const lo = bfloat16BitsToFloat32(loBits);
      const hi = loBits + 1 === 0x7f80 ? 2 ** 128 : bfloat16BitsToFloat32(loBits + 1);
      const pick = a - lo < hi - a ? loBits : hi - a < a - lo ? loBits + 1 : loBits % 2 === 0 ? loBits : loBits + 1;
      const want = (x < 0 || Object.is(x, -0) ? 0x8000 : 0) | pick;
      expect(float32ToBFloat16Bits(x)).toBe(want);
    }
  });
});

/** Distinct, partly non-representable values per tensor: index-dependent so a wrong slice is caught. */
function valuesFor(t: TensorToWrite): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const seed = [...t.name].reduce((a, c) => a * 31 + c.charCodeAt(0), 7) % 1000;
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (seed + i * 0.37) * (i % 2 === 0 ? 1 : -1) * 1.0001;
  return v;
}

describe('writeSafetensors / openSafetensorsFile round trip', () => {
  it('round-trips F32, F16 and BF16 with the right values, offsets and padded header', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'model.safetensors');
    const special = new Float32Array([0, -0, 1, -2.5, 65504, 65520, 1e-7, 2 ** -24, 2 ** -25, 1 + 2 ** -11, Infinity, -Infinity, NaN, 3.14159, 1e30, -1e-30]);
    const specs: TensorToWrite[] = [
      { name: 'a.f32', dtype: 'F32', shape: [4, 4] },
      { name: 'b.f16', dtype: 'F16', shape: [2, 8] },
      { name: 'c.bf16', dtype: 'BF16', shape: [16] },
      { name: 'd.scalar', dtype: 'F32', shape: [] },
      { name: 'e.empty', dtype: 'F16', shape: [0, 3] },
    ];
    const fills: Record<string, Float32Array> = {
      'a.f32': special,
      'b.f16': special,
      'c.bf16': special,
      'd.scalar': new Float32Array([42.5]),
      'e.empty': new Float32Array(0),
    };
    const filled: string[] = [];
    writeSafetensors(file, specs, (t) => {
      filled.push(t.name);
      return fills[t.name]!;
    }, { format: 'pt', note: 'hello' });
    expect(filled).toEqual(specs.map((t) => t.name)); // one at a time, in order

    // Header: length prefix is a multiple of 8 and the padding is spaces.
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const headerText = bytes.subarray(8, 8 + n).toString('utf8');
    const json = headerText.trimEnd();
    expect(json.endsWith('}')).toBe(true);
    expect(headerText.slice(json.length)).toMatch(/^ {0,7}$/); // space padding, less than 8
    expect(bytes.length).toBe(8 + n + 64 + 32 + 32 + 4 + 0);
    expect(readSafetensorsHeader(file).metadata).toEqual({ format: 'pt', note: 'hello' });

    // The special values hold Inf and NaN, which readers refuse unless allowed (test/hardening.test.ts).
    const s = track(openSafetensorsFile(file, { allowNonfinite: true }));
    expect(s.names()).toEqual(['a.f32', 'b.f16', 'c.bf16', 'd.scalar', 'e.empty']);
    expect(s.info('b.f16')).toEqual({ name: 'b.f16', dtype: 'F16', shape: [2, 8], file, byteOffset: 8 + n + 64, byteLength: 32 });
    expect(s.info('d.scalar').shape).toEqual([]);

    expect(Array.from(s.readFloat32('a.f32'))).toEqual(Array.from(special));
    const f16 = s.readFloat32('b.f16');
    const bf16 = s.readFloat32('c.bf16');
    for (let i = 0; i < special.length; i++) {
      const x = special[i]!;
      const want16 = float16BitsToFloat32(float32ToFloat16Bits(x));
      const wantB = bfloat16BitsToFloat32(float32ToBFloat16Bits(x));
      expect(Object.is(f16[i], want16) || (Number.isNaN(f16[i]) && Number.isNaN(want16))).toBe(true);
      expect(Object.is(bf16[i], wantB) || (Number.isNaN(bf16[i]) && Number.isNaN(wantB))).toBe(true);
    }
    // Spot-check concrete half values so a consistently wrong converter cannot pass.
    expect(Array.from(f16.slice(0, 10))).toEqual([0, -0, 1, -2.5, 65504, Infinity, 1.1920928955078125e-7, 2 ** -24, 0, 1]);
    expect(bf16[4]).toBe(65536); // 65504 -> bf16 rounds to 2^16
    expect(s.readFloat32('d.scalar')).toEqual(new Float32Array([42.5]));
    expect(s.readFloat32('e.empty').length).toBe(0);

    // Raw bytes are exactly the stored little-endian encoding.
    const raw16 = s.readRaw('b.f16');
    expect(raw16.length).toBe(32);
    expect(Buffer.from(raw16).readUInt16LE(2 * 9)).toBe(float32ToFloat16Bits(1 + 2 ** -11));
    expect(Buffer.from(raw16).readUInt16LE(2 * 5)).toBe(0x7c00);
    expect(Buffer.from(s.readRaw('a.f32')).readFloatLE(4 * 13)).toBeCloseTo(3.14159, 5);
  });

  it('defaults metadata to {format: "pt"} and leaves no temp files behind', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'w.safetensors');
    writeSafetensors(file, [{ name: 'x', dtype: 'F32', shape: [2] }], () => new Float32Array([1, 2]));
    expect(readSafetensorsHeader(file).metadata).toEqual({ format: 'pt' });
    expect(fs.readdirSync(dir)).toEqual(['w.safetensors']);
  });

  it('is atomic: a failing fill leaves the previous file intact and no temp file', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'model.safetensors');
    writeSafetensors(file, [{ name: 'old', dtype: 'F32', shape: [1] }], () => new Float32Array([7]));
    const before = fs.readFileSync(file);
    const specs: TensorToWrite[] = [
      { name: 'a', dtype: 'F32', shape: [2] },
      { name: 'b', dtype: 'F32', shape: [3] },
    ];
    expect(() => writeSafetensors(file, specs, (t) => (t.name === 'a' ? new Float32Array(2) : new Float32Array(2)))).toThrow(/"b".*3 values.*got 2/);
    expect(() =>
      writeSafetensors(file, specs, (t) => {
        if (t.name === 'b') throw new Error('boom');
        return new Float32Array(2);
      }),
    ).toThrow('boom');
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
  });

  it('reads lazily: each read returns exactly its tensor, from the file as it is at read time', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'model.safetensors');
    const specs: TensorToWrite[] = Array.from({ length: 20 }, (_, i) => ({
      name: `layer.${i}.w`,
      dtype: (['F32', 'F16', 'BF16'] as const)[i % 3]!,
      shape: [i + 1, 3],
    }));
    writeSafetensors(file, specs, valuesFor);
    const s = track(openSafetensorsFile(file));
    // Out of order, repeatedly.
    for (const i of [19, 0, 7, 7, 13, 1, 18, 2]) {
      const t = specs[i]!;
      const want = valuesFor(t);
      const got = s.readFloat32(t.name);
      expect(got.length).toBe(want.length);
      for (let k = 0; k < want.length; k++) {
        const w =
          t.dtype === 'F32'
            ? want[k]!
            : t.dtype === 'F16'
              ? float16BitsToFloat32(float32ToFloat16Bits(want[k]!))
              : bfloat16BitsToFloat32(float32ToBFloat16Bits(want[k]!));
        expect(got[k]).toBe(w);
      }
      expect(s.readRaw(t.name).length).toBe(want.length * (t.dtype === 'F32' ? 4 : 2));
    }
    // Overwrite tensor 5's bytes in place after opening: the store must see the new bytes,
    // proving it reads by offset on demand instead of caching the file at open time.
    const info = s.info('layer.5.w');
    expect(info.dtype).toBe('BF16');
    const fd = fs.openSync(file, 'r+');
    const patch = Buffer.alloc(info.byteLength);
    for (let k = 0; k < info.byteLength / 2; k++) patch.writeUInt16LE(float32ToBFloat16Bits(k + 100), 2 * k);
    fs.writeSync(fd, patch, 0, patch.length, info.byteOffset);
    fs.closeSync(fd);
    expect(Array.from(s.readFloat32('layer.5.w'))).toEqual(Array.from({ length: 18 }, (_, k) => k + 100));
    // Neighbours are untouched.
    expect(s.readFloat32('layer.4.w')[0]).toBe(float16BitsToFloat32(float32ToFloat16Bits(valuesFor(specs[4]!)[0]!)));
    expect(s.readFloat32('layer.6.w')[0]).toBe(valuesFor(specs[6]!)[0]);
  });

  it('refuses float32 reads of integer tensors but returns their raw bytes', () => {
    const dir = tmpDir();
    const file = rawFile(path.join(dir, 'ids.safetensors'), { ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]));
    const s = track(openSafetensorsFile(file));
    expectInputError(() => s.readFloat32('ids'), file, '"ids"', 'I64');
    expect(Array.from(s.readRaw('ids'))).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('throws after close instead of reading a recycled descriptor', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'model.safetensors');
    writeSafetensors(file, [{ name: 'x', dtype: 'F32', shape: [1] }], () => new Float32Array([1]));
    const s = openSafetensorsFile(file);
    expect(s.readFloat32('x')[0]).toBe(1);
    s.close();
    s.close(); // idempotent
    expect(() => s.readRaw('x')).toThrow(/closed/);
  });
});

describe('sharded checkpoints', () => {
  it('writes shards under the size limit plus an index, and reads them back as one store', () => {
    const dir = path.join(tmpDir(), 'ckpt');
    const specs: TensorToWrite[] = [
      { name: 'wte', dtype: 'F32', shape: [10, 4] }, // 160 bytes
      { name: 'h.0.w', dtype: 'F16', shape: [8, 4] }, // 64
      { name: 'h.0.b', dtype: 'F16', shape: [4] }, // 8
      { name: 'h.1.w', dtype: 'BF16', shape: [8, 4] }, // 64
      { name: 'h.1.b', dtype: 'BF16', shape: [4] }, // 8
      { name: 'ln_f', dtype: 'F32', shape: [40] }, // 160
    ];
    writeShardedSafetensors(dir, specs, valuesFor, 160);
    const files = fs.readdirSync(dir).sort();
    expect(files).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    expect(index.metadata.total_size).toBe(464);
    expect(index.weight_map).toEqual({
      wte: 'model-00001-of-00003.safetensors',
      'h.0.w': 'model-00002-of-00003.safetensors',
      'h.0.b': 'model-00002-of-00003.safetensors',
      'h.1.w': 'model-00002-of-00003.safetensors',
      'h.1.b': 'model-00002-of-00003.safetensors',
      ln_f: 'model-00003-of-00003.safetensors',
    });
    for (const f of files.filter((x) => x.endsWith('.safetensors'))) {
      const h = readSafetensorsHeader(path.join(dir, f));
      expect(h.tensors.reduce((a, t) => a + t.byteLength, 0)).toBeLessThanOrEqual(160);
      expect(h.metadata).toEqual({ format: 'pt' });
    }

    const s = track(openCheckpointTensors(dir));
    expect(new Set(s.names())).toEqual(new Set(specs.map((t) => t.name)));
    expect(s.info('h.1.b').file).toBe(path.join(dir, 'model-00002-of-00003.safetensors'));
    expect(s.info('ln_f').file).toBe(path.join(dir, 'model-00003-of-00003.safetensors'));
    expect(Array.from(s.readFloat32('ln_f'))).toEqual(Array.from(valuesFor(specs[5]!)));
    expect(Array.from(s.readFloat32('wte'))).toEqual(Array.from(valuesFor(specs[0]!)));
    const w = s.readFloat32('h.1.w');
    expect(w[3]).toBe(bfloat16BitsToFloat32(float32ToBFloat16Bits(valuesFor(specs[3]!)[3]!)));
    expect(s.has('h.0.b')).toBe(true);
    expect(s.has('nope')).toBe(false);
    expectInputError(() => s.info('h.2.w'), dir, '"h.2.w"');
  });

  it('gives an oversized tensor a shard of its own', () => {
    const dir = tmpDir();
    writeShardedSafetensors(
      dir,
      [
        { name: 'small', dtype: 'F32', shape: [2] },
        { name: 'big', dtype: 'F32', shape: [100] },
        { name: 'small2', dtype: 'F32', shape: [2] },
      ],
      valuesFor,
      64,
    );
    const s = track(openCheckpointTensors(dir));
    expect(path.basename(s.info('big').file)).toBe('model-00002-of-00003.safetensors');
    expect(Array.from(s.readFloat32('small2'))).toEqual(Array.from(valuesFor({ name: 'small2', dtype: 'F32', shape: [2] })));
  });

  it('opens a single model.safetensors in a checkpoint directory', () => {
    const dir = tmpDir();
    writeSafetensors(path.join(dir, 'model.safetensors'), [{ name: 'x', dtype: 'F16', shape: [3] }], () => new Float32Array([1, 2, 3]));
    const s = track(openCheckpointTensors(dir));
    expect(Array.from(s.readFloat32('x'))).toEqual([1, 2, 3]);
  });
});

describe('malformed safetensors files', () => {
  const ok = { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };

  it('file shorter than 8 bytes', () => {
    const file = path.join(tmpDir(), 'short.safetensors');
    fs.writeFileSync(file, Buffer.from([1, 2, 3, 4, 5]));
    expectInputError(() => openSafetensorsFile(file), file, 'file is 5 bytes', '8-byte header length');
  });

  it('header length past EOF', () => {
    const file = rawFile(path.join(tmpDir(), 'm.safetensors'), ok, 16, 999999n);
    const size = fs.statSync(file).size;
    expectInputError(() => openSafetensorsFile(file), file, `header length 999999 runs past the end of the file (${size} bytes)`);
  });

  it('header length one byte past EOF is caught; exactly up to EOF is fine', () => {
    const dir = tmpDir();
    const exact = rawFile(path.join(dir, 'exact.safetensors'), '{}    ', 0);
    expect(track(openSafetensorsFile(exact)).names()).toEqual([]);
    const over = rawFile(path.join(dir, 'over.safetensors'), '{}    ', 0, 7n);
    expectInputError(() => openSafetensorsFile(over), over, 'header length 7 runs past the end of the file (14 bytes)');
  });

  it('huge header length (u64 beyond 2^53) past EOF', () => {
    const file = rawFile(path.join(tmpDir(), 'm.safetensors'), ok, 16, 0xffffffffffffffffn);
    expectInputError(() => openSafetensorsFile(file), file, 'header length 18446744073709551615 runs past the end');
  });

  it('header length above the 100 MB cap', () => {
    const file = path.join(tmpDir(), 'big.safetensors');
    const n = 100_000_008;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(n));
    fs.writeFileSync(file, len);
    fs.truncateSync(file, 8 + n); // sparse: no real 100 MB written
    expectInputError(() => openSafetensorsFile(file), file, `header length ${n} exceeds the 100000000-byte limit`);
  });

  it('header not JSON', () => {
    const file = rawFile(path.join(tmpDir(), 'm.safetensors'), '{"w": {"dtype": "F32",', 16);
    expectInputError(() => openSafetensorsFile(file), file, 'header is not valid JSON');
  });

  it('header JSON that is not an object', () => {
    const file = rawFile(path.join(tmpDir(), 'm.safetensors'), '[1, 2]', 16);
    expectInputError(() => openSafetensorsFile(file), file, 'header is not a JSON object');
  });

  it('header not UTF-8', () => {
    const file = path.join(tmpDir(), 'm.safetensors');
    const h = Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]); // {"\xff\xfe":1}
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    fs.writeFileSync(file, Buffer.concat([len, h]));
    expectInputError(() => openSafetensorsFile(file), file, 'not valid UTF-8');
  });

  it('unknown dtype', () => {
    const file = rawFile(path.join(tmpDir(), 'm.safetensors'), { ...ok, q: { dtype: 'Q4_K', shape: [2], data_offsets: [16, 18] } }, 18);
    expectInputError(() => openSafetensorsFile(file), file, 'tensor "q"', 'unknown dtype "Q4_K"');
  });

  it('bad shape: negative, fractional or not an array', () => {
    const dir = tmpDir();
    for (const [i, shape] of [[2, -2], [1.5], '4', [2, null]].entries()) {
      const file = rawFile(path.join(dir, `m${i}.safetensors`), { 'h.0.attn': { dtype: 'F32', shape, data_offsets: [0, 16] } }, 16);
      expectInputError(() => openSafetensorsFile(file), file, 'tensor "h.0.attn"', `shape ${JSON.stringify(shape)}`, 'non-negative integers');
    }
  });

  it('malformed data_offsets (reversed, wrong arity, non-integer)', () => {
    const dir = tmpDir();
    for (const [i, offs] of [[16, 0], [0], [0, 8.5], [-4, 12]].entries()) {
      const file = rawFile(path.join(dir, `m${i}.safetensors`), { w: { dtype: 'F32', shape: [4], data_offsets: offs } }, 16);
      expectInputError(() => openSafetensorsFile(file), file, 'tensor "w"', `data_offsets ${JSON.stringify(offs)}`);
    }
  });

  it('offsets out of range', () => {
    const file = rawFile(path.join(tmpDir(), 'm.safetensors'), { ...ok, tail: { dtype: 'F32', shape: [2], data_offsets: [16, 24] } }, 20);
    expectInputError(() => openSafetensorsFile(file), file, 'tensor "tail" data_offsets [16, 24] run past the end of the data section (20 bytes)');
  });

  it('offsets that overlap', () => {
    const file = rawFile(
      path.join(tmpDir(), 'm.safetensors'),
      {
        a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        z: { dtype: 'F32', shape: [1], data_offsets: [32, 36] },
        b: { dtype: 'F16', shape: [4], data_offsets: [8, 16] },
      },
      36,
    );
    expectInputError(() => openSafetensorsFile(file), file, 'tensors "a" [0, 16] and "b" [8, 16] overlap');
  });

  it('allows adjacent and zero-length tensors (no false overlap)', () => {
    const file = rawFile(
      path.join(tmpDir(), 'm.safetensors'),
      {
        a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        e: { dtype: 'F32', shape: [0], data_offsets: [8, 8] },
        b: { dtype: 'U8', shape: [4], data_offsets: [16, 20] },
      },
      new Uint8Array(20).map((_, i) => i),
    );
    const s = track(openSafetensorsFile(file));
    expect(Array.from(s.readRaw('b'))).toEqual([16, 17, 18, 19]);
    expect(s.readRaw('e').length).toBe(0);
  });

  it('byte length inconsistent with dtype and shape', () => {
    const file = rawFile(path.join(tmpDir(), 'm.safetensors'), { 'h.0.attn.c_attn.weight': { dtype: 'F32', shape: [4, 8], data_offsets: [0, 100] } }, 128);
    expectInputError(
      () => openSafetensorsFile(file),
      file,
      'tensor "h.0.attn.c_attn.weight" data_offsets [0, 100] do not match dtype F32 and shape [4,8] (128 bytes)',
    );
  });

  it('__metadata__ with a non-string value', () => {
    const file = rawFile(path.join(tmpDir(), 'm.safetensors'), { __metadata__: { total: 3 }, ...ok }, 16);
    expectInputError(() => openSafetensorsFile(file), file, '__metadata__ "total"');
  });

  it('missing file', () => {
    const file = path.join(tmpDir(), 'nope.safetensors');
    expectInputError(() => openSafetensorsFile(file), file, 'file not found');
  });

  it('missing tensor name', () => {
    const file = rawFile(path.join(tmpDir(), 'model.safetensors'), ok, 16);
    const s = track(openSafetensorsFile(file));
    expectInputError(() => s.info('lm_head.weight'), file, 'no tensor named "lm_head.weight"');
    expectInputError(() => s.readRaw('lm_head.weight'), file, '"lm_head.weight"');
    expectInputError(() => s.readFloat32('lm_head.weight'), file, '"lm_head.weight"');
  });
});

describe('malformed checkpoint directories', () => {
  function shardedDir(): string {
    const dir = tmpDir();
    writeShardedSafetensors(
      dir,
      [
        { name: 'a', dtype: 'F32', shape: [4] },
        { name: 'b', dtype: 'F32', shape: [4] },
      ],
      valuesFor,
      16,
    );
    return dir;
  }
  const indexOf = (dir: string): string => path.join(dir, 'model.safetensors.index.json');

  it('index naming a missing shard file', () => {
    const dir = shardedDir();
    fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
    expectInputError(() => openCheckpointTensors(dir), indexOf(dir), '"b"', 'shard "model-00002-of-00002.safetensors"', 'does not exist');
  });

  it('index naming a tensor that is not in its shard', () => {
    const dir = shardedDir();
    fs.writeFileSync(
      indexOf(dir),
      JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors' } }),
    );
    expectInputError(() => openCheckpointTensors(dir), indexOf(dir), 'maps "b" to shard "model-00001-of-00002.safetensors"', 'has no tensor "b"');
  });

  it('a tensor present in two shards', () => {
    const dir = shardedDir();
    writeSafetensors(
      path.join(dir, 'model-00002-of-00002.safetensors'),
      [
        { name: 'b', dtype: 'F32', shape: [4] },
        { name: 'a', dtype: 'F32', shape: [4] },
      ],
      valuesFor,
    );
    expectInputError(
      () => openCheckpointTensors(dir),
      path.join(dir, 'model-00002-of-00002.safetensors'),
      'tensor "a" is also in shard "model-00001-of-00002.safetensors"',
    );
  });

  it('index that is not JSON or has no weight_map', () => {
    const dir = shardedDir();
    fs.writeFileSync(indexOf(dir), '{"weight_map": ');
    expectInputError(() => openCheckpointTensors(dir), indexOf(dir), 'malformed JSON');
    fs.writeFileSync(indexOf(dir), '{"metadata": {}}');
    expectInputError(() => openCheckpointTensors(dir), indexOf(dir), 'weight_map is missing');
  });

  it('index naming a shard outside the directory', () => {
    const dir = shardedDir();
    fs.writeFileSync(indexOf(dir), JSON.stringify({ weight_map: { a: '../elsewhere.safetensors' } }));
    expectInputError(() => openCheckpointTensors(dir), indexOf(dir), '"../elsewhere.safetensors"', 'outside the checkpoint directory');
  });

  it('a malformed shard is blamed by its own path', () => {
    const dir = shardedDir();
    const shard = path.join(dir, 'model-00002-of-00002.safetensors');
    fs.writeFileSync(shard, Buffer.from([1, 2, 3]));
    expectInputError(() => openCheckpointTensors(dir), shard, 'file is 3 bytes');
  });

  it('empty directory with no weights', () => {
    const dir = tmpDir();
    expectInputError(() => openCheckpointTensors(dir), dir, 'no weights found', 'model.safetensors', 'model.safetensors.index.json');
  });

  it('pytorch-only directory gets a hint', () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), 'x');
    expectInputError(() => openCheckpointTensors(dir), dir, 'no weights found', 'pytorch_model.bin', 'only safetensors');
  });

  it('missing directory', () => {
    const dir = path.join(tmpDir(), 'absent');
    expectInputError(() => openCheckpointTensors(dir), dir, 'not found');
  });
});

describe('the non-finite scan of half-precision data, two halves per word', () => {
  // Nine values: an odd count, so views start and end mid-word; the largest finite values must pass.
  it.each(['F16', 'BF16'] as const)('%s: a NaN/Inf at any position of any range is found, the largest finite values are not', (dtype) => {
    const biggest = dtype === 'F16' ? 65504 : 3.3895313892515355e38;
    for (const [poison, shown] of [[Infinity, 'Infinity'], [-Infinity, '-Infinity'], [NaN, 'NaN']] as const) {
      for (let p = 0; p < 9; p++) {
        const file = path.join(tmpDir(), 'x.safetensors');
        writeSafetensors(file, [{ name: 'x', dtype, shape: [9] }], () => Float32Array.from({ length: 9 }, (_, i) => (i === p ? poison : i % 2 ? biggest : -biggest)));
        const s = track(openSafetensorsFile(file));
        for (let start = 0; start < 4; start++) {
          for (const count of [1, 2, 5, 9 - start]) {
            if (start + count > 9) continue;
            const read = () => s.readRawRange!('x', start, count);
            if (p >= start && p < start + count) expect(read, `${dtype} ${shown} at ${p}, range [${start}, ${start + count})`).toThrow(new RegExp(`flat index ${p}: ${shown.replace('-', '\\-')}`));
            else expect(read).not.toThrow();
          }
        }
      }
    }
  });
});
