// topk.wgsl: the K largest logits of each row, in descending order (ties -> lower index first),
// as outIds[t * K + r] (u32) and outVals[t * K + r] (f32, suppressed ids read -inf, like HF's scores).
// Two dispatches of this one pipeline, chosen by p.mode (so both see the same bindings):
//   mode 0 (partials): dispatch (nChunks, T), workgroup 256. Workgroup (c, t) holds
//     v in [c * chunk, min((c + 1) * chunk, V)) in registers (chunk <= 256 * PER) and writes its
//     top K as partials[(t * nChunks + c) * K + r] = (key, index), r < K.
//   mode 1 (final):    dispatch (T), workgroup 256. Holds the nChunks * K (<= 256 * PER) candidates of row
//     t in registers and writes the row's top K.
// Each of the K rounds is a register scan plus a workgroup (key, index) reduction; the winner's
// owner marks it taken. Keys are the order-preserving u32 map of the float bits (see argmax.wgsl).
// Layout: logits f32 [T, stride]; suppress u32 [suppressCount]; partials vec2<u32> [T, nChunks, K];
// outIds u32 [T, K]; outVals f32 [T, K]. Rows with V < K pad with index 0xffffffff.
const WG: u32 = 256u;
const PER: u32 = {{PER}}u;
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
  K: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<u32>;
@group(0) @binding(2) var<storage, read> suppress: array<u32>;
@group(0) @binding(3) var<storage, read_write> partials: array<vec2u>;
@group(0) @binding(4) var<storage, read_write> outIds: array<u32>;
@group(0) @binding(5) var<storage, read_write> outVals: array<f32>;

var<workgroup> keys: array<u32, WG>;
var<workgroup> idxs: array<u32, WG>;

fn keyValue(k: u32) -> f32 {
  if ((k & 0x80000000u) != 0u) {
    return bitcast<f32>(k & 0x7fffffffu);
  }
  return bitcast<f32>(~k);
}

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
  let best = vec2u(keys[0], idxs[0]);
  workgroupBarrier(); // keys/idxs are rewritten by the next round
  return best;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  var sk: array<u32, PER>;
  var si: array<u32, PER>;
  var t: u32;
  var c: u32;
  let isFinal = p.mode != 0u;
  if (isFinal) {
    t = wid.x;
    c = 0u;
  } else {
    t = wid.y;
    c = wid.x;
  }
  if (t >= p.T || c >= p.nChunks) {
    return;
  }
  let K = p.K;
  if (!isFinal) {
    let start = c * p.chunk;
    let end = min(start + p.chunk, p.V);
    let row = t * p.stride;
    let sup = p.suppressOn != 0u;
    for (var i = 0u; i < PER; i++) {
      let v = start + lid + i * WG;
      var k = 0u;
      var ix = NONE;
      if (v < end) {
        k = orderKey(logits[row + v]);
        ix = v;
        if (sup) {
          for (var j = 0u; j < p.suppressCount; j++) {
            if (suppress[j] == v) {
              k = NEG_INF_KEY;
            }
          }
        }
      }
      sk[i] = k;
      si[i] = ix;
    }
  } else {
    let n = p.nChunks * K;
    let base = t * n;
    for (var i = 0u; i < PER; i++) {
      let j = lid + i * WG;
      var q = vec2u(0u, NONE);
      if (j < n) {
        q = partials[base + j];
      }
      sk[i] = q.x;
      si[i] = q.y;
    }
  }
  for (var r = 0u; r < K; r++) {
    var bk = 0u;
    var bi = NONE;
    for (var i = 0u; i < PER; i++) {
      if (better(sk[i], si[i], bk, bi)) {
        bk = sk[i];
        bi = si[i];
      }
    }
    let best = reduceBest(bk, bi, lid);
    if (best.y != NONE) {
      for (var i = 0u; i < PER; i++) {
        if (si[i] == best.y) {
          sk[i] = 0u;
          si[i] = NONE;
        }
      }
    }
    if (lid == 0u) {
      if (isFinal) {
        outIds[t * K + r] = best.y;
        outVals[t * K + r] = keyValue(best.x);
      } else {
        partials[(t * p.nChunks + c) * K + r] = best;
      }
    }
  }
}
