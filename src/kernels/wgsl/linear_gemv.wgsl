// Linear layer for few rows (decode): Y[T, nOut] = act(X[T, K] . W[N, K]^T + bias[N]),
// T <= 8 fixed at compile time, W streamed once for all T rows.
//
// Layout: see linear_common.wgsl (bindings, Params) and the weight reader pasted in
// (linear_w_f32 / f16 / q8 / q4.wgsl: element type and quantized layout).
//
// Dispatch: one workgroup of KT threads per ROWS rows of W, i.e. per ROWS outputs, or per
// ROWS / 2 outputs for swiglu (gate rows i.., up rows nOut + i..). Workgroups are numbered
// wid.y * num_workgroups.x + wid.x, so the host splits ceil(outputs / per-workgroup) over x
// (<= 65535) and y; surplus workgroups return at once.
//
// With prenorm the workgroup first computes each X row's mean and variance (X is small and
// in cache; every workgroup computes the same), and normalizes the chunks as it loads them:
// the norm before a projection costs no dispatch of its own.
//
// Each thread takes 8-element chunks k = 8 * (lid + j * KT) of K, loads X[t, chunk] for all
// T rows once and reuses them for the ROWS weight rows (16-byte loads for f16), keeping
// ROWS * T f32 partial sums. The partial sums are reduced across the KT threads through
// workgroup memory: G threads per output sum KT / G values each, then one adds the G sums
// (a chain of KT / G + G adds instead of KT; the XOR swizzle keeps both sides free of bank
// conflicts), then bias, activation, store.

{{COMMON}}
{{WEIGHTS}}

const T: u32 = {{T}}u;       // rows of X (compile time, 1..8)
const ROWS: u32 = {{ROWS}}u; // W rows per workgroup (even)
const KT: u32 = {{KT}}u;     // threads per workgroup, a power of two >= 32
const O: u32 = ROWS * T;     // partial sums per thread
const G: u32 = {{G}}u;       // threads reducing one output: KT / O where O divides KT, else 1

var<workgroup> red: array<f32, O * KT>;
var<workgroup> stats: array<vec2<f32>, T>; // prenorm: (mean, 1 / sqrt(var + eps)) of each X row

@group(0) @binding(6) var<storage, read> gamma: array<f32>;
@group(0) @binding(7) var<storage, read> beta: array<f32>;

// Sums each thread's T values over the workgroup (T tree reductions side by side in red).
fn rowSums(v: array<f32, T>, lid: u32) -> array<f32, T> {
  for (var t = 0u; t < T; t++) { red[t * KT + lid] = v[t]; }
  workgroupBarrier();
  for (var s = KT / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      for (var t = 0u; t < T; t++) { red[t * KT + lid] += red[t * KT + lid + s]; }
    }
    workgroupBarrier();
  }
  var out: array<f32, T>;
  for (var t = 0u; t < T; t++) { out[t] = red[t * KT]; }
  workgroupBarrier(); // red is reused next
  return out;
}

fn xAt(t: u32, k: u32) -> f32 {
  let e = t * P.K + k;
  return X[e >> 2u][e & 3u];
}

// Row statistics of X for the fused norm, as norm.wgsl computes them (LayerNorm: the
// corrected two-pass mean and variance; RMSNorm: mean of squares), every workgroup alike.
fn normStats(lid: u32) {
  let n = f32(P.K);
  var s1: array<f32, T>;
  for (var k = lid; k < P.K; k += KT) {
    for (var t = 0u; t < T; t++) {
      let x = xAt(t, k);
      s1[t] += select(x, x * x, P.prenorm == 2u);
    }
  }
  let sum = rowSums(s1, lid);
  if (P.prenorm == 2u) {
    if (lid == 0u) {
      for (var t = 0u; t < T; t++) { stats[t] = vec2<f32>(0.0, inverseSqrt(sum[t] / n + P.eps)); }
    }
  } else {
    var d1: array<f32, T>;
    var d2: array<f32, T>;
    for (var k = lid; k < P.K; k += KT) {
      for (var t = 0u; t < T; t++) {
        let d = xAt(t, k) - sum[t] / n;
        d1[t] += d;
        d2[t] += d * d;
      }
    }
    let a = rowSums(d1, lid);
    let b = rowSums(d2, lid);
    if (lid == 0u) {
      for (var t = 0u; t < T; t++) {
        let m = a[t] / n;
        stats[t] = vec2<f32>(sum[t] / n + m, inverseSqrt(max(b[t] / n - m * m, 0.0) + P.eps));
      }
    }
  }
  workgroupBarrier();
}

// X[t, k .. k+8), normalized when prenorm (zero past K).
fn xIn(t: u32, k: u32) -> array<vec4<f32>, 2> {
  var r = xChunk(t, k);
  if (P.prenorm != 0u) {
    let st = stats[t];
    for (var i = 0u; i < 8u; i++) {
      if (k + i < P.K) {
        var v = (r[i >> 2u][i & 3u] - st.x) * st.y * gamma[k + i];
        if (P.normBeta != 0u) { v += beta[k + i]; }
        r[i >> 2u][i & 3u] = v;
      }
    }
  }
  return r;
}

@compute @workgroup_size(KT)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let swiglu = P.act == 4u;
  let outs = select(ROWS, ROWS / 2u, swiglu);
  let out0 = (wid.y * nwg.x + wid.x) * outs;
  if (out0 >= P.nOut) { return; }

  // Rows past the end are clamped (read again, never stored).
  var rows: array<u32, ROWS>;
  for (var r = 0u; r < ROWS; r++) {
    if (swiglu) {
      let i = min(out0 + r % (ROWS / 2u), P.nOut - 1u);
      rows[r] = select(i, i + P.nOut, r >= ROWS / 2u);
    } else {
      rows[r] = min(out0 + r, P.N - 1u);
    }
  }

  if (P.prenorm != 0u) { normStats(lid); }

  var acc: array<f32, O>;
  for (var k = lid * 8u; k < P.K; k += KT * 8u) {
    var xs: array<array<vec4<f32>, 2>, T>;
    for (var t = 0u; t < T; t++) { xs[t] = xIn(t, k); }
    for (var r = 0u; r < ROWS; r++) {
      let w = wRaw(rows[r], k);
      let s = wScale(rows[r], k);
      for (var t = 0u; t < T; t++) {
        acc[r * T + t] += s * (dot(w[0], xs[t][0]) + dot(w[1], xs[t][1]));
      }
    }
  }

  // red[o * KT + (lane ^ (o % 32))] = thread lane's partial sum o.
  for (var o = 0u; o < O; o++) { red[o * KT + (lid ^ (o & 31u))] = acc[o]; }
  workgroupBarrier();
  if (G > 1u) {
    // G threads per output each sum KT / G of its partials (thread lid: output lid % O, slice
    // lid / O; a warp's 32 reads hit 32 banks), then one thread per output adds the G sums.
    let o = lid % O;
    let first = (lid / O) * (KT / G);
    var s = 0.0;
    for (var i = 0u; i < KT / G; i++) { s += red[o * KT + ((first + i) ^ (o & 31u))]; }
    workgroupBarrier(); // every slice is read before red[0 .. KT) is reused for the sums
    red[lid] = s;
    workgroupBarrier();
    var total = 0.0;
    if (lid < O) {
      for (var g = 0u; g < G; g++) { total += red[g * O + lid]; }
    }
    workgroupBarrier(); // the sums are read before the totals overwrite them
    if (lid < O) { red[lid * KT] = total; }
  } else {
    for (var o = lid; o < O; o += KT) {
      let b = o * KT;
      let sw = o & 31u;
      // A plain loop: unrolled by hand (4 loads a step) it compiled 5x slower on lavapipe.
      var s = 0.0;
      for (var i = 0u; i < KT; i++) { s += red[b + (i ^ sw)]; }
      red[b] = s; // own row only: no other thread reads it
    }
  }
  workgroupBarrier();

  for (var j = lid; j < outs * T; j += KT) {
    let t = j / outs;
    let r = j % outs;
    let n = out0 + r;
    if (n < P.nOut) {
      var v: f32;
      if (swiglu) {
        let g = red[(r * T + t) * KT] + biasAt(n);
        let u = red[((r + ROWS / 2u) * T + t) * KT] + biasAt(P.nOut + n);
        v = silu(g) * u;
      } else {
        v = activate(red[(r * T + t) * KT] + biasAt(n));
      }
      store(t * P.nOut + n, v);
    }
  }
}
