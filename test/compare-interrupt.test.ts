/** A second Ctrl-C during compare stops at once and still writes the prompts that finished (issue 23 item 5). */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import type { CompareReport } from '../src/report/compare-report.js';
import { validateCompareReport } from '../src/report/compare-validate.js';

it('a second Ctrl-C stops compare at once and writes the finished prompts, marked interrupted (child process)', async () => {
  const BIN = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'main.js');
  expect(existsSync(BIN), `${BIN} is missing: build first (npm run build)`).toBe(true);
  const dir = mkdtempSync(join(tmpdir(), 'fusegen-compare-sigint-'));
  // 43 prompts of 600-1000 tokens each: far longer than the signals take.
  const args = ['compare', '--model', tinyModelDir('opt'), '--use_kernel', '--num_inputs', '43', '--min_length', '600', '--max_length', '1000', '--print_outputs', '--report_dir', dir];
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const waitFor = (re: RegExp, text: () => string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (re.test(text())) resolve();
        else if (child.exitCode !== null) reject(new Error(`exited ${child.exitCode} before ${re}: ${stderr}`));
        else setTimeout(check, 20);
      };
      check();
    });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await waitFor(/The similarity ratio is/, () => stdout); // the first prompt finished
    child.kill('SIGINT');
    await waitFor(/interrupt: finishing the current step/, () => stderr);
    const t = performance.now();
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(performance.now() - t).toBeLessThan(10_000);
  } finally {
    child.kill('SIGKILL');
  }
  expect(stderr).toMatch(/interrupted: \d+ finished prompts? written to .*-compare\.json/);
  const names = readdirSync(dir);
  expect(names.filter((n) => n.startsWith('.'))).toEqual([]); // no temp files
  const json = names.find((n) => n.endsWith('-compare.json'))!;
  const report = JSON.parse(readFileSync(join(dir, json), 'utf8')) as CompareReport;
  validateCompareReport(report);
  expect(report.status).toBe('interrupted');
  expect(report.prompts.length).toBeGreaterThanOrEqual(1);
  expect(report.prompts.length).toBeLessThan(43);
  expect(report.gate.exitCode).toBe(1); // an interrupted run never passes the gate
});
