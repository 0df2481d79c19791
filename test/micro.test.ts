/**
 * The micro-benchmark harness on the CPU at tiny shapes and a tiny time budget: every case
 * builds a fused and a decomposed graph that really differ in the fused op, both agree, and
 * both get finite positive timings.
 */
import { describe, expect, it } from 'vitest';
import { buildMicroCases, formatMicroTable, MICRO_CASES, runMicro } from '../bench/micro.js';

const count = (ops: { opType: string }[], op: string) => ops.filter((n) => n.opType === op).length;

describe('micro-benchmark graphs', () => {
  const cases = buildMicroCases({ scale: 'tiny' });

  it('covers every case kind', () => {
    expect(new Set(cases.map((c) => c.kind))).toEqual(new Set(MICRO_CASES));
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s: the fused graph holds the fused op, the decomposed one does not', (_, c) => {
    expect(count(c.fused.nodes, c.marker.op)).toBe(c.marker.fused);
    expect(count(c.decomposed.nodes, c.marker.op)).toBe(c.marker.decomposed);
    expect(c.decomposed.nodes.every((n) => n.domain === '')).toBe(true);
    if (c.kind !== 'packed') expect(c.fused.nodes.some((n) => n.domain === 'com.microsoft' && n.opType === c.marker.op)).toBe(true);
    expect(c.fused.inputs).toEqual(c.decomposed.inputs);
    expect(c.fused.outputs).toEqual(c.decomposed.outputs);
  });
});

describe('runMicro on the CPU', () => {
  it('returns both variants per case, agreeing outputs and finite positive timings', async () => {
    const results = await runMicro({ device: 'cpu', timeMs: 20, scale: 'tiny' });
    const names = buildMicroCases({ scale: 'tiny' }).map((c) => c.name);
    expect(results).toHaveLength(2 * names.length);
    for (const name of names) {
      const rows = results.filter((r) => r.case === name);
      expect(rows.map((r) => r.variant).sort(), name).toEqual(['decomposed', 'fused']);
      for (const r of rows) {
        expect(r.error, name).toBeUndefined();
        expect(r.ok, name).toBe(true);
        expect(r.device).toBe('cpu');
        expect(r.maxAbsDiff, name).toBeLessThan(1e-4);
        for (const v of [r.medianMs, r.p99Ms, r.ratio]) {
          expect(Number.isFinite(v), name).toBe(true);
          expect(v, name).toBeGreaterThan(0);
        }
        expect(r.p99Ms).toBeGreaterThanOrEqual(r.medianMs);
        expect(r.samples).toBeGreaterThan(0);
      }
      const [f, d] = [rows.find((r) => r.variant === 'fused')!, rows.find((r) => r.variant === 'decomposed')!];
      expect(f.ratio).toBeCloseTo(f.medianMs / d.medianMs, 6);
    }
    expect(formatMicroTable(results).split('\n')).toHaveLength(results.length + 2);
  });

  it('runs only the requested cases', async () => {
    const results = await runMicro({ timeMs: 5, scale: 'tiny', cases: ['gelu'] });
    expect(new Set(results.map((r) => r.kind))).toEqual(new Set(['gelu']));
  });
});
