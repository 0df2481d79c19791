/**
 * Issue 23 (hardening), items 2 and 4. Non-finite weights are refused at load, naming the file
 * and the tensor, unless --allow_nonfinite; a cached export never skips that check; compare
 * never calls non-finite logits a match. Absurd sizes (a config promising 1e9 layers, a header
 * nested 10^5 deep or declaring 10^6 tensors, --batch_size 1e9) are refused in one line, fast,
 * before anything is allocated from them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { promptVerdict, teacherForced } from '../compare/metrics.js';
import { TOLERANCE } from '../compare/tolerance.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { openCheckpoint } from '../src/checkpoint/checkpoint.js';
import { HEADER_LIMITS, openSafetensorsFile, writeSafetensors, type TensorToWrite } from '../src/checkpoint/safetensors.js';
import { main } from '../src/cli/main.js';
import { CapacityError, FusegenError, InputError } from '../src/errors.js';
import { exportReferenceModel } from '../src/graph/export.js';
import type { CompareReport } from '../src/report/compare-report.js';

const tmpDirs: string[] = [];
function tmpDir(tag: string): string {
  const d = fs.mkdtempSync(join(os.tmpdir(), `fusegen-hard-${tag}-`));
  tmpDirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of tmpDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const t = performance.now();
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err, ms: performance.now() - t };
}

function caught(fn: () => unknown): FusegenError {
  try {
    fn();
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(FusegenError);
    expect((e as Error).message).not.toContain('\n');
    return e as FusegenError;
  }
  throw new Error('expected a refusal, but the call returned normally');
}

const Q_PROJ = 'model.decoder.layers.0.self_attn.q_proj.weight';
const LAYER_NORM = 'model.decoder.layers.1.final_layer_norm.weight';

/** A copy of the tiny OPT whose model.safetensors has `poison` applied (name -> index -> value). */
function poisoned(poison: Record<string, [number, number]>, dtype: 'F32' | 'F16' | 'BF16' = 'F32'): { dir: string; file: string } {
  const dir = tmpDir('nonfinite');
  fs.cpSync(tinyModelDir('opt'), dir, { recursive: true });
  const file = join(dir, 'model.safetensors');
  const store = openSafetensorsFile(file);
  try {
    const specs: TensorToWrite[] = store.names().map((name) => ({ name, dtype, shape: store.info(name).shape }));
    for (const name of Object.keys(poison)) expect(store.names()).toContain(name);
    writeSafetensors(file, specs, (t) => {
      const data = store.readFloat32(t.name);
      const p = poison[t.name];
      if (p) data[p[0]] = p[1];
      return data;
    });
  } finally {
    store.close();
  }
  return { dir, file };
}

describe('non-finite weights are refused at load (issue 23 item 2)', () => {
  it.each(['F32', 'F16', 'BF16'] as const)('%s: a NaN in a q_proj is named with the file, the tensor, the count and the first index', (dtype) => {
    const { dir, file } = poisoned({ [Q_PROJ]: [37, NaN] }, dtype);
    const e = caught(() => exportReferenceModel(openCheckpoint(dir), { dtype: 'float32', cacheDir: tmpDir('cache') }));
    expect(e).toBeInstanceOf(InputError);
    expect(e.culprit).toBe(`${file}: ${Q_PROJ}`);
    expect(e.message).toContain('1 of 4096 values are not finite (first at flat index 37: NaN)');
    expect(e.message).toContain('--allow_nonfinite');
    // The store's readers refuse it too (readRaw is what F16 uploads read), and allow it when asked.
    const store = openSafetensorsFile(file);
    expect(() => store.readFloat32(Q_PROJ)).toThrow(/flat index 37: NaN/);
    expect(() => store.readRaw(Q_PROJ)).toThrow(/flat index 37: NaN/);
    store.close();
    const allowed = openSafetensorsFile(file, { allowNonfinite: true });
    expect(Number.isNaN(allowed.readFloat32(Q_PROJ)[37]!)).toBe(true);
    allowed.close();
  });

  it('generate: an Inf in a LayerNorm weight is one line naming the tensor, exit 2', async () => {
    const { dir, file } = poisoned({ [LAYER_NORM]: [3, -Infinity] });
    const r = await run(['generate', '--model', dir, '--greedy', '--max_new_tokens', '4']);
    expect(r.err).toEqual([`error: ${file}: ${LAYER_NORM}: 1 of 64 values are not finite (first at flat index 3: -Infinity); pass --allow_nonfinite to run it anyway`]);
    expect(r.out).toEqual([]);
    expect(r.code).toBe(2);
  }, 60_000);

  it('generate: NaN in a q_proj and Inf in a LayerNorm exit 2 naming one of them; --allow_nonfinite runs; a cached export never skips the check', async () => {
    const { dir, file } = poisoned({ [Q_PROJ]: [0, NaN], [LAYER_NORM]: [5, Infinity] });
    const refused = await run(['generate', '--model', dir, '--greedy', '--max_new_tokens', '4']);
    expect(refused.code).toBe(2);
    expect(refused.err).toEqual([expect.stringMatching(new RegExp(`^error: ${file.replace(/[.]/g, '\\.')}: (${Q_PROJ}|${LAYER_NORM}): 1 of \\d+ values are not finite`))]);

    const allowed = await run(['generate', '--model', dir, '--greedy', '--max_new_tokens', '4', '--allow_nonfinite']);
    expect(allowed.err).toEqual([]);
    expect(allowed.code).toBe(0);
    expect(allowed.out.some((l) => l.includes('out='))).toBe(true);

    // The export made with the flag is now in the cache; without the flag it is not reused unchecked.
    const again = await run(['generate', '--model', dir, '--greedy', '--max_new_tokens', '4']);
    expect(again.code).toBe(2);
    expect(again.err[0]).toContain('values are not finite');

    // The same at the library level, with a private cache: allowed export first, then a plain one.
    const cache = tmpDir('cache');
    const first = exportReferenceModel(openCheckpoint(dir, { allowNonfinite: true }), { dtype: 'float32', cacheDir: cache });
    expect(first.cached).toBe(false);
    expect(exportReferenceModel(openCheckpoint(dir, { allowNonfinite: true }), { dtype: 'float32', cacheDir: cache }).cached).toBe(true);
    const e = caught(() => exportReferenceModel(openCheckpoint(dir), { dtype: 'float32', cacheDir: cache }));
    expect(e.message).toContain('not finite');
  }, 120_000);

  it('compare --allow_nonfinite on the NaN checkpoint: a mismatch for non-finite logits, gate exit 1, the flag in the report', async () => {
    const { dir } = poisoned({ [Q_PROJ]: [0, NaN] });
    const reports = tmpDir('reports');
    const r = await run(['compare', '--model', dir, '--allow_nonfinite', '--num_inputs', '1', '--min_length', '10', '--max_length', '16', '--speed_repeats', '1', '--report_dir', reports]);
    expect(r.code, [...r.out, ...r.err].join('\n')).toBe(1);
    expect(r.out.some((l) => /gate: FAIL/.test(l))).toBe(true);
    const json = fs.readdirSync(reports, { recursive: true }).map(String).find((f) => f.endsWith('.json'))!;
    const report = JSON.parse(fs.readFileSync(join(reports, json), 'utf8')) as CompareReport;
    expect(report.settings.allowNonfinite).toBe(true);
    expect(report.prompts).toHaveLength(1);
    expect(report.prompts[0]!.verdict).toBe('mismatch');
    expect(report.prompts[0]!.reason).toMatch(/^non-finite logits \(NaN\/Inf\) on both sides/);

    const plain = await run(['compare', '--model', dir, '--num_inputs', '1', '--report_dir', reports]);
    expect(plain.code).toBe(2);
    expect(plain.err).toEqual([expect.stringContaining(`${Q_PROJ}: 1 of 4096 values are not finite`)]);
  }, 120_000);
});

describe('bench --allow_nonfinite (issue 23 item 2)', () => {
  it('bench refuses the NaN checkpoint naming the tensor, exit 2; with the flag it runs', async () => {
    const { dir, file } = poisoned({ [Q_PROJ]: [9, NaN] });
    const reports = tmpDir('bench');
    const args = ['bench', '--model', dir, '--pipelines', 'ort', '--repeats', '1', '--max_new_tokens', '2', '--report_dir', reports];
    const refused = await run(args);
    expect(refused.code).toBe(2);
    expect(refused.err).toEqual([`error: ${file}: ${Q_PROJ}: 1 of 4096 values are not finite (first at flat index 9: NaN); pass --allow_nonfinite to run it anyway`]);
    const allowed = await run([...args, '--allow_nonfinite']);
    expect(allowed.err.filter((l) => l.startsWith('error'))).toEqual([]);
    expect(allowed.code).toBe(0);
  }, 120_000);
});

describe('compare never matches non-finite logits (issue 23 item 2)', () => {
  const tol = TOLERANCE.float32;
  const rows = (values: number[][]) => values.map((v) => Float32Array.from(v));
  const same = { status: 'match' as const };

  it('NaN against NaN is a mismatch with its own reason', () => {
    const ref = rows([[NaN, NaN, NaN], [NaN, NaN, NaN]]);
    const tf = teacherForced(ref, rows([[NaN, NaN, NaN], [NaN, NaN, NaN]]), 1, tol);
    expect(tf.agreement.withinTolerance).toBe(false);
    expect(tf.agreement.nonFinite).toEqual({ reference: 2, candidate: 2 });
    const v = promptVerdict(same, tf, tol);
    expect(v.verdict).toBe('mismatch');
    expect(v.reason).toContain('non-finite logits (NaN/Inf) on both sides: reference at 2, candidate at 2 of 2');
  });

  it('non-finite on one side only is a mismatch naming that side; a NaN off the reference top-k counts', () => {
    const ref = rows([[1, 2, 3, 0.5], [3, 2, 1, 0.5]]);
    const cand = rows([[1, 2, 3, 0.5], [3, 2, 1, Infinity]]);
    const v = promptVerdict(same, teacherForced(ref, cand, 1, tol), tol);
    expect(v).toMatchObject({ verdict: 'mismatch' });
    expect(v.reason).toContain('on the candidate: reference at 0, candidate at 1 of 2');
    const refNan = rows([[1, 2, 3, NaN], [3, 2, 1, 0.5]]);
    const w = promptVerdict(same, teacherForced(refNan, rows([[1, 2, 3, 0.5], [3, 2, 1, 0.5]]), 1, tol), tol);
    expect(w.reason).toContain('on the reference: reference at 1, candidate at 0');
  });

  it('identical finite logits still match', () => {
    const ref = rows([[1, 2, 3], [3, 2, 1]]);
    const v = promptVerdict(same, teacherForced(ref, rows([[1, 2, 3], [3, 2, 1]]), 1, tol), tol);
    expect(v.verdict).toBe('match');
  });
});

/** A safetensors file whose header is `header` (raw JSON text), with `dataBytes` zero bytes after it. */
function rawSafetensors(header: string, dataBytes = 0): string {
  const file = join(tmpDir('header'), 'model.safetensors');
  const text = Buffer.from(header, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  fs.writeFileSync(file, Buffer.concat([len, text, Buffer.alloc(dataBytes)]));
  return file;
}

function timed<T>(fn: () => T): { value: T; ms: number } {
  const t = performance.now();
  const value = fn();
  return { value, ms: performance.now() - t };
}

describe('absurd sizes are refused fast, in one line (issue 23 item 4)', () => {
  it('a header nested 10^5 brackets deep is refused naming the file', () => {
    const file = rawSafetensors(`{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    const { value: e, ms } = timed(() => caught(() => openSafetensorsFile(file)));
    expect(e).toBeInstanceOf(InputError);
    expect(e.culprit).toBe(file);
    expect(e.message).toContain(`nests deeper than ${HEADER_LIMITS.maxDepth} levels`);
    expect(ms).toBeLessThan(2_000);
  });

  it('a header declaring 10^6 (valid) tensors is refused naming the file', () => {
    const parts: string[] = [];
    for (let i = 0; i < 1_000_000; i++) parts.push(`"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
    const file = rawSafetensors(`{${parts.join(',')}}`);
    const { value: e, ms } = timed(() => caught(() => openSafetensorsFile(file)));
    expect(e).toBeInstanceOf(InputError);
    expect(e.culprit).toBe(file);
    expect(e.message).toContain(`more than ${HEADER_LIMITS.maxEntries} entries`);
    expect(ms).toBeLessThan(2_000);
  });

  it('a header of 10^6 values in one shape is refused; ordinary headers within budget still open', () => {
    const file = rawSafetensors(`{"a":{"dtype":"F32","shape":[${new Array(6_000_000).fill('1').join(',')}],"data_offsets":[0,4]}}`, 4);
    const { value: e, ms } = timed(() => caught(() => openSafetensorsFile(file)));
    expect(e.message).toContain(`more than ${HEADER_LIMITS.maxElements} JSON values`);
    expect(ms).toBeLessThan(2_000);
    // Strings holding brackets and escaped quotes are not structure.
    const ok = rawSafetensors(`{"__metadata__":{"k":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[[[[["},"w[{":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4);
    const store = openSafetensorsFile(ok);
    expect(store.names()).toEqual(['w[{']);
    store.close();
  });

  it('config.json promising 1e9 layers is refused at open, naming num_hidden_layers, in well under a second', async () => {
    const dir = tmpDir('layers');
    fs.cpSync(tinyModelDir('opt'), dir, { recursive: true });
    const configPath = join(dir, 'config.json');
    const config = JSON.parse(fs.readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(configPath, JSON.stringify({ ...config, num_hidden_layers: 1e9 }));
    const { value: e, ms } = timed(() => caught(() => openCheckpoint(dir)));
    expect(e).toBeInstanceOf(InputError);
    expect(e.culprit).toBe(`${configPath}: num_hidden_layers`);
    expect(e.message).toContain('promises 1000000000 layers');
    expect(ms).toBeLessThan(2_000);
    const r = await run(['generate', '--model', dir, '--max_new_tokens', '2']);
    expect(r.code).toBe(2);
    expect(r.err).toEqual([expect.stringMatching(new RegExp(`^error: ${configPath.replace(/[.]/g, '\\.')}: num_hidden_layers: promises 1000000000 layers`))]);
    expect(r.ms).toBeLessThan(2_000);

    // One layer more than the weights hold names the first missing tensor.
    fs.writeFileSync(configPath, JSON.stringify({ ...config, num_hidden_layers: (config['num_hidden_layers'] as number) + 1 }));
    expect(caught(() => openCheckpoint(dir)).message).toMatch(/no tensor "[\w.]*layers\.2\.self_attn\.q_proj\.weight"/);
  });

  it('vocab_size and hidden_size are held against the embedding table at open', () => {
    const dir = tmpDir('dims');
    fs.cpSync(tinyModelDir('llama'), dir, { recursive: true });
    const configPath = join(dir, 'config.json');
    const config = JSON.parse(fs.readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(configPath, JSON.stringify({ ...config, vocab_size: 1e9 }));
    const { value: e, ms } = timed(() => caught(() => openCheckpoint(dir)));
    expect(e.culprit).toBe(`${configPath}: vocab_size`);
    expect(ms).toBeLessThan(2_000);
    // A hidden size the weights do not have (heads scaled with it, so the head dim is still even).
    const heads = config['num_attention_heads'] as number;
    const kv = (config['num_key_value_heads'] as number | undefined) ?? heads;
    fs.writeFileSync(configPath, JSON.stringify({ ...config, hidden_size: (config['hidden_size'] as number) * 2, num_attention_heads: heads * 2, num_key_value_heads: kv * 2 }));
    expect(caught(() => openCheckpoint(dir)).culprit).toMatch(/config\.json: (hidden_size|num_hidden_layers)$/);
  });

  it('--batch_size 1e9 is one line naming the flag, exit 2, fast', async () => {
    const r = await run(['generate', '--model', tinyModelDir('opt'), '--batch_size', '1000000000', '--max_new_tokens', '2']);
    expect(r.code).toBe(2);
    expect(r.err).toEqual([expect.stringMatching(/^error: --batch_size: 1000000000 sequences x 1024 tokens of KV cache need .* GiB, more than this host's .* GiB of memory$/)]);
    expect(r.ms).toBeLessThan(2_000);
    expect(caught(() => { throw new CapacityError('--batch_size', 'x'); })).toBeInstanceOf(CapacityError);
  });
});
