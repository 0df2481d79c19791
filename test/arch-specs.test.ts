/**
 * What a new architecture must provide (issue 22): one spec file in src/arch/ with its config
 * keys classed, its traits, its support line for the README, and one registry line; its
 * conformance cases written by Hugging Face; nothing else in the tree names it. This test lists
 * those obligations for every registered spec, so a spec that misses one fails here by name.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConformanceIndex } from '../fixtures/conformance.js';
import { classify } from '../src/arch/config-keys.js';
import { specs, supportedModelTypes } from '../src/arch/index.js';
import { policyFor } from '../src/inject/policy.js';

const ROOT = join(import.meta.dirname, '..');
const index = loadConformanceIndex();

describe.each(specs.map((s) => [s.modelTypes.join(', '), s] as const))('spec %s', (_name, spec) => {
  it('has a file of its own in src/arch and serves model_types no other spec serves', () => {
    const files = readdirSync(join(ROOT, 'src', 'arch')).filter((f) => f.endsWith('.ts'));
    const owner = files.filter((f) => new RegExp(`modelTypes: \\[[^\\]]*'${spec.modelTypes[0]}'`).test(readFileSync(join(ROOT, 'src', 'arch', f), 'utf8')));
    expect(owner).toHaveLength(1);
    for (const t of spec.modelTypes) expect(supportedModelTypes.filter((u) => u === t)).toHaveLength(1);
  });

  it('classes its config keys (each used, harmless with a reason, or default-only with a reason)', () => {
    const entries = Object.entries(spec.configKeys);
    expect(entries.length).toBeGreaterThan(3);
    for (const [key, rule] of entries) {
      expect(['used', 'harmless', 'default only'], key).toContain(classify(rule));
      if ('harmless' in rule) expect(rule.harmless.length, key).toBeGreaterThan(10);
      if ('only' in rule) expect(rule.why.length, key).toBeGreaterThan(10);
    }
  });

  it('says what it reads and refuses, for the README table', () => {
    expect(spec.support.variants.length).toBeGreaterThan(0);
    expect(Array.isArray(spec.support.refused)).toBe(true); // may be empty: the table then says "nothing of its own"
    expect(spec.weightPrefixes.length).toBeGreaterThan(0);
  });

  it('gets its injection policy from its traits alone', () => {
    const p = policyFor(spec.traits);
    expect(p.mlp).toBe(spec.traits.gatedMlp ? 'gated' : 'single');
    expect(p.residualNorm).toBe(spec.traits.norm === 'layernorm' ? 'SkipLayerNormalization' : 'SkipSimplifiedLayerNormalization');
  });

  it('has Hugging Face-written conformance cases for each of its model_types that Hugging Face can write', () => {
    const types = new Set(index.cases.filter((c) => c.expect === 'ok').map((c) => c.model_type));
    const covered = spec.modelTypes.filter((t) => types.has(t));
    // A family's variants (mistral, qwen2 beside llama) share the spec; at least its first type is covered.
    expect(covered).toContain(spec.modelTypes[0]);
  });
});

it('every model_type with conformance cases is a registered spec', () => {
  for (const c of index.cases) expect(supportedModelTypes).toContain(c.model_type);
});
