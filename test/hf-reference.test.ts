/**
 * `--reference hf`: the HfPipeline class and the CLI over its Python child. CI has no torch, so
 * the child is test/stubs/hf_stub.py (the same protocol, deterministic fake outputs) wherever
 * the test is about the Node side: framing, id matching, error lines, deaths, timeouts,
 * shutdown, the CLI wiring and the report. The shipped hf_reference.py itself runs where the
 * test is about a Python without torch or transformers (its first answer).
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { openCheckpoint, type Checkpoint } from '../src/arch/checkpoint.js';
import { main } from '../src/cli/main.js';
import { UnsupportedError } from '../src/errors.js';
import { HfPipeline, hfReferenceScript, type HfOptions } from '../src/pipeline/hf.js';
import type { CompareReport } from '../src/report/compare-report.js';
import { validateCompareReport } from '../src/report/compare-validate.js';

const ROOT = join(import.meta.dirname, '..');
const STUB = join(import.meta.dirname, 'stubs', 'hf_stub.py');
const BIN = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const STUB_ENV = ['FUSEGEN_STUB_STARTUP', 'FUSEGEN_STUB_REVERSE', 'FUSEGEN_STUB_FAIL_OP', 'FUSEGEN_STUB_HANG_OP', 'FUSEGEN_STUB_MARK', 'FUSEGEN_STUB_IGNORE_SHUTDOWN', 'FUSEGEN_STUB_PIDFILE', 'FUSEGEN_STUB_VOCAB'];
const HF_ENV = ['FUSEGEN_PYTHON', 'FUSEGEN_HF_REFERENCE_SCRIPT', 'FUSEGEN_HF_DEVICE', 'LOCAL_RANK', 'WORLD_SIZE', ...STUB_ENV];

let ckpt: Checkpoint;
beforeAll(() => {
  ckpt = openCheckpoint(tinyModelDir('opt'));
});

const tmpDirs: string[] = [];
const pipes: HfPipeline[] = [];
afterEach(async () => {
  for (const p of pipes.splice(0)) await p.dispose();
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'fusegen-hf-'));
  tmpDirs.push(d);
  return d;
}

/** Runs `fn` with these variables set and every other variable the child or CLI reads cleared. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = new Map(HF_ENV.concat(Object.keys(vars)).map((k) => [k, process.env[k]]));
  for (const k of saved.keys()) delete process.env[k];
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

async function stubPipeline(vars: Record<string, string> = {}, o: Partial<HfOptions> = {}): Promise<HfPipeline> {
  const p = await withEnv(vars, () => HfPipeline.create(ckpt, { dtype: 'float32', maxTokens: 256, script: STUB, ...o }));
  pipes.push(p);
  return p;
}

/** The rejection of `p`, which must come within `ms` (a hang fails the test instead of timing it out). */
async function rejectionOf(p: Promise<unknown>, ms = 10_000): Promise<Error> {
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms: hung`)), ms));
  try {
    await Promise.race([p, timeout]);
  } catch (e) {
    if ((e as Error).message.endsWith('hung')) throw e;
    return e as Error;
  }
  throw new Error('expected a rejection, got a result');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return cond();
}

/** The stub's logit at (position p of row, vocab id v). */
const stubLogit = (row: number[], p: number, v: number) => (row[p]! % 7) + p / 2 + v / 4;

/** An interpreter that sees only the standard library (no site-packages), plus `extraPath`. */
function isolatedPython(extraPath?: string): string {
  const dir = tmp();
  const wrapper = join(dir, 'python-no-torch');
  writeFileSync(wrapper, `#!/bin/sh\n${extraPath ? `PYTHONPATH='${extraPath}' ` : 'PYTHONPATH= '}exec python3 -S "$@"\n`);
  chmodSync(wrapper, 0o755);
  return wrapper;
}

function fakePackage(dir: string, name: string, body: string): void {
  mkdirSync(join(dir, name), { recursive: true });
  writeFileSync(join(dir, name, '__init__.py'), body);
}

describe('HfPipeline over the line protocol (stub child)', () => {
  it('generates and tokenizes through the child: its ids, texts, top-k and timings', async () => {
    const pipe = await stubPipeline();
    expect(pipe.info.name).toBe('hf');
    expect(pipe.info.executionProviders).toEqual(['pytorch-cpu']);
    expect(pipe.runtime).toEqual({ python: '3.0-stub', torch: '0.0-stub', transformers: '0.0-stub', device: 'cpu', deviceName: 'stub cpu' });
    const r = await pipe.generate({ prompts: ['one two', 'three four five'], maxNewTokens: 4, doSample: false, recordTopK: 3 });
    const words = (p: string) => [2, ...p.split(' ').map((w) => 3 + ([...w].reduce((a, c) => a + c.codePointAt(0)!, 0) % 40))];
    expect(r.sequences.map((s) => s.promptIds)).toEqual([words('one two'), words('three four five')]);
    const last = words('three four five').at(-1)!;
    expect(r.sequences[1]!.newIds).toEqual([1, 2, 3, 4].map((i) => last + i));
    expect(r.sequences[1]!.topK![2]).toEqual({ ids: [last + 3, last + 4, last + 5], values: [10, 9, 8] });
    expect(r.sequences[0]!.prompt).toBe('one two');
    expect(r.sequences[0]!.text).toMatch(/^stub /);
    expect(r.promptLength).toBe(4);
    expect(r.timings.decodeStepMs).toEqual([0.5, 0.5, 0.5]);
  });

  it('validate() and generate() refuse a request past --max_tokens before generating', async () => {
    const pipe = await stubPipeline({}, { maxTokens: 8 });
    const request = { prompts: ['This is a test'], maxNewTokens: 20, doSample: false };
    expect(() => pipe.validate(request)).toThrow(/^--max_tokens: /);
    await expect(pipe.generate(request)).rejects.toThrow(/^--max_tokens: .*--max_new_tokens 20 needs \d+ tokens/);
    expect(() => pipe.validate({ ...request, maxNewTokens: 2 })).not.toThrow();
  });

  it('framing: megabyte score answers over many chunks, several requests in flight answered last first, each matched by id', async () => {
    const vocab = 50_000;
    const per = 10; // positions per score request
    const pipe = await stubPipeline({ FUSEGEN_STUB_VOCAB: String(vocab), FUSEGEN_STUB_REVERSE: '4' }, { scoreChunkBytes: per * vocab * 4 });
    // Row A: 30 positions from 0 (three requests); row B: 10 positions from 12 (one). Four requests
    // in flight; the stub holds them all and answers the last first, each answer 2 MB of logits.
    const a = Array.from({ length: 30 }, (_, i) => (i * 13) % 97);
    const b = Array.from({ length: 22 }, (_, i) => (i * 5) % 89);
    const [ra, rb] = await pipe.score([a, b], [0, 12]);
    expect(ra).toHaveLength(30);
    expect(rb).toHaveLength(10);
    for (const [row, from, got] of [[a, 0, ra!], [b, 12, rb!]] as const) {
      got.forEach((logits, i) => {
        const p = from + i;
        expect(logits).toHaveLength(vocab);
        for (const v of [0, 1, 4321, vocab - 1]) expect(logits[v], `row position ${p}, id ${v}`).toBe(stubLogit(row, p, v));
      });
    }
  });

  it("an error line from the child rejects that request with its first line; the channel stays usable", async () => {
    const pipe = await stubPipeline({ FUSEGEN_STUB_FAIL_OP: 'score' });
    const e = await rejectionOf(pipe.score([[5, 6, 7]], [0]));
    expect(e.message).toBe('--reference: hf: score failed in Python: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB');
    const r = await pipe.generate({ prompts: ['still here'], maxNewTokens: 2, doSample: false });
    expect(r.sequences[0]!.newIds).toHaveLength(2);
  });

  it('a child killed mid-request: the pending call rejects with one line naming the signal, later calls too, no hang', async () => {
    const mark = join(tmp(), 'hanging');
    const pipe = await stubPipeline({ FUSEGEN_STUB_HANG_OP: 'generate', FUSEGEN_STUB_MARK: mark });
    const pending = pipe.generate({ prompts: ['a b c'], maxNewTokens: 3, doSample: false });
    expect(await until(() => existsSync(mark), 10_000), 'the stub got the generate request').toBe(true);
    const pid = pipe.pid!;
    process.kill(pid, 'SIGKILL');
    const e = await rejectionOf(pending);
    expect(e.message).not.toContain('\n');
    expect(e.message).toMatch(new RegExp(`^--reference: hf: the Python reference \\(.*, pid ${pid}\\) was killed by SIGKILL during generate \\(last stderr: stub: hanging in generate\\)$`));
    const later = await rejectionOf(pipe.score([[1, 2]], [0]), 1000);
    expect(later.message).toBe(e.message);
    await pipe.dispose();
  });

  it('startup is time-bound: a child that never gets ready is killed and named', async () => {
    const pidfile = join(tmp(), 'pid');
    const t0 = performance.now();
    const e = await rejectionOf(stubPipeline({ FUSEGEN_STUB_STARTUP: 'stall', FUSEGEN_STUB_PIDFILE: pidfile }, { startupTimeoutMs: 1500 }));
    expect(performance.now() - t0).toBeLessThan(8000);
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e.message).toMatch(/^--reference: hf: the Python reference \(.*\) was not ready within 1\.5 s \(still loading the model\)$/);
    const pid = Number(readFileSync(pidfile, 'utf8'));
    expect(await until(() => !alive(pid), 5000), `stub ${pid} was killed`).toBe(true);
  });

  it('a child that exits before it is ready: one line with its exit code and last stderr line', async () => {
    const e = await rejectionOf(stubPipeline({ FUSEGEN_STUB_STARTUP: 'exit' }));
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e.message).toMatch(/^--reference: hf: the Python reference \(python3, pid \d+\) exited with code 7 before it was ready \(last stderr: RuntimeError: stub cannot load the model\)$/);
  });

  it('dispose() shuts the child down; one that ignores shutdown is killed after the grace period', async () => {
    const dir = tmp();
    const polite = await stubPipeline({ FUSEGEN_STUB_PIDFILE: join(dir, 'a') });
    const pidA = Number(readFileSync(join(dir, 'a'), 'utf8'));
    await polite.dispose();
    expect(alive(pidA)).toBe(false);

    const stubborn = await stubPipeline({ FUSEGEN_STUB_PIDFILE: join(dir, 'b'), FUSEGEN_STUB_IGNORE_SHUTDOWN: '1' }, { shutdownGraceMs: 300 });
    const pidB = Number(readFileSync(join(dir, 'b'), 'utf8'));
    const t0 = performance.now();
    await stubborn.dispose();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(250);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(alive(pidB)).toBe(false);
    expect((await rejectionOf(stubborn.score([[1, 2]], [0]), 1000)).message).toBe('--reference: hf: the pipeline was disposed');
  });
});

describe('HfPipeline without Python, torch or transformers (the shipped script)', () => {
  it('finds the shipped script beside its source', () => {
    expect(hfReferenceScript()).toBe(join(ROOT, 'src', 'pipeline', 'hf_reference.py'));
  });

  it('an interpreter that does not exist: one line naming it and FUSEGEN_PYTHON', async () => {
    const e = await rejectionOf(withEnv({ FUSEGEN_PYTHON: '/nonexistent/python3' }, () => HfPipeline.create(ckpt, { dtype: 'float32', maxTokens: 64 })));
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e.message).toBe('--reference: hf needs Python with torch and transformers: /nonexistent/python3 was not found (set FUSEGEN_PYTHON to such an interpreter)');
  });

  it('a Python without torch and transformers: one line naming both', async () => {
    const py = isolatedPython();
    const e = await rejectionOf(withEnv({ FUSEGEN_PYTHON: py }, () => HfPipeline.create(ckpt, { dtype: 'float32', maxTokens: 64 })));
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e.message).toMatch(new RegExp(`^--reference: hf needs torch and transformers: ${py} \\(Python 3\\.\\d+\\.\\d+\\) cannot import torch or transformers \\(install them there, or set FUSEGEN_PYTHON to an interpreter that has them\\)$`));
  });

  it('a Python with torch but without transformers: one line naming transformers alone', async () => {
    const site = tmp();
    fakePackage(site, 'torch', '__version__ = "0.0-fake"\n');
    const e = await rejectionOf(withEnv({ FUSEGEN_PYTHON: isolatedPython(site) }, () => HfPipeline.create(ckpt, { dtype: 'float32', maxTokens: 64 })));
    expect(e.message).toMatch(/\) cannot import transformers \(install them there/);
  });

  it('torch present but broken: the import error, in one line', async () => {
    const site = tmp();
    fakePackage(site, 'torch', 'raise ImportError("libcudart.so.12: cannot open shared object file")\n');
    fakePackage(site, 'transformers', '__version__ = "0.0-fake"\n');
    const e = await rejectionOf(withEnv({ FUSEGEN_PYTHON: isolatedPython(site) }, () => HfPipeline.create(ckpt, { dtype: 'float32', maxTokens: 64 })));
    expect(e.message).toBe('--reference: hf: importing torch/transformers failed: ImportError: libcudart.so.12: cannot open shared object file');
  });

  it('loads the model with eager attention (SDPA drops Gemma 2\'s attention soft cap) in the asked dtype, offline', async () => {
    // A torch and a transformers just deep enough to reach from_pretrained, which reports its arguments.
    const site = tmp();
    fakePackage(site, 'torch', [
      'from types import SimpleNamespace as NS',
      '__version__ = "0.0-fake"',
      'float32, float16, bfloat16 = "f32", "f16", "bf16"',
      'cuda = NS(is_available=lambda: False, matmul=NS(allow_tf32=True))',
      'backends = NS(cuda=NS(matmul=NS(allow_tf32=True)), cudnn=NS(allow_tf32=True))',
      '',
    ].join('\n'));
    fakePackage(site, 'transformers', [
      '__version__ = "0.0-fake"',
      'class AutoTokenizer:',
      '    @staticmethod',
      '    def from_pretrained(path, **kw):',
      '        return type("Tok", (), {"pad_token": "x", "eos_token": "x"})()',
      'class AutoModelForCausalLM:',
      '    @staticmethod',
      '    def from_pretrained(path, **kw):',
      '        raise RuntimeError("asked " + ", ".join(f"{k}={v}" for k, v in sorted(kw.items())))',
      '',
    ].join('\n'));
    const e = await rejectionOf(withEnv({ FUSEGEN_PYTHON: isolatedPython(site) }, () => HfPipeline.create(ckpt, { dtype: 'float16', maxTokens: 64 })));
    expect(e.message).toMatch(/cannot load .*: RuntimeError: asked attn_implementation=eager, dtype=f16, local_files_only=True$/);
  });

  it('refuses the dtypes PyTorch is not asked to run', async () => {
    await expect(HfPipeline.create(ckpt, { dtype: 'int8', maxTokens: 64, script: STUB })).rejects.toThrow('--dtype: int8 is not available for --reference hf (float32, float16 or bfloat16)');
  });
});

describe('the CLI with --reference', () => {
  async function cli(args: string[], env: Record<string, string> = {}) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await withEnv(env, () => main(args, { out: (l) => out.push(l), err: (l) => err.push(l) }));
    return { code, out, err };
  }

  it.each([
    [['compare', '--reference', 'bogus'], 'error: --reference: expected one of transformersjs, hf, got "bogus"'],
    [['generate', '--reference', 'hf', '--greedy'], 'error: --reference: picks the library of the --hf_baseline pipeline: add --hf_baseline'],
    [['generate', '--hf_baseline', '--reference', 'hf', '--use_kernel'], 'error: --hf_baseline: runs the reference pipeline without kernel injection; drop --use_kernel or --hf_baseline'],
  ])('%j is refused with one line, exit 2', async (args, line) => {
    const r = await cli([...args, '--model', tinyModelDir('opt')]);
    expect(r.out).toEqual([]);
    expect(r.err).toEqual([line]);
    expect(r.code).toBe(2);
  });

  it('compare --reference hf without Python: one line, exit 2, no report', async () => {
    const reports = tmp();
    const r = await cli(['compare', '--model', tinyModelDir('opt'), '--reference', 'hf', '--report_dir', reports], { FUSEGEN_PYTHON: '/nonexistent/python3' });
    expect(r.out).toEqual([]);
    expect(r.err).toEqual(['error: --reference: hf needs Python with torch and transformers: /nonexistent/python3 was not found (set FUSEGEN_PYTHON to such an interpreter)']);
    expect(r.code).toBe(2);
    expect(readdirSync(reports)).toEqual([]);
  });

  it('the built binary finds the shipped script from dist/: a Python without torch gets the one line, exit 2, empty stdout', () => {
    expect(existsSync(BIN), `${BIN} is missing: build first (npm run -s build)`).toBe(true);
    const env: NodeJS.ProcessEnv = { ...process.env, FUSEGEN_PYTHON: isolatedPython() };
    for (const k of HF_ENV.filter((k) => k !== 'FUSEGEN_PYTHON')) delete env[k];
    const p = spawnSync(process.execPath, [BIN, 'generate', '--hf_baseline', '--reference', 'hf', '--model', tinyModelDir('opt'), '--greedy'], { cwd: tmp(), env, encoding: 'utf8', timeout: 110_000 });
    expect(p.stdout).toBe('');
    expect(p.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^error: --reference: hf needs torch and transformers: .* cannot import torch or transformers \(/)]);
    expect(p.status).toBe(2);
  });

  it("generate --hf_baseline --reference hf prints the child's text in the seed's format", async () => {
    const r = await cli(['generate', '--hf_baseline', '--reference', 'hf', '--model', tinyModelDir('opt'), '--greedy', '--max_new_tokens', '3'], { FUSEGEN_HF_REFERENCE_SCRIPT: STUB });
    expect(r.err).toEqual([]);
    expect(r.code).toBe(0);
    const text = r.out.join('\n');
    expect(text).toMatch(/^initialization time: /);
    expect(text).toContain('\nin=DeepSpeed is a machine learning framework\nout=stub 2 ');
    expect(r.out.at(-1)).toBe('Done !');
  });

  it('compare --reference hf records the reference in the JSON report, the printed summary and the HTML page', async () => {
    const reports = tmp();
    const r = await cli(['compare', '--model', tinyModelDir('opt'), '--reference', 'hf', '--min_length', '1', '--max_length', '24', '--speed_repeats', '1', '--report_dir', reports], { FUSEGEN_HF_REFERENCE_SCRIPT: STUB });
    expect(r.err).toEqual([]);
    expect(r.out).toContain('reference: Hugging Face transformers 0.0-stub (torch 0.0-stub, Python 3.0-stub, cpu: stub cpu)');
    const json = readdirSync(reports).find((f) => f.endsWith('-compare.json'))!;
    const report = JSON.parse(readFileSync(join(reports, json), 'utf8')) as CompareReport;
    expect(() => validateCompareReport(report)).not.toThrow();
    expect(report.settings.reference).toBe('hf');
    expect(report.environment.hf).toEqual({ python: '3.0-stub', torch: '0.0-stub', transformers: '0.0-stub', device: 'cpu', deviceName: 'stub cpu' });
    expect(report.environment.executionProviders['reference']).toEqual(['pytorch-cpu']);
    expect(report.speed?.reference.pipeline).toBe('hf-pytorch');
    // The reference's tokens are the child's: the stub counts up from the last prompt id.
    const ids = report.prompts[0]!.reference.ids;
    expect(ids.slice(1).map((t, i) => t - ids[i]!)).toEqual(new Array(ids.length - 1).fill(1));
    const html = readFileSync(join(reports, json.replace(/\.json$/, '.html')), 'utf8');
    expect(html).toContain('<span class="reference-lib">Hugging Face transformers 0.0-stub (torch 0.0-stub, Python 3.0-stub, cpu: stub cpu)</span>');

    // A report that names hf without the Python side's versions is not valid.
    const { hf: _, ...envWithoutHf } = report.environment;
    expect(() => validateCompareReport({ ...report, environment: envWithoutHf })).toThrow('environment.hf: is required when settings.reference is "hf"');
  });

  it('compare without --reference runs transformers.js and says so', async () => {
    const reports = tmp();
    const r = await cli(['compare', '--model', tinyModelDir('opt'), '--min_length', '1', '--max_length', '16', '--speed_repeats', '1', '--report_dir', reports]);
    expect(r.code, [...r.err, ...r.out].join('\n')).toBe(0);
    expect(r.out.find((l) => l.startsWith('reference: '))).toMatch(/^reference: transformers\.js \S+ on fusegen's plain ONNX export$/);
    const report = JSON.parse(readFileSync(join(reports, readdirSync(reports).find((f) => f.endsWith('-compare.json'))!), 'utf8')) as CompareReport;
    expect(report.settings.reference).toBe('transformersjs');
    expect(report.environment.hf).toBeUndefined();
  });
});
