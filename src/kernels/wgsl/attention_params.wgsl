// The uniform block shared by attention-split, attention-combine and attention-prefill.
struct Params {
  T: u32,
  S: u32,
  H: u32,
  Hkv: u32,
  M: u32,
  NS: u32,
  scale: f32,
  zero: u32, // always 0: see DYN
  alibi: u32, // 1: add slopes[h] * (j - position)
  softcap: f32, // > 0: scores (scaled q.k) become softcap * tanh(score / softcap) before ALiBi and the mask (Gemma 2); 0: off
  BS: u32, // paged caches (kv_slot.wgsl): positions a block, and blocks a row's table names
  NB: u32,
}

// A scaled score q.k * scale, soft-capped when P.softcap > 0 (softcap.wgsl, pasted in after this by attention.ts).
fn capScore(x: f32) -> f32 {
  if (P.softcap > 0.0) { return softcap(x, P.softcap); }
  return x;
}
