// linear_gemv.wgsl's input as it is (no norm before the projection): stubs that compile away.

struct NormChunk {
  unused: u32,
}

fn normStats(lid: u32) {}

fn normChunk(k: u32) -> NormChunk {
  return NormChunk(0u);
}

fn normX(x: array<vec4<f32>, 2>, c: NormChunk, t: u32) -> array<vec4<f32>, 2> {
  return x;
}

const XS: u32 = 0u; // no partial sums of X's own

fn xMoment(x: array<vec4<f32>, 2>) -> f32 {
  return 0.0;
}

fn outScale(t: u32) -> f32 {
  return 1.0;
}
