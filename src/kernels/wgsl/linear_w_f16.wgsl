// Weight reader for linear_gemv.wgsl / linear_gemm.wgsl: f16 W, row-major [N, K] (torch
// nn.Linear's [out, in]), bound as array<vec4<u32>> (8 halves per element; the buffer padded
// to 16 bytes) and widened with unpack2x16float, so no shader-f16 feature is needed and all
// arithmetic is f32. ALIGNED (K % 8 == 0): one 16-byte load per 8-element chunk; otherwise
// element by element.
@group(0) @binding(2) var<storage, read> W: array<vec4<u32>>;

// W[row, k .. k+8) (k a multiple of 8), zero past K.
fn wRaw(row: u32, k: u32) -> array<vec4<f32>, 2> {
  var r: array<vec4<f32>, 2>;
  if (ALIGNED) {
    if (k < P.K) {
      let v = W[(row * P.K + k) >> 3u];
      r[0] = vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
      r[1] = vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
    }
  } else {
    for (var i = 0u; i < 8u; i++) {
      if (k + i < P.K) {
        let e = row * P.K + k + i;
        r[i >> 2u][i & 3u] = unpack2x16float(W[e >> 3u][(e >> 1u) & 3u])[e & 1u];
      }
    }
  }
  return r;
}

fn wScale(row: u32, k: u32) -> f32 { return 1.0; }
