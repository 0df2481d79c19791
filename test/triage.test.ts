/**
 * Triage on real pipelines with planted defects (issue 29 item 3, issue 22 item 2): a scaled
 * attention matrix in the candidate checkpoint is the checkpoint's fault, not a fusion's; a
 * defect only the fused attention op has is blamed on the attention fusion; a WGSL candidate is
 * triaged by reruns of the WGSL engine (and one ORT rerun, labelled so).
 */
import { describe, expect, it } from 'vitest';
import { runCompare, TRIAGE_EXPLAINS, type CompareOptions } from '../compare/run.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { scaledAttentionFixture } from './helpers.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { validateCompareReport } from '../src/report/compare-validate.js';

function options(o: Partial<CompareOptions> = {}): CompareOptions {
  return { model: tinyModelDir('llama'), dtype: 'float32', device: 'cpu', useKernel: true, kernels: 'ort', numInputs: 1, minLength: 30, maxLength: 40, batchSize: 1, printOutputs: false, speedRepeats: 1, maxRegression: 10, command: ['test'], ...o };
}
const quiet = { out: () => {}, interrupted: () => false };

describe('triage with planted defects (ORT on the CPU)', () => {
  it.each(['llama', 'opt'] as const)('%s: a scaled attention matrix is the candidate checkpoint\'s fault, not a fusion\'s', async (arch) => {
    const report = await runCompare(options({ model: tinyModelDir(arch), candidateModel: scaledAttentionFixture(arch, 1.05, 'triage') }), quiet);
    validateCompareReport(JSON.parse(JSON.stringify(report)));
    const p = report.prompts[0]!;
    expect(p.verdict).toBe('mismatch');
    expect(p.triage!.backend).toBe('ort');
    // Every fusion off leaves the error as it was: nothing to blame on the fusions.
    const plain = p.triage!.runs.find((r) => r.variant === 'plain')!;
    expect(plain.backend).toBe('ort');
    expect(plain.explains).toBe(false);
    expect(plain.errorShare).toBeGreaterThan(0.5);
    expect(p.triage!.runs.some((r) => r.variant.startsWith('no-'))).toBe(false);
    expect(p.triage!.blame).toMatch(/^the candidate checkpoint/);
    expect(p.triage!.blame).not.toMatch(/^fusion|combination of fusions/);
  });

  it.each(['llama', 'opt'] as const)('%s: a defect only the fused attention op has is blamed on the attention fusion alone', async (arch) => {
    const half = openCheckpoint(tinyModelDir(arch)).dims.attentionScale / 2;
    const report = await runCompare(options({ model: tinyModelDir(arch), candidateAttentionScale: half }), quiet);
    validateCompareReport(JSON.parse(JSON.stringify(report)));
    const p = report.prompts[0]!;
    expect(p.verdict).toBe('mismatch');
    expect(p.logits!.prefill.maxAbs).toBeGreaterThan(1e-2);
    const runs = Object.fromEntries(p.triage!.runs.map((r) => [r.variant, r]));
    expect(runs['plain']!.explains).toBe(true);
    expect(runs['no-attention']!.explains).toBe(true);
    expect(runs['no-attention']!.errorShare).toBeLessThan(TRIAGE_EXPLAINS / 100);
    // With the attention fusion on, switching any other fusion off keeps the defect.
    for (const f of ['no-packedQkv', 'no-skipNorm']) expect(runs[f]!.explains, f).toBe(false);
    expect(p.triage!.blame).toBe('fusion: attention');
  });
});

describe('triage of a WGSL candidate (webgpu, lavapipe)', () => {
  it('reruns the WGSL engine with float32 weights, then fusegen\'s plain graph on the CPU labelled as an ORT rerun; blames the checkpoint', async () => {
    const report = await runCompare(
      options({ device: 'webgpu', dtype: 'float16', kernels: 'wgsl', candidateModel: scaledAttentionFixture('llama', 2, 'triage') }),
      quiet,
    );
    validateCompareReport(JSON.parse(JSON.stringify(report)));
    expect(report.environment.adapter).toMatch(/llvmpipe|Mesa/);
    const p = report.prompts[0]!;
    expect(p.verdict).toBe('mismatch');
    expect(p.triage!.backend).toBe('wgsl');
    expect(p.triage!.runs.map((r) => [r.variant, r.backend])).toEqual([
      ['wgsl-float32', 'wgsl'],
      ['ort-plain-cpu', 'ort'],
    ]);
    for (const r of p.triage!.runs) expect(r.explains).toBe(false);
    expect(p.triage!.blame).toMatch(/^the candidate checkpoint: no rerun \(float32 weights on the WGSL engine; fusegen's plain ONNX graph on the CPU, an ORT rerun\)/);
  });
});
