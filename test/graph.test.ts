/** The plain decoder graph: standard ops only, transformers.js' I/O contract, per-arch structure. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { FIXTURE_ARCHS, tinyModelDir } from '../fixtures/checkpoints.js';
import { openCheckpoint, openWeights } from '../src/arch/checkpoint.js';
import type { TensorStore } from '../src/checkpoint/safetensors.js';
import { alibiSlopes } from '../src/arch/positions.js';
import { buildReferenceDecoder } from '../src/graph/decoder.js';
import type { Graph } from '../src/graph/ir.js';
import { readModelSummary, writeModel } from '../src/graph/onnx-writer.js';
import { transpose, WeightSource } from '../src/graph/weights.js';

function build(arch: (typeof FIXTURE_ARCHS)[number]): { graph: Graph; store: TensorStore; layers: number } {
  const ckpt = openCheckpoint(tinyModelDir(arch));
  const store = openWeights(ckpt);
  const graph = buildReferenceDecoder({ spec: ckpt.spec, dims: ckpt.dims, config: ckpt.config, weights: new WeightSource(store, ckpt.spec.weightPrefixes, ckpt.dir), dtype: 'float32' });
  return { graph, store, layers: ckpt.dims.numLayers };
}

function histogram(g: Graph): Record<string, number> {
  const h: Record<string, number> = {};
  for (const n of g.nodes) h[n.opType] = (h[n.opType] ?? 0) + 1;
  return Object.fromEntries(Object.entries(h).sort());
}

describe.each(FIXTURE_ARCHS)('%s plain decoder graph', (arch) => {
  it('uses standard ONNX ops only and one attention per layer', () => {
    const { graph, store, layers } = build(arch);
    store.close();
    expect(graph.nodes.every((n) => n.domain === '')).toBe(true);
    const h = histogram(graph);
    expect(h['Softmax']).toBe(layers);
    expect(graph.nodes.filter((n) => /layers\.\d+\/attn\/q_proj\/MatMul$/.test(n.name))).toHaveLength(layers);
    expect({ ops: h, inputs: graph.inputs.map((i) => `${i.name}:${i.type}[${i.shape.join(',')}]`), outputs: graph.outputs.map((o) => `${o.name}:${o.type}[${o.shape.join(',')}]`) }).toMatchSnapshot();
  });

  it('writes a model that ONNX Runtime loads with the same inputs and outputs', async () => {
    const { graph, store } = build(arch);
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-graph-'));
    try {
      const written = writeModel(graph, { path: join(dir, 'model.onnx'), opsets: [{ domain: '', version: 20 }] });
      expect(written.externalBytes).toBeGreaterThan(0);
      const summary = readModelSummary(join(dir, 'model.onnx'));
      expect(summary.nodes.map((n) => n.name)).toEqual(graph.nodes.map((n) => n.name));
      expect(summary.initializers.filter((i) => i.external).length).toBeGreaterThan(0);
      const session = await ort.InferenceSession.create(join(dir, 'model.onnx'));
      expect([...session.inputNames]).toEqual(graph.inputs.map((i) => i.name));
      expect([...session.outputNames]).toEqual(graph.outputs.map((o) => o.name));
      await session.release();
    } finally {
      store.close();
    }
  });
});

describe('block attributes', () => {
  it('gpt2 and bloom use tanh GELU, opt ReLU, llama SiLU-gated MLP and decomposed RMSNorm', () => {
    const ops = (arch: (typeof FIXTURE_ARCHS)[number]) => {
      const { graph, store } = build(arch);
      store.close();
      return graph;
    };
    for (const arch of ['gpt2', 'bloom'] as const) {
      const gelus = ops(arch).nodes.filter((n) => n.opType === 'Gelu');
      expect(gelus.length).toBe(2);
      for (const n of gelus) expect(n.attributes['approximate']).toEqual({ kind: 'string', value: 'tanh' });
    }
    expect(ops('opt').nodes.filter((n) => n.opType === 'Relu')).toHaveLength(2);
    const llama = ops('llama');
    expect(llama.nodes.filter((n) => n.opType === 'Sigmoid')).toHaveLength(2);
    expect(llama.nodes.filter((n) => n.opType === 'LayerNormalization')).toHaveLength(0);
    expect(llama.nodes.filter((n) => n.opType === 'ReduceMean')).toHaveLength(2 * 2 + 1);
    const ln = ops('gpt2').nodes.find((n) => n.opType === 'LayerNormalization')!;
    expect(ln.attributes['axis']).toEqual({ kind: 'int', value: -1 });
    expect(ln.attributes['epsilon']).toEqual({ kind: 'float', value: 1e-5 });
  });

  it('BLOOM ALiBi slopes follow HF build_alibi_tensor, including non-power-of-2 head counts', () => {
    expect(alibiSlopes(4)).toEqual([0.25, 0.0625, 0.015625, 0.00390625]);
    const s12 = alibiSlopes(12);
    expect(s12.slice(0, 8)).toEqual([0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625]);
    expect(s12.slice(8).map((x) => +x.toFixed(12))).toEqual([0.707106781187, 0.353553390593, 0.176776695297, 0.088388347648]);
  });
});

describe('weight views', () => {
  // A 6x4 source: value = row * 10 + col.
  const src = Float32Array.from({ length: 24 }, (_, i) => Math.floor(i / 4) * 10 + (i % 4));
  const store = {
    names: () => ['w'],
    has: (n: string) => n === 'model.w',
    info: () => ({ name: 'model.w', dtype: 'F32' as const, shape: [6, 4], file: 'x', byteOffset: 0, byteLength: 96 }),
    readRaw: () => new Uint8Array(src.buffer),
    readFloat32: () => src,
    close: () => {},
  } satisfies TensorStore;
  const w = new WeightSource(store, ['model.'], 'ckpt');

  it('finds names under a prefix and reports a missing tensor with the names tried', () => {
    expect(w.resolve('w')).toBe('model.w');
    expect(() => w.resolve('q')).toThrow(/missing tensor "q".*"model\.q"/);
  });

  it('selects row ranges (per-head QKV split) and transposes to [in, out]', () => {
    const view = { source: 'w', rows: [[0, 1], [3, 1]] as Array<[number, number]>, transpose: true };
    expect(w.shape(view)).toEqual([4, 2]);
    expect([...w.read(view)]).toEqual([0, 30, 1, 31, 2, 32, 3, 33]);
  });

  it('selects column ranges (Conv1D c_attn split) and checks the expected shape', () => {
    const view = { source: 'w', cols: [[2, 2]] as Array<[number, number]> };
    expect([...w.read(view)]).toEqual([2, 3, 12, 13, 22, 23, 32, 33, 42, 43, 52, 53]);
    expect(() => w.shape(view, [6, 3])).toThrow(/shape \[6, 4\].*implies \[6, 3\]/);
  });

  it('transpose agrees with the definition on a non-square, non-block-multiple matrix', () => {
    const rows = 67;
    const cols = 130;
    const a = Float32Array.from({ length: rows * cols }, (_, i) => i);
    const t = transpose(a, rows, cols);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) expect(t[j * rows + i]).toBe(a[i * cols + j]);
  });
});
