// Weight reader for linear_gemv.wgsl / linear_gemm.wgsl: f32 W, row-major [N, K] (torch
// nn.Linear's [out, in]), bound as array<vec4<f32>> (the buffer padded to 16 bytes); a word
// is one 8-element chunk. ALIGNED (K % 4 == 0): two vec4 loads per chunk;
// otherwise element by element.
alias WWord = array<vec4<f32>, 2>;

@group(0) @binding(2) var<storage, read> W: array<vec4<f32>>;

// W[row, k .. k+8) (k a multiple of 8), zero past K.
fn wLoad(row: u32, k: u32) -> WWord {
  var r: WWord;
  if (ALIGNED) {
    let base = (row * P.K + k) >> 2u;
    if (k < P.K) { r[0] = W[base]; }
    if (k + 4u < P.K) { r[1] = W[base + 1u]; }
  } else {
    for (var i = 0u; i < 8u; i++) {
      if (k + i < P.K) {
        let e = row * P.K + k + i;
        r[i >> 2u][i & 3u] = W[e >> 2u][e & 3u];
      }
    }
  }
  return r;
}

fn wDecode(w: WWord) -> array<vec4<f32>, 2> { return w; }

fn wScale(row: u32, k: u32) -> f32 { return 1.0; }
