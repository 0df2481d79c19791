/**
 * Probe: GroupQueryAttention prefill against a float64 reference at growing sequence
 * lengths, on a given device. Found on Mesa lavapipe: onnxruntime-node 1.30's WebGPU
 * kernel is wrong from S = 32 on (positions >= 8 of the prompt), while decode steps are right.
 *   node dist/bench/probes/gqa-prefill.js webgpu
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph, int } from '../../src/graph/ir.js';
import { writeModel } from '../../src/graph/onnx-writer.js';
import { fillNormal } from '../../src/pipeline/random.js';
import { int32, Session, type Device } from '../../src/runtime/ort.js';
import * as ort from 'onnxruntime-node';

/** Causal softmax attention in float64, [S, H*D] layout, KV heads shared in groups. */
function reference(q: Float32Array, k: Float32Array, v: Float32Array, S: number, H: number, Hkv: number, D: number): Float64Array {
  const out = new Float64Array(S * H * D);
  for (let h = 0; h < H; h++) {
    const kh = Math.floor(h / (H / Hkv));
    for (let s = 0; s < S; s++) {
      const w: number[] = [];
      for (let j = 0; j <= s; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[(s * H + h) * D + d]! * k[(j * Hkv + kh) * D + d]!;
        w.push(dot / Math.sqrt(D));
      }
      const m = Math.max(...w);
      const e = w.map((x) => Math.exp(x - m));
      const z = e.reduce((a, b) => a + b, 0);
      for (let d = 0; d < D; d++) {
        let acc = 0;
        for (let j = 0; j <= s; j++) acc += (e[j]! / z) * v[(j * Hkv + kh) * D + d]!;
        out[(s * H + h) * D + d] = acc;
      }
    }
  }
  return out;
}

export async function probeGqaPrefill(device: Device, H = 8, Hkv = 4, D = 64, lengths = [16, 31, 32, 33, 64, 128]) {
  const g = new Graph('gqa-prefill');
  g.input('q', 'float32', [1, 'S', H * D]);
  g.input('k', 'float32', [1, 'S', Hkv * D]);
  g.input('v', 'float32', [1, 'S', Hkv * D]);
  g.input('seqlens_k', 'int32', [1]);
  g.input('total', 'int32', []);
  g.op('GroupQueryAttention', ['q', 'k', 'v', '', '', 'seqlens_k', 'total'], { num_heads: int(H), kv_num_heads: int(Hkv) }, { name: 'gqa', domain: 'com.microsoft', outputNames: ['out', 'pk', 'pv'] });
  g.output('out', 'float32', [1, 'S', H * D]);
  g.output('pk', 'float32', [1, Hkv, 'T', D]);
  g.output('pv', 'float32', [1, Hkv, 'T', D]);
  const path = join(mkdtempSync(join(tmpdir(), 'fusegen-probe-')), 'gqa.onnx');
  writeModel(g, { path, opsets: [{ domain: '', version: 20 }, { domain: 'com.microsoft', version: 1 }] });
  const session = await Session.create(path, device);
  const results = [];
  for (const S of lengths) {
    const q = fillNormal(new Float32Array(S * H * D), 1 + S, 0, 1);
    const k = fillNormal(new Float32Array(S * Hkv * D), 2 + S, 0, 1);
    const v = fillNormal(new Float32Array(S * Hkv * D), 3 + S, 0, 1);
    const r = await session.run({
      q: new ort.Tensor('float32', q, [1, S, H * D]),
      k: new ort.Tensor('float32', k, [1, S, Hkv * D]),
      v: new ort.Tensor('float32', v, [1, S, Hkv * D]),
      seqlens_k: int32([S - 1], [1]),
      total: int32([S], []),
    });
    const got = r['out']!.data as Float32Array;
    const want = reference(q, k, v, S, H, Hkv, D);
    let maxErr = 0;
    let firstBadPosition = -1;
    for (let i = 0; i < want.length; i++) {
      const e = Math.abs(got[i]! - want[i]!);
      if (e > 1e-3 && firstBadPosition < 0) firstBadPosition = Math.floor(i / (H * D));
      maxErr = Math.max(maxErr, e);
    }
    results.push({ device, H, Hkv, D, S, maxErr, firstBadPosition });
  }
  await session.release();
  return results;
}

if (process.argv[1]?.endsWith('gqa-prefill.js')) {
  for (const r of await probeGqaPrefill((process.argv[2] ?? 'webgpu') as Device)) console.log(JSON.stringify(r));
}
