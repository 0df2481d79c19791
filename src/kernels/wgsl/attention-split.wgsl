// Flash-decoding, pass 1: one workgroup per (key split s, head group g, query row t) computes,
// for the G query heads g*G .. g*G+G (G divides H/Hkv, so they share one KV head: all of them,
// or fewer for more workgroups when there are few rows), softmax statistics and the unnormalised P.V over
// the keys [s*SPLIT, min((s+1)*SPLIT, L)), L = min(positions[t], M-1) + 1 (causal).
//
// Layout:  q [T, H*D]; Kc, Vc [B, Hkv, M, D] (b = t / S), or paged (kv_slot.wgsl); positions, valid u32 [T];
//          slopes f32 [H] (ALiBi, read when P.alibi == 1; else any buffer); out [T, H*D];
//          part_o [T, H, NS, D] (unnormalised accumulators), part_ml [T, H, NS] vec2 (max, sum).
//          All f32, D % 4 == 0. NS = ceil(M / SPLIT), the partials' stride.
// Workgroup memory: 16 * (G * D/4 + WG + 2 * D/4) + 4 * (G * (SPLIT + WG + 16) + WG) + 4 bytes.
// Dispatch: (splits <= NS, H / G, T), workgroup WG (a multiple of 16, >= D/4). Splits past L exit at once.
//          A row with a single split writes `out` itself; otherwise attention-combine finishes it.
//          Rows with valid[t] == 0 get zeros.
// Scores are q.k * scale, soft-capped when P.softcap > 0 (capScore), plus ALiBi when on.
// FUSED (decode, S = 1): q is the packed qkv [T, (H + 2 Hkv) * D] instead (qkv-scatter's input),
//          rotated here when ROTARY (slopes then holds inv_freq [D/2]; D % 8 == 0), and the
//          workgroups of the split holding position p = positions[t] take this row's k (rotated)
//          and v from qkv for key p (when p < M), and the first of the KV head's groups writes
//          them into the caches: the scatter's dispatch is saved. No workgroup uses key p from
//          the caches (a PREFETCH may load its stale slot, then drops it), so none waits for that write.

{{PARAMS}}
{{KV_SLOT}}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, {{KV_ACCESS}}> kc: array<vec4<f32>>;
@group(0) @binding(3) var<storage, {{KV_ACCESS}}> vc: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> positions: array<u32>;
@group(0) @binding(5) var<storage, read> valid: array<u32>;
@group(0) @binding(6) var<storage, read> slopes: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> part_o: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> part_ml: array<vec2<f32>>;

const D4: u32 = {{D4}}u;
const G: u32 = {{G}}u;
const SPLIT: u32 = {{SPLIT}}u;
const WG: u32 = {{WG}}u;
const KPT: u32 = (SPLIT + WG - 1u) / WG; // keys per thread in the score phase
const NL: u32 = WG / D4; // key lanes in the P.V phase
const KPL: u32 = (SPLIT + NL - 1u) / NL; // keys per lane
const NEG: f32 = -1e30;
const FUSED: bool = {{FUSED}};
// PREFETCH (when a thread's keys and values fit in registers: KPT * D4 + KPL <= 32 vec4s):
// the split's K and V rows are requested first, since their addresses depend only on the
// workgroup, so that their latency overlaps the reads of positions and q instead of following
// them. Slots past the row's last key hold stale data and are never used.
const PREFETCH: bool = {{PREFETCH}};
const KR: u32 = select(1u, KPT * D4, PREFETCH);
const VR: u32 = select(1u, KPL, PREFETCH);
const ROTARY: bool = {{ROTARY}};
// Fixed-count loops end at `N{{DYN}}`: DYN is empty on GPUs (the driver unrolls them and keeps
// the small per-thread arrays in registers) and ` + P.zero` on CPU adapters, where LLVM takes
// tens of seconds on the unrolled code around barriers.

var<workgroup> q_sh: array<vec4<f32>, G * D4>;
var<workgroup> s_sh: array<f32, G * SPLIT>;
var<workgroup> red_sh: array<f32, G * WG>;
var<workgroup> red2_sh: array<f32, G * 16u>;
var<workgroup> o_sh: array<vec4<f32>, WG>;
var<workgroup> l_sh: array<f32, WG>;
var<workgroup> lim_sh: u32;
var<workgroup> knew_sh: array<vec4<f32>, D4>; // FUSED: this step's key and value
var<workgroup> vnew_sh: array<vec4<f32>, D4>;

{{ROTARY_FNS}}

// Stores into the caches (FUSED; a no-op otherwise, so that the caches can stay read-only).
fn writeKv(i: u32, k: vec4<f32>, v: vec4<f32>) {
  {{KV_WRITE}}
}

// FUSED: vec4 d of the head starting at vec4 `base` of qkv, rotated for position `pos`.
fn packedHead(base: u32, d: u32, pos: f32) -> vec4<f32> {
  let x = q[base + d];
  if (!ROTARY) { return x; }
  let h4 = D4 / 2u;
  let lo = d < h4;
  let j = select(d - h4, d, lo);
  let other = q[base + select(d - h4, d + h4, lo)];
  var c: vec4<f32>;
  var s: vec4<f32>;
  for (var e = 0u; e < 4u; e++) {
    let cs = cos_sin(pos * slopes[4u * j + e]);
    c[e] = cs.x;
    s[e] = cs.y;
  }
  return select(x * c + other * s, x * c - other * s, lo);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let s = wid.x;
  let t = wid.z;
  let head = wid.y * G; // this workgroup's first head
  let perKv = P.H / P.Hkv;
  let kvh = head / perKv;
  let b = t / P.S;
  let head0 = t * P.H + head; // as a row of q / out
  let start = s * SPLIT;
  let lane = tid / D4; // P.V phase: key lane and output vec4 of this thread
  let d = tid % D4;
  var kreg: array<vec4<f32>, KR>;
  var vreg: array<vec4<f32>, VR>;
  if (PREFETCH) {
    for (var kk = 0u; kk < KPT{{DYN}}; kk++) {
      let kb = kvSlot(b, kvh, min(start + kk * WG + tid, P.M - 1u)) * D4;
      for (var e = 0u; e < D4{{DYN}}; e++) { kreg[kk * D4 + e] = kc[kb + e]; }
    }
    if (lane < NL) {
      for (var jj = 0u; jj < KPL{{DYN}}; jj++) {
        vreg[jj] = vc[kvSlot(b, kvh, min(start + lane + jj * NL, P.M - 1u)) * D4 + d];
      }
    }
  }
  let position = positions[t];
  let pos = f32(position);
  // FUSED: index (within this split) of this step's own key, or none.
  var own = 0xffffffffu;
  // q (and this step's k, v) next: the barrier in workgroupUniformLoad below publishes them.
  if (FUSED) {
    let row = t * (P.H + 2u * P.Hkv) * D4;
    for (var idx = tid; idx < G * D4; idx += WG) {
      q_sh[idx] = packedHead(row + (head + idx / D4) * D4, idx % D4, pos) * P.scale;
    }
    // The split holding this step's key (when the row is valid and position < M: then L = position + 1).
    if (valid[t] != 0u && position < P.M && position / SPLIT == s) {
      own = position - start;
      let dst = kvSlot(b, kvh, position) * D4;
      for (var e = tid; e < D4; e += WG) {
        let k = packedHead(row + (P.H + kvh) * D4, e, pos);
        let v = q[row + (P.H + P.Hkv + kvh) * D4 + e];
        knew_sh[e] = k;
        vnew_sh[e] = v;
        if (head % perKv == 0u) { writeKv(dst + e, k, v); }
      }
    }
  } else {
    for (var idx = tid; idx < G * D4; idx += WG) {
      q_sh[idx] = q[head0 * D4 + idx] * P.scale;
    }
  }
  if (tid == 0u) {
    var lim = 0u;
    if (valid[t] != 0u) {
      lim = min(position, P.M - 1u) + 1u;
    }
    lim_sh = lim;
  }
  let lim = workgroupUniformLoad(&lim_sh);
  if (lim == 0u) {
    if (s == 0u) {
      for (var idx = tid; idx < G * D4; idx += WG) {
        out[head0 * D4 + idx] = vec4<f32>(0.0);
      }
    }
    return;
  }
  if (start >= lim) {
    return;
  }
  let n = min(SPLIT, lim - start);
  let nsplit = (lim + SPLIT - 1u) / SPLIT;

  var slope: array<f32, G>; // ALiBi, 0 when off
  if (P.alibi != 0u) {
    for (var i = 0u; i < G{{DYN}}; i++) {
      slope[i] = slopes[head + i];
    }
  }

  // Scores: each thread owns keys tid, tid + WG, ... for all G heads.
  var mloc: array<f32, G>;
  for (var i = 0u; i < G{{DYN}}; i++) {
    mloc[i] = NEG;
  }
  for (var kk = 0u; kk < KPT{{DYN}}; kk++) {
    let j = kk * WG + tid;
    if (j < n) {
      let kb = kvSlot(b, kvh, start + j) * D4;
      // Zeroed explicitly: some backends hoist a loop-local var's zero-init out of the loop.
      var acc: array<f32, G>;
      for (var i = 0u; i < G{{DYN}}; i++) {
        acc[i] = 0.0;
      }
      for (var e = 0u; e < D4{{DYN}}; e++) {
        var kv: vec4<f32>;
        if (j == own) { kv = knew_sh[e]; } else if (PREFETCH) { kv = kreg[kk * D4 + e]; } else { kv = kc[kb + e]; }
        for (var i = 0u; i < G{{DYN}}; i++) {
          acc[i] += dot(q_sh[i * D4 + e], kv);
        }
      }
      for (var i = 0u; i < G{{DYN}}; i++) {
        let sc = capScore(acc[i]) + slope[i] * (f32(start + j) - pos);
        s_sh[i * SPLIT + j] = sc;
        mloc[i] = max(mloc[i], sc);
      }
    }
  }
  // Max per head: WG partials -> 16, then every thread takes the 16 itself (two barriers).
  for (var i = 0u; i < G{{DYN}}; i++) {
    red_sh[i * WG + tid] = mloc[i];
  }
  workgroupBarrier();
  for (var x = tid; x < G * 16u; x += WG) {
    let i = x / 16u;
    let p = x % 16u;
    var m = NEG;
    for (var e = 0u; e < WG / 16u{{DYN}}; e++) {
      m = max(m, red_sh[i * WG + p * (WG / 16u) + e]);
    }
    red2_sh[x] = m;
  }
  workgroupBarrier();
  var mx: array<f32, G>;
  for (var i = 0u; i < G{{DYN}}; i++) {
    mx[i] = NEG;
    for (var e = 0u; e < 16u{{DYN}}; e++) {
      mx[i] = max(mx[i], red2_sh[i * 16u + e]);
    }
  }

  // P.V: thread (lane, d) sums keys lane, lane + NL, ... for output vec4 d of every head, taking
  // each weight exp(score - max) itself (the D4 threads of a key alike): no pass and barrier of its own.
  var acc: array<vec4<f32>, G>;
  var ls: array<f32, G>;
  if (lane < NL) {
    // A fixed trip count, so the V loads can be unrolled and issued together.
    for (var jj = 0u; jj < KPL{{DYN}}; jj++) {
      let j = lane + jj * NL;
      if (j < n) {
        var v: vec4<f32>;
        if (j == own) { v = vnew_sh[d]; } else if (PREFETCH) { v = vreg[jj]; } else { v = vc[kvSlot(b, kvh, start + j) * D4 + d]; }
        for (var i = 0u; i < G{{DYN}}; i++) {
          let p = exp(s_sh[i * SPLIT + j] - mx[i]);
          acc[i] += p * v;
          ls[i] += p;
        }
      }
    }
  }
  for (var i = 0u; i < G{{DYN}}; i++) {
    o_sh[tid] = acc[i];
    l_sh[tid] = ls[i];
    workgroupBarrier();
    if (tid < D4) {
      var o = vec4<f32>(0.0);
      var l = 0.0;
      for (var ln = 0u; ln < NL{{DYN}}; ln++) {
        o += o_sh[ln * D4 + tid];
        l += l_sh[ln * D4 + tid];
      }
      let th = head0 + i;
      if (nsplit == 1u) {
        out[th * D4 + tid] = o / l;
      } else {
        part_o[(th * P.NS + s) * D4 + tid] = o;
        if (tid == 0u) {
          part_ml[th * P.NS + s] = vec2<f32>(mx[i], l);
        }
      }
    }
    workgroupBarrier();
  }
}
