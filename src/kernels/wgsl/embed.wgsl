// embed.wgsl: token (+ learned position) embedding gather.
//   out[t, e] = scale * table[ids[t] * E + e]  +  posTable[(positions[t] + posOffset) * E + e]   (second term only when hasPos != 0)
// Layout: ids, positions u32 [T]; table, posTable [vocab | posRows, E] of f32, or of f16 or bf16
// read as u32 pairs and widened (unpack2x16float; bf16 by a shift: no shader-f16 feature needed);
// out f32 [T, E], row-major. TABLE_AT / POS_AT are the element reads (elementwise.ts, by dtype).
// Dispatch: (ceil(E / 256), T), workgroup 256: one invocation per output element, coalesced along E.
// Out of range: ids[t] >= vocab makes the token term 0; positions[t] + posOffset >= posRows makes the
// position term 0. Nothing is ever read out of bounds. The add wraps mod 2^32, so HF's padding
// position -1 (0xffffffff as u32) with OPT's offset 2 reads row 1, as in PyTorch. Without a position table the host binds
// `ids` and `table` again in slots 2 and 4 (read-only aliases, never read because hasPos == 0).

struct Params {
  T: u32,
  E: u32,
  vocab: u32,
  hasPos: u32,
  posOffset: u32,
  posRows: u32,
  scale: f32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> table: array<{{W}}>;
@group(0) @binding(4) var<storage, read> posTable: array<{{W}}>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn tableAt(i: u32) -> f32 { {{TABLE_AT}} }
fn posAt(i: u32) -> f32 { {{POS_AT}} }

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x;
  let t = gid.y;
  if (e >= p.E || t >= p.T) {
    return;
  }
  var v = 0.0;
  let id = ids[t];
  if (id < p.vocab) {
    v = p.scale * tableAt(id * p.E + e);
  }
  if (p.hasPos != 0u) {
    let pos = positions[t] + p.posOffset;
    if (pos < p.posRows) {
      v += posAt(pos * p.E + e);
    }
  }
  out[t * p.E + e] = v;
}
