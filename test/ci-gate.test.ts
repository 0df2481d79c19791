/**
 * The gate in CI (issue 29 item 9): the commands of examples/ci/github-actions.yml and
 * examples/ci/gitlab-ci.yml, run through the CLI on the embedded tiny OPT. The YAML itself does
 * not run here; its `run:` / `script:` blocks marked `# fusegen-gate: <name>` are read out of the
 * files (no YAML library: a block scalar is its indented lines) and run by bash as the runners
 * run them (-e, pipefail), in a scratch workspace, with `npx` a shim that runs the built CLI (no
 * npm, no network). A first run on "main" saves the baseline, a pull request's run restores it and
 * passes, and one against a baseline a thousand times faster fails both gates, with the summaries
 * on the page and in reports/ all the same. Then the output places are refused before any work,
 * and a second Ctrl-C's partial report still gets its summary.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { main } from '../src/cli/main.js';
import type { ActionBenchmarkEntry } from '../src/report/action-benchmark.js';
import type { BenchReport } from '../src/report/bench-report.js';
import type { CompareReport } from '../src/report/compare-report.js';
import { interruptTwice } from './helpers.js';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const GITHUB = join(ROOT, 'examples', 'ci', 'github-actions.yml');
const GITLAB = join(ROOT, 'examples', 'ci', 'gitlab-ci.yml');

/**
 * The block scalars (`run: |`, `- |`) of a YAML file whose first line is `# fusegen-gate: <name>`,
 * by name, dedented: what the runner hands to the shell.
 */
function gateBlocks(file: string): Map<string, string> {
  const lines = readFileSync(file, 'utf8').split('\n');
  const blocks = new Map<string, string>();
  for (let i = 0; i < lines.length; i++) {
    const head = /^(\s*)(?:- )?(?:[\w-]+: )?\|\s*$/.exec(lines[i]!);
    if (!head) continue;
    const keyIndent = head[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j]!;
      if (l.trim() !== '' && l.length - l.trimStart().length <= keyIndent) break;
      body.push(l);
    }
    while (body.length && body.at(-1)!.trim() === '') body.pop();
    const indent = Math.min(...body.filter((l) => l.trim()).map((l) => l.length - l.trimStart().length));
    const text = body.map((l) => l.slice(indent)).join('\n');
    const name = /^# fusegen-gate: (\S+)/.exec(text)?.[1];
    if (name) {
      expect(blocks.has(name), `${file}: two blocks named ${name}`).toBe(false);
      blocks.set(name, `${text}\n`);
    }
    i = j - 1;
  }
  return blocks;
}

/** A scratch CI workspace with `npx fusegen` running the built CLI. */
function workspace(label: string): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = mkdtempSync(join(tmpdir(), `fusegen-ci-${label}-`));
  const bin = join(dir, '.shim');
  mkdirSync(bin);
  writeFileSync(join(bin, 'npx'), `#!/bin/sh\n# npx fusegen ARGS, offline: the built CLI\n[ "$1" = fusegen ] || { echo "npx shim: only fusegen, got $1" >&2; exit 127; }\nshift\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} "$@"\n`);
  chmodSync(join(bin, 'npx'), 0o755);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${bin}:${process.env['PATH'] ?? ''}`,
    // The workflow's knobs at their defaults, but for the allowed regression: the baseline is this
    // machine's own run, timed beside other tests on 2 cores; a planted 1000x slowdown still fails.
    FUSEGEN_COMPARE_ARGS: '',
    FUSEGEN_BENCH_ARGS: '',
    FUSEGEN_MAX_REGRESSION: '99',
    GITHUB_STEP_SUMMARY: join(dir, 'step-summary.md'),
  };
  writeFileSync(env['GITHUB_STEP_SUMMARY']!, ''); // the runner creates it empty
  return { dir, env };
}

function runBlock(block: string, ws: { dir: string; env: NodeJS.ProcessEnv }): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', block], { cwd: ws.dir, env: ws.env, encoding: 'utf8', timeout: 150_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const read = (dir: string, file: string) => readFileSync(join(dir, file), 'utf8');
const latest = (dir: string, suffix: string) => readdirSync(join(dir, 'reports')).filter((f) => f.endsWith(suffix)).sort().at(-1)!;

/** github-action-benchmark's customSmallerIsBetter: [{name, unit, value, range?, extra?}], names unique. */
function checkActionBenchmark(text: string, report: BenchReport): ActionBenchmarkEntry[] {
  const entries = JSON.parse(text) as ActionBenchmarkEntry[];
  expect(Array.isArray(entries)).toBe(true);
  expect(entries).toHaveLength(report.rows.length * 2);
  for (const e of entries) {
    expect(Object.keys(e).filter((k) => !['name', 'unit', 'value', 'range', 'extra'].includes(k))).toEqual([]);
    expect(typeof e.name).toBe('string');
    expect(e.unit).toBe('ms');
    expect(Number.isFinite(e.value) && e.value > 0).toBe(true);
    expect(e.range).toMatch(/^± \d+\.\d+$/);
    expect(typeof e.extra).toBe('string');
  }
  expect(new Set(entries.map((e) => e.name)).size).toBe(entries.length);
  for (const row of report.rows) {
    const tpot = entries.find((e) => e.name === `${report.model.modelType} ${report.device} ${report.dtype} ${row.pipeline} b${row.batch} p${row.promptLength} time per output token`);
    expect(tpot?.value).toBe(row.tpotMs.median);
  }
  return entries;
}

describe('examples/ci: the workflow files', () => {
  it('GitHub and GitLab run the same fusegen commands, every one of them in a block the tests run, with no CI expression inside', () => {
    const gh = gateBlocks(GITHUB);
    const gl = gateBlocks(GITLAB);
    expect([...gh.keys()].sort()).toEqual(['bench', 'compare', 'save-baseline']);
    expect([...gl.keys()].sort()).toEqual(['bench', 'compare', 'restore-bench', 'restore-compare', 'save-bench', 'save-compare']);
    expect(gl.get('compare')).toBe(gh.get('compare'));
    expect(gl.get('bench')).toBe(gh.get('bench'));
    // GitLab saves per job what GitHub saves in one step.
    const saved = gh.get('save-baseline')!.split('\n');
    for (const name of ['save-compare', 'save-bench']) for (const l of gl.get(name)!.split('\n').slice(1)) expect(saved).toContain(l);
    // GitLab's restores fetch what compare and bench read.
    expect(gl.get('restore-compare')).toContain('--output fusegen-baseline/compare.json');
    expect(gl.get('restore-bench')).toContain('--output fusegen-baseline/bench.json');
    for (const [file, blocks] of [[GITHUB, gh], [GITLAB, gl]] as const) {
      const all = readFileSync(file, 'utf8');
      const inBlocks = [...blocks.values()].join('');
      expect(all.split('npx fusegen').length, file).toBe(inBlocks.split('npx fusegen').length);
      expect(inBlocks).not.toContain('${{');
    }
    // The workflow's knobs are declared where the blocks read them.
    for (const v of ['FUSEGEN_MAX_REGRESSION', 'FUSEGEN_COMPARE_ARGS', 'FUSEGEN_BENCH_ARGS']) {
      expect(readFileSync(GITHUB, 'utf8')).toMatch(new RegExp(`^  ${v}: '[^']*'$`, 'm'));
      expect(readFileSync(GITLAB, 'utf8')).toMatch(new RegExp(`^  ${v}: "[^"]*"$`, 'm'));
    }
    // github-action-benchmark reads the file bench writes.
    expect(readFileSync(GITHUB, 'utf8')).toContain('output-file-path: reports/benchmark.json');
    expect(gh.get('bench')).toContain('--benchmark_json reports/benchmark.json');
  });

  it('main saves a baseline; a pull request restores it and passes; a regression against it fails both gates, with the summaries written (GitHub blocks, run through the CLI)', () => {
    const blocks = gateBlocks(GITHUB);
    const compare = blocks.get('compare')!;
    const bench = blocks.get('bench')!;
    const save = blocks.get('save-baseline')!;

    // 1. A push to main, no baseline yet (the cache restored nothing).
    const main1 = workspace('main');
    const c1 = runBlock(compare, main1);
    expect(c1.code, c1.stderr).toBe(0);
    expect(c1.stdout).toContain('gate: pass');
    const b1 = runBlock(bench, main1);
    expect(b1.code, b1.stderr).toBe(0);
    expect(runBlock(save, main1).code).toBe(0);
    const compareMd1 = read(main1.dir, 'reports/compare-summary.md');
    const benchMd1 = read(main1.dir, 'reports/bench-summary.md');
    expect(compareMd1.split('\n')[0]).toBe('## ✅ fusegen compare: pass');
    expect(compareMd1).not.toContain('Against the baseline');
    expect(compareMd1).toMatch(/\*\*Decode speedup\*\* \(median time per output token, reference over candidate\): (no significant difference \()?\d+\.\d\d×.*95% CI \d+\.\d\d–\d+\.\d\d×\)/);
    expect(benchMd1.split('\n')[0]).toBe('## fusegen bench: done (no --baseline, no gate)');
    // Each step appended its summary to the page, the same text as in reports/.
    expect(read(main1.dir, 'step-summary.md')).toBe(`\n${compareMd1}\n${benchMd1}`);
    expect(compareMd1).toContain(`Reports: ${latest(main1.dir, '-compare.json')}, ${latest(main1.dir, '-compare.html')}`);
    const benchReport1 = JSON.parse(read(main1.dir, `reports/${latest(main1.dir, '-bench.json')}`)) as BenchReport;
    checkActionBenchmark(read(main1.dir, 'reports/benchmark.json'), benchReport1);
    // The saved baseline is this run's reports.
    expect(read(main1.dir, 'fusegen-baseline/compare.json')).toBe(read(main1.dir, `reports/${latest(main1.dir, '-compare.json')}`));
    expect(read(main1.dir, 'fusegen-baseline/bench.json')).toBe(read(main1.dir, `reports/${latest(main1.dir, '-bench.json')}`));

    // 2. A pull request: the cache restores main's baseline, which the same commands accept and hold.
    const pr = workspace('pr');
    cpSync(join(main1.dir, 'fusegen-baseline'), join(pr.dir, 'fusegen-baseline'), { recursive: true });
    const c2 = runBlock(compare, pr);
    expect(c2.code, c2.stderr + c2.stdout).toBe(0);
    expect(c2.stdout).toMatch(/^against the baseline: decode speed /m);
    const b2 = runBlock(bench, pr);
    expect(b2.code, b2.stderr + b2.stdout).toBe(0);
    const compareMd2 = read(pr.dir, 'reports/compare-summary.md');
    const benchMd2 = read(pr.dir, 'reports/bench-summary.md');
    expect(compareMd2.split('\n')[0]).toBe('## ✅ fusegen compare: pass');
    expect(compareMd2).toMatch(/\*\*Against the baseline\*\* \(fusegen-baseline\/compare\.json\): decode speed .*more than 99%: \*\*holds\*\*/);
    expect(benchMd2.split('\n')[0]).toBe('## ✅ fusegen bench: pass');
    expect(benchMd2).toContain('| against the baseline |');
    expect(benchMd2).not.toContain('### Regressions');
    expect(read(pr.dir, 'step-summary.md')).toBe(`\n${compareMd2}\n${benchMd2}`);

    // 3. A pull request that made decoding 1000x slower (a baseline 1000x faster): both gates fail
    // (exit 1), and the summaries say why: that is when they are read.
    const slow = workspace('regressed');
    mkdirSync(join(slow.dir, 'fusegen-baseline'));
    const cmp = JSON.parse(read(main1.dir, 'fusegen-baseline/compare.json')) as CompareReport;
    const cand = cmp.speed!.candidate;
    cmp.speed!.candidate = { ...cand, tpotMedianMs: cand.tpotMedianMs / 1000, samples: cand.samples!.map((s) => ({ ...s, decodeStepMs: s.decodeStepMs.map((ms) => ms / 1000) })) };
    writeFileSync(join(slow.dir, 'fusegen-baseline/compare.json'), JSON.stringify(cmp));
    const bch = JSON.parse(read(main1.dir, 'fusegen-baseline/bench.json')) as BenchReport;
    bch.rows = bch.rows.map((r) => ({ ...r, tpotMs: { ...r.tpotMs, median: r.tpotMs.median / 1000 }, samples: r.samples!.map((s) => ({ ...s, decodeStepMs: s.decodeStepMs.map((ms) => ms / 1000) })) }));
    writeFileSync(join(slow.dir, 'fusegen-baseline/bench.json'), JSON.stringify(bch));
    const c3 = runBlock(compare, slow);
    expect(c3.code, c3.stderr).toBe(1);
    expect(c3.stdout).toMatch(/^gate: FAIL/m);
    const b3 = runBlock(bench, slow);
    expect(b3.code, b3.stderr).toBe(1);
    const compareMd3 = read(slow.dir, 'reports/compare-summary.md');
    const benchMd3 = read(slow.dir, 'reports/bench-summary.md');
    expect(compareMd3.split('\n')[0]).toBe('## ❌ fusegen compare: FAIL');
    expect(compareMd3).toContain('### Why the gate failed');
    expect(compareMd3).toMatch(/^- decode speed is 99\.\d% below the baseline's .*a significant regression of more than 99%$/m);
    expect(compareMd3).toMatch(/\*\*Against the baseline\*\* \(fusegen-baseline\/compare\.json\): decode speed 0\.00× \(95% CI 0\.00–0\.00×\), 99\.\d% slower \(significant\).*\*\*regression\*\*/);
    expect(compareMd3).toContain('Every prompt matched the reference.'); // the verdicts held; speed failed
    expect(benchMd3.split('\n')[0]).toBe('## ❌ fusegen bench: FAIL');
    const regressions = benchMd3.slice(benchMd3.indexOf('### Regressions')).split('\n');
    for (const p of ['reference b1 p16', 'ort b1 p16']) expect(regressions.some((l) => new RegExp(`^\\| ${p} \\| \\d+\\.\\d{3} \\| \\d+\\.\\d{3} \\| 0\\.00× \\(95% CI 0\\.00–0\\.00×\\) \\| 99\\.\\d% \\|$`).test(l)), p).toBe(true);
    expect(read(slow.dir, 'step-summary.md')).toBe(`\n${compareMd3}\n${benchMd3}`);
    // The chart still gets the (slow) figures.
    checkActionBenchmark(read(slow.dir, 'reports/benchmark.json'), JSON.parse(read(slow.dir, `reports/${latest(slow.dir, '-bench.json')}`)) as BenchReport);
    // A failed run saves no baseline: the workflow's save step runs on success only (GitLab's after the command).
    expect(readFileSync(GITHUB, 'utf8')).toMatch(/if: \$\{\{ success\(\) && github\.event_name == 'push' && github\.ref == 'refs\/heads\/main' \}\}\n\s+run: \|\n\s+# fusegen-gate: save-baseline/);
  }, 600_000);
});

describe('summary and benchmark outputs: refused before any work', () => {
  async function cli(args: string[], stepSummary?: string) {
    const saved = process.env['GITHUB_STEP_SUMMARY'];
    if (stepSummary === undefined) delete process.env['GITHUB_STEP_SUMMARY'];
    else process.env['GITHUB_STEP_SUMMARY'] = stepSummary;
    try {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
      return { code, out, err };
    } finally {
      if (saved === undefined) delete process.env['GITHUB_STEP_SUMMARY'];
      else process.env['GITHUB_STEP_SUMMARY'] = saved;
    }
  }
  const scratch = () => mkdtempSync(join(tmpdir(), 'fusegen-ci-bad-'));

  it.each(['compare', 'bench'])('%s: a bad --summary_md, --benchmark_json or $GITHUB_STEP_SUMMARY is one line naming it, exit 2, nothing written', async (command) => {
    const dir = scratch();
    const reports = join(dir, 'reports');
    const aFile = join(dir, 'a-file');
    writeFileSync(aFile, 'x');
    const fifo = join(dir, 'a-fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const base = [command, '--model', tinyModelDir('opt'), '--report_dir', reports];
    const cases: Array<[string[], string | undefined, string]> = [
      [['--summary_md', dir], undefined, `error: --summary_md: ${dir}: is a directory, not a file`],
      [['--summary_md', `${dir}/`], undefined, `error: --summary_md: ${dir}/: names a directory, not a file`],
      [['--summary_md', join(aFile, 'summary.md')], undefined, `error: --summary_md: ${aFile}: is a file, not a directory`],
      [['--summary_md', fifo], undefined, `error: --summary_md: ${fifo}: is not a regular file`],
      [[], dir, `error: $GITHUB_STEP_SUMMARY (environment): ${dir}: is a directory, not a file`],
      [[], join(dir, 'missing', 'step.md'), `error: $GITHUB_STEP_SUMMARY (environment): ${join(dir, 'missing', 'step.md')}: cannot append to it (ENOENT: no such file or directory)`],
      ...(command === 'bench' ? ([[['--benchmark_json', `${join(dir, 'x.json')}/`], undefined, `error: --benchmark_json: ${join(dir, 'x.json')}/: names a directory, not a file`], [['--benchmark_json', '/proc/fusegen.json'], undefined, 'error: --benchmark_json: /proc: not writable']] as Array<[string[], string | undefined, string]>) : []),
    ];
    for (const [extra, step, says] of cases) {
      const r = await cli([...base, ...extra], step);
      expect(r.code, says).toBe(2);
      expect(r.out, says).toEqual([]);
      expect(r.err, says).toHaveLength(1);
      expect(r.err[0]!.startsWith(says), `${r.err[0]} vs ${says}`).toBe(true);
      expect(existsSync(reports) ? readdirSync(reports) : [], says).toEqual([]);
    }
    expect(readdirSync(dir).sort()).toEqual(['a-fifo', 'a-file', 'reports']);
  });

  it('a second Ctrl-C: bench and compare still write the summary of the partial report (child process)', async () => {
    const dir = scratch();
    const b = await interruptTwice(['bench', '--model', tinyModelDir('opt'), '--pipelines', 'ort', '--batch_sizes', '1,32', '--prompt_lengths', '4', '--max_new_tokens', '64', '--repeats', '100', '--report_dir', join(dir, 'b'), '--summary_md', join(dir, 'bench.md'), '--benchmark_json', join(dir, 'bench.json')], { stream: 'stderr', re: /\[2\/2\] ort batch 32 prompt 4/ });
    expect(b.code).toBe(130);
    const benchMd = readFileSync(join(dir, 'bench.md'), 'utf8');
    expect(benchMd.split('\n')[0]).toBe('## ⚠️ fusegen bench: interrupted');
    expect(benchMd).toContain('The table holds the 1 point that finished.');
    expect(benchMd.split('\n').filter((l) => /^\| ort \| \d+ \|/.test(l)).map((l) => l.split(' | ')[1])).toEqual(['1']);
    expect((JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8')) as ActionBenchmarkEntry[]).map((e) => e.name)).toEqual(['opt cpu float32 ort b1 p4 time per output token', 'opt cpu float32 ort b1 p4 time to first token']);

    const c = await interruptTwice(['compare', '--model', tinyModelDir('opt'), '--use_kernel', '--num_inputs', '43', '--min_length', '600', '--max_length', '1000', '--print_outputs', '--report_dir', join(dir, 'c'), '--summary_md', join(dir, 'compare.md')], { stream: 'stdout', re: /The similarity ratio is/ });
    expect(c.code).toBe(130);
    const compareMd = readFileSync(join(dir, 'compare.md'), 'utf8');
    expect(compareMd.split('\n')[0]).toBe('## ❌ fusegen compare: FAIL (interrupted)');
    expect(compareMd).toMatch(/^> \*\*Run interrupted\*\*: interrupted at once after \d+ of 43 prompts\./m);
    expect(compareMd).toContain(`Reports: ${readdirSync(join(dir, 'c')).find((f) => f.endsWith('-compare.json'))}`);
  }, 180_000);
});
