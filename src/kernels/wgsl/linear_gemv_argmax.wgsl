// linear_gemv.wgsl's argmax epilogue (an LM head at decode): besides storing its outputs, each
// workgroup writes the best (key, index) of its own outputs for every row, which is argmax.wgsl's
// first pass done without a dispatch of its own; argmax.wgsl's final pass reduces them.
// Ranks Y's values exactly as stored (order_key.wgsl), ties to the lower index; indices listed in
// suppress[0 .. P.suppressCount) count as -inf (HF min_new_tokens).
// Bindings 8 partials vec2<u32> [T_total, chunks] with chunks = ceil(nOut / outputs per
// workgroup), indexed by the row P.row0 + t and the workgroup; 9 suppress u32 [suppressCount].
// Not for swiglu (pairs of rows) or accumulate (the stored value is not the output).

{{ORDER_KEY}}

@group(0) @binding(8) var<storage, read_write> partials: array<vec2u>;
@group(0) @binding(9) var<storage, read> suppress: array<u32>;

fn epilogue(lid: u32, wg: u32, out0: u32, outs: u32) {
  if (lid >= T) { return; }
  let t = lid;
  var bk = 0u;
  var bi = NONE;
  for (var r = 0u; r < outs; r++) {
    let n = out0 + r;
    if (n < P.nOut) {
      var k = orderKey(bitcast<u32>(activate(red[(r * T + t) * KT] + biasAt(n))));
      for (var j = 0u; j < P.suppressCount; j++) {
        if (suppress[j] == n) { k = NEG_INF_KEY; }
      }
      if (k > bk) {
        bk = k;
        bi = n;
      }
    }
  }
  partials[(P.row0 + t) * ((P.nOut + outs - 1u) / outs) + wg] = vec2u(bk, bi);
}
