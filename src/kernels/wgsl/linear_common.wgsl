// Shared part of the linear kernels (linear_gemv.wgsl, linear_gemm.wgsl), pasted into them
// by src/kernels/linear.ts together with one weight reader (linear_w_*.wgsl).
//
// Bindings (all kernels): 0 Params (uniform), 1 X f32 [T, K], 2 W (see linear_w_*.wgsl),
// 3 bias f32 [N] (a 16-byte dummy when hasBias = 0), 4 Y f32 [T, nOut], 5 scales (quantized
// weights only); the GEMV adds 6 gamma f32 [K] (and for LayerNorm 7 W . gamma f32 [N]) for its normalized input, a GEMM split
// over K 6 part f32 [splits, T, N] (its partial sums, finished by linear_splitk.wgsl). X and Y are bound as whole buffers; X as vec4<f32> so rows of X must be
// whole vec4s when ALIGNED (K % 4 == 0), otherwise it is read element by element.
//
// ALIGNED: chosen on the host from K (K % 4 == 0, and K % 8 == 0 for f16).
// softcap.wgsl is pasted in after this file (store() uses it).

struct Params {
  T: u32,        // rows of X and Y
  K: u32,        // inner dimension
  N: u32,        // rows of W (2I for a gated act)
  nOut: u32,     // columns of Y: N, or N / 2 for a gated act
  act: u32,      // 0 none, 1 gelu_tanh, 2 gelu_erf, 3 relu; gated (>= 4, gate rows then up rows): 4 swiglu, 5 geglu
  hasBias: u32,  // 1: add bias[N] before the activation
  nBlocks: u32,  // quantized: blocks per row, ceil(K / blockSize)
  bsShift: u32,  // quantized: log2(blockSize)
  accumulate: u32, // 1: Y += result (a residual add fused into the projection), 0: Y = result
  eps: f32,      // GEMV with a norm fused in (linear_gemv_rms / _norm.wgsl): variance epsilon
  row0: u32,     // GEMV: first row of X and Y this dispatch takes (T of them), 0 for the GEMM
  kSplit: u32,   // GEMM: K elements per split (a multiple of 32); K when K is not split
  softcap: f32,  // > 0: every output becomes softcap * tanh(output / softcap) before it is stored (Gemma 2's logits); 0: off
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

const ALIGNED: bool = {{ALIGNED}};

// 8 consecutive elements X[t, k .. k+8) (k a multiple of 8), zero past K.
fn xChunk(t: u32, k: u32) -> array<vec4<f32>, 2> {
  var r: array<vec4<f32>, 2>;
  if (ALIGNED) {
    let base = (t * P.K + k) >> 2u;
    if (k < P.K) { r[0] = X[base]; }
    if (k + 4u < P.K) { r[1] = X[base + 1u]; }
  } else {
    for (var i = 0u; i < 8u; i++) {
      if (k + i < P.K) {
        let e = t * P.K + k + i;
        r[i >> 2u][i & 3u] = X[e >> 2u][e & 3u];
      }
    }
  }
  return r;
}

// Y[i] = v, or Y[i] += v when accumulating (each element has one writer); soft-capped first
// when P.softcap > 0.
fn store(i: u32, value: f32) {
  var v = value;
  if (P.softcap > 0.0) { v = softcap(v, P.softcap); }
  if (P.accumulate != 0u) {
    Y[i] = Y[i] + v;
  } else {
    Y[i] = v;
  }
}

fn biasAt(n: u32) -> f32 {
  if (P.hasBias != 0u) { return B[n]; }
  return 0.0;
}

fn sigmoid(x: f32) -> f32 {
  // exp overflows to +inf for x < -88, and 1 / inf = 0: no NaN at either end.
  return 1.0 / (1.0 + exp(-x));
}

// 0.5 x (1 + tanh(u)) == x * sigmoid(2u): no tanh (whose precision varies by driver) and
// no inf/inf for large |u|.
fn geluTanh(x: f32) -> f32 {
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  return x * sigmoid(2.0 * u);
}

// Exact-erf GELU, 0.5 x erfc(-x / sqrt 2), with erfc by the Chebyshev fit of Numerical
// Recipes (erfcc, 2nd ed. 6.2): erfc(a) = t exp(-a^2 + p(t)), t = 1 / (1 + a / 2), fractional
// error below 1.2e-7 for all a >= 0. For x < 0 that is GELU's tail itself, so the relative
// accuracy holds there too; for x > 0, erfc(-a) = 2 - erfc(a). In f32 the exponent -a^2 =
// -x^2 / 2 is split exactly with fma (rounding a = |x| / sqrt 2 first would cost ~a^2 * 1e-7
// relative): emulated with correctly rounded exp the whole is within 4.5e-7 relative of the
// exact GELU for |x| <= 12; the GPU's exp adds its own error (a few ulp, growing with x^2 / 2).
fn geluErf(x: f32) -> f32 {
  let a = abs(x) * 0.7071067811865476;
  let t = 1.0 / (1.0 + 0.5 * a);
  var p = 0.17087277;
  p = fma(t, p, -0.82215223);
  p = fma(t, p, 1.48851587);
  p = fma(t, p, -1.13520398);
  p = fma(t, p, 0.27886807);
  p = fma(t, p, -0.18628806);
  p = fma(t, p, 0.09678418);
  p = fma(t, p, 0.37409196);
  p = fma(t, p, 1.00002368);
  p = fma(t, p, -1.26551223);
  let x2 = x * x;
  let hi = 0.5 * x2;
  let lo = 0.5 * fma(x, x, -x2);
  let r = t * exp(p - lo) * exp(-hi); // erfc(|x| / sqrt 2)
  return 0.5 * x * select(2.0 - r, r, x <= 0.0);
}

// Activations 0..3 (the gated ones are handled by the kernels: they pair two rows).
fn activate(v: f32) -> f32 {
  switch (P.act) {
    case 1u: { return geluTanh(v); }
    case 2u: { return geluErf(v); }
    case 3u: { return max(v, 0.0); }
    default: { return v; }
  }
}

fn silu(x: f32) -> f32 {
  return x * sigmoid(x);
}

// A gated act (P.act >= 4): the gate row's pre-activation g and the up row's u pair as act(g) * u.
fn gated() -> bool {
  return P.act >= 4u;
}

fn gatedOut(g: f32, u: f32) -> f32 {
  if (P.act == 5u) { return geluTanh(g) * u; } // GeGLU (Gemma's gelu_pytorch_tanh)
  return silu(g) * u; // SwiGLU
}
