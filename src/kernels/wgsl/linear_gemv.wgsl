// Linear layer for few rows (decode): Y[T, nOut] = act(X[T, K] . W[N, K]^T + bias[N]),
// T <= 8 fixed at compile time, W streamed once for all T rows: rows row0 .. row0 + T of X
// and Y (linear.ts splits more rows into dispatches of 8).
//
// Layout: see linear_common.wgsl (bindings, Params) and the weight reader pasted in
// (linear_w_f32 / 16 (f16, bf16) / q8 / q4.wgsl: element type and quantized layout).
//
// Dispatch: one workgroup of KT threads per ROWS rows of W, i.e. per ROWS outputs, or per
// ROWS / 2 outputs for a gated act, swiglu or geglu (gate rows i.., up rows nOut + i..). Workgroups are numbered
// wid.y * num_workgroups.x + wid.x, so the host splits ceil(outputs / per-workgroup) over x
// (<= 65535) and y; surplus workgroups return at once.
//
// INPUT is pasted in by linear.ts: linear_gemv_in.wgsl (X as it is), or a norm before the
// projection fused in, linear_gemv_rms.wgsl (RMSNorm) or linear_gemv_norm.wgsl (LayerNorm). A norm
// multiplies the chunks by gamma as they load (normX), sums each X row's moments as XM more
// partial sums a row, which the reduction carries with the outputs', and finishes each output
// from them (inputOut): it costs no dispatch of its own and no pass before the first multiply.
//
// Each thread takes 8-element chunks k = 8 * (lid + j * KT) of K, loads X[t, chunk] for all
// T rows once and reuses them for the ROWS weight rows (16-byte loads for f16), keeping
// ROWS * T f32 partial sums (+ XS). The partial sums are reduced across the KT threads through
// workgroup memory: G threads per output sum KT / G values each, then one adds the G sums
// (a chain of KT / G + G adds instead of KT; the XOR swizzle keeps both sides free of bank
// conflicts), then bias, activation, store.

{{COMMON}}
{{WEIGHTS}}

const T: u32 = {{T}}u;       // rows of X (compile time, 1..8)
const ROWS: u32 = {{ROWS}}u; // W rows per workgroup (even)
const KT: u32 = {{KT}}u;     // threads per workgroup, a power of two >= 32
const O: u32 = ROWS * T;     // partial sums per thread
const G: u32 = {{G}}u;       // threads reducing one output: KT / O where O divides KT (or fewer, a tuning's), else 1
const XS: u32 = T * XM;      // partial sums of X's own (XM a row, from INPUT): red slots O + t XM + j
const OX: u32 = O + XS;      // partial sums a thread reduces: the outputs', then X's own

var<workgroup> red: array<f32, OX * KT>;

{{INPUT}}

@compute @workgroup_size(KT)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let pair = gated(); // swiglu or geglu: gate and up rows paired
  let outs = select(ROWS, ROWS / 2u, pair);
  let out0 = (wid.y * nwg.x + wid.x) * outs;
  if (out0 >= P.nOut) { return; }

  // Rows past the end are clamped (read again, never stored).
  var rows: array<u32, ROWS>;
  for (var r = 0u; r < ROWS; r++) {
    if (pair) {
      let i = min(out0 + r % (ROWS / 2u), P.nOut - 1u);
      rows[r] = select(i, i + P.nOut, r >= ROWS / 2u);
    } else {
      rows[r] = min(out0 + r, P.N - 1u);
    }
  }

  // Each step has the chunk's word (and scale) of every weight row in flight together, then
  // decodes and multiplies them row by row; the next chunk's words are requested as a step
  // ends. The first chunk's go out before normBegin (a LayerNorm's shift loads): their memory
  // latency then overlaps that instead of following it.
  var words: array<WWord, ROWS>;
  var scales: array<f32, ROWS>;
  let k0 = lid * 8u;
  if (k0 < P.K) {
    for (var r = 0u; r < ROWS; r++) { words[r] = wLoad(rows[r], k0); scales[r] = wScale(rows[r], k0); }
  }

  normBegin();

  var acc: array<f32, OX>;
  for (var k = k0; k < P.K; k += KT * 8u) {
    var xs: array<array<vec4<f32>, 2>, T>;
    let nc = normChunk(k);
    for (var t = 0u; t < T; t++) {
      let x = xChunk(P.row0 + t, k);
      if (XM > 0u) {
        let m = xMoments(x, k, t);
        for (var j = 0u; j < XM; j++) { acc[O + t * XM + j] += m[j]; }
      }
      xs[t] = normX(x, nc, t);
    }
    for (var r = 0u; r < ROWS; r++) {
      let w = wDecode(words[r]);
      for (var t = 0u; t < T; t++) {
        acc[r * T + t] += scales[r] * (dot(w[0], xs[t][0]) + dot(w[1], xs[t][1]));
      }
    }
    let next = k + KT * 8u;
    if (next < P.K) {
      for (var r = 0u; r < ROWS; r++) { words[r] = wLoad(rows[r], next); scales[r] = wScale(rows[r], next); }
    }
  }

  // red[o * KT + (lane ^ (o % 32))] = thread lane's partial sum o.
  for (var o = 0u; o < OX; o++) { red[o * KT + (lid ^ (o & 31u))] = acc[o]; }
  workgroupBarrier();
  if (G > 1u) {
    // G threads per output each sum KT / G of its partials (thread lid < O * G: output lid % O,
    // slice lid / O; a warp's 32 reads hit 32 banks), then one thread per output adds the G sums.
    // X's XS sums are sliced the same way, by threads lid < XS * G besides.
    let o = lid % O;
    let first = (lid / O) * (KT / G);
    var s = 0.0;
    if (lid < O * G) {
      for (var i = 0u; i < KT / G; i++) { s += red[o * KT + ((first + i) ^ (o & 31u))]; }
    }
    var sx = 0.0;
    if (XS > 0u && lid < XS * G) {
      let xs1 = max(XS, 1u); // (a constant divisor of zero does not compile, even where unreached)
      let ox = O + lid % xs1;
      let firstX = (lid / xs1) * (KT / G);
      for (var i = 0u; i < KT / G; i++) { sx += red[ox * KT + ((firstX + i) ^ (ox & 31u))]; }
    }
    workgroupBarrier(); // every slice is read before red[0 .. KT) is reused for the sums
    red[lid] = s;
    if (XS > 0u && lid < XS * G) { red[KT + lid] = sx; } // past the outputs' sums (XS * G <= KT)
    workgroupBarrier();
    var total = 0.0;
    if (lid < O) {
      for (var g = 0u; g < G; g++) { total += red[g * O + lid]; }
    } else if (lid < OX) {
      for (var g = 0u; g < G; g++) { total += red[KT + g * XS + lid - O]; }
    }
    workgroupBarrier(); // the sums are read before the totals overwrite them
    if (lid < OX) { red[lid * KT] = total; }
  } else {
    for (var o = lid; o < OX; o += KT) {
      let b = o * KT;
      let sw = o & 31u;
      // A plain loop: unrolled by hand (4 loads a step) it compiled 5x slower on lavapipe.
      var s = 0.0;
      for (var i = 0u; i < KT; i++) { s += red[b + (i ^ sw)]; }
      red[b] = s; // own row only: no other thread reads it
    }
  }
  workgroupBarrier();

  for (var j = lid; j < outs * T; j += KT) {
    let t = j / outs;
    let r = j % outs;
    let n = out0 + r;
    if (n < P.nOut) {
      var v: f32;
      if (pair) {
        let g = inputOut(t, n, red[(r * T + t) * KT]) + biasAt(n);
        let u = inputOut(t, P.nOut + n, red[((r + ROWS / 2u) * T + t) * KT]) + biasAt(P.nOut + n);
        v = gatedOut(g, u);
      } else {
        v = activate(inputOut(t, n, red[(r * T + t) * KT]) + biasAt(n));
      }
      store((P.row0 + t) * P.nOut + n, v);
    }
  }
}
