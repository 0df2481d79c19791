// linear_gemv.wgsl's input with a LayerNorm before the projection fused in, its statistics
// deferred as linear_gemv_rms.wgsl defers RMSNorm's. With s a shift (row t's first element: the
// one-pass moments about it stay well conditioned under a large common offset) and
// d = mean - s:
//   LayerNorm(x) . w_n + bias_n = rstd * (W . ((x - s) * gamma) - d * wg_n) + c_n,
// wg = W . gamma and c = bias + W . beta, computed once per op by linear.ts with the plain GEMV
// (and bound as the bias). Each thread sums x - s and (x - s)^2 over its chunks as two more partial
// sums a row; rstd = 1 / sqrt(mean((x - s)^2) - d^2 + eps) in the epilogue. No statistics pass
// and no barriers before the first multiply.
// linear_gemv_gamma.wgsl comes before this. Binding 7 wg f32 [N].

const XM: u32 = 2u; // partial sums of X's own a row: sum of x - s, sum of (x - s)^2

@group(0) @binding(7) var<storage, read> wg: array<f32>;

var<private> shift: array<f32, T>;

// Each row's shift, loaded once by every thread.
fn normBegin() {
  for (var t = 0u; t < T; t++) {
    let e = (P.row0 + t) * P.K;
    shift[t] = X[e >> 2u][e & 3u];
  }
}

fn normX(x: array<vec4<f32>, 2>, c: NormChunk, t: u32) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>((x[0] - shift[t]) * c.g[0], (x[1] - shift[t]) * c.g[1]);
}

fn xMoments(x: array<vec4<f32>, 2>, k: u32, t: u32) -> vec2<f32> {
  let lane = vec4<u32>(0u, 1u, 2u, 3u);
  let a = select(vec4<f32>(0.0), x[0] - shift[t], vec4<u32>(k) + lane < vec4<u32>(P.K));
  let b = select(vec4<f32>(0.0), x[1] - shift[t], vec4<u32>(k + 4u) + lane < vec4<u32>(P.K));
  return vec2<f32>(dot(a, vec4<f32>(1.0)) + dot(b, vec4<f32>(1.0)), dot(a, a) + dot(b, b));
}

fn inputOut(t: u32, row: u32, sum: f32) -> f32 {
  let n = f32(P.K);
  let d = red[(O + 2u * t) * KT] / n;
  let variance = max(red[(O + 2u * t + 1u) * KT] / n - d * d, 0.0);
  return inverseSqrt(variance + P.eps) * (sum - d * wg[row]);
}
