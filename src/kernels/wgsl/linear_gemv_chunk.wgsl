    // linear_gemv.wgsl's step over chunk {{SUB}} of the words: X[t, kc .. kc + 8) for all T rows, times every row's chunk.
    {
      let kc = k + {{SUB}}u * 8u;
      var xs: array<array<vec4<f32>, 2>, T>;
      let nc = normChunk(kc);
      for (var t = 0u; t < T; t++) { xs[t] = normX(xChunk(t, kc), nc, t); }
      let newBlock = {{SUB}}u % blockChunks == 0u;
      for (var r = 0u; r < ROWS; r++) {
        let w = wSub(words[r], {{SUB}}u);
        if (newBlock) { s[r] = wScale(rows[r], kc); }
        for (var t = 0u; t < T; t++) {
          acc[r * T + t] += s[r] * (dot(w[0], xs[t][0]) + dot(w[1], xs[t][1]));
        }
      }
    }
