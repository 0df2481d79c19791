/**
 * Symmetric block-wise quantization in MatMulNBits' layout (com.microsoft, bits 4 or 8):
 *   B       uint8 [N, nBlocks, blockSize * bits / 8]: row n holds column n of W [K, N];
 *           4-bit values pack two per byte, the even element in the low nibble
 *   scales  [N * nBlocks], one per (column, block)
 *   zero point: the op's default 2^(bits-1), so no zero_points input is written
 * Dequantized weight = (q - 2^(bits-1)) * scale, q rounded to nearest from W / scale.
 */

export interface QuantizedWeight {
  packed: Uint8Array;
  scales: Float32Array;
  nBlocks: number;
  blobSize: number;
}

export function quantizeBlockwise(w: Float32Array, K: number, N: number, bits: 4 | 8, blockSize: number): QuantizedWeight {
  return quantize(w, K, N, N, 1, bits, blockSize);
}

/**
 * quantizeBlockwise of a weight given as rows, [N, K] row-major (each output's inputs
 * contiguous, as checkpoints store Linear weights): the same packed bytes and scales as
 * quantizeBlockwise(W) for W = its transpose [K, N], without transposing. Rows quantize
 * independently, so a matrix can be quantized a few rows at a time as it streams in. With
 * `into` (large enough) the results land there, views of it returned: one buffer reused.
 */
export function quantizeRows(w: Float32Array, K: number, N: number, bits: 4 | 8, blockSize: number, into?: { packed: Uint8Array; scales: Float32Array }): QuantizedWeight {
  return quantize(w, K, N, 1, K, bits, blockSize, into);
}

/**
 * The quantizer for either layout: element (k, n) of W [K, N] is w[k * strideK + n * strideN].
 * Rounding is Math.round's (half up) done as floor(x + 0.5) with the one correction that sum's own
 * rounding can need: Math.round itself is several times slower in this loop, which a 3B model's
 * load runs a billion times.
 */
function quantize(w: Float32Array, K: number, N: number, strideK: number, strideN: number, bits: 4 | 8, blockSize: number, into?: { packed: Uint8Array; scales: Float32Array }): QuantizedWeight {
  const nBlocks = Math.ceil(K / blockSize);
  const blobSize = (blockSize * bits) / 8;
  const zero = 1 << (bits - 1);
  const qmax = zero - 1;
  const packed = into ? into.packed.subarray(0, N * nBlocks * blobSize) : new Uint8Array(N * nBlocks * blobSize);
  const scales = into ? into.scales.subarray(0, N * nBlocks) : new Float32Array(N * nBlocks);
  const q = new Uint8Array(blockSize); // one block's unsigned values; padding past K is the zero point, contributing nothing
  for (let n = 0; n < N; n++) {
    const col = n * strideN;
    for (let blk = 0; blk < nBlocks; blk++) {
      const k0 = blk * blockSize;
      const len = Math.min(K, k0 + blockSize) - k0;
      let amax = 0;
      for (let i = 0, at = col + k0 * strideK; i < len; i++, at += strideK) amax = Math.max(amax, Math.abs(w[at]!));
      const scale = Math.fround(amax / qmax);
      scales[n * nBlocks + blk] = scale;
      const inv = scale === 0 ? 0 : 1 / scale;
      for (let i = 0, at = col + k0 * strideK; i < len; i++, at += strideK) {
        const x = w[at]! * inv;
        let r = Math.floor(x + 0.5);
        if (x < r - 0.5) r--;
        q[i] = (r > qmax ? qmax : r < -zero ? -zero : r) + zero; // NaN stores 0, as before
      }
      q.fill(zero, len);
      const base = (n * nBlocks + blk) * blobSize;
      if (bits === 8) packed.set(q, base);
      else for (let i = 0; i < blobSize; i++) packed[base + i] = q[2 * i]! | (q[2 * i + 1]! << 4);
    }
  }
  return { packed, scales, nBlocks, blobSize };
}

/** The weight MatMulNBits computes with, [K, N]: for tests and accuracy reports. */
export function dequantize(q: QuantizedWeight, K: number, N: number, bits: 4 | 8, blockSize: number): Float32Array {
  const out = new Float32Array(K * N);
  const zero = 1 << (bits - 1);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const blk = Math.floor(k / blockSize);
      const i = k % blockSize;
      const base = (n * q.nBlocks + blk) * q.blobSize;
      const u = bits === 8 ? q.packed[base + i]! : (q.packed[base + (i >> 1)]! >> (i & 1 ? 4 : 0)) & 0xf;
      out[k * N + n] = (u - zero) * q.scales[n * q.nBlocks + blk]!;
    }
  }
  return out;
}
