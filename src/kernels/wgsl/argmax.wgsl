// argmax.wgsl: ids[t] = argmax_v logits[t * stride + v], v < V; ties -> lowest index (numpy/torch).
// Two dispatches of this one pipeline, chosen by p.mode (so both see the same bindings):
//   mode 0 (partials): dispatch (nChunks, T), workgroup 256. Workgroup (c, t) scans
//     v in [c * chunk, min((c + 1) * chunk, V)) and writes partials[t * nChunks + c] = (key, index).
//   mode 1 (final):    dispatch (T), workgroup 256. Reduces the nChunks partials of row t into ids[t].
// Comparison is on an order-preserving u32 key of the float bits (order_key.wgsl; logits are bound as u32), so it is
// exact and free of fast-math: -0 == +0, NaN ranks above +inf (numpy/torch return the first NaN).
// Suppression (HF min_new_tokens): when p.suppressOn != 0, logits whose index is one of
// suppress[0 .. suppressCount) count as -inf (logits themselves are not modified).
// Layout: logits f32 [T, stride]; suppress u32 [suppressCount]; partials vec2<u32> [T, nChunks]; ids u32 [T].
const WG: u32 = 256u;
{{ORDER_KEY}}

struct Params {
  T: u32,
  V: u32,
  stride: u32,
  chunk: u32,
  nChunks: u32,
  suppressOn: u32,
  suppressCount: u32,
  mode: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<u32>;
@group(0) @binding(2) var<storage, read> suppress: array<u32>;
@group(0) @binding(3) var<storage, read_write> partials: array<vec2u>;
@group(0) @binding(4) var<storage, read_write> ids: array<u32>;

var<workgroup> keys: array<u32, WG>;
var<workgroup> idxs: array<u32, WG>;

// Workgroup reduction of (key, index); every invocation gets the winner.
fn reduceBest(k: u32, i: u32, lid: u32) -> vec2u {
  keys[lid] = k;
  idxs[lid] = i;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      let ko = keys[lid + s];
      let io = idxs[lid + s];
      if (better(ko, io, keys[lid], idxs[lid])) {
        keys[lid] = ko;
        idxs[lid] = io;
      }
    }
    workgroupBarrier();
  }
  return vec2u(keys[0], idxs[0]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  var bk = 0u;
  var bi = NONE;
  if (p.mode == 0u) {
    let c = wid.x;
    let t = wid.y;
    if (t >= p.T || c >= p.nChunks) {
      return;
    }
    let start = c * p.chunk;
    let end = min(start + p.chunk, p.V);
    let row = t * p.stride;
    let sup = p.suppressOn != 0u;
    // Each invocation visits increasing indices, so a strict '>' keeps the lowest on ties.
    for (var v = start + lid; v < end; v += WG) {
      var k = orderKey(logits[row + v]);
      if (sup) {
        for (var j = 0u; j < p.suppressCount; j++) {
          if (suppress[j] == v) {
            k = NEG_INF_KEY;
          }
        }
      }
      if (k > bk) {
        bk = k;
        bi = v;
      }
    }
    let best = reduceBest(bk, bi, lid);
    if (lid == 0u) {
      partials[t * p.nChunks + c] = best;
    }
  } else {
    let t = wid.x;
    if (t >= p.T) {
      return;
    }
    for (var c = lid; c < p.nChunks; c += WG) {
      let q = partials[t * p.nChunks + c];
      if (better(q.x, q.y, bk, bi)) {
        bk = q.x;
        bi = q.y;
      }
    }
    let best = reduceBest(bk, bi, lid);
    if (lid == 0u) {
      ids[t] = best.y;
    }
  }
}
