// Order-preserving u32 keys of f32 bits, pasted into argmax.wgsl and topk.wgsl so that both
// rank logits alike: larger float -> larger key, exact and free of fast-math; -0 == +0; NaN
// ranks above +inf (numpy and torch return the first NaN). Key 0 never occurs for a real value.
const NEG_INF_KEY: u32 = 0x007fffffu;
const NONE: u32 = 0xffffffffu;

fn orderKey(bits: u32) -> u32 {
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return 0xffffffffu; // NaN
  }
  var b = bits;
  if (b == 0x80000000u) {
    b = 0u; // -0 -> +0
  }
  if ((b & 0x80000000u) != 0u) {
    return ~b;
  }
  return b | 0x80000000u;
}

// (key, index) a beats b: larger key, or the same key at a lower index.
fn better(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
  return ka > kb || (ka == kb && ia < ib);
}
