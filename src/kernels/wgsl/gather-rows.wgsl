// Gathers whole rows: out[r, :] = x[rows[r], :] for r < R (x and out row-major, width E).
// Used to take each batch entry's last prompt row before the LM head in prefill.
// Dispatch: (ceil(E / 64), R).
struct Params { R: u32, E: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let r = id.y;
  let e = id.x;
  if (r >= p.R || e >= p.E) { return; }
  out[r * p.E + e] = x[rows[r] * p.E + e];
}
