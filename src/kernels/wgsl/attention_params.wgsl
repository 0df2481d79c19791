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
}
