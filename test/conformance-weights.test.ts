/**
 * The conformance checkpoints' weights are rebuilt from their draws (fixtures/conformance.ts), which
 * must be exactly fixtures/conformance/weight_draws.py's. The numbers below are what that Python
 * printed (`python3 fixtures/conformance/weight_draws.py`, plain python3 with numpy; no torch):
 * FNV-1a hashes, mulberry32 draws, k values, exact float16 encodings, whole small tensors and one
 * small safetensors file rebuilt from its header and manifest.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { drawFloat16, drawK, exactFloat16Bits, fnv1a32, mulberry32, rebuildSafetensors, WEIGHTS_MANIFEST_FORMAT, type WeightDraw, type WeightsManifest } from '../fixtures/conformance.js';
import { float16BitsToFloat32 } from '../src/checkpoint/safetensors.js';

const FNV1A32: Record<string, number> = {"": 2166136261, "a": 3826002220, "gpt2-base:0:transformer.wte.weight": 148441377, "llama-padded-vocab:3:lm_head.weight": 1891159108};
const MULBERRY32: Record<string, number[]> = {"": [2625274932, 2119670693, 3324411561, 1770755366, 3488654967, 245707362], "a": [2670119670, 1323809741, 1575654966, 2556090870, 3826730733, 2780608687], "gpt2-base:0:transformer.wte.weight": [4245523601, 1638435613, 3964821456, 3309947195, 1673306512, 1669288471], "llama-padded-vocab:3:lm_head.weight": [2323752310, 827511442, 3821123264, 3938607495, 510886062, 3651983329]};
const K: Record<string, number[]> = {"": [-48, 23, 21, -79, 222, -183], "a": [135, 191, 21, 195, 48, 202], "gpt2-base:0:transformer.wte.weight": [41, -77, 111, 20, 82, -179], "llama-padded-vocab:3:lm_head.weight": [40, -23, 284, 150, -63, 319]};
const TENSORS: Array<{ entry: WeightDraw; shape: number[]; bits: number[]; sha256: string }> = [
  { entry: {"seed": "vector:embedding", "exponent": 7, "plus_one": false, "zero_rows_from": null}, shape: [5, 4], bits: [46080, 15424, 47136, 15456, 15848, 16496, 49496, 47904, 13696, 13312, 44288, 45120, 48680, 48568, 14832, 48456, 15992, 15584, 15384, 13600], sha256: "22cb866ec6ac821567a86346b29bf939ccf6c4e388ea5e1ae13d408795cf597b" },
  { entry: {"seed": "vector:norm", "exponent": 10, "plus_one": true, "zero_rows_from": null}, shape: [16], bits: [15361, 15202, 15413, 15544, 15340, 15342, 15320, 15571, 15668, 15453, 15559, 15543, 15242, 15389, 15194, 15254], sha256: "eda6f770a1b04ced5d67a0b7e8cf7fcc99eaf4f8cf5ff88e9a6c4bbb9b4ad105" },
  { entry: {"seed": "vector:padded", "exponent": 9, "plus_one": false, "zero_rows_from": 3}, shape: [5, 4], bits: [11424, 45600, 46952, 44800, 45456, 11072, 14340, 45408, 10816, 8192, 14440, 13520, 0, 0, 0, 0, 0, 0, 0, 0], sha256: "2bab77aba3672e08894b3e577dc19ccd56c3835d27d990f0470cf5f059479509" },
  { entry: {"seed": "vector:subnormal", "exponent": 24, "plus_one": false, "zero_rows_from": null}, shape: [12], bits: [32781, 84, 32862, 32835, 112, 32977, 32907, 58, 110, 33003, 261, 32861], sha256: "e993d8632593fc3ba50dd81c79f9146b4a3ae297a0fa0b05948213035b45b66c" },
  { entry: {"seed": "vector:bias", "exponent": 11, "plus_one": false, "zero_rows_from": null}, shape: [7], bits: [43824, 10768, 40320, 7168, 11624, 43024, 11592], sha256: "31202cb467a10dcefea8c116f59787688ca7480277aaca780ae764e50311dd9c" },
];
const LARGE: { entry: WeightDraw; shape: number[]; sha256: string } = {"entry": {"seed": "vector:large", "exponent": 9, "plus_one": false, "zero_rows_from": null}, "shape": [2257, 64], "sha256": "f5167eec8f4db6eb371ffd5d5d8155d16c7ab99e3ee8a533792fb1f135774093"};
const F16: Array<{ k: number; exponent: number; plusOne: boolean; bits: number }> = [
  { k: 0, exponent: 7, plusOne: false, bits: 0 },
  { k: 1, exponent: 0, plusOne: false, bits: 15360 },
  { k: -1, exponent: 0, plusOne: false, bits: 48128 },
  { k: 510, exponent: 0, plusOne: false, bits: 24568 },
  { k: -510, exponent: 24, plusOne: false, bits: 33278 },
  { k: 1, exponent: 24, plusOne: false, bits: 1 },
  { k: -3, exponent: 20, plusOne: false, bits: 32816 },
  { k: 255, exponent: 14, plusOne: false, bits: 9208 },
  { k: 256, exponent: 14, plusOne: false, bits: 9216 },
  { k: 510, exponent: 10, plusOne: true, bits: 15870 },
  { k: -510, exponent: 10, plusOne: true, bits: 14340 },
  { k: 0, exponent: 10, plusOne: true, bits: 15360 },
  { k: -1, exponent: 10, plusOne: true, bits: 15358 },
  { k: 1, exponent: 10, plusOne: true, bits: 15361 },
  { k: -7, exponent: 9, plusOne: false, bits: 41728 },
];
const FILE = {"header_hex": "e0000000000000007b225f5f6d657461646174615f5f223a7b22666f726d6174223a227074227d2c22612e62696173223a7b226474797065223a22463136222c227368617065223a5b345d2c22646174615f6f666673657473223a5b32342c33325d7d2c22622e776569676874223a7b226474797065223a22463136222c227368617065223a5b332c345d2c22646174615f6f666673657473223a5b33322c35365d7d2c22632e776569676874223a7b226474797065223a22463136222c227368617065223a5b362c325d2c22646174615f6f666673657473223a5b302c32345d7d7d2020202020", "tensors": {"b.weight": {"seed": "fake:0:b.weight", "exponent": 8, "plus_one": false, "zero_rows_from": null}, "a.bias": {"seed": "fake:0:a.bias", "exponent": 10, "plus_one": true, "zero_rows_from": null}, "c.weight": {"seed": "fake:0:c.weight", "exponent": 8, "plus_one": false, "zero_rows_from": 2}}, "file_bytes": 288, "sha256": "91f6f7057868b3547786001c4c6ac7ea2f5cce85291ef720a062281062b86bf2"};

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const le = (bits: Uint16Array): Buffer => {
  const b = Buffer.alloc(bits.length * 2);
  bits.forEach((v, i) => b.writeUInt16LE(v, i * 2));
  return b;
};

describe('conformance weight draws match weight_draws.py', () => {
  it('FNV-1a 32 (and its published values)', () => {
    for (const [text, h] of Object.entries(FNV1A32)) expect(fnv1a32(text), JSON.stringify(text)).toBe(h);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
  });

  it('mulberry32 draws and their k', () => {
    for (const [text, draws] of Object.entries(MULBERRY32)) expect([...mulberry32(fnv1a32(text), draws.length)], JSON.stringify(text)).toEqual(draws);
    for (const [text, ks] of Object.entries(K)) expect([...drawK(text, ks.length)], JSON.stringify(text)).toEqual(ks);
    const ks = drawK('range', 100_000);
    expect(Math.min(...ks)).toBeGreaterThanOrEqual(-510);
    expect(Math.max(...ks)).toBeLessThanOrEqual(510);
  });

  it('exact float16 encodings of k * 2^-s and 1 + k * 2^-10, normals and subnormals', () => {
    for (const f of F16) {
      const m = f.plusOne ? 2 ** f.exponent + f.k : f.k;
      const bits = exactFloat16Bits(m, -f.exponent);
      expect(bits, JSON.stringify(f)).toBe(f.bits);
      expect(float16BitsToFloat32(bits)).toBe((f.plusOne ? 1 : 0) + f.k * 2 ** -f.exponent);
    }
    // Every k at every exponent is exact, and decodes back to its value.
    for (let s = 0; s <= 24; s++) {
      for (let k = -510; k <= 510; k++) expect(float16BitsToFloat32(exactFloat16Bits(k, -s))).toBe(k * 2 ** -s);
    }
    for (let k = -510; k <= 510; k++) expect(float16BitsToFloat32(exactFloat16Bits(1024 + k, -10))).toBe(1 + k / 1024);
    // Values float16 cannot hold exactly are refused, never rounded.
    for (const [m, e] of [[2049, 0], [1, -25], [1, 16], [3, -25], [2 ** 11 + 1, -10]] as const) expect(() => exactFloat16Bits(m, e), `${m} * 2^${e}`).toThrow(/not exactly a float16/);
  });

  it('whole tensors (zero rows of a padded vocabulary, norm weights, subnormals)', () => {
    for (const t of TENSORS) {
      const bits = drawFloat16(t.entry, t.shape);
      expect([...bits], t.entry.seed).toEqual(t.bits);
      expect(sha256(le(bits)), t.entry.seed).toBe(t.sha256);
    }
    expect(sha256(le(drawFloat16(LARGE.entry, LARGE.shape)))).toBe(LARGE.sha256);
    expect(() => drawFloat16({ seed: 'x', exponent: 11, plus_one: true, zero_rows_from: null }, [4])).toThrow(/plus_one/);
  });

  it('a safetensors file rebuilt from its header and manifest, in offset order, sha256 checked', () => {
    const header = Buffer.from(FILE.header_hex, 'hex');
    const manifest: WeightsManifest = { format: WEIGHTS_MANIFEST_FORMAT, file_bytes: FILE.file_bytes, sha256: FILE.sha256, tensors: FILE.tensors as Record<string, WeightDraw> };
    const file = rebuildSafetensors(header, manifest, 'vector');
    expect(file.length).toBe(FILE.file_bytes);
    expect(sha256(file)).toBe(FILE.sha256);
    expect(file.subarray(0, header.length).equals(header)).toBe(true);
    expect(() => rebuildSafetensors(header, { ...manifest, sha256: '0'.repeat(64) }, 'vector')).toThrow(/^fusegen conformance: vector: the rebuilt model.safetensors has sha256 \S+, not 0{64}/);
    const otherDraw = { ...manifest.tensors, 'a.bias': { ...manifest.tensors['a.bias']!, seed: 'fake:1:a.bias' } };
    expect(() => rebuildSafetensors(header, { ...manifest, tensors: otherDraw }, 'vector')).toThrow(/sha256/);
    const { ['a.bias']: _dropped, ...fewer } = manifest.tensors;
    expect(() => rebuildSafetensors(header, { ...manifest, tensors: fewer }, 'vector')).toThrow(/only in the header \[a\.bias\]/);
    expect(() => rebuildSafetensors(header.subarray(0, header.length - 1), manifest, 'vector')).toThrow(/length prefix/);
  });
});
