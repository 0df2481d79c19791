// Rotary position embedding, rotate-half form (Hugging Face llama), in place on q and k.
//
// Layout:  q [T, H*D] f32, k [T, Hkv*D] f32 (row t = one token, heads contiguous),
//          positions u32 [T], inv_freq f32 [D/2] (1 / theta^(2i/D), computed in f32 on the host).
// Dispatch: (ceil((H + Hkv) * D/2 / 64), min(T, 65535), ceil(T / 65535)); one thread per
//          (row, head, i < D/2) rotates the pair (x[i], x[i + D/2]).
//   out[i]       = x[i] * cos - x[i + D/2] * sin
//   out[i + D/2] = x[i + D/2] * cos + x[i] * sin,   angle = f32(pos) * inv_freq[i]  (f32, like torch)

struct Params {
  T: u32,
  H: u32,
  Hkv: u32,
  D: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read> positions: array<u32>;
@group(0) @binding(4) var<storage, read> inv_freq: array<f32>;

// cos and sin of an f32 angle, with the angle first reduced to [-pi, pi] (Cody-Waite, 2*pi split
// into three parts whose leading two multiply exactly by |k| < 2^15), so large positions keep
// full precision whatever the GPU's sin/cos do outside [-pi, pi].
fn cos_sin(a: f32) -> vec2<f32> {
  let k = round(a * 0.15915494309189535);
  var r = a - k * 6.28125;
  r = r - k * 0.001934051513671875;
  r = r - k * 1.2556659146e-6;
  return vec2<f32>(cos(r), sin(r));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let half = P.D / 2u;
  let t = wid.z * 65535u + wid.y;
  let idx = gid.x;
  if (t >= P.T || idx >= (P.H + P.Hkv) * half) {
    return;
  }
  let hh = idx / half;
  let i = idx % half;
  let cs = cos_sin(f32(positions[t]) * inv_freq[i]);
  if (hh < P.H) {
    let base = (t * P.H + hh) * P.D + i;
    let x1 = q[base];
    let x2 = q[base + half];
    q[base] = x1 * cs.x - x2 * cs.y;
    q[base + half] = x2 * cs.x + x1 * cs.y;
  } else {
    let base = (t * P.Hkv + (hh - P.H)) * P.D + i;
    let x1 = k[base];
    let x2 = k[base + half];
    k[base] = x1 * cs.x - x2 * cs.y;
    k[base + half] = x2 * cs.x + x1 * cs.y;
  }
}
