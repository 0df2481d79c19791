/**
 * The same weights stored the other ways Hugging Face checkpoints come: sharded with an
 * index, float16 and bfloat16, and with the hub's unprefixed tensor names. Each must load
 * lazily and give the reference pipeline the same greedy tokens as the original.
 */
import { copyFileSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tinyModelDir, type FixtureArch } from '../fixtures/checkpoints.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { openSafetensorsFile, writeSafetensors, writeShardedSafetensors, type TensorToWrite } from '../src/checkpoint/safetensors.js';
import { ReferencePipeline } from '../src/pipeline/reference.js';

const PROMPTS = ['DeepSpeed is a machine learning framework', 'He has a'];

/** Copies a fixture's non-weight files and rewrites its weights with `transform`. */
function variant(arch: FixtureArch, write: (dir: string, tensors: TensorToWrite[], fill: (t: TensorToWrite) => Float32Array) => void, rename = (n: string) => n): string {
  const src = tinyModelDir(arch);
  const dir = mkdtempSync(join(tmpdir(), `fusegen-${arch}-variant-`));
  for (const f of readdirSync(src)) if (!f.endsWith('.safetensors')) copyFileSync(join(src, f), join(dir, f));
  const store = openSafetensorsFile(join(src, 'model.safetensors'));
  const byNew = new Map(store.names().map((n) => [rename(n), n]));
  const tensors = [...byNew.keys()].map((name) => ({ name, dtype: 'F32' as const, shape: store.info(byNew.get(name)!).shape }));
  write(dir, tensors, (t) => store.readFloat32(byNew.get(t.name)!));
  store.close();
  return dir;
}

async function greedy(dir: string) {
  const pipe = await ReferencePipeline.create(openCheckpoint(dir), { device: 'cpu', dtype: 'float32', maxTokens: 256 });
  try {
    const r = await pipe.generate({ prompts: PROMPTS, maxNewTokens: 8, doSample: false, recordTopK: 3 });
    return r.sequences;
  } finally {
    await pipe.dispose();
  }
}

describe('checkpoint storage formats', () => {
  let base: Awaited<ReturnType<typeof greedy>>;
  beforeAll(async () => {
    base = await greedy(tinyModelDir('llama'));
  });

  it('sharded safetensors with an index give identical tokens and logits', async () => {
    const dir = variant('llama', (d, ts, fill) => writeShardedSafetensors(d, ts, fill, 256 * 1024));
    expect(readdirSync(dir).filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThan(2);
    const got = await greedy(dir);
    expect(got.map((s) => s.newIds)).toEqual(base.map((s) => s.newIds));
    expect(got.map((s) => s.topK)).toEqual(base.map((s) => s.topK));
  });

  it.each(['F16', 'BF16'] as const)('%s weights are widened to float32 and keep the greedy tokens', async (dtype) => {
    const dir = variant('llama', (d, ts, fill) => writeSafetensors(join(d, 'model.safetensors'), ts.map((t) => ({ ...t, dtype })), fill));
    const got = await greedy(dir);
    // Rounding the weights moves logits a little but not the argmax of these margins.
    expect(got.map((s) => s.newIds.slice(0, 3))).toEqual(base.map((s) => s.newIds.slice(0, 3)));
    const diff = Math.abs(got[0]!.topK![0]!.values[0]! - base[0]!.topK![0]!.values[0]!);
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(dtype === 'F16' ? 0.05 : 0.5);
  });

  it("the hub's unprefixed names (decoder.layers..., h.0...) load like save_pretrained's", async () => {
    const optBase = await greedy(tinyModelDir('opt'));
    const dir = variant('opt', (d, ts, fill) => writeSafetensors(join(d, 'model.safetensors'), ts, fill), (n) => n.replace(/^model\./, ''));
    const got = await greedy(dir);
    expect(got.map((s) => s.newIds)).toEqual(optBase.map((s) => s.newIds));
  });
});
