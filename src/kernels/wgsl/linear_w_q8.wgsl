// Weight reader for linear_gemv.wgsl / linear_gemm.wgsl: int8 block-quantized W in the
// layout of quantizeBlockwise (src/inject/quantize.ts, MatMulNBits): packed uint8
// [N, nBlocks, blockSize] (row n is output n, zero-padded to nBlocks * blockSize); scales
// f32 [N * nBlocks] at binding 5. Value = (q - 128) * scale: wSub returns q - 128, the caller
// multiplies by wScale.
//
// Words (linear.ts picks): vec2<u32>, one chunk of 8 weights (WIDE = 1), or vec4<u32>, 16
// weights (WIDE = 2); blockSize >= 16 keeps every padded row whole words.
alias WWord = {{WORD}};
const WIDE: u32 = {{WIDE}}u;

@group(0) @binding(2) var<storage, read> W: array<WWord>;
@group(0) @binding(5) var<storage, read> S: array<f32>;

// The word holding W[row, k .. k + 8 WIDE) (k a multiple of 8 WIDE), zero past K.
fn wLoad(row: u32, k: u32) -> WWord {
  if (k >= P.K) { return WWord(); }
  return W[row * ((P.nBlocks << P.bsShift) / (8u * WIDE)) + k / (8u * WIDE)];
}

const SH8 = vec4<u32>(0u, 8u, 16u, 24u);

// Chunk `sub` of the word as q - 128. q | 0x4B000000 is the f32 2^23 + q: one subtraction
// gives q - 128 exactly, with no int-to-float conversion (quarter rate on NVIDIA).
fn wSub(w: WWord, sub: u32) -> array<vec4<f32>, 2> {
  let lo = vec4<u32>(w[2u * sub]);
  let hi = vec4<u32>(w[2u * sub + 1u]);
  var r: array<vec4<f32>, 2>;
  r[0] = bitcast<vec4<f32>>(((lo >> SH8) & vec4<u32>(255u)) | vec4<u32>(0x4B000000u)) - 8388736.0;
  r[1] = bitcast<vec4<f32>>(((hi >> SH8) & vec4<u32>(255u)) | vec4<u32>(0x4B000000u)) - 8388736.0;
  return r;
}

fn wScale(row: u32, k: u32) -> f32 { return S[row * P.nBlocks + (k >> P.bsShift)]; }
