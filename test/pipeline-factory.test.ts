/**
 * One pipeline factory and one dtype table (issue 22 item 2): generate, compare (candidate and
 * triage) and bench build every pipeline through createPipeline from a backend description;
 * what a dtype means (float type, quantization bits, bytes per weight, the reference's dtype,
 * where it is refused) is read from src/pipeline/dtypes.ts by the ORT plan, the WGSL engine,
 * the reference pipelines, pipelineInfo and the CLI; the kernels default is decided once.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchBackend } from '../bench/run.js';
import { candidateBackend } from '../compare/run.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { compareOptions } from '../src/cli/compare.js';
import { generateOptions, backendOf } from '../src/cli/generate.js';
import { DTYPES as CLI_DTYPES, checkDtype } from '../src/cli/options.js';
import { ALL_FUSIONS, NO_FUSIONS } from '../src/inject/plan.js';
import { backendFor, createPipeline, engineOf } from '../src/pipeline/ds-pipeline.js';
import { DTYPES, dtypesFor, floatOf, referenceDtype, refuseDtype, type Engine } from '../src/pipeline/dtypes.js';
import { planFor } from '../src/pipeline/injected.js';
import { ReferencePipeline } from '../src/pipeline/reference.js';
import { DEFAULT_KERNELS, defaultKernelsHelp, kernelsFor, type DType, type Device } from '../src/pipeline/types.js';

const ROOT = join(import.meta.dirname, '..');
const ENGINES: Engine[] = ['transformersjs', 'hf', 'ort', 'wgsl'];
const ALL_DTYPES = Object.keys(DTYPES) as DType[];

describe('one factory', () => {
  it('no command or suite constructs a pipeline class itself: generate, compare and bench call createPipeline', () => {
    const files = [join(ROOT, 'compare', 'run.ts'), join(ROOT, 'bench', 'run.ts'), ...readdirSync(join(ROOT, 'src', 'cli')).map((f) => join(ROOT, 'src', 'cli', f))];
    for (const f of files) expect(readFileSync(f, 'utf8'), f).not.toMatch(/\b(Reference|Injected|Wgsl|Hf)Pipeline\.create\(/);
    for (const f of ['src/cli/generate.ts', 'compare/run.ts', 'bench/run.ts']) expect(readFileSync(join(ROOT, f), 'utf8'), f).toMatch(/\bcreatePipeline\(/);
  });

  it('the seed\'s flags map to one backend each (generate, DSPipeline)', () => {
    expect(backendFor({ device: 'cpu' })).toEqual({ kind: 'ort', fusions: NO_FUSIONS });
    expect(backendFor({ device: 'cpu', useKernel: true, accuracyLevel: 0 })).toEqual({ kind: 'ort', fusions: ALL_FUSIONS, accuracyLevel: 0 });
    expect(backendFor({ device: 'webgpu', useKernel: true })).toEqual({ kind: 'wgsl' });
    expect(backendFor({ device: 'webgpu', useKernel: true, kernels: 'ort' })).toEqual({ kind: 'ort', fusions: ALL_FUSIONS });
    expect(backendFor({ device: 'cpu', hfBaseline: true, reference: 'hf' })).toEqual({ kind: 'reference', reference: 'hf' });
    expect(() => backendFor({ device: 'cpu', hfBaseline: true, useKernel: true })).toThrow(/^--hf_baseline: /);
    expect(() => backendFor({ device: 'cpu', useKernel: true, kernels: 'wgsl' })).toThrow('--kernels: wgsl runs on --device webgpu');
    expect(backendFor({ device: 'cpu', engine: 'llamacpp' })).toEqual({ kind: 'llamacpp' });
    // webgpu is llama.cpp's Vulkan build (pipeline/llamacpp.ts llamaCppBackendFor); cuda has no build wired.
    expect(backendFor({ device: 'webgpu', engine: 'llamacpp' })).toEqual({ kind: 'llamacpp' });
    expect(() => backendFor({ device: 'cuda', engine: 'llamacpp' })).toThrow(/^--device: cuda: node-llama-cpp's prebuilt CUDA binaries/);
    expect(() => backendFor({ device: 'cpu', engine: 'llamacpp', useKernel: true })).toThrow(/^--use_kernel: does not apply to --engine llamacpp/);
    const flags = { hf_baseline: false, reference: undefined, use_kernel: true, device: 'webgpu' as const, kernels: undefined };
    expect(backendOf(flags)).toEqual({ kind: 'wgsl' });
  });

  it('compare\'s candidate and bench\'s pipelines are backend descriptions too', () => {
    expect(candidateBackend({ useKernel: true, kernels: 'wgsl' })).toEqual({ kind: 'wgsl' });
    expect(candidateBackend({ useKernel: false, kernels: 'ort' })).toEqual({ kind: 'ort', fusions: NO_FUSIONS });
    expect(candidateBackend({ useKernel: true, kernels: 'ort', accuracyLevel: 4, candidateAttentionScale: 0.1 })).toEqual({ kind: 'ort', fusions: ALL_FUSIONS, accuracyLevel: 4, fusedAttentionScale: 0.1 });
    expect(engineOf(benchBackend('reference', {}))).toBe('transformersjs');
    expect(benchBackend('ort', { accuracyLevel: 0 }, true)).toEqual({ kind: 'ort', accuracyLevel: 0, profile: true });
    expect(benchBackend('wgsl', {})).toEqual({ kind: 'wgsl' });
  });

  it('refuses the WGSL engine off webgpu, whoever asks', async () => {
    const ckpt = openCheckpoint(tinyModelDir('opt'));
    await expect(createPipeline(ckpt, { kind: 'wgsl' }, { device: 'cpu', dtype: 'float32', maxTokens: 64 })).rejects.toThrow('--kernels: wgsl runs on --device webgpu');
  });

  it('pipelineInfo\'s weight bytes are the table\'s bytes per weight (ORT float32 and int4 on the CPU)', async () => {
    const ckpt = openCheckpoint(tinyModelDir('opt'));
    for (const dtype of ['float32', 'int4'] as const) {
      const pipe = await createPipeline(ckpt, { kind: 'ort' }, { device: 'cpu', dtype, maxTokens: 64 });
      try {
        expect(pipe.info.parameters).toBeGreaterThan(0);
        expect(pipe.info.parameterBytes).toBe(Math.round(pipe.info.parameters * DTYPES[dtype].bytesPerWeight));
      } finally {
        await pipe.dispose();
      }
    }
    expect(DTYPES.int4.bytesPerWeight).toBe(0.5);
  });
});

describe('one dtype table', () => {
  it('the ORT plan reads it: float type and quantization bits on every device; bfloat16 refused with the table\'s reason', () => {
    for (const device of ['cpu', 'webgpu', 'cuda'] as Device[]) {
      for (const dtype of dtypesFor(['ort'])) {
        const plan = planFor(dtype, device, ALL_FUSIONS);
        expect(plan.quant.bits, `${dtype} ${device}`).toBe(DTYPES[dtype].bits);
        expect(plan.dtype, `${dtype} ${device}`).toBe(floatOf(dtype, device));
      }
    }
    expect(planFor('int8', 'cpu', ALL_FUSIONS).dtype).toBe('float32');
    expect(planFor('int4', 'webgpu', ALL_FUSIONS).dtype).toBe('float16');
    expect(() => planFor('bfloat16', 'cpu', ALL_FUSIONS)).toThrow(`--dtype: bfloat16 is not available for fusegen's ONNX Runtime graphs (float32, float16, int8 or int4): ${DTYPES.bfloat16.refused.ort}`);
  });

  it('the WGSL engine and the reference pipelines refuse what the table says they do not run', async () => {
    const ckpt = openCheckpoint(tinyModelDir('opt'));
    await expect(ReferencePipeline.create(ckpt, { device: 'cpu', dtype: 'bfloat16', maxTokens: 64 })).rejects.toThrow(`--dtype: bfloat16 is not available for the reference pipeline (float32 or float16): ${DTYPES.bfloat16.refused.transformersjs}`);
    await expect(ReferencePipeline.create(ckpt, { device: 'cpu', dtype: 'int8', maxTokens: 64 })).rejects.toThrow('--dtype: int8 is not available for the reference pipeline (float32 or float16)');
    for (const d of ALL_DTYPES) {
      for (const e of ENGINES) {
        if (DTYPES[d].engines.includes(e)) expect(() => refuseDtype(d, e, e)).not.toThrow();
        else expect(() => refuseDtype(d, e, e)).toThrow(/^--dtype: /);
      }
    }
  });

  it('the reference runs what the table pairs with the candidate\'s dtype, a dtype the reference libraries run', () => {
    expect(ALL_DTYPES.map((d) => [d, referenceDtype(d)])).toEqual([
      ['float32', 'float32'],
      ['float16', 'float16'],
      ['int8', 'float32'],
      ['int4', 'float32'],
      ['bfloat16', 'float32'],
    ]);
    for (const d of ALL_DTYPES) expect(DTYPES[referenceDtype(d)].engines).toContain('transformersjs');
  });

  it('the CLI\'s table is derived from it: each dtype\'s engines, the up-front check with its reason', () => {
    for (const d of ALL_DTYPES) expect(CLI_DTYPES[d]).toEqual(DTYPES[d].engines);
    expect(() => checkDtype('bfloat16', 'ort')).toThrow(DTYPES.bfloat16.refused.ort!);
    expect(() => checkDtype('int4', 'hf')).toThrow(DTYPES.int4.refused.hf!);
  });

  it('every dtype says its bytes and bits consistently', () => {
    for (const d of ALL_DTYPES) {
      const s = DTYPES[d];
      if (s.bits) expect(s.bytesPerWeight, d).toBe(s.bits / 8);
      else expect(s.bytesPerWeight, d).toBe({ float32: 4, float16: 2, bfloat16: 2 }[s.float as 'float32']);
      for (const e of ENGINES) if (!s.engines.includes(e)) expect(s.refused[e], `${d} on ${e}`).toBeTruthy();
    }
  });
});

describe('the kernels default, decided once', () => {
  it('wgsl on webgpu, ort elsewhere: kernelsFor, backendFor and both commands\' help read DEFAULT_KERNELS', () => {
    expect(DEFAULT_KERNELS).toEqual({ cpu: 'ort', webgpu: 'wgsl', cuda: 'ort' });
    expect(kernelsFor('webgpu', undefined)).toBe('wgsl');
    expect(kernelsFor('cuda', undefined)).toBe('ort');
    expect(kernelsFor('webgpu', 'ort')).toBe('ort');
    expect(defaultKernelsHelp()).toBe('wgsl on webgpu, ort elsewhere');
    expect(generateOptions.kernels.defaultHelp).toBe(defaultKernelsHelp());
    expect(compareOptions.kernels.defaultHelp).toBe(defaultKernelsHelp());
  });
});
