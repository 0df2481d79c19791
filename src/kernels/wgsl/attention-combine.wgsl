// Flash-decoding, pass 2: merges the per-split partials of attention-split into out.
//
// Layout:  positions, valid u32 [T]; part_o [T, H, NS, D], part_ml [T, H, NS] vec2 (max, sum);
//          out [T, H*D]. All f32, D % 4 == 0. Same Params as attention-split.
// Dispatch: (H, T), workgroup WG. Rows with one split (written by pass 1) or valid[t] == 0 exit.
// MAXNS >= NS sizes the workgroup copies of the split statistics.
//   out = sum_s exp(m_s - m) * o_s / sum_s exp(m_s - m) * l_s,  m = max_s m_s

{{PARAMS}}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> valid: array<u32>;
@group(0) @binding(3) var<storage, read> part_o: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> part_ml: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

const D4: u32 = {{D4}}u;
const SPLIT: u32 = {{SPLIT}}u;
const WG: u32 = {{WG}}u;
const MAXNS: u32 = {{MAXNS}}u;

var<workgroup> ml_sh: array<vec2<f32>, MAXNS>;
var<workgroup> w_sh: array<f32, MAXNS>;

var<workgroup> ns_sh: u32;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let h = wid.x;
  let t = wid.y;
  if (tid == 0u) {
    var ns = 0u;
    if (valid[t] != 0u) {
      ns = (min(positions[t], P.M - 1u) + SPLIT) / SPLIT;
    }
    ns_sh = ns;
  }
  let ns = workgroupUniformLoad(&ns_sh);
  if (ns <= 1u) {
    return;
  }
  let th = t * P.H + h;
  let base = th * P.NS;
  // The split statistics go through workgroup memory so that their loads go out together.
  for (var s = tid; s < ns; s += WG) {
    ml_sh[s] = part_ml[base + s];
  }
  workgroupBarrier();
  var mx = -1e30;
  for (var s = 0u; s < ns; s++) {
    mx = max(mx, ml_sh[s].x);
  }
  for (var s = tid; s < ns; s += WG) {
    w_sh[s] = exp(ml_sh[s].x - mx);
  }
  workgroupBarrier();
  var l = 0.0;
  for (var s = 0u; s < ns; s++) {
    l += w_sh[s] * ml_sh[s].y;
  }
  let inv = 1.0 / l;
  for (var d = tid; d < D4; d += WG) {
    var o = vec4<f32>(0.0);
    for (var s = 0u; s < ns; s++) {
      o += w_sh[s] * part_o[(base + s) * D4 + d];
    }
    out[th * D4 + d] = o * inv;
  }
}
