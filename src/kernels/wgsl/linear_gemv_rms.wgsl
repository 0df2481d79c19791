// linear_gemv.wgsl's input with an RMSNorm before the projection fused in, its statistic
// deferred: Y = rstd * (W . (x * gamma)) + bias, rstd = 1 / sqrt(mean(x * x) + eps). Each thread
// sums x * x over the chunks it multiplies anyway, as one more partial sum per row (XS of them)
// that the GEMV's reduction carries with the outputs' (slot O + t), and the epilogue scales by
// it. No statistics pass and no barriers before the first multiply: on the H200 the pass up front
// cost 3-9 us an op (bench/results/2026-12-03-h200-norm-stats-fused-split).
// Binding 6 gamma f32 [K] (read as vec4; padded to 16 bytes).

const XS: u32 = T; // one sum of squares per row of X

@group(0) @binding(6) var<storage, read> gamma: array<vec4<f32>>;

fn normStats(lid: u32) {}

struct NormChunk {
  g: array<vec4<f32>, 2>,
}

// gamma of the chunk k .. k+8, zero past K. Loaded once per chunk, for all T rows.
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

fn normX(x: array<vec4<f32>, 2>, c: NormChunk, t: u32) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(x[0] * c.g[0], x[1] * c.g[1]);
}

// Row t's contribution to its partial sum O + t (the chunk is zero past K).
fn xMoment(x: array<vec4<f32>, 2>) -> f32 {
  return dot(x[0], x[0]) + dot(x[1], x[1]);
}

// Row t's rstd, from its reduced sum of squares.
fn outScale(t: u32) -> f32 {
  return inverseSqrt(red[(O + t) * KT] / f32(P.K) + P.eps);
}
