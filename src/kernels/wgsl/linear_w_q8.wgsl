// Weight reader for linear_gemv.wgsl / linear_gemm.wgsl: int8 block-quantized W in the
// layout of quantizeBlockwise (src/inject/quantize.ts, MatMulNBits): packed uint8
// [N, nBlocks, blockSize] (row n is output n, zero-padded to nBlocks * blockSize), bound as
// array<vec2<u32>> (a word, 8 bytes, is one 8-element chunk; blockSize a power of two >= 16,
// so a chunk never straddles blocks); scales f32 [N * nBlocks] at binding 5.
// Value = (q - 128) * scale: wDecode returns q - 128, the caller multiplies by wScale.
alias WWord = vec2<u32>;

@group(0) @binding(2) var<storage, read> W: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read> S: array<f32>;

// The word of W[row, k .. k + 8) (k a multiple of 8), zero past K.
fn wLoad(row: u32, k: u32) -> WWord {
  if (k >= P.K) { return WWord(); }
  return W[row * ((P.nBlocks << P.bsShift) >> 3u) + (k >> 3u)];
}

const SH8 = vec4<u32>(0u, 8u, 16u, 24u);

// q | 0x4B000000 is the f32 2^23 + q: one subtraction gives q - 128 exactly, with no
// int-to-float conversion (a quarter-rate instruction on NVIDIA).
fn wDecode(w: WWord) -> array<vec4<f32>, 2> {
  var r: array<vec4<f32>, 2>;
  r[0] = bitcast<vec4<f32>>(((vec4<u32>(w.x) >> SH8) & vec4<u32>(255u)) | vec4<u32>(0x4B000000u)) - 8388736.0;
  r[1] = bitcast<vec4<f32>>(((vec4<u32>(w.y) >> SH8) & vec4<u32>(255u)) | vec4<u32>(0x4B000000u)) - 8388736.0;
  return r;
}

fn wScale(row: u32, k: u32) -> f32 { return S[row * P.nBlocks + (k >> P.bsShift)]; }
