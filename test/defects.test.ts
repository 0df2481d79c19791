/**
 * The planted-defect generator (fixtures/defects.ts plantedDefects): one seed gives the same
 * defects, every kind is drawn where the fixture can take it, each copy differs from its source
 * exactly where its description says; and compare flags in float32 the drawn defects that move
 * the logits (scripts/defect-detection.mjs measures the rates per dtype).
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCompare } from '../compare/run.js';
import { renderCompareHtml } from '../src/report/html.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { DEFECT_KINDS, editedFixture, plantedDefects } from '../fixtures/defects.js';
import { openSafetensorsFile } from '../src/checkpoint/safetensors.js';

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';

function tensors(dir: string): Map<string, { shape: number[]; data: Float32Array }> {
  const s = openSafetensorsFile(join(dir, 'model.safetensors'));
  try {
    return new Map(s.names().map((n) => [n, { shape: s.info(n).shape, data: s.readFloat32(n) }]));
  } finally {
    s.close();
  }
}

describe('plantedDefects', () => {
  it('draws every kind gpt2 can take, the same for the same seed, each changing only what it says', () => {
    const a = plantedDefects('gpt2', 7, 16);
    const b = plantedDefects('gpt2', 7, 16);
    try {
      expect(a.map((d) => d.what)).toEqual(b.map((d) => d.what));
      expect(a).toHaveLength(16);
      expect(new Set(a.map((d) => d.kind))).toEqual(new Set(DEFECT_KINDS)); // gpt2 has biases and an eps key
      const source = tensors(tinyModelDir('gpt2'));
      const config = readFileSync(join(tinyModelDir('gpt2'), 'config.json'), 'utf8');
      for (const d of a) {
        // Each tensor's changed element indices.
        const changed = [...tensors(d.dir)].map(([n, t]) => ({ n, shape: t.shape, at: [...t.data.keys()].filter((i) => t.data[i] !== source.get(n)!.data[i]) })).filter((c) => c.at.length > 0);
        const sameConfig = readFileSync(join(d.dir, 'config.json'), 'utf8') === config;
        if (d.kind === 'eps') {
          expect(changed, d.what).toEqual([]);
          expect(sameConfig, d.what).toBe(false);
          continue;
        }
        expect(sameConfig, d.what).toBe(true);
        expect(changed.map((c) => c.n), d.what).toEqual([d.what.split(': ')[1]!.split(' ')[0]]);
        const [{ shape, at }] = changed as [(typeof changed)[number]];
        const size = shape.reduce((x, y) => x * y, 1);
        if (d.kind === 'element-scale') expect(at, d.what).toHaveLength(1);
        else if (d.kind === 'row-scale' || d.kind === 'head-row') expect(new Set(at.map((i) => Math.floor(i / shape[1]!))).size, d.what).toBe(1);
        else expect(at.length, d.what).toBeGreaterThan(size / 2); // matrix-scale, matrix-noise, norm-gain, bias-zero: the whole tensor (zeros stay zero)
      }
      expect(plantedDefects('gpt2', 8, 16).map((d) => d.what)).not.toEqual(a.map((d) => d.what));
    } finally {
      for (const d of [...a, ...b]) rmSync(d.dir, { recursive: true, force: true });
    }
  });

  it('skips the kinds a fixture cannot take: tiny-llama has no biases', () => {
    const ds = plantedDefects('llama', 1, 8);
    try {
      expect(ds.map((d) => d.kind)).not.toContain('bias-zero');
      expect(ds).toHaveLength(8);
    } finally {
      for (const d of ds) rmSync(d.dir, { recursive: true, force: true });
    }
  });

  it('compare flags in float32 every drawn defect that moves the logits by more than 0.05', async () => {
    const ds = plantedDefects('llama', 3, 4);
    try {
      for (const d of ds) {
        const r = await runCompare(
          { model: tinyModelDir('llama'), candidateModel: d.dir, dtype: 'float32', device: 'cpu', useKernel: true, kernels: 'ort', numInputs: 1, minLength: 30, maxLength: 40, batchSize: 1, printOutputs: false, speedRepeats: 1, maxRegression: 10, command: [] },
          { out: () => {}, interrupted: () => false },
        );
        const p = r.prompts[0]!;
        const effect = Math.max(p.logits?.prefill.fullMaxAbs ?? 0, p.logits?.decode.fullMaxAbs ?? 0);
        if (effect > 0.05) expect(p.verdict, `${d.what}: full-vocabulary error ${effect}`).toBe('mismatch');
      }
    } finally {
      for (const d of ds) rmSync(d.dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('float16 on the WGSL engine (lavapipe): the twin flags a defect inside float16\'s own error; an identical copy is its twin to the last bit', async () => {
    if (!process.env['VK_ICD_FILENAMES'] && existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;
    // One row of an MLP projection x1.02: a change well inside float16's own error here, which
    // float16 compares let through before the twin (bench/results/2026-12-07-lavapipe-twin-defects).
    const dir = editedFixture('gpt2', 'row-x1.02', (name, shape, data) => {
      if (name === 'transformer.h.0.mlp.c_proj.weight') for (let j = 0; j < shape[1]!; j++) data[7 * shape[1]! + j]! *= 1.02;
    });
    const copy = editedFixture('gpt2', 'identical', () => {});
    // At the seed's lengths: over a few dozen positions float16's top-1 agreement is too coarse a figure to gate.
    const f16 = (candidateModel: string) =>
      runCompare(
        { model: tinyModelDir('gpt2'), candidateModel, dtype: 'float16', device: 'webgpu', useKernel: true, kernels: 'wgsl', numInputs: 1, minLength: 200, maxLength: 300, batchSize: 1, printOutputs: false, speedRepeats: 1, maxRegression: 10, command: [] },
        { out: () => {}, interrupted: () => false },
      );
    try {
      const defect = (await f16(dir)).prompts[0]!;
      expect(defect.verdict).toBe('mismatch');
      expect(defect.reason).toMatch(/^apart from the same pipeline on the reference checkpoint: max \|error\|/);
      expect(defect.twin!.unionMaxAbs).toBeGreaterThan(1e-3);
      const same = await f16(copy);
      expect(same.tolerance.twin).toEqual({ atol: 1e-3, maxKl: 1e-6 });
      expect(renderCompareHtml(same)).toContain('against its twin');
      expect(same.prompts[0]!.verdict).not.toBe('mismatch');
      expect(same.prompts[0]!.twin).toEqual({ unionMaxAbs: 0, maxKl: 0, top1Agreement: 1 });
      // float16's own error (the floor: the plain graph at float16 against the float32 reference) is what hid the defect: its bound is far above the twin's.
      expect(same.prompts[0]!.floor!.bounds.atol).toBeGreaterThan(0.05);
    } finally {
      for (const d of [dir, copy]) rmSync(d, { recursive: true, force: true });
    }
  }, 240_000);

  it('float16 on the WGSL engine (lavapipe): an identical copy of tiny-bloom passes against its floor, where the float16 row flagged it', async () => {
    if (!process.env['VK_ICD_FILENAMES'] && existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;
    const r = await runCompare(
      { model: tinyModelDir('bloom'), dtype: 'float16', device: 'webgpu', useKernel: true, kernels: 'wgsl', numInputs: 2, minLength: 200, maxLength: 300, batchSize: 1, printOutputs: false, speedRepeats: 1, maxRegression: 10, command: [] },
      { out: () => {}, interrupted: () => false },
    );
    // The float32 reference beside the floor. The WGSL engine keeps activations float32, so its floor is the plain graph on the CPU
    // (float16 weights, float32 arithmetic), not ORT's WebGPU kernels, which accumulate in half precision.
    expect(r.settings.referenceDtype).toBe('float32');
    expect(r.tolerance.floor?.device).toBe('cpu');
    expect(r.gate.exitCode, r.gate.reasons.join('; ')).toBe(0);
    for (const p of r.prompts) {
      expect(p.floor!.unionMaxAbs).toBeGreaterThan(0);
      expect(Math.max(p.logits!.prefill.unionMaxAbs!, p.logits!.decode.unionMaxAbs!)).toBeLessThan(p.floor!.bounds.atol);
    }
  }, 300_000);
});
