// Weight reader for linear_gemv.wgsl / linear_gemm.wgsl: int4 block-quantized W in the
// layout of quantizeBlockwise (src/inject/quantize.ts, MatMulNBits): packed uint8
// [N, nBlocks, blockSize / 2] (row n is output n, zero-padded to nBlocks * blockSize; even
// element in the low nibble, so element i of a little-endian u32 sits at bits 4i); scales
// f32 [N * nBlocks] at binding 5. Value = (q - 8) * scale: wSub returns q - 8, the caller
// multiplies by wScale.
//
// Words (linear.ts picks): u32, one chunk of 8 weights (WIDE = 1), or vec4<u32>, 32 weights
// (WIDE = 4), which needs whole words per padded row (nBlocks * blockSize % 32 == 0).
alias WWord = {{WORD}};
const WIDE: u32 = {{WIDE}}u;

@group(0) @binding(2) var<storage, read> W: array<WWord>;
@group(0) @binding(5) var<storage, read> S: array<f32>;

// The word holding W[row, k .. k + 8 WIDE) (k a multiple of 8 WIDE), zero past K.
fn wLoad(row: u32, k: u32) -> WWord {
  if (k >= P.K) { return WWord(); }
  return W[row * ((P.nBlocks << P.bsShift) / (8u * WIDE)) + k / (8u * WIDE)];
}

const SH4LO = vec4<u32>(0u, 4u, 8u, 12u);
const SH4HI = vec4<u32>(16u, 20u, 24u, 28u);

// Chunk `sub` of the word (its 8 nibbles) as q - 8. vec4<u32>(w) is w itself or, for a u32,
// four copies of it. q | 0x4B000000 is the f32 2^23 + q: one subtraction gives q - 8 exactly,
// with no int-to-float conversion (a quarter-rate instruction on NVIDIA).
fn wSub(w: WWord, sub: u32) -> array<vec4<f32>, 2> {
  let v = vec4<u32>(vec4<u32>(w)[sub]);
  var r: array<vec4<f32>, 2>;
  r[0] = bitcast<vec4<f32>>(((v >> SH4LO) & vec4<u32>(15u)) | vec4<u32>(0x4B000000u)) - 8388616.0;
  r[1] = bitcast<vec4<f32>>(((v >> SH4HI) & vec4<u32>(15u)) | vec4<u32>(0x4B000000u)) - 8388616.0;
  return r;
}

fn wScale(row: u32, k: u32) -> f32 { return S[row * P.nBlocks + (k >> P.bsShift)]; }
