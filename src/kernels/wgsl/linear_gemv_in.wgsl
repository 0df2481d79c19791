// linear_gemv.wgsl's input as it is (no norm before the projection): stubs that compile away.

const XM: u32 = 0u; // no partial sums of X's own

struct NormChunk {
  unused: u32,
}

fn normBegin() {}

fn normChunk(k: u32) -> NormChunk {
  return NormChunk(0u);
}

fn normX(x: array<vec4<f32>, 2>, c: NormChunk, t: u32) -> array<vec4<f32>, 2> {
  return x;
}

fn xMoments(x: array<vec4<f32>, 2>, k: u32, t: u32) -> vec2<f32> {
  return vec2<f32>(0.0);
}

fn inputOut(t: u32, row: u32, sum: f32) -> f32 {
  return sum;
}
