// linear_gemv.wgsl's reduction of the threads' partial sums through workgroup memory, pasted
// in as REDUCE when the device has no subgroup operations: afterwards red[o * KT] holds
// output o's total (o < O), for the epilogue.
fn reducePartials(acc: array<f32, O>, lid: u32) {
  // red[o * KT + (lane ^ (o % 32))] = thread lane's partial sum o.
  for (var o = 0u; o < O; o++) { red[o * KT + (lid ^ (o & 31u))] = acc[o]; }
  workgroupBarrier();
  if (G > 1u) {
    // G threads per output each sum KT / G of its partials (thread lid: output lid % O, slice
    // lid / O; a warp's 32 reads hit 32 banks), then one thread per output adds the G sums.
    let o = lid % O;
    let first = (lid / O) * (KT / G);
    var s = 0.0;
    for (var i = 0u; i < KT / G; i++) { s += red[o * KT + ((first + i) ^ (o & 31u))]; }
    workgroupBarrier(); // every slice is read before red[0 .. KT) is reused for the sums
    red[lid] = s;
    workgroupBarrier();
    var total = 0.0;
    if (lid < O) {
      for (var g = 0u; g < G; g++) { total += red[g * O + lid]; }
    }
    workgroupBarrier(); // the sums are read before the totals overwrite them
    if (lid < O) { red[lid * KT] = total; }
  } else {
    for (var o = lid; o < O; o += KT) {
      let b = o * KT;
      let sw = o & 31u;
      // A plain loop: unrolled by hand (4 loads a step) it compiled 5x slower on lavapipe.
      var s = 0.0;
      for (var i = 0u; i < KT; i++) { s += red[b + (i ^ sw)]; }
      red[b] = s; // own row only: no other thread reads it
    }
  }
  workgroupBarrier();

}
