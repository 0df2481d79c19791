// linear_gemv.wgsl's input with a LayerNorm before the projection fused in: the workgroup
// computes each X row's statistics, then normalizes chunks as it loads them. (An RMSNorm needs
// no statistics up front: linear_gemv_rms.wgsl.)
// Bindings 6 gamma, 7 beta f32 [K] (read as vec4; padded to 16 bytes).

const XS: u32 = 0u; // no partial sums of X's own

// (mean, 1 / sqrt(var + eps)) of each X row: published through workgroup memory, or worked out
// by every thread itself where the workgroup holds 16 or more W rows. Measured on the H200
// (bench/results/2026-12-03-h200-fused-epilogues), every thread combining: opt-1.3b's decode
// step took 25 us less (its 16-row qkv GEMVs 33 us less), while with the 4- and 8-row GEMVs of
// llama-1.1b and bloom-560m (more, smaller workgroups) the step took 65 and 200 us more.
const STATS_SHARED: bool = ROWS < 16u;
var<workgroup> statsShared: array<vec2<f32>, T>;
var<private> statsOwn: array<vec2<f32>, T>;

// Row statistics in one pass over X and three barriers (two without STATS_SHARED): every
// thread takes the moments (count, mean, M2) of its own chunks (the ones it multiplies later),
// groups of GS threads are merged by one thread each, then the NG groups by one thread per row
// (Chan's pairwise update, as stable as the two-pass formula), or by every thread at once.
// On the H200 this fused norm adds 3-9 us to an op's GEMV; two passes, each summed over a
// log2(KT)-level tree, added 7-41 us (bench/results/2026-12-03-h200-norm-stats-fused-split).
const NG: u32 = 16u;          // groups per row
const GS: u32 = KT / NG;      // threads per group (KT >= 32)
var<workgroup> groups: array<vec3<f32>, T * NG>;

@group(0) @binding(6) var<storage, read> gamma: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> beta: array<vec4<f32>>;

// (n, mean, M2) of p and q together.
fn merge(p: vec3<f32>, q: vec3<f32>) -> vec3<f32> {
  if (q.x == 0.0) { return p; }
  let n = p.x + q.x;
  let d = q.y - p.y;
  let f = q.x / n;
  return vec3<f32>(n, p.y + d * f, p.z + q.z + d * d * p.x * f);
}

// Elements of row t that thread lid's chunks k = 8 lid + 8 KT j hold.
fn countOf(lid: u32) -> f32 {
  let full = P.K / (KT * 8u);
  let rem = P.K % (KT * 8u);
  return f32(full * 8u + select(0u, min(rem - lid * 8u, 8u), rem > lid * 8u));
}

fn normStats(lid: u32) {
  let lane = vec4<u32>(0u, 1u, 2u, 3u);
  for (var t = 0u; t < P.T; t++) {
    var m = vec3<f32>(0.0);
    for (var k = lid * 8u; k < P.K; k += KT * 8u) {
      let c = xChunk(P.row0 + t, k);
      let n = f32(min(P.K - k, 8u));
      let mean = (dot(c[0], vec4<f32>(1.0)) + dot(c[1], vec4<f32>(1.0))) / n;
      let da = select(vec4<f32>(0.0), c[0] - mean, vec4<u32>(k) + lane < vec4<u32>(P.K));
      let db = select(vec4<f32>(0.0), c[1] - mean, vec4<u32>(k + 4u) + lane < vec4<u32>(P.K));
      m = merge(m, vec3<f32>(n, mean, dot(da, da) + dot(db, db)));
    }
    red[(2u * t) * KT + lid] = m.y;
    red[(2u * t + 1u) * KT + lid] = m.z; // red holds ROWS >= 2 such pairs per row
  }
  workgroupBarrier();
  for (var j = lid; j < P.T * NG; j += KT) {
    let t = j / NG;
    var m = vec3<f32>(0.0);
    for (var i = (j % NG) * GS; i < (j % NG + 1u) * GS; i++) {
      m = merge(m, vec3<f32>(countOf(i), red[(2u * t) * KT + i], red[(2u * t + 1u) * KT + i]));
    }
    groups[j] = m;
  }
  workgroupBarrier();
  let n = f32(P.K);
  if (STATS_SHARED) {
    if (lid < P.T) {
      var m = vec3<f32>(0.0);
      for (var g = 0u; g < NG; g++) { m = merge(m, groups[lid * NG + g]); }
      statsShared[lid] = vec2<f32>(m.y, inverseSqrt(m.z / n + P.eps));
    }
    workgroupBarrier();
    return;
  }
  // Every thread: the row's mean from the groups' counts and means, then M2 = the groups' M2
  // + n (mean_g - mean)^2 summed (one division, not one per pairwise merge).
  for (var t = 0u; t < P.T; t++) {
    var s = 0.0;
    for (var g = 0u; g < NG; g++) { let q = groups[t * NG + g]; s += q.x * q.y; }
    let mean = s / n;
    var m2 = 0.0;
    for (var g = 0u; g < NG; g++) {
      let q = groups[t * NG + g];
      let d = q.y - mean;
      m2 += q.z + q.x * d * d;
    }
    statsOwn[t] = vec2<f32>(mean, inverseSqrt(m2 / n + P.eps));
  }
}

// gamma and beta of the chunk k .. k+8, zero past K (so the chunk's padding stays zero).
// Loaded once per chunk, for all T rows.
struct NormChunk {
  g: array<vec4<f32>, 2>,
  b: array<vec4<f32>, 2>,
}

fn normChunk(k: u32) -> NormChunk {
  var c: NormChunk;
  for (var h = 0u; h < 2u; h++) {
    let k4 = k + 4u * h;
    if (ALIGNED) {
      if (k4 < P.K) {
        c.g[h] = gamma[k4 >> 2u];
        if (P.normBeta != 0u) { c.b[h] = beta[k4 >> 2u]; }
      }
    } else {
      for (var i = 0u; i < 4u; i++) {
        let e = k4 + i;
        if (e < P.K) {
          c.g[h][i] = gamma[e >> 2u][e & 3u];
          if (P.normBeta != 0u) { c.b[h][i] = beta[e >> 2u][e & 3u]; }
        }
      }
    }
  }
  return c;
}

// Row t's chunk normalized: (x - mean) * rstd * gamma + beta.
fn normX(x: array<vec4<f32>, 2>, c: NormChunk, t: u32) -> array<vec4<f32>, 2> {
  var st = statsOwn[t];
  if (STATS_SHARED) { st = statsShared[t]; }
  return array<vec4<f32>, 2>((x[0] - st.x) * st.y * c.g[0] + c.b[0], (x[1] - st.x) * st.y * c.g[1] + c.b[1]);
}

fn xMoment(x: array<vec4<f32>, 2>) -> f32 {
  return 0.0;
}

fn outScale(t: u32) -> f32 {
  return 1.0;
}
