// Splits the packed QKV projection of this step's rows: rotary (rotate-half form, Hugging
// Face llama) on q and k when ROTARY, q to its own buffer, k and v into the KV caches.
// One kernel where there were three (split, rotary, cache write): decode runs it once per layer.
//
// Layout:  qkv [T, (H + 2 Hkv) * D] f32 (q heads, then k heads, then v heads; one row per token);
//          q [T, H * D] f32 out; caches Kc, Vc [B, Hkv, M, D] f32 or paged (kv_slot.wgsl); positions u32 [T];
//          valid u32 [T]; inv_freq f32 [D/2] (1 / theta^(2i/D), computed in f32 on the host).
//          Row t belongs to batch row b = t / S; its k and v go to [b, h, positions[t], :],
//          skipped for padding rows (valid[t] == 0) and positions >= M.
// Dispatch: (ceil((H + 2 Hkv) * D/2 / 64), min(T, 65535), ceil(T / 65535)); one thread per
//          (row, head, i < D/2) moves the pair (x[i], x[i + D/2]):
//   rotated[i]       = x[i] * cos - x[i + D/2] * sin
//   rotated[i + D/2] = x[i + D/2] * cos + x[i] * sin,   angle = f32(pos) * inv_freq[i]  (f32, like torch)

struct Params {
  T: u32,
  S: u32,
  H: u32,
  Hkv: u32,
  D: u32,
  M: u32,
  BS: u32,
  NB: u32,
}

{{KV_SLOT}}

const ROTARY: bool = {{ROTARY}};

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<f32>;
@group(0) @binding(4) var<storage, read_write> vc: array<f32>;
@group(0) @binding(5) var<storage, read> positions: array<u32>;
@group(0) @binding(6) var<storage, read> valid: array<u32>;
@group(0) @binding(7) var<storage, read> inv_freq: array<f32>;

{{ROTARY_FNS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let half = P.D / 2u;
  let heads = P.H + 2u * P.Hkv;
  let t = wid.z * 65535u + wid.y;
  let idx = gid.x;
  if (t >= P.T || idx >= heads * half) {
    return;
  }
  let hh = idx / half;
  let i = idx % half;
  let src = (t * heads + hh) * P.D + i;
  var x1 = qkv[src];
  var x2 = qkv[src + half];
  let pos = positions[t];
  if (ROTARY && hh < P.H + P.Hkv) {
    let cs = cos_sin(f32(pos) * inv_freq[i]);
    let r1 = x1 * cs.x - x2 * cs.y;
    x2 = x2 * cs.x + x1 * cs.y;
    x1 = r1;
  }
  if (hh < P.H) {
    let dst = (t * P.H + hh) * P.D + i;
    q[dst] = x1;
    q[dst + half] = x2;
    return;
  }
  if (valid[t] == 0u || pos >= P.M) {
    return;
  }
  let isK = hh < P.H + P.Hkv;
  let h = select(hh - P.H - P.Hkv, hh - P.H, isK);
  let dst = kvSlot(t / P.S, h, pos) * P.D + i;
  if (isK) {
    kc[dst] = x1;
    kc[dst + half] = x2;
  } else {
    vc[dst] = x1;
    vc[dst + half] = x2;
  }
}
