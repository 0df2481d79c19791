/**
 * --save_mp_checkpoint_path: the kernel-injected model saved (the WGSL engine's GPU buffers per
 * rank on lavapipe; the ORT-injected graph on the CPU) and run from its directory gives the
 * tokens and logits of a fresh injection bit for bit; a saved directory that does not match
 * the run, the code or its source, or whose files changed, is refused with one line.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tinyModelDir, writeTinyCheckpoint, type TinyArch } from '../fixtures/checkpoints.js';
import { SEED_PROMPTS } from '../fixtures/prompts.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { SAVED_MANIFEST, type SavedManifest } from '../src/checkpoint/saved.js';
import { createPipeline, type Backend } from '../src/pipeline/ds-pipeline.js';
import { saveInjected } from '../src/pipeline/saved.js';
import type { DType, Device } from '../src/pipeline/types.js';

import { inProcessCli } from './helpers.js';

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
if (!process.env['VK_ICD_FILENAMES'] && existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;

const root = mkdtempSync(join(tmpdir(), 'fusegen-saved-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => join(root, `${name}-${n++}`);

async function outputs(dir: string, backend: Backend, device: Device, dtype: DType) {
  const pipe = await createPipeline(openCheckpoint(dir), backend, { device, dtype, maxTokens: 64 });
  try {
    const g = await pipe.generate({ prompts: SEED_PROMPTS.slice(0, 2), maxNewTokens: 6, doSample: false });
    const rows = g.sequences.map((s) => [...s.promptIds, ...s.newIds]);
    return { ids: g.sequences.map((s) => s.newIds), logits: (await pipe.score(rows, rows.map(() => 1))).map((r) => r.map((l) => Array.from(l))) };
  } finally {
    await pipe.dispose();
  }
}

/** Saves what `backend` injects from `source`, then runs both: the saved directory must answer as the fresh injection. */
async function roundTrip(source: string, backend: Backend, device: Device, dtype: DType) {
  const dir = fresh('saved');
  const pipe = await createPipeline(openCheckpoint(source), backend, { device, dtype, maxTokens: 64 });
  const saved = await saveInjected(pipe, openCheckpoint(source), dir).finally(() => pipe.dispose());
  const a = await outputs(source, backend, device, dtype);
  const b = await outputs(dir, backend, device, dtype);
  expect(b.ids).toEqual(a.ids);
  expect(b.logits).toEqual(a.logits);
  const manifest = JSON.parse(readFileSync(join(dir, SAVED_MANIFEST), 'utf8')) as SavedManifest;
  expect(saved.bytes).toBe(manifest.files.reduce((x, f) => x + f.bytes, 0));
  return { dir, manifest };
}

describe('a saved model answers as a fresh injection', () => {
  const cases: Array<[TinyArch, DType, number]> = [['llama', 'int4', 1], ['llama', 'float16', 2], ['gemma2', 'int8', 1], ['gpt2', 'float32', 3]];
  it.each(cases)('WGSL engine: %s %s across %i device(s)', async (arch, dtype, worldSize) => {
    const source = fresh(arch);
    writeTinyCheckpoint(source, arch, { layers: 3 });
    const { dir, manifest } = await roundTrip(source, { kind: 'wgsl', ...(worldSize > 1 ? { worldSize } : {}) }, 'webgpu', dtype);
    expect(manifest).toMatchObject({ engine: 'wgsl', dtype, worldSize });
    expect(readdirSync(dir).filter((f) => f.endsWith('.bin')).sort()).toEqual(Array.from({ length: worldSize }, (_, r) => `rank-${r}.bin`));
    expect(readdirSync(dir)).not.toContain('model.safetensors');
  });

  it.each(['float32', 'int8'] as const)('ORT-injected graph on the CPU: gpt2 %s', async (dtype) => {
    const { dir, manifest } = await roundTrip(tinyModelDir('gpt2'), { kind: 'ort' }, 'cpu', dtype);
    expect(manifest).toMatchObject({ engine: 'ort', dtype, worldSize: 1 });
    expect(readdirSync(dir)).toEqual(expect.arrayContaining(['model.onnx', 'model.onnx_data', 'config.json', 'tokenizer.json']));
  });
});

describe('saving and running saved models from the command line', () => {

  const gen = (model: string, ...extra: string[]) => ['generate', '--model', model, '--device', 'webgpu', '--use_kernel', '--dtype', 'int4', '--greedy', '--max_new_tokens', '6', ...extra];
  const texts = (out: string[]) => out.filter((l) => !/time|^saved the injected model/.test(l));
  function refused(r: { code: number; out: string[]; err: string[] }, start: string) {
    expect(r.out).toEqual([]);
    expect(r.err).toHaveLength(1);
    expect(r.err[0]!.startsWith(`error: ${start}`), r.err[0]).toBe(true);
    expect(r.code).toBe(2);
  }

  /** A private copy of tiny-llama saved as int4 by generate: (source, saved). */
  async function savedCopy() {
    const source = fresh('src');
    cpSync(tinyModelDir('llama'), source, { recursive: true });
    const dir = fresh('saved');
    const first = await inProcessCli(gen(source, '--save_mp_checkpoint_path', dir));
    expect(first.code, first.err.join('\n')).toBe(0);
    expect(first.out.at(-2)).toMatch(new RegExp(`^saved the injected model to ${dir}: [\\d.]+ MiB in [\\d.]+ s \\(run it with --model ${dir}\\)$`));
    expect(first.out.at(-1)).toBe('Done !');
    return { source, dir, first };
  }

  it('generate saves, --model runs the save with the same output, and a second save replaces the first', async () => {
    const { source, dir, first } = await savedCopy();
    const again = await inProcessCli(gen(dir));
    expect(again.code, again.err.join('\n')).toBe(0);
    expect(texts(again.out)).toEqual(texts(first.out));
    const replaced = await inProcessCli(gen(source, '--save_mp_checkpoint_path', dir));
    expect(replaced.code).toBe(0);
    expect(readdirSync(join(dir, '..')).filter((f) => f.startsWith('.') && f.includes('.tmp-'))).toEqual([]);
  });

  it('refuses a saved directory that does not match the run, the code or its source, in one line', async () => {
    const { source, dir } = await savedCopy();
    refused(await inProcessCli(gen(dir, '--dtype', 'int8')), `--dtype: ${dir} holds the WGSL engine's int4 model; this run asks for int8`);
    refused(await inProcessCli(gen(dir, '--world_size', '2')), `--world_size: ${dir} holds the WGSL engine's int4 model; this run has 2 ranks`);
    refused(await inProcessCli(['generate', '--model', dir, '--dtype', 'int4']), `--model: ${dir} holds the WGSL engine's int4 model: run it with --use_kernel --device webgpu`);
    refused(await inProcessCli(['compare', '--model', dir]), `${dir}: holds the WGSL engine's saved int4 model`);

    const manifestPath = join(dir, SAVED_MANIFEST);
    const manifest = readFileSync(manifestPath, 'utf8');
    const m = JSON.parse(manifest) as SavedManifest;
    writeFileSync(manifestPath, JSON.stringify({ ...m, fusegen: { ...m.fusegen, layout: '0000000000000000' } }));
    refused(await inProcessCli(gen(dir)), `${manifestPath}: written by fusegen ${m.fusegen.version} (layout 0000000000000000)`);
    writeFileSync(manifestPath, manifest);

    const bin = join(dir, 'rank-0.bin');
    const bytes = readFileSync(bin);
    bytes[bytes.length >> 1] ^= 0x40;
    writeFileSync(bin, bytes);
    refused(await inProcessCli(gen(dir)), `${bin}: content differs from the sha256 its manifest records`);
    writeFileSync(bin, bytes.subarray(0, bytes.length - 16));
    refused(await inProcessCli(gen(dir)), `${bin}: ${bytes.length - 16} bytes, ${SAVED_MANIFEST} lists ${bytes.length}`);
    bytes[bytes.length >> 1] ^= 0x40;
    writeFileSync(bin, bytes);
    expect((await inProcessCli(gen(dir))).code).toBe(0);

    // The source's weights change (another seed): the save no longer stands for it.
    writeTinyCheckpoint(source, 'llama', { force: true, seed: 1 });
    refused(await inProcessCli(gen(dir)), `${manifestPath}: its source ${source} changed since it was saved`);
    // Gone altogether, the save runs on its own (its files still hold their sha256).
    rmSync(source, { recursive: true });
    expect((await inProcessCli(gen(dir))).code).toBe(0);
  });

  it('refuses a save it cannot make, before any work', async () => {
    const full = fresh('full');
    cpSync(tinyModelDir('opt'), full, { recursive: true });
    const llama = tinyModelDir('llama');
    refused(await inProcessCli(gen(llama, '--save_mp_checkpoint_path', full)), `--save_mp_checkpoint_path: ${full} is not empty and holds no saved model`);
    refused(await inProcessCli(['generate', '--model', llama, '--save_mp_checkpoint_path', fresh('x')]), '--save_mp_checkpoint_path: saves the kernel-injected model: add --use_kernel');
    refused(await inProcessCli(['bench', '--model', llama, '--device', 'webgpu', '--pipelines', 'ort,wgsl', '--save_mp_checkpoint_path', fresh('x')]), '--save_mp_checkpoint_path: saves one injected model: give exactly one of wgsl, ort in --pipelines (there are 2)');
  });

  it('compare gates a saved candidate against its source and saves its own; bench saves and runs saves', async () => {
    const { source, dir } = await savedCopy();
    const reports = fresh('reports');
    const cmp = ['compare', '--model', source, '--device', 'webgpu', '--use_kernel', '--dtype', 'int4', '--min_length', '16', '--max_length', '24', '--speed_repeats', '1', '--report_dir', reports];
    const c = await inProcessCli([...cmp, '--candidate_model', dir]);
    expect(c.code, c.err.join('\n')).toBe(0);
    expect(c.out).toContain('gate: pass');
    const second = fresh('saved');
    const c2 = await inProcessCli([...cmp, '--save_mp_checkpoint_path', second]);
    expect(c2.code, c2.err.join('\n')).toBe(0);
    expect(c2.out.some((l) => l.startsWith(`saved the injected model to ${second}: `))).toBe(true);
    // Both saves hold the same bytes: the same injection of the same source.
    expect(readFileSync(join(second, 'rank-0.bin')).equals(readFileSync(join(dir, 'rank-0.bin')))).toBe(true);

    const third = fresh('saved');
    const bench = ['bench', '--device', 'webgpu', '--pipelines', 'wgsl', '--dtype', 'int4', '--repeats', '1', '--max_new_tokens', '4', '--report_dir', reports];
    const b = await inProcessCli([...bench, '--model', source, '--save_mp_checkpoint_path', third]);
    expect(b.code, b.err.join('\n')).toBe(0);
    expect(readFileSync(join(third, 'rank-0.bin')).equals(readFileSync(join(dir, 'rank-0.bin')))).toBe(true);
    const fromSave = await inProcessCli([...bench, '--model', third]);
    expect(fromSave.code, fromSave.err.join('\n')).toBe(0);
    refused(await inProcessCli([...bench, '--model', third, '--pipelines', 'reference,wgsl']), `--model: ${third} holds the WGSL engine's int4 model: run it with --use_kernel --device webgpu`);
  });
});
