// Linear layer for many rows (prefill, large batches), tiled through workgroup memory:
// Y[T, nOut] = act(X[T, K] . W[N, K]^T + bias[N]).
//
// Layout: see linear_common.wgsl (bindings, Params) and the weight reader pasted in
// (linear_w_f32 / f16 / q8 / q4.wgsl; quantized weights are dequantized on the
// fly as tiles are loaded).
//
// Tile (compile time): a workgroup of (BM / TM) x (BN / TN) threads computes a BM x BN tile
// of X . W^T (X rows m0.., W rows n0..) over K in steps of BK = 32: its threads load the X
// and W tiles in 8-element chunks into workgroup memory (k-major, as vec4s of 4 rows), then
// each thread accumulates TM x TN outputs in f32: rows 4 (ty + p BM / TM) + i and columns
// 4 (tx + q BN / TN) + j (p < TM / 4, q < TN / 4, i, j < 4), so neighbouring threads read
// neighbouring vec4s. Dispatch: (ceil(nOut / BN), ceil(T / BM)) workgroups, or
// (ceil(nOut / (BN / 2)), ...) for swiglu, where the tile's column vec4 c holds W rows (gate
// i, gate i + 1, up i, up i + 1) with i = BN / 2 wid.x + 2c, so each thread holds both halves
// of its outputs.

{{COMMON}}
{{WEIGHTS}}

// W[row, k .. k + 8) (k a multiple of 8) from the reader's words (tile loads are 8 elements).
fn wRaw(row: u32, k: u32) -> array<vec4<f32>, 2> {
  return wSub(wLoad(row, k - k % (8u * WIDE)), (k / 8u) % WIDE);
}

const BM: u32 = {{BM}}u;
const BN: u32 = {{BN}}u;
const TM: u32 = {{TM}}u; // a multiple of 4
const TN: u32 = {{TN}}u; // a multiple of 4
const BK: u32 = 32u;
const TX: u32 = BN / TN; // threads along N
const NT: u32 = (BM / TM) * TX;

var<workgroup> Xs: array<vec4<f32>, BK * BM / 4u>; // [BK][BM / 4]
var<workgroup> Ws: array<vec4<f32>, BK * BN / 4u>; // [BK][BN / 4]

// W row of tile column lr.
fn tileRow(lr: u32, wx: u32, swiglu: bool) -> u32 {
  if (swiglu) {
    let i = wx * (BN / 2u) + 2u * (lr >> 2u) + (lr & 1u);
    return select(select(i, i + P.nOut, (lr & 2u) != 0u), 0xFFFFFFFFu, i >= P.nOut);
  }
  return select(wx * BN + lr, 0xFFFFFFFFu, wx * BN + lr >= P.N);
}

@compute @workgroup_size(NT)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let swiglu = P.act == 4u;
  let tx = lid % TX;
  let ty = lid / TX;
  let m0 = wid.y * BM;

  var acc: array<vec4<f32>, TM * TN / 4u>; // [row i of TM][column vec4 q of TN / 4]
  for (var k0 = 0u; k0 < P.K; k0 += BK) {
    // BM * BK / 8 chunks of X and BN * BK / 8 of W, NT at a time; rows past T or N load zeros.
    for (var c = lid; c < BM * BK / 8u; c += NT) {
      let lr = c / (BK / 8u);
      let lk = (c % (BK / 8u)) * 8u;
      var xv: array<vec4<f32>, 2>;
      if (m0 + lr < P.T) { xv = xChunk(m0 + lr, k0 + lk); }
      for (var i = 0u; i < 8u; i++) { Xs[(lk + i) * (BM / 4u) + (lr >> 2u)][lr & 3u] = xv[i >> 2u][i & 3u]; }
    }
    for (var c = lid; c < BN * BK / 8u; c += NT) {
      let lr = c / (BK / 8u);
      let lk = (c % (BK / 8u)) * 8u;
      let wr = tileRow(lr, wid.x, swiglu);
      var wv: array<vec4<f32>, 2>;
      if (wr != 0xFFFFFFFFu && k0 + lk < P.K) {
        let w = wRaw(wr, k0 + lk);
        let s = wScale(wr, k0 + lk);
        wv[0] = w[0] * s;
        wv[1] = w[1] * s;
      }
      for (var i = 0u; i < 8u; i++) { Ws[(lk + i) * (BN / 4u) + (lr >> 2u)][lr & 3u] = wv[i >> 2u][i & 3u]; }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var b: array<vec4<f32>, TN / 4u>;
      for (var q = 0u; q < TN / 4u; q++) { b[q] = Ws[kk * (BN / 4u) + tx + q * TX]; }
      for (var p = 0u; p < TM / 4u; p++) {
        let a = Xs[kk * (BM / 4u) + ty + p * (BM / TM)];
        for (var q = 0u; q < TN / 4u; q++) {
          acc[(4u * p) * (TN / 4u) + q] += a.x * b[q];
          acc[(4u * p + 1u) * (TN / 4u) + q] += a.y * b[q];
          acc[(4u * p + 2u) * (TN / 4u) + q] += a.z * b[q];
          acc[(4u * p + 3u) * (TN / 4u) + q] += a.w * b[q];
        }
      }
    }
    workgroupBarrier();
  }

  for (var p = 0u; p < TM / 4u; p++) {
    for (var i = 0u; i < 4u; i++) {
      let m = m0 + 4u * (ty + p * (BM / TM)) + i;
      if (m >= P.T) { continue; }
      for (var q = 0u; q < TN / 4u; q++) {
        let v = acc[(4u * p + i) * (TN / 4u) + q];
        let c = tx + q * TX; // column vec4 of the tile
        if (swiglu) {
          for (var j = 0u; j < 2u; j++) {
            let n = wid.x * (BN / 2u) + 2u * c + j;
            if (n < P.nOut) {
              let g = v[j] + biasAt(n);
              let u = v[j + 2u] + biasAt(P.nOut + n);
              store(m * P.nOut + n, silu(g) * u);
            }
          }
        } else {
          for (var j = 0u; j < 4u; j++) {
            let n = wid.x * BN + 4u * c + j;
            if (n < P.N) {
              store(m * P.nOut + n, activate(v[j] + biasAt(n)));
            }
          }
        }
      }
    }
  }
}
