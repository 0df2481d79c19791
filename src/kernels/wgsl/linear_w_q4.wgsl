// Weight reader for linear_gemv.wgsl / linear_gemm.wgsl: int4 block-quantized W in the
// layout of quantizeBlockwise (src/inject/quantize.ts, MatMulNBits): packed uint8
// [N, nBlocks, blockSize / 2] (row n is output n, zero-padded to nBlocks * blockSize; even
// element in the low nibble, so element i of a little-endian u32 sits at bits 4i), bound as
// array<u32> (a word, one u32, is one 8-element chunk; blockSize a power of two >= 16, so a
// chunk never straddles blocks); scales f32 [N * nBlocks] at binding 5.
// Value = (q - 8) * scale: wDecode returns q - 8, the caller multiplies by wScale.
//
// 16-byte words (32 weights a load, as f16 streams) measured slower on the H200 at every
// shape tried, with the chunk loop written out too (bench/results/2026-12-02-h200-tuning).
alias WWord = u32;

@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(5) var<storage, read> S: array<f32>;

// The word of W[row, k .. k + 8) (k a multiple of 8), zero past K.
fn wLoad(row: u32, k: u32) -> WWord {
  if (k >= P.K) { return 0u; }
  return W[row * ((P.nBlocks << P.bsShift) >> 3u) + (k >> 3u)];
}

const SH4LO = vec4<u32>(0u, 4u, 8u, 12u);
const SH4HI = vec4<u32>(16u, 20u, 24u, 28u);

// q | 0x4B000000 is the f32 2^23 + q: one subtraction gives q - 8 exactly, with no
// int-to-float conversion (a quarter-rate instruction on NVIDIA).
fn wDecode(w: WWord) -> array<vec4<f32>, 2> {
  let v = vec4<u32>(w);
  var r: array<vec4<f32>, 2>;
  r[0] = bitcast<vec4<f32>>(((v >> SH4LO) & vec4<u32>(15u)) | vec4<u32>(0x4B000000u)) - 8388616.0;
  r[1] = bitcast<vec4<f32>>(((v >> SH4HI) & vec4<u32>(15u)) | vec4<u32>(0x4B000000u)) - 8388616.0;
  return r;
}

fn wScale(row: u32, k: u32) -> f32 { return S[row * P.nBlocks + (k >> P.bsShift)]; }
