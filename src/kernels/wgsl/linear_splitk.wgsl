// Finishes a GEMM split over K (linear_gemm.wgsl with splits > 1): Y[m, n] = act(sum over the
// splits of part[s, m, n] + bias[n]) (Y += when accumulating, soft-capped first when
// P.softcap > 0); for a gated act act(gate) * up from W rows n and nOut + n.
//
// Layout: part f32 [splits, T, N] (binding 6); the rest as linear_common.wgsl.
// Dispatch: ceil(T * nOut / 256) workgroups of 256 threads, split over x (<= 65535) and y.

{{COMMON}}

@group(0) @binding(6) var<storage, read> part: array<f32>;

const SPLITS: u32 = {{SPLITS}}u;

fn sumOf(m: u32, row: u32) -> f32 {
  var s = 0.0;
  for (var z = 0u; z < SPLITS; z++) { s += part[(z * P.T + m) * P.N + row]; }
  return s;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * 256u + gid.x;
  if (i >= P.T * P.nOut) { return; }
  let m = i / P.nOut;
  let n = i % P.nOut;
  if (gated()) {
    let g = sumOf(m, n) + biasAt(n);
    let u = sumOf(m, P.nOut + n) + biasAt(P.nOut + n);
    store(i, gatedOut(g, u));
  } else {
    store(i, activate(sumOf(m, n) + biasAt(n)));
  }
}
