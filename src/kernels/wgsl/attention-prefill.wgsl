// Causal attention for many query rows (prefill): one workgroup per (tile of BQ consecutive
// rows of one batch row, KV head g) computes all G = H/Hkv heads sharing that KV head, so each
// key/value tile loaded into workgroup memory serves R = BQ * G query rows. Online softmax
// (running max, sum, rescaled accumulator) over key tiles of BK keys; query row t sees keys
// 0..min(positions[t], M-1); rows with valid[t] == 0 see none and get zeros.
// Scores are q.k * scale, soft-capped when P.softcap > 0 (capScore), plus ALiBi when on.
//
// Layout:  q [T, H*D]; Kc, Vc [B, Hkv, M, D] or paged (kv_slot.wgsl); T = B * S, row t = b * S + s; positions, valid u32 [T];
//          slopes f32 [H] (ALiBi, read when P.alibi == 1; else any buffer); out [T, H*D].
//          All f32, D % 4 == 0. Same Params as attention-split (NS unused).
// Dispatch: (ceil(S / BQ), Hkv, B), workgroup WG (BK divides WG, D/4 <= WG).
// Workgroup memory: 16 * (R * D/4 + BK * (D/4 + 1)) + 4 * (R * (BK + 1) + 3R + 2BQ + G) + 4 bytes.

{{PARAMS}}
{{KV_SLOT}}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kc: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> vc: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> positions: array<u32>;
@group(0) @binding(5) var<storage, read> valid: array<u32>;
@group(0) @binding(6) var<storage, read> slopes: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<vec4<f32>>;

const D4: u32 = {{D4}}u;
const G: u32 = {{G}}u;
const BQ: u32 = {{BQ}}u;
const BK: u32 = {{BK}}u;
const WG: u32 = {{WG}}u;
const R: u32 = BQ * G; // query rows of the tile; local row r = tq * G + i (query tq, head i)
const KP: u32 = D4 + 1u; // padded key stride (vec4s): column reads hit distinct banks
const SP: u32 = BK + 1u; // padded score stride
const NRG: u32 = WG / BK; // score phase: thread = (key sj, row group)
const RPT: u32 = (R + NRG - 1u) / NRG;
const NRG2: u32 = WG / D4; // P.V phase: thread = (vec4 column, row group)
const RPT2: u32 = (R + NRG2 - 1u) / NRG2;
const NEG: f32 = -1e30;
// Fixed-count loops end at `N{{DYN}}`: DYN is empty on GPUs (the driver unrolls them and keeps
// the small per-thread arrays in registers) and ` + P.zero` on CPU adapters, where LLVM takes
// tens of seconds on the unrolled code around barriers.

var<workgroup> q_sh: array<vec4<f32>, R * D4>;
var<workgroup> kv_sh: array<vec4<f32>, BK * KP>;
var<workgroup> s_sh: array<f32, R * SP>;
var<workgroup> m_sh: array<f32, R>;
var<workgroup> l_sh: array<f32, R>;
var<workgroup> a_sh: array<f32, R>;
var<workgroup> lim_sh: array<u32, BQ>;
var<workgroup> pos_sh: array<f32, BQ>;
var<workgroup> ext_sh: u32;
var<workgroup> slope_sh: array<f32, G>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let s0 = wid.x * BQ;
  let g = wid.y;
  let b = wid.z;

  if (tid < BQ) {
    var lim = 0u;
    var pf = 0.0;
    if (s0 + tid < P.S) {
      let t = b * P.S + s0 + tid;
      if (valid[t] != 0u) {
        let p = positions[t];
        lim = min(p, P.M - 1u) + 1u;
        pf = f32(p);
      }
    }
    lim_sh[tid] = lim;
    pos_sh[tid] = pf;
  }
  if (tid < G) {
    var sl = 0.0;
    if (P.alibi != 0u) {
      sl = slopes[g * G + tid];
    }
    slope_sh[tid] = sl;
  }
  for (var r = tid; r < R; r += WG) {
    m_sh[r] = NEG;
    l_sh[r] = 0.0;
  }
  for (var idx = tid; idx < R * D4; idx += WG) {
    let r = idx / D4;
    let t = b * P.S + min(s0 + r / G, P.S - 1u);
    q_sh[idx] = q[(t * P.H + g * G + r % G) * D4 + idx % D4] * P.scale;
  }
  workgroupBarrier();
  if (tid == 0u) {
    var e = 0u;
    for (var i = 0u; i < BQ{{DYN}}; i++) {
      e = max(e, lim_sh[i]);
    }
    ext_sh = e;
  }
  let ext = workgroupUniformLoad(&ext_sh);

  let sj = tid % BK;
  let srg = tid / BK;
  let pd = tid % D4;
  let prg = tid / D4;
  var acc: array<vec4<f32>, RPT2>;

  for (var k0 = 0u; k0 < ext; k0 += BK) {
    for (var idx = tid; idx < BK * D4; idx += WG) {
      let j = idx / D4;
      let kj = k0 + j;
      var kv = vec4<f32>(0.0);
      if (kj < ext) {
        kv = kc[kvSlot(b, g, kj) * D4 + idx % D4];
      }
      kv_sh[j * KP + idx % D4] = kv;
    }
    workgroupBarrier();

    // Scores for key sj and rows srg, srg + NRG, ...
    // Zeroed explicitly: some backends hoist a loop-local var's zero-init out of the loop.
    var sc: array<f32, RPT>;
    for (var k = 0u; k < RPT{{DYN}}; k++) {
      sc[k] = 0.0;
    }
    for (var d = 0u; d < D4{{DYN}}; d++) {
      let kv = kv_sh[sj * KP + d];
      for (var k = 0u; k < RPT{{DYN}}; k++) {
        let r = min(srg + k * NRG, R - 1u);
        sc[k] += dot(q_sh[r * D4 + d], kv);
      }
    }
    let kj = k0 + sj;
    for (var k = 0u; k < RPT{{DYN}}; k++) {
      let r = srg + k * NRG;
      if (r < R) {
        let tq = r / G;
        var v = NEG;
        if (kj < lim_sh[tq]) {
          v = capScore(sc[k]) + slope_sh[r % G] * (f32(kj) - pos_sh[tq]);
        }
        s_sh[r * SP + sj] = v;
      }
    }
    workgroupBarrier();

    // Online softmax, a thread per row; meanwhile the others load the V tile over K's.
    for (var r = tid; r < R; r += WG) {
      let mo = m_sh[r];
      var mx = mo;
      for (var j = 0u; j < BK{{DYN}}; j++) {
        mx = max(mx, s_sh[r * SP + j]);
      }
      var sum = 0.0;
      for (var j = 0u; j < BK{{DYN}}; j++) {
        let sv = s_sh[r * SP + j];
        let p = select(exp(sv - mx), 0.0, sv == NEG);
        s_sh[r * SP + j] = p;
        sum += p;
      }
      let alpha = exp(mo - mx);
      m_sh[r] = mx;
      a_sh[r] = alpha;
      l_sh[r] = l_sh[r] * alpha + sum;
    }
    for (var idx = tid; idx < BK * D4; idx += WG) {
      let j = idx / D4;
      let kj = k0 + j;
      var vv = vec4<f32>(0.0);
      if (kj < ext) {
        vv = vc[kvSlot(b, g, kj) * D4 + idx % D4];
      }
      kv_sh[j * KP + idx % D4] = vv;
    }
    workgroupBarrier();

    if (prg < NRG2) {
      for (var k = 0u; k < RPT2{{DYN}}; k++) {
        acc[k] *= a_sh[min(prg + k * NRG2, R - 1u)];
      }
      for (var j = 0u; j < BK{{DYN}}; j++) {
        let vv = kv_sh[j * KP + pd];
        for (var k = 0u; k < RPT2{{DYN}}; k++) {
          let r = min(prg + k * NRG2, R - 1u);
          acc[k] += s_sh[r * SP + j] * vv;
        }
      }
    }
    workgroupBarrier();
  }

  if (prg < NRG2) {
    for (var k = 0u; k < RPT2{{DYN}}; k++) {
      let r = prg + k * NRG2;
      if (r < R && s0 + r / G < P.S) {
        let t = b * P.S + s0 + r / G;
        let l = l_sh[r];
        var o = vec4<f32>(0.0);
        if (l > 0.0) {
          o = acc[k] / l;
        }
        out[(t * P.H + g * G + r % G) * D4 + pd] = o;
      }
    }
  }
}
