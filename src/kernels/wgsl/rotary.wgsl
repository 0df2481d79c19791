// Rotary helpers shared by qkv-scatter.wgsl and attention-split.wgsl (pasted into both by attention.ts).

// cos and sin of an f32 angle, with the angle first reduced to [-pi, pi] (Cody-Waite, 2*pi split
// into three parts whose leading two multiply exactly by |k| < 2^15), so large positions keep
// full precision whatever the GPU's sin/cos do outside [-pi, pi].
fn cos_sin(a: f32) -> vec2<f32> {
  let k = round(a * 0.15915494309189535);
  var r = a - k * 6.28125;
  r = r - k * 0.001934051513671875;
  r = r - k * 1.2556659146e-6;
  return vec2<f32>(cos(r), sin(r));
}
