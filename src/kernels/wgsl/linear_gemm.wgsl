// Linear layer for many rows (prefill, large batches), tiled through workgroup memory:
// Y[T, nOut] = act(X[T, K] . W[N, K]^T + bias[N]).
//
// Layout: see linear_common.wgsl (bindings, Params) and the weight reader pasted in
// (linear_w_f32 / 16 (f16, bf16) / q8 / q4.wgsl; quantized weights are dequantized on the
// fly as tiles are loaded).
//
// Dispatch: (ceil(nOut / 64), ceil(T / 64), splits) workgroups of 256 threads; for a gated act
// (ceil(nOut / 32), ceil(T / 64), splits). Each workgroup computes a 64 x 64 tile of X . W^T
// (rows m0.., W rows n0..) over K in steps of 32: 256 threads each load one 8-element chunk
// of X and one of W into workgroup memory (k-major, 16 KiB), then each thread accumulates a
// 4 x 4 block (rows 4ty.., columns 4tx..) in f32. For a gated act the tile's columns 4c..4c+3 are
// W rows (gate i, gate i+1, up i, up i+1) with i = 32 * wid.x + 2c, so each thread holds
// both halves of its two outputs.
//
// Split over K (splits > 1, when the tiles alone would leave the GPU idle): workgroup z takes
// K elements [z kSplit, (z + 1) kSplit) and writes its raw sums to part[z, m, W row]; bias,
// activation, the gate and the residual add are then linear_splitk.wgsl's.

{{COMMON}}
{{WEIGHTS}}

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 32u;

var<workgroup> Xs: array<vec4<f32>, 512>; // [BK][BM / 4]
var<workgroup> Ws: array<vec4<f32>, 512>; // [BK][BN / 4]

@group(0) @binding(6) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let pair = gated(); // swiglu or geglu: gate and up rows paired
  let tx = lid & 15u;
  let ty = lid >> 4u;
  let m0 = wid.y * BM;

  // This thread's load: tile row lr, k offset lk within the step.
  let lr = lid >> 2u;
  let lk = (lid & 3u) * 8u;
  let xr = m0 + lr;
  let xok = xr < P.T;
  var wr: u32;
  var wok: bool;
  if (pair) {
    let i = wid.x * (BN / 2u) + 2u * (lr >> 2u) + (lr & 1u);
    wok = i < P.nOut;
    wr = select(i, i + P.nOut, (lr & 2u) != 0u);
  } else {
    wr = wid.x * BN + lr;
    wok = wr < P.N;
  }

  var acc: array<vec4<f32>, 4>;
  let kEnd = min(P.K, (wid.z + 1u) * P.kSplit);
  for (var k0 = wid.z * P.kSplit; k0 < kEnd; k0 += BK) {
    let k = k0 + lk;
    var xv: array<vec4<f32>, 2>;
    if (xok) { xv = xChunk(xr, k); }
    var wv: array<vec4<f32>, 2>;
    if (wok && k < kEnd) {
      let w = wDecode(wLoad(wr, k));
      let s = wScale(wr, k);
      wv[0] = w[0] * s;
      wv[1] = w[1] * s;
    }
    for (var i = 0u; i < 8u; i++) {
      Xs[(lk + i) * 16u + (lr >> 2u)][lr & 3u] = xv[i >> 2u][i & 3u];
      Ws[(lk + i) * 16u + (lr >> 2u)][lr & 3u] = wv[i >> 2u][i & 3u];
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      let a = Xs[kk * 16u + ty];
      let b = Ws[kk * 16u + tx];
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }

  if (nwg.z > 1u) {
    // Raw sums by W row (for a gated act: gate i, gate i + 1, up i, up i + 1, as loaded above).
    for (var i = 0u; i < 4u; i++) {
      let m = m0 + ty * 4u + i;
      if (m < P.T) {
        for (var j = 0u; j < 4u; j++) {
          var row: u32;
          var ok: bool;
          if (pair) {
            let n = wid.x * (BN / 2u) + 2u * tx + (j & 1u);
            ok = n < P.nOut;
            row = select(n, n + P.nOut, j >= 2u);
          } else {
            row = wid.x * BN + tx * 4u + j;
            ok = row < P.N;
          }
          if (ok) { part[(wid.z * P.T + m) * P.N + row] = acc[i][j]; }
        }
      }
    }
    return;
  }

  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty * 4u + i;
    if (m < P.T) {
      if (pair) {
        for (var j = 0u; j < 2u; j++) {
          let n = wid.x * (BN / 2u) + 2u * tx + j;
          if (n < P.nOut) {
            let g = acc[i][j] + biasAt(n);
            let u = acc[i][j + 2u] + biasAt(P.nOut + n);
            store(m * P.nOut + n, gatedOut(g, u));
          }
        }
      } else {
        for (var j = 0u; j < 4u; j++) {
          let n = wid.x * BN + tx * 4u + j;
          if (n < P.N) {
            store(m * P.nOut + n, activate(acc[i][j] + biasAt(n)));
          }
        }
      }
    }
  }
}
