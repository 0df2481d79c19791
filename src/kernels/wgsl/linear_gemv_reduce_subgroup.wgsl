// linear_gemv.wgsl's reduction of the threads' partial sums with subgroup operations (the
// `subgroups` feature), pasted in as REDUCE: each subgroup adds its lanes' sums in registers
// and one lane writes them, then one thread per output adds the KT / size subgroup sums: one
// barrier where the workgroup-memory tree takes four. Subgroups are taken to be runs of
// consecutive invocations (NVIDIA's warps, lavapipe's 8 lanes; the kernel tests check it).
// Afterwards red[o * KT] holds output o's total (o < O), for the epilogue.
fn reducePartials(acc: array<f32, O>, lid: u32) {
  let size = subgroupAdd(1u);
  let slot = lid / size;
  let first = subgroupElect();
  for (var o = 0u; o < O; o++) {
    let s = subgroupAdd(acc[o]);
    if (first) { red[o * KT + slot] = s; }
  }
  workgroupBarrier();
  for (var o = lid; o < O; o += KT) {
    var s = 0.0;
    for (var i = 0u; i < KT / size; i++) { s += red[o * KT + i]; }
    red[o * KT] = s; // own row only: no other thread reads it
  }
  workgroupBarrier();
}
