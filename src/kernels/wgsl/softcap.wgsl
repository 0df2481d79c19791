// Soft capping (Gemma 2's attention scores and final logits): cap * tanh(x / cap), pasted into
// the linear kernels (linear.ts, after linear_common.wgsl) and the attention kernels
// (attention.ts, SOFTCAP_FNS).
//
// tanh without WGSL's tanh (whose precision varies by driver, and which some return NaN for at
// large |x|): for a = |x| / cap >= 0.25, (1 - e) / (1 + e) with e = exp(-2a) in (0, 0.61], so
// 1 - e keeps its relative precision and large a saturates to 1 without inf / inf; below 0.25,
// tanh's Taylor series to a^9 (the next term, 1382 a^11 / 155925, is under 5e-9). Relative
// error a few f32 ulps, as float32 torch.tanh.
fn softcap(x: f32, cap: f32) -> f32 {
  let a = abs(x) / cap;
  var t: f32;
  if (a < 0.25) {
    let a2 = a * a;
    t = a * (1.0 + a2 * (-0.3333333333333333 + a2 * (0.13333333333333333 + a2 * (-0.05396825396825397 + a2 * 0.021869488536155203))));
  } else {
    let e = exp(-2.0 * a);
    t = (1.0 - e) / (1.0 + e);
  }
  return select(cap * t, -cap * t, x < 0.0);
}
