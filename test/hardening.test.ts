/**
 * Issue 23 (hardening), items 2, 4, 6 and 7. Non-finite weights are refused at load, naming the
 * file and the tensor, unless --allow_nonfinite; a cached export never skips that check; compare
 * never calls non-finite logits a match. Absurd sizes (a config promising 1e9 layers, a header
 * nested 10^5 deep or declaring 10^6 tensors, --batch_size 1e9) are refused in one line, fast,
 * before anything is allocated from them. Every flag and the checkpoint are validated in one pass
 * before any export or run (a matrix of bad inputs through the CLI), and the CLI says what is true
 * (help, labels, rounding, README, the bin).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { promptVerdict, teacherForced } from '../compare/metrics.js';
import { TOLERANCE } from '../compare/tolerance.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { HEADER_LIMITS, openSafetensorsFile, writeSafetensors, type TensorToWrite } from '../src/checkpoint/safetensors.js';
import type { BenchReport } from '../bench/run.js';
import { benchOptions, cliffsCell, table as benchTable } from '../src/cli/bench.js';
import { compareOptions } from '../src/cli/compare.js';
import { generateOptions } from '../src/cli/generate.js';
import { main } from '../src/cli/main.js';
import { checkDtype, dtypesFor, type OptionSpec } from '../src/cli/options.js';
import { CapacityError, FusegenError, InputError } from '../src/errors.js';
import { exportReferenceModel } from '../src/graph/export.js';
import { cudaInstalled } from '../src/runtime/ort.js';
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

// ---------------------------------------------------------------------------------------------
// Issue 23 item 6: one validation pass over every flag and the checkpoint before any export or
// run. Each input below is refused with one line naming its culprit, exit 2, nothing on stdout,
// no export in the (private) cache and no report written.
// ---------------------------------------------------------------------------------------------

/** A private export cache for each run: a refusal must leave it without exports. */
async function runChecked(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string[]; err: string[]; ms: number; exports: string[] }> {
  const cache = tmpDir('cache');
  const saved = new Map<string, string | undefined>();
  for (const k of ['FUSEGEN_CACHE', 'LOCAL_RANK', 'WORLD_SIZE', ...Object.keys(env)]) saved.set(k, process.env[k]);
  for (const k of ['LOCAL_RANK', 'WORLD_SIZE']) delete process.env[k];
  Object.assign(process.env, env, { FUSEGEN_CACHE: cache });
  try {
    const r = await run(args);
    const exportsDir = join(cache, 'exports');
    return { ...r, exports: fs.existsSync(exportsDir) ? fs.readdirSync(exportsDir) : [] };
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** A copy of a tiny fixture whose tokenizer.json is `edit`ed (its parsed JSON), or replaced by a string. */
function withTokenizer(arch: 'opt' | 'gpt2', edit: string | ((t: Record<string, unknown>) => void)): string {
  const dir = tmpDir(`tok-${arch}`);
  fs.cpSync(tinyModelDir(arch), dir, { recursive: true });
  const file = join(dir, 'tokenizer.json');
  if (typeof edit === 'string') {
    fs.writeFileSync(file, edit);
  } else {
    const t = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    edit(t);
    fs.writeFileSync(file, JSON.stringify(t));
  }
  return dir;
}

const emptyVocab = (t: Record<string, unknown>) => {
  const model = t['model'] as Record<string, unknown>;
  model['vocab'] = {};
  model['merges'] = [];
  t['added_tokens'] = [];
};

/** A tokenizer that gives the token of id 39 (in the first seed prompt) the id 99999, past the model's vocabulary. */
const idPastVocab = (t: Record<string, unknown>) => {
  const vocab = (t['model'] as { vocab: Record<string, number> }).vocab;
  const token = Object.keys(vocab).find((k) => vocab[k] === 39)!;
  vocab[token] = 99999;
};

/** A copy of the tiny llama as a mistral with a 16-token sliding window. */
function slidingWindow16(): string {
  const dir = tmpDir('window');
  fs.cpSync(tinyModelDir('llama'), dir, { recursive: true });
  const configPath = join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(configPath, JSON.stringify({ ...config, model_type: 'mistral', sliding_window: 16 }));
  return dir;
}

/** A copy of a tiny fixture whose config.json disagrees with its tensors (`edit` applied to the parsed config). */
function disagreeing(arch: 'opt' | 'llama', edit: Record<string, unknown>): string {
  const dir = tmpDir(`shape-${arch}`);
  fs.cpSync(tinyModelDir(arch), dir, { recursive: true });
  const configPath = join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(configPath, JSON.stringify({ ...config, ...edit }));
  return dir;
}

/**
 * A compare report that timed the tiny OPT as `cmp()` runs it (float32, cpu, fusegen's loop on the
 * plain graph, batch 1) except where `edit` says otherwise: a --baseline that must be refused.
 */
function baselineFile(edit: (r: CompareReport) => void): string {
  const r: CompareReport = {
    schema: 'fusegen.compare/1',
    status: 'complete',
    createdAt: new Date().toISOString(),
    command: ['fusegen', 'compare'],
    model: { dir: OPT(), modelType: 'opt', candidateDir: OPT() },
    settings: { dtype: 'float32', device: 'cpu', reference: 'transformersjs', useKernel: false, kernels: 'none', batchSize: 1, numInputs: 1, minLength: 200, maxLength: 300 },
    tolerance: { ...TOLERANCE.float32 },
    environment: { node: process.version, platform: process.platform, fusegen: '0', onnxruntimeNode: '0', transformersJs: '0', gitCommit: null, executionProviders: {}, adapter: null },
    fusions: {},
    prompts: [],
    speed: null,
    summary: { matches: 0, tolerated: 0, mismatches: 0, errored: 0 },
    gate: { exitCode: 0, reasons: [] },
  };
  edit(r);
  const file = join(tmpDir('baseline'), 'baseline.json');
  fs.writeFileSync(file, JSON.stringify(r));
  return file;
}

interface BadInput {
  label: string;
  /** The command line (built when the case runs: temp directories). */
  args: () => string[];
  /** What the one line must name: right after `error: ` (typed), or anywhere in it (commander's own). */
  culprit: string | (() => string);
  /** Commander's own messages are not `error: <culprit>: ...`. */
  typed?: boolean;
  /** Text the line must also hold. */
  says?: string[];
  env?: Record<string, string>;
}

const OPT = () => tinyModelDir('opt');
const GPT2 = () => tinyModelDir('gpt2');
/** Report directories: each bench/compare case gets a fresh one, which must stay empty. */
const reportDirs: string[] = [];
const reports = () => {
  const d = tmpDir('reports');
  reportDirs.push(d);
  return d;
};
const gen = (...a: string[]) => () => ['generate', '--model', OPT(), '--greedy', '--max_new_tokens', '2', ...a];
const cmp = (...a: string[]) => () => ['compare', '--model', OPT(), '--report_dir', reports(), ...a];
const bch = (...a: string[]) => () => ['bench', '--model', OPT(), '--report_dir', reports(), '--repeats', '1', '--max_new_tokens', '2', ...a];
let tokDir = '';

const BAD_INPUTS: BadInput[] = [
  // Stray words and flags taken as values.
  { label: 'generate: a stray word', args: gen('foo'), culprit: 'argument "foo"', says: ["'generate' takes only --flags"] },
  { label: 'generate: a value after a switch (--greedy 8)', args: () => ['generate', '--model', OPT(), '--greedy', '8'], culprit: 'argument "8"', says: ['--greedy takes no value'] },
  { label: 'compare: a stray word', args: cmp('extra'), culprit: 'argument "extra"' },
  { label: 'bench: a stray word', args: bch('16'), culprit: 'argument "16"' },
  { label: 'dashboard: a stray word', args: () => ['dashboard', '--report_dir', reports(), 'now'], culprit: 'argument "now"' },
  { label: 'generate --model --max_new_tokens 8: a flag is not --model\'s value', args: () => ['generate', '--model', '--max_new_tokens', '8'], culprit: '--model', says: ['got the flag --max_new_tokens'] },
  { label: 'compare --report_dir --use_kernel', args: () => ['compare', '--report_dir', '--use_kernel'], culprit: '--report_dir', says: ['got the flag --use_kernel'] },
  { label: 'bench --batch_sizes --pipelines ort', args: () => ['bench', '--batch_sizes', '--pipelines', 'ort'], culprit: '--batch_sizes' },
  { label: 'no command at all', args: () => [], culprit: 'command' },
  { label: 'an unknown command', args: () => ['frobnicate'], culprit: "'frobnicate'", typed: false },
  { label: 'a misspelled flag is one line with its suggestion', args: gen('--max_new_token', '3'), culprit: "'--max_new_token'", typed: false, says: ['--max_new_tokens?'] },
  // Lists.
  { label: 'bench --batch_sizes 1,,2', args: bch('--batch_sizes', '1,,2'), culprit: '--batch_sizes', says: ['item 2 of "1,,2" is empty'] },
  { label: 'bench --batch_sizes 1,2, (trailing comma)', args: bch('--batch_sizes', '1,2,'), culprit: '--batch_sizes', says: ['item 3'] },
  { label: 'bench --prompt_lengths ,16', args: bch('--prompt_lengths', ',16'), culprit: '--prompt_lengths', says: ['item 1'] },
  { label: 'bench --batch_sizes 1,1', args: bch('--batch_sizes', '1,1'), culprit: '--batch_sizes', says: ['1 is listed twice'] },
  { label: 'bench --pipelines ort,ort', args: bch('--pipelines', 'ort,ort'), culprit: '--pipelines', says: ['ort is listed twice'] },
  { label: 'bench --pipelines ort,,reference', args: bch('--pipelines', 'ort,,reference'), culprit: '--pipelines' },
  { label: 'bench --pipelines gpu', args: bch('--pipelines', 'gpu'), culprit: '--pipelines', says: ['expected one of reference, ort, wgsl'] },
  { label: 'bench --batch_sizes 0', args: bch('--batch_sizes', '0'), culprit: '--batch_sizes', says: ['at least 1'] },
  { label: 'bench --prompt_lengths 16,x', args: bch('--prompt_lengths', '16,x'), culprit: '--prompt_lengths', says: ['expected an integer, got "x"'] },
  { label: 'bench --max_new_tokens 1', args: bch('--max_new_tokens', '1'), culprit: '--max_new_tokens' },
  { label: 'bench --repeats 0', args: bch('--repeats', '0'), culprit: '--repeats' },
  // Numbers and names.
  { label: 'generate --seed -1', args: gen('--seed', '-1'), culprit: '--seed' },
  { label: 'generate --batch_size 1e3', args: gen('--batch_size', '1e3'), culprit: '--batch_size', says: ['expected an integer'] },
  { label: 'generate --max_new_tokens 0', args: gen('--max_new_tokens', '0'), culprit: '--max_new_tokens' },
  { label: "generate --model ''", args: () => ['generate', '--model', ''], culprit: '--model', says: ['must not be empty'] },
  { label: 'compare --num_inputs 0', args: cmp('--num_inputs', '0'), culprit: '--num_inputs' },
  { label: 'compare --max_regression -5', args: cmp('--max_regression', '-5'), culprit: '--max_regression' },
  { label: 'compare --speed_repeats 1.5', args: cmp('--speed_repeats', '1.5'), culprit: '--speed_repeats' },
  { label: 'compare --min_length above --max_length', args: cmp('--min_length', '50', '--max_length', '40'), culprit: '--min_length' },
  { label: 'bench --preset nope', args: bch('--preset', 'nope'), culprit: '--preset' },
  { label: 'bench --preset with --model', args: bch('--preset', 'gpt2'), culprit: '--preset', says: ['not both'] },
  { label: 'LOCAL_RANK=-1 in the environment', args: gen(), culprit: 'LOCAL_RANK (environment, default for --local_rank)', env: { LOCAL_RANK: '-1' } },
  // --dtype, from one table.
  { label: 'generate --dtype bfloat16 (fusegen\'s pipelines)', args: gen('--dtype', 'bfloat16'), culprit: '--dtype', says: ["not available for fusegen's ONNX Runtime graphs", 'runs on the Hugging Face transformers reference of generate (--hf_baseline --reference hf) and the WGSL engine'] },
  { label: 'generate --dtype bf16 --use_kernel', args: gen('--dtype', 'bf16', '--use_kernel'), culprit: '--dtype' },
  { label: 'generate --dtype bfloat16 --hf_baseline (transformers.js)', args: gen('--dtype', 'bfloat16', '--hf_baseline'), culprit: '--dtype', says: ['transformers.js reference', 'takes float32, float16'] },
  { label: 'generate --dtype int4 --hf_baseline', args: gen('--dtype', 'int4', '--hf_baseline'), culprit: '--dtype' },
  { label: 'generate --dtype toString', args: gen('--dtype', 'toString'), culprit: '--dtype', says: ['expected one of float32, float16, int8, int4, bfloat16'] },
  { label: 'compare --dtype bfloat16 (the plain ORT candidate)', args: cmp('--dtype', 'bfloat16'), culprit: '--dtype', says: ["not available for fusegen's ONNX Runtime graphs", 'and the WGSL engine'] },
  { label: 'compare --dtype float64', args: cmp('--dtype', 'float64'), culprit: '--dtype' },
  { label: 'bench --dtype bf16', args: bch('--dtype', 'bf16'), culprit: '--dtype' },
  // Flag combinations.
  { label: 'generate --use_kernel --kernels wgsl on the cpu', args: gen('--use_kernel', '--kernels', 'wgsl'), culprit: '--kernels', says: ['--device webgpu'] },
  { label: 'generate --kernels ort without --use_kernel', args: gen('--kernels', 'ort'), culprit: '--kernels' },
  { label: 'generate --reference hf without --hf_baseline', args: gen('--reference', 'hf'), culprit: '--reference' },
  { label: 'compare --kernels ort without --use_kernel', args: cmp('--kernels', 'ort'), culprit: '--kernels' },
  { label: 'bench --accuracy_level 4 without an ort pipeline', args: bch('--dtype', 'int4', '--accuracy_level', '4', '--pipelines', 'reference'), culprit: '--accuracy_level' },
  { label: 'bench --pipelines wgsl on the cpu', args: bch('--pipelines', 'wgsl'), culprit: '--pipelines' },
  // Lengths and sizes against the model, before any export.
  { label: 'generate --max_tokens below prompt + new tokens', args: gen('--max_tokens', '20'), culprit: '--max_tokens', says: ['needs 21 tokens'] },
  { label: 'generate --max_new_tokens 5000 (gpt2: 1024 positions)', args: () => ['generate', '--model', GPT2(), '--max_new_tokens', '5000'], culprit: '--max_new_tokens', typed: false },
  { label: 'generate --max_new_tokens 1010 --max_tokens 4096 (gpt2)', args: () => ['generate', '--model', GPT2(), '--max_new_tokens', '1010', '--max_tokens', '4096'], culprit: '--max_new_tokens', says: ["exceeds the model's 1024 positions"] },
  { label: 'generate --max_tokens 1e9 against host memory', args: gen('--max_tokens', '1000000000'), culprit: '--max_tokens', says: ['of KV cache need'] },
  { label: 'bench --prompt_lengths 16,1020 (gpt2): blamed on the prompt length, before the first point', args: () => ['bench', '--model', GPT2(), '--report_dir', reports(), '--prompt_lengths', '16,1020'], culprit: '--prompt_lengths', says: ['a prompt of 1020 tokens plus 32 new tokens', '1024 positions'] },
  { label: 'bench --prompt_lengths 1024 (gpt2)', args: () => ['bench', '--model', GPT2(), '--report_dir', reports(), '--prompt_lengths', '1024'], culprit: '--prompt_lengths' },
  { label: 'bench --max_new_tokens 1024 (gpt2)', args: () => ['bench', '--model', GPT2(), '--report_dir', reports(), '--max_new_tokens', '1024'], culprit: '--max_new_tokens', says: ['even a 1-token prompt'] },
  { label: 'bench --batch_sizes 1,100000000 against host memory', args: bch('--batch_sizes', '1,100000000'), culprit: '--batch_sizes', says: ['100000000 sequences'] },
  { label: 'compare --batch_size 100000000 against host memory', args: cmp('--batch_size', '100000000'), culprit: '--batch_size' },
  { label: 'compare --max_length 3 (no room after the prompt)', args: cmp('--min_length', '2', '--max_length', '3'), culprit: '--max_length', says: ['leaves no room to generate'] },
  { label: 'compare --max_length 2000 (gpt2)', args: () => ['compare', '--model', GPT2(), '--report_dir', reports(), '--max_length', '2000'], culprit: '--max_length', says: ['1024 positions'] },
  { label: 'generate past a sliding window', args: () => ['generate', '--model', (tokDir = slidingWindow16()), '--max_new_tokens', '4'], culprit: () => `${join(tokDir, 'config.json')}: sliding_window` },
  { label: 'compare --max_length past a sliding window', args: () => ['compare', '--model', slidingWindow16(), '--report_dir', reports(), '--min_length', '30', '--max_length', '40'], culprit: '--max_length', says: ['attention window of 16 tokens'] },
  // Tokenizers, before any export.
  { label: 'generate: tokenizer.json that is {}', args: () => ['generate', '--model', (tokDir = withTokenizer('opt', '{}'))], culprit: () => join(tokDir, 'tokenizer.json') },
  { label: 'generate: a tokenizer with an empty vocabulary', args: () => ['generate', '--model', (tokDir = withTokenizer('opt', emptyVocab))], culprit: () => join(tokDir, 'tokenizer.json'), says: ["outside the model's vocabulary"] },
  { label: 'generate: a tokenizer id past the model\'s vocabulary', args: () => ['generate', '--model', (tokDir = withTokenizer('opt', idPastVocab)), '--use_kernel'], culprit: () => join(tokDir, 'tokenizer.json'), says: ['id 99999'] },
  { label: 'bench: a tokenizer with an empty vocabulary', args: () => ['bench', '--model', (tokDir = withTokenizer('gpt2', emptyVocab)), '--report_dir', reports()], culprit: () => join(tokDir, 'tokenizer.json') },
  { label: 'compare: tokenizer.json that is {}', args: () => ['compare', '--model', (tokDir = withTokenizer('gpt2', '{}')), '--report_dir', reports()], culprit: () => join(tokDir, 'tokenizer.json') },
  // Files named by flags.
  { label: 'compare --baseline that does not exist', args: () => { const f = join(tmpDir('nobase'), 'base.json'); tokDir = f; return cmp('--baseline', f)(); }, culprit: () => tokDir },
  { label: 'compare --baseline that is not a compare report', args: () => { const f = join(tmpDir('base'), 'base.json'); fs.writeFileSync(f, '{"schema":"x"}'); tokDir = f; return cmp('--baseline', f)(); }, culprit: () => tokDir, says: ['not a compare report'] },
  { label: 'compare --candidate_model of another architecture', args: cmp('--candidate_model', tinyModelDir('gpt2')), culprit: '--candidate_model', says: ['model_type gpt2'] },
  { label: 'dashboard --report_dir that does not exist', args: () => ['dashboard', '--report_dir', (tokDir = join(tmpDir('dash'), 'none'))], culprit: () => tokDir },
  // Issue 29 item 6: a config that disagrees with its tensors was found while exporting (exit 1, "run failed"); now before any work.
  { label: 'compare --candidate_model whose ffn_dim disagrees with its tensors', args: () => cmp('--use_kernel', '--candidate_model', (tokDir = disagreeing('opt', { ffn_dim: 64 })))(), culprit: () => join(tokDir, 'config.json'), says: ['fc1.weight" has shape [256, 64]; the config implies [64, 64]'] },
  { label: 'compare --model (llama) whose num_key_value_heads disagrees with its tensors', args: () => ['compare', '--model', (tokDir = disagreeing('llama', { num_key_value_heads: 4 })), '--use_kernel', '--report_dir', reports()], culprit: () => join(tokDir, 'config.json'), says: ['k_proj.weight" has shape [32, 64]'] },
  { label: 'generate --use_kernel on a llama whose head_dim disagrees with its tensors', args: () => ['generate', '--model', (tokDir = disagreeing('llama', { head_dim: 8 })), '--use_kernel', '--max_new_tokens', '2'], culprit: () => join(tokDir, 'config.json'), says: ['q_proj.weight" has shape [64, 64]'] },
  { label: 'bench on a llama whose intermediate_size disagrees with its tensors', args: () => ['bench', '--model', (tokDir = disagreeing('llama', { intermediate_size: 64 })), '--report_dir', reports(), '--repeats', '1', '--max_new_tokens', '2', '--pipelines', 'ort'], culprit: () => join(tokDir, 'config.json'), says: ['the config implies'] },
  { label: 'compare --dtype bfloat16 --use_kernel (ORT)', args: cmp('--dtype', 'bfloat16', '--use_kernel'), culprit: '--dtype', says: ["not available for fusegen's ONNX Runtime graphs", 'ONNX Runtime has no bfloat16 kernels'] },
  // Issue 29 item 5: a baseline that timed another run (it was accepted, showed -374% and passed).
  { label: 'compare --baseline of another dtype', args: () => cmp('--baseline', (tokDir = baselineFile((r) => (r.settings.dtype = 'int8'))))(), culprit: () => tokDir, says: ['a baseline of another run (dtype int8 there, float32 here)'] },
  { label: 'compare --baseline of another model', args: () => cmp('--baseline', (tokDir = baselineFile((r) => Object.assign(r.model, { modelType: 'llama', candidateDir: '/models/llama-1.1b' }))))(), culprit: () => tokDir, says: ['model_type llama there, opt here; model llama-1.1b there, tiny-opt here'] },
  { label: 'compare --baseline of another device', args: () => cmp('--baseline', (tokDir = baselineFile((r) => (r.settings.device = 'webgpu'))))(), culprit: () => tokDir, says: ['device webgpu there, cpu here'] },
  { label: 'compare --baseline of another pipeline', args: () => cmp('--baseline', (tokDir = baselineFile((r) => Object.assign(r.settings, { useKernel: true, kernels: 'ort' }))))(), culprit: () => tokDir, says: ['pipeline injected there, plain here'] },
  { label: 'compare --max_regression 1e2', args: cmp('--max_regression', '1e2'), culprit: '--max_regression', says: ['expected a number such as 10 or 2.5'] },
];

describe('every input is validated before any work (issue 23 item 6)', () => {
  it('the matrix holds at least 60 distinct inputs', () => {
    expect(new Set(BAD_INPUTS.map((c) => c.label)).size).toBe(BAD_INPUTS.length);
    expect(BAD_INPUTS.length).toBeGreaterThanOrEqual(60);
    // Even with every temporary path read as one (the broken tokenizers differ only in the file), 60 command lines differ.
    const lines = BAD_INPUTS.map((c) => JSON.stringify([c.args().map((a) => a.replace(/\/[^ ]*fusegen-hard-[^ ]*/g, 'TMP')), c.env ?? {}]));
    expect(new Set(lines).size).toBeGreaterThanOrEqual(60);
  });

  it.each(BAD_INPUTS)('$label: one line naming the culprit, exit 2, no export, no report', async (c) => {
    reportDirs.length = 0;
    const r = await runChecked(c.args(), c.env);
    const culprit = typeof c.culprit === 'function' ? c.culprit() : c.culprit;
    expect(r.out, r.out.join('\n')).toEqual([]);
    expect(r.err, r.err.join('\n')).toHaveLength(1);
    const line = r.err[0]!;
    expect(line).not.toContain('\n');
    if (c.typed ?? true) expect(line.startsWith(`error: ${culprit}: `), line).toBe(true);
    else expect(line.startsWith('error: ') && line.includes(culprit), line).toBe(true);
    for (const s of c.says ?? []) expect(line).toContain(s);
    expect(r.code).toBe(2);
    expect(r.exports, 'an export was written before the refusal').toEqual([]);
    for (const d of reportDirs) expect(fs.readdirSync(d), `${d} holds reports`).toEqual([]);
  }, 30_000);

  it('--max_regression takes decimals in compare and bench (issue 29 item 5)', () => {
    for (const table of [compareOptions, benchOptions]) {
      const parse = table.max_regression.parse!;
      expect(parse('2.5', 'max_regression')).toBe(2.5);
      expect(parse('10', 'max_regression')).toBe(10);
      expect(() => parse('1e2', 'max_regression')).toThrow(/^--max_regression: expected a number such as 10 or 2\.5, got "1e2"$/);
    }
  });

  it('--device cuda without the CUDA execution provider is refused before any export (each command)', async () => {
    // .npmrc skips the CUDA EP's download: it is installed only where someone fetched it.
    expect(cudaInstalled()).toBe(false);
    for (const args of [gen('--device', 'cuda')(), gen('--device', 'cuda', '--use_kernel', '--dtype', 'float32')(), cmp('--device', 'cuda')(), bch('--device', 'cuda', '--pipelines', 'ort')()]) {
      const r = await runChecked(args);
      expect(r.err).toEqual([expect.stringMatching(/^error: --device: cuda: the CUDA execution provider is not installed \(see README: ONNXRUNTIME_NODE_INSTALL=cuda12 /)]);
      expect(r.code).toBe(2);
      expect(r.exports).toEqual([]);
    }
  });

  it('bench --prompt_lengths 16,1020 runs no point: nothing on stdout, no progress line, no report (it ran 16 in full before)', async () => {
    const dir = tmpDir('reports');
    const r = await runChecked(['bench', '--model', tinyModelDir('gpt2'), '--report_dir', dir, '--prompt_lengths', '16,1020', '--pipelines', 'ort']);
    expect(r.err).toEqual([`error: --prompt_lengths: a prompt of 1020 tokens plus 32 new tokens exceeds the model's 1024 positions (${join(tinyModelDir('gpt2'), 'config.json')})`]);
    expect(r.out).toEqual([]);
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(r.ms).toBeLessThan(5_000);
  });
});

// ---------------------------------------------------------------------------------------------
// Issue 23 item 7: the CLI says what is true.
// ---------------------------------------------------------------------------------------------

const ROOT = join(import.meta.dirname, '..');

/** `--help` of a command: each option's entry (its continuation lines joined), by flag. */
async function helpEntries(command: string): Promise<Map<string, string>> {
  const r = await run([command, '--help']);
  expect(r.code).toBe(0);
  const entries = new Map<string, string>();
  let flag = '';
  for (const line of r.out.join('\n').split('\n')) {
    const m = /^ {2}--(\w+)/.exec(line);
    if (m) flag = m[1]!;
    else if (/^ {2}-/.test(line) || !/^ {3,}/.test(line)) flag = '';
    if (flag) entries.set(flag, `${entries.get(flag) ?? ''} ${line.trim()}`.trim().replace(/\s+/g, ' '));
  }
  return entries;
}

const TABLES = { generate: generateOptions, compare: compareOptions, bench: benchOptions } as const;

describe('the CLI says what is true (issue 23 item 7)', () => {
  it.each(Object.keys(TABLES) as Array<keyof typeof TABLES>)('%s --help lists exactly the --dtype names the command accepts, int4 included', async (command) => {
    const entry = (await helpEntries(command)).get('dtype')!;
    const listed = /^--dtype <type> ([\w |]+?)(?: \(|;)/.exec(entry)![1]!.split(' | ');
    const parse = TABLES[command].dtype.parse!;
    const accepts = (name: string) => {
      try {
        parse(name, 'dtype');
        return true;
      } catch {
        return false;
      }
    };
    const candidates = ['float32', 'float16', 'bfloat16', 'int8', 'int4', 'float64', 'int2', 'fp8'];
    expect(listed.sort()).toEqual(candidates.filter(accepts).sort());
    expect(listed).toContain('int4');
    // Where a listed dtype runs on some of the command's pipelines only, the help says which.
    if (listed.includes('bfloat16')) expect(entry).toMatch(/bfloat16: only (the Hugging Face transformers reference.* and )?the WGSL engine/);
  });

  it('the dtype table and the up-front check agree: bfloat16 passes only for the Hugging Face reference and the WGSL engine', () => {
    for (const e of ['hf', 'wgsl'] as const) expect(() => checkDtype('bfloat16', e)).not.toThrow();
    for (const e of ['transformersjs', 'ort'] as const) expect(() => checkDtype('bfloat16', e)).toThrow(/^--dtype: bfloat16 is not available/);
    expect(() => checkDtype('int4', 'transformersjs')).toThrow(/takes float32, float16/);
    expect(dtypesFor(['ort', 'wgsl'])).toEqual(['float32', 'float16', 'int8', 'int4', 'bfloat16']);
    expect(dtypesFor(['ort'])).toEqual(['float32', 'float16', 'int8', 'int4']);
  });

  it.each(Object.keys(TABLES) as Array<keyof typeof TABLES>)('%s --help shows every numeric default', async (command) => {
    const entries = await helpEntries(command);
    const numeric = Object.values(TABLES[command] as Record<string, OptionSpec<unknown>>).filter((s) => typeof s.default === 'number' || (Array.isArray(s.default) && typeof s.default[0] === 'number'));
    expect(numeric.length).toBeGreaterThanOrEqual(4);
    for (const s of numeric) {
      const shown = Array.isArray(s.default) ? s.default.join(',') : String(s.default);
      expect(entries.get(s.flag), s.flag).toContain(s.env ? `(default: $${s.env}, else ${shown})` : `(default: ${shown})`);
    }
  });

  it('named defaults the seed fixes are in the help as numbers', async () => {
    const g = await helpEntries('generate');
    expect(g.get('max_tokens')).toContain('(default: 1024)');
    expect(g.get('max_new_tokens')).toContain('(default: 50)');
    expect(g.get('batch_size')).toContain('(default: 1)');
    expect((await helpEntries('compare')).get('max_length')).toContain('(default: 300)');
    expect((await helpEntries('bench')).get('max_new_tokens')).toContain('(default: 32)');
  });

  it('--test_performance labels the figures by the pipeline that ran; the timing lines are rounded', async () => {
    const base = ['generate', '--model', tinyModelDir('opt'), '--greedy', '--max_new_tokens', '2', '--test_performance'];
    const header = (out: string[]) => out.find((l) => l.startsWith('fusegen figures ('))!;
    const plain = await run(base);
    expect(plain.code).toBe(0);
    expect(header(plain.out)).toMatch(/^fusegen figures \(plain pipeline \(fusegen's loop, no kernel injection\), cpu, float32, batch 1, 27 runs after warm-up\):$/);
    expect(plain.out.join('\n')).not.toContain('injected pipeline');
    expect(plain.out[0]).toMatch(/^initialization time: \d+\.\d{2}ms$/);
    expect(plain.out[1]).toMatch(/^generation time is \d+\.\d{4} sec$/);
    const injected = await run([...base, '--use_kernel']);
    expect(header(injected.out)).toMatch(/^fusegen figures \(ORT-injected pipeline, cpu,/);
    const reference = await run([...base, '--hf_baseline']);
    expect(header(reference.out)).toMatch(/^fusegen figures \(reference pipeline \(transformers\.js\), cpu,/);
  }, 120_000);

  it("bench's cliffs column gives the count, then the positions", () => {
    expect(cliffsCell([])).toBe('0');
    expect(cliffsCell([34])).toBe('1 (at 34)');
    expect(cliffsCell([34, 56])).toBe('2 (at 34,56)');
    expect(cliffsCell([1, 2, 3, 4, 5, 6, 7, 8])).toBe('8 (at 1,2,3,4,5,6,...)');
    const st = { mean: 1, median: 1, p90: 1, p99: 1 };
    const row = { pipeline: 'ort', batch: 1, promptLength: 16, ttftMs: st, tpotMs: st, decodeTokensPerSec: 1, prefillTokensPerSec: 1, bandwidthGBps: 1, peakRssMB: 1, outlierPositions: [34, 56] };
    const lines = benchTable({ rows: [row, { ...row, outlierPositions: [] }] } as unknown as BenchReport);
    expect(lines[0]).toMatch(/cliffs \(steps > 3x median, at positions\)$/);
    expect(lines[1]).toMatch(/ 2 \(at 34,56\)$/);
    expect(lines[2]).toMatch(/ 0$/);
  });

  it('README: the default model has random weights; the npm warning is explained; the CUDA EP install is documented', () => {
    const readme = fs.readFileSync(join(ROOT, 'README.md'), 'utf8');
    const quickStart = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('## `generate`'));
    expect(quickStart).toMatch(/embedded default model, a tiny OPT with \*\*random weights\*\*/);
    expect(quickStart).toContain('gibberish');
    expect(quickStart).toContain('Unknown project config\n"onnxruntime-node-install"');
    expect(readme).toContain('ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js');
    // The line the warning is about stays: it is what skips the CUDA EP's download.
    expect(fs.readFileSync(join(ROOT, '.npmrc'), 'utf8').split('\n')).toContain('onnxruntime-node-install=skip');
  });

  it('no command file of src/cli imports another (issue 22 item 3)', () => {
    const commands = ['generate', 'compare', 'bench', 'dashboard', 'serve'];
    for (const c of commands) {
      const source = fs.readFileSync(join(ROOT, 'src', 'cli', `${c}.ts`), 'utf8');
      const imports = [...source.matchAll(/from '(\.\/[\w-]+)\.js'/g)].map((m) => m[1]!.slice(2));
      expect(imports.filter((i) => [...commands, 'main'].includes(i)), `${c}.ts imports`).toEqual([]);
    }
  });

  it('npx fusegen works in a clone that was never built: the bin builds dist/ first', () => {
    const clone = tmpDir('clone');
    for (const d of ['src', 'bench', 'compare', 'serve', 'bin']) fs.cpSync(join(ROOT, d), join(clone, d), { recursive: true });
    fs.mkdirSync(join(clone, 'fixtures'));
    for (const f of fs.readdirSync(join(ROOT, 'fixtures')).filter((f) => f.endsWith('.ts'))) fs.copyFileSync(join(ROOT, 'fixtures', f), join(clone, 'fixtures', f));
    for (const f of ['package.json', 'tsconfig.json']) fs.copyFileSync(join(ROOT, f), join(clone, f));
    fs.symlinkSync(join(ROOT, 'node_modules'), join(clone, 'node_modules'));
    expect(fs.existsSync(join(clone, 'dist'))).toBe(false);
    // A clean environment: no npm_* variables from the npm that runs the tests (they would point npx at this repository).
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
    const p = spawnSync('npm', ['exec', '--offline', '--cache', join(clone, '.npm-cache'), '--', 'fusegen', 'generate', '--help'], { cwd: clone, env, encoding: 'utf8', timeout: 110_000 });
    expect(p.status, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/^Usage: fusegen generate \[options\]/);
    expect(p.stderr).toContain('fusegen: building dist/ first');
    expect(fs.existsSync(join(clone, 'dist', 'src', 'cli', 'main.js'))).toBe(true);
    // Built once: the next run goes straight to the CLI.
    const again = spawnSync(process.execPath, [join(clone, 'bin', 'fusegen.js'), 'generate', '--batch_size', '0'], { cwd: clone, env, encoding: 'utf8' });
    expect(again.stderr.trim().split('\n')).toEqual(['error: --batch_size: must be at least 1, got 0']);
    expect(again.status).toBe(2);
  }, 120_000);
});
