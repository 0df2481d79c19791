/**
 * Closed-world config reading, on configs that Hugging Face and model authors wrote: every key
 * of the real Hub config.json files in test/data/hub-configs is used or declared harmless,
 * and each reads to the dimensions and variants its model really has.
 */
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tinyModelDir, type FixtureArch } from '../fixtures/checkpoints.js';
import { classify, COMMON_KEYS, GENERATION_KEYS } from '../src/arch/config-keys.js';
import { archFor, specs } from '../src/arch/index.js';
import { ropeInvFreq } from '../src/arch/positions.js';
import { openCheckpoint, type Checkpoint } from '../src/arch/checkpoint.js';
import { readJsonObject } from '../src/checkpoint/config.js';
import { UnsupportedError } from '../src/errors.js';

const HUB = join(import.meta.dirname, 'data', 'hub-configs');
const FAMILY: Record<string, FixtureArch> = { gpt2: 'gpt2', opt: 'opt', bloom: 'bloom', llama: 'llama', mistral: 'llama', qwen2: 'llama' };

/** A checkpoint dir of the Hub files with a fixture tokenizer beside them (openCheckpoint reads no weights). */
function hubCheckpoint(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'fusegen-hub-'));
  for (const f of ['config.json', 'generation_config.json']) if (existsSync(join(HUB, name, f))) copyFileSync(join(HUB, name, f), join(dir, f));
  const family = FAMILY[readJsonObject(join(dir, 'config.json'))['model_type'] as string] ?? 'gpt2';
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tinyModelDir(family), f), join(dir, f));
  return dir;
}

const supported = readdirSync(HUB).filter((d) => !d.startsWith('EleutherAI--') && !d.endsWith('.md'));

describe('real Hub configs', () => {
  const opened = new Map<string, Checkpoint>();
  const open = (name: string) => opened.get(name) ?? opened.set(name, openCheckpoint(hubCheckpoint(name))).get(name)!;

  it.each(supported)('%s: every key is used or harmless, and the config reads', (name) => {
    const ckpt = open(name);
    const table = { ...COMMON_KEYS, ...ckpt.spec.configKeys };
    for (const key of Object.keys(ckpt.config)) expect(table[key], key).toBeDefined();
    for (const key of Object.keys(ckpt.generationConfig)) expect(GENERATION_KEYS[key], key).toBeDefined();
  });

  it('each reads to the model it is', () => {
    const llama32 = open('meta-llama--Llama-3.2-1B');
    expect(llama32.dims).toMatchObject({ headDim: 64, numKvHeads: 8, rope: { type: 'llama3', theta: 500000, factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } });
    expect(llama32.spec.globals(llama32.dims, llama32.config).lmHead.source).toBe('embed_tokens.weight');
    const tiny = open('TinyLlama--TinyLlama-1.1B-Chat-v1.0');
    expect(tiny.dims).toMatchObject({ numKvHeads: 4, rope: { type: 'default', theta: 10000 } });
    expect(tiny.spec.globals(tiny.dims, tiny.config).lmHead.source).toBe('lm_head.weight');
    expect(open('mistralai--Mistral-7B-v0.1').dims.slidingWindow).toBe(4096);
    const qwen = open('Qwen--Qwen2.5-0.5B');
    expect(qwen.dims.slidingWindow).toBeUndefined(); // use_sliding_window: false
    expect(qwen.spec.layer(0, qwen.dims, qwen.config).q.bias).toBeDefined();
    expect(qwen.spec.globals(qwen.dims, qwen.config).lmHead.source).toBe('embed_tokens.weight');
    const opt350 = open('facebook--opt-350m');
    expect(opt350.dims).toMatchObject({ hiddenSize: 1024, embedDim: 512, residualFromNorm: true });
    expect(open('facebook--opt-1.3b').dims).toMatchObject({ embedDim: 2048, residualFromNorm: false });
    expect(open('bigscience--bloom-560m').dims).toMatchObject({ hiddenSize: 1024, numHeads: 16, residualFromNorm: false });
    expect(open('openai-community--gpt2').dims).toMatchObject({ hiddenSize: 768, attentionScaleByLayer: false, attentionScale: 1 / 8 });
  });

  it("GPT-NeoX (pythia-160m, a 4.x config): rotary_pct and rotary_emb_base read as the rope's partial factor and theta, parallel residual", () => {
    const pythia = openCheckpoint(hubCheckpoint('EleutherAI--pythia-160m'));
    expect(pythia.dims).toMatchObject({ numHeads: 12, headDim: 64, parallelResidual: true, rope: { type: 'default', theta: 10000, partialFactor: 0.25 } });
    // Rotary over 16 of 64 dimensions: frequencies of 1/10000^(2i/16) for 8 pairs, 0 for the rest.
    const inv = ropeInvFreq(pythia.dims.rope!, 64);
    expect(inv.length).toBe(32);
    expect(inv[1]).toBeCloseTo(10000 ** (-2 / 16), 7);
    expect([...inv.slice(8)].every((f) => f === 0)).toBe(true);
    expect(pythia.spec.globals(pythia.dims, pythia.config).lmHead.source).toBe('embed_out.weight');
  });
});

describe('every key Hugging Face transformers writes (fixtures/conformance/hf-config-keys.json, from make_conformance.py)', () => {
  const written = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'conformance', 'hf-config-keys.json'), 'utf8')) as {
    transformers: string;
    model_types: Record<string, { to_dict: string[]; generation_config_to_dict: string[]; cases_rope_parameters?: Record<string, string[]> }>;
  };

  it('covers every model_type fusegen reads', () => {
    expect(Object.keys(written.model_types).sort()).toEqual(specs.flatMap((s) => s.modelTypes).sort());
  });

  it.each(Object.keys(written.model_types))('%s: every config and generation config key is in a class', (modelType) => {
    const v = written.model_types[modelType]!;
    const table = { ...COMMON_KEYS, ...archFor(modelType, 'test').configKeys };
    expect(v.to_dict.length).toBeGreaterThan(20);
    expect(v.to_dict.filter((k) => !table[k])).toEqual([]);
    expect(v.generation_config_to_dict.filter((k) => !GENERATION_KEYS[k])).toEqual([]);
  });
});

describe('key tables', () => {
  it('every rule is one of the three classes, and every harmless or default-only rule says why', () => {
    for (const table of [COMMON_KEYS, GENERATION_KEYS, ...specs.map((s) => s.configKeys)]) {
      for (const [key, rule] of Object.entries(table)) {
        const c = classify(rule);
        if (c === 'harmless') expect((rule as { harmless: string }).harmless.length, key).toBeGreaterThan(10);
        if (c === 'default only') expect((rule as { why: string }).why.length, key).toBeGreaterThan(10);
      }
    }
  });
});
