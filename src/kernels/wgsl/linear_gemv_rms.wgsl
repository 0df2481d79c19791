// linear_gemv.wgsl's input with an RMSNorm before the projection fused in, its statistic
// deferred: y = rstd * (W . (x * gamma)), rstd = 1 / sqrt(mean(x * x) + eps). Each thread sums
// x * x over the chunks it multiplies anyway, as one more partial sum per row (XM of them) that
// the GEMV's reduction carries with the outputs', and the epilogue scales by rstd. No statistics
// pass and no barriers before the first multiply: on the H200 llama-1.1b's qkv GEMVs took 148 us
// a step against 274 with the pass up front (bench/results/2026-12-03-h200-rms-deferred).
// linear_gemv_gamma.wgsl comes before this.

const XM: u32 = 1u; // partial sums of X's own a row: sum of x * x

fn normBegin() {}

fn normX(x: array<vec4<f32>, 2>, c: NormChunk, t: u32) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(x[0] * c.g[0], x[1] * c.g[1]);
}

// Row t's chunk k's share of its XM sums (the chunk is zero past K).
fn xMoments(x: array<vec4<f32>, 2>, k: u32, t: u32) -> vec2<f32> {
  return vec2<f32>(dot(x[0], x[0]) + dot(x[1], x[1]), 0.0);
}

// Output from its reduced sum, W row `row` and row t of X (sums reduced to red[(O + t XM + j) KT]).
fn inputOut(t: u32, row: u32, sum: f32) -> f32 {
  return sum * inverseSqrt(red[(O + t) * KT] / f32(P.K) + P.eps);
}
