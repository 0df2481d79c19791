/** Runs once before all test files: fresh tiny fixtures and a private export cache. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TINY_ARCHS, tinyModelDir, writeTinyCheckpoint } from '../fixtures/checkpoints.js';

export default function setup(): void {
  for (const arch of TINY_ARCHS) writeTinyCheckpoint(tinyModelDir(arch), arch, { force: true });
  process.env['FUSEGEN_CACHE'] = mkdtempSync(join(tmpdir(), 'fusegen-test-cache-'));
}
