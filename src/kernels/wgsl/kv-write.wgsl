// Scatters this step's keys and values into the KV caches.
//
// Layout:  k, v [T, Hkv*D] f32 (read as vec4: D % 4 == 0); caches Kc, Vc [B, Hkv, M, D] f32;
//          positions u32 [T], valid u32 [T]; row t belongs to batch row b = t / S.
//          Row t goes to [b, h, positions[t], :]; rows with valid[t] == 0 or positions[t] >= M
//          are skipped (nothing written).
// Dispatch: (ceil(Hkv * D/4 / 64), min(T, 65535), ceil(T / 65535)); one thread per vec4.

struct Params {
  T: u32,
  S: u32,
  Hkv: u32,
  M: u32,
  D4: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> kc: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> vc: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> positions: array<u32>;
@group(0) @binding(6) var<storage, read> valid: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = wid.z * 65535u + wid.y;
  let e = gid.x;
  let row = P.Hkv * P.D4;
  if (t >= P.T || e >= row || valid[t] == 0u) {
    return;
  }
  let pos = positions[t];
  if (pos >= P.M) {
    return;
  }
  let h = e / P.D4;
  let d = e % P.D4;
  let b = t / P.S;
  let dst = ((b * P.Hkv + h) * P.M + pos) * P.D4 + d;
  let src = t * row + e;
  kc[dst] = k[src];
  vc[dst] = v[src];
}
