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
