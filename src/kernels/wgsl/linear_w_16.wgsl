// Weight reader for linear_gemv.wgsl / linear_gemm.wgsl: 16-bit W, f16 or bf16, row-major [N, K]
// (torch nn.Linear's [out, in]), bound as array<vec4<u32>> (a word is 8 halves, one chunk; the
// buffer padded to 16 bytes; element 2i in the low half of u32 i, as little-endian bytes have it)
// and widened by UNPACK: unpack2x16float for f16, unpack2x16bf for bf16 (the top 16 bits of an
// f32: a shift or a mask, exact). No shader-f16 feature is needed and all arithmetic is f32.
// ALIGNED (K % 8 == 0): one 16-byte load per 8-element chunk; otherwise element by element.
alias WWord = vec4<u32>;

// Two bfloat16 (low half first) as f32: each is the high 16 bits of its f32, NaN and Inf included.
fn unpack2x16bf(w: u32) -> vec2<f32> {
  return bitcast<vec2<f32>>(vec2<u32>(w << 16u, w & 0xFFFF0000u));
}

@group(0) @binding(2) var<storage, read> W: array<vec4<u32>>;

// The halves W[row, k .. k+8) (k a multiple of 8), zero past K.
fn wLoad(row: u32, k: u32) -> WWord {
  if (ALIGNED) {
    if (k >= P.K) { return WWord(); }
    return W[(row * P.K + k) >> 3u];
  }
  var r: WWord;
  for (var i = 0u; i < 8u; i++) {
    if (k + i < P.K) {
      let e = row * P.K + k + i;
      let h = (W[e >> 3u][(e >> 1u) & 3u] >> (16u * (e & 1u))) & 0xFFFFu;
      r[i >> 1u] |= h << (16u * (i & 1u));
    }
  }
  return r;
}

fn wDecode(w: WWord) -> array<vec4<f32>, 2> {
  var r: array<vec4<f32>, 2>;
  r[0] = vec4<f32>({{UNPACK}}(w.x), {{UNPACK}}(w.y));
  r[1] = vec4<f32>({{UNPACK}}(w.z), {{UNPACK}}(w.w));
  return r;
}

fn wScale(row: u32, k: u32) -> f32 { return 1.0; }
