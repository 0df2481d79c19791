/** A second Ctrl-C during compare stops at once and still writes the prompts that finished (issue 23 item 5). */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import type { CompareReport } from '../src/report/compare-report.js';
import { validateCompareReport } from '../src/report/compare-validate.js';
import { interruptTwice } from './helpers.js';

it('a second Ctrl-C stops compare at once and writes the finished prompts, marked interrupted (child process)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fusegen-compare-sigint-'));
  // 43 prompts of 600-1000 tokens each: far longer than the signals take.
  const args = ['compare', '--model', tinyModelDir('opt'), '--use_kernel', '--num_inputs', '43', '--min_length', '600', '--max_length', '1000', '--print_outputs', '--report_dir', dir];
  // Ctrl-C once the first prompt finished.
  const { code, stderr, secondMs } = await interruptTwice(args, { stream: 'stdout', re: /The similarity ratio is/ });
  expect(code).toBe(130);
  expect(secondMs).toBeLessThan(10_000);
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
