/** The README's table of supported checkpoints is the one the specs generate (src/arch/supported.ts). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { supportedTable } from '../src/arch/supported.js';

it('README "Supported checkpoints" equals the table generated from the specs', () => {
  const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
  const m = /<!-- supported-table:begin -->\n([\s\S]*?)\n<!-- supported-table:end -->/.exec(readme);
  expect(m, 'the README has the table markers').not.toBeNull();
  expect(m![1]).toBe(supportedTable());
});
