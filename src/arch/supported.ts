/**
 * The README's "Supported checkpoints" table, generated from the specs so that it cannot drift
 * from what the code reads (a test holds the README to it). `node dist/src/arch/supported.js`
 * prints it.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { classify, COMMON_KEYS } from './config-keys.js';
import { specs } from './index.js';

function pipelines(lacks: readonly string[] | undefined): string {
  return `reference, plain and ORT-injected on cpu / webgpu / cuda; WGSL engine on webgpu${lacks ? ` (not ${lacks.join(', not ')})` : ''}`;
}

export function supportedTable(): string {
  const rows = specs.map((s) => {
    const keys = Object.values(s.configKeys).map(classify);
    const used = keys.filter((k) => k === 'used').length;
    return `| ${s.modelTypes.join(', ')} | ${s.support.variants.join('; ')} | ${pipelines(s.support.wgslLacks)} | ${s.support.refused.join('; ') || 'nothing of its own'} | ${used} used, ${keys.length - used} harmless or default-only |`;
  });
  const common = Object.values(COMMON_KEYS).map(classify);
  return [
    '| model_type | config variants read | pipelines | refused (one line, exit 2) | own config keys |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    '',
    `Every dtype (float32, float16, int8, int4; the reference float32 and float16) on every row. Beside each architecture's own keys, ${common.length} keys any Hugging Face config may carry are classed in \`src/arch/config-keys.ts\` (${common.filter((k) => k === 'used').length} used, ${common.filter((k) => k === 'harmless').length} harmless with a reason, ${common.filter((k) => k === 'default only').length} harmless only at their default); any other key is refused.`,
  ].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) console.log(supportedTable());
