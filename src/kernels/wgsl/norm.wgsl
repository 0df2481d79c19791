// norm.wgsl: fused residual add + LayerNorm / RMSNorm, all in f32.
//   S = X + R (R when flags & HAS_RES, else S = X);  S -> resOut (flags & WRITE_RES) or back into R (flags & IN_PLACE)
//   LayerNorm: OUT = (S - mean) / sqrt(var + eps) * gamma + beta     (RMS = false)
//   RMSNorm:   OUT = S / sqrt(mean(S^2) + eps) * gamma                (RMS = true)
//   ACCUMULATE: OUT += the norm instead of OUT = (a block's normalized output added to the
//   residual stream: Gemma 2's norms after attention and after the MLP)
// Layout: X, R, resOut, OUT f32 [T, E] row-major; gamma, beta f32 [E] (each optional: flags).
// Dispatch: (T), workgroup 256: one workgroup per row. Each invocation keeps its PER = ceil(E / 256)
// elements of S in registers, so X and R are read once. LayerNorm uses the corrected two-pass
// algorithm: mean0 = sum(S)/E, then d = S - mean0, mean = mean0 + sum(d)/E,
// var = sum(d^2)/E - (sum(d)/E)^2, which stays exact for rows with a large common offset.
// Aliasing: X, resOut and OUT must be distinct buffers, and distinct from R (WebGPU forbids a
// writable binding aliasing another). IN_PLACE updates the residual stream R itself. Absent
// buffers are bound to host-side dummies that the kernel never touches.
const WG: u32 = 256u;
const PER: u32 = {{PER}}u;
const RMS: bool = {{RMS}};

const HAS_RES: u32 = 1u;
const WRITE_RES: u32 = 2u;
const IN_PLACE: u32 = 4u;
const HAS_GAMMA: u32 = 8u;
const HAS_BETA: u32 = 16u;
const ACCUMULATE: u32 = 32u;

struct Params {
  T: u32,
  E: u32,
  eps: f32,
  flags: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> r: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> resOut: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<vec2f, WG>;

fn wgSum(v: vec2f, lid: u32) -> vec2f {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      red[lid] = red[lid] + red[lid + s];
    }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier(); // red is reused by the next call
  return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x;
  if (row >= p.T) {
    return;
  }
  let E = p.E;
  let base = row * E;
  let flags = p.flags;
  var s: array<f32, PER>;
  var acc = vec2f(0.0);
  for (var i = 0u; i < PER; i++) {
    let e = lid + i * WG;
    var v = 0.0;
    if (e < E) {
      v = x[base + e];
      if ((flags & HAS_RES) != 0u) {
        v += r[base + e];
      }
      if ((flags & WRITE_RES) != 0u) {
        resOut[base + e] = v;
      } else if ((flags & IN_PLACE) != 0u) {
        r[base + e] = v;
      }
    }
    s[i] = v;
    if (RMS) {
      acc.x += v * v;
    } else {
      acc.x += v;
    }
  }
  let fE = f32(E);
  var mean0 = 0.0; // S - mean is computed as (S - mean0) - dm: mean0 + dm would round to f32 at |mean0|
  var dm = 0.0;
  var rstd = 0.0;
  if (RMS) {
    let ss = wgSum(acc, lid).x;
    rstd = inverseSqrt(ss / fE + p.eps);
  } else {
    mean0 = wgSum(acc, lid).x / fE;
    var acc2 = vec2f(0.0);
    for (var i = 0u; i < PER; i++) {
      if (lid + i * WG < E) {
        let d = s[i] - mean0;
        acc2 += vec2f(d, d * d);
      }
    }
    let m = wgSum(acc2, lid) / fE;
    dm = m.x;
    rstd = inverseSqrt(max(m.y - m.x * m.x, 0.0) + p.eps);
  }
  for (var i = 0u; i < PER; i++) {
    let e = lid + i * WG;
    if (e < E) {
      var y = ((s[i] - mean0) - dm) * rstd;
      if ((flags & HAS_GAMMA) != 0u) {
        y *= gamma[e];
      }
      if ((flags & HAS_BETA) != 0u) {
        y += beta[e];
      }
      if ((flags & ACCUMULATE) != 0u) {
        y += out[base + e];
      }
      out[base + e] = y;
    }
  }
}
