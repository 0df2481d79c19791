// Where key p of batch row b, KV head h sits in the caches, in rows of D (pasted into the
// kernels that read or write the caches; they bind `positions` and a Params with T, Hkv, M, BS, NB).
// Contiguous: caches [B, Hkv, M, D], a row's M positions reserved whole.
// PAGED: caches are a pool of blocks [blocks, Hkv, BS, D]; row b's block table (NB entries: its
// i-th block holds positions i*BS .. i*BS + BS-1) follows the step's T positions in `positions`.
const PAGED: bool = {{PAGED}};

fn kvSlot(b: u32, h: u32, p: u32) -> u32 {
  if (PAGED) {
    let block = positions[P.T + b * P.NB + p / P.BS];
    return (block * P.Hkv + h) * P.BS + p % P.BS;
  }
  return (b * P.Hkv + h) * P.M + p;
}
