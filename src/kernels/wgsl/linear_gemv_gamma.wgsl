// The norm's gamma for linear_gemv.wgsl's fused-norm inputs (linear_gemv_rms / _norm.wgsl, pasted
// after this). Binding 6 gamma f32 [K] (read as vec4; padded to 16 bytes).

@group(0) @binding(6) var<storage, read> gamma: array<vec4<f32>>;

struct NormChunk {
  g: array<vec4<f32>, 2>,
}

// gamma of the chunk k .. k+8, zero past K (so the chunk's padding stays zero). Loaded once per
// chunk, for all T rows.
fn normChunk(k: u32) -> NormChunk {
  var c: NormChunk;
  for (var h = 0u; h < 2u; h++) {
    let k4 = k + 4u * h;
    if (ALIGNED) {
      if (k4 < P.K) { c.g[h] = gamma[k4 >> 2u]; }
    } else {
      for (var i = 0u; i < 4u; i++) {
        let e = k4 + i;
        if (e < P.K) { c.g[h][i] = gamma[e >> 2u][e & 3u]; }
      }
    }
  }
  return c;
}
