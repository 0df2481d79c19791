// Issue 29 item 2: the paired check (the candidate against the floor) for the WGSL engine's int8 on
// lavapipe: an identical copy and the first query weight x1.01, 2 prompts each at 200-300 tokens.
// What it printed is why compare reports the WGSL engine's paired figures without gating on them
// (compare/tolerance.ts PAIRED_POLICY).
//   npm run -s build && node scripts/paired-noise-wgsl.mjs llama,gpt2
import { rmSync } from 'node:fs';
import { runCompare } from '../dist/compare/run.js';
import { tinyModelDir } from '../dist/fixtures/checkpoints.js';
import { editedFixture, FIRST_QUERY, scaledFixture } from '../dist/fixtures/defects.js';

process.env.VK_ICD_FILENAMES ??= '/usr/share/vulkan/icd.d/lvp_icd.json';
for (const arch of (process.argv[2] ?? 'llama,gpt2').split(',')) {
  for (const [label, dir] of [['identical', editedFixture(arch, 'identical', () => {})], ['q x1.01', scaledFixture(arch, FIRST_QUERY, 1.01, 'defect').dir]]) {
    let live;
    const numInputs = 2;
    const r = await runCompare(
      { model: tinyModelDir(arch), candidateModel: dir, dtype: 'int8', device: 'webgpu', useKernel: true, kernels: 'wgsl', numInputs, minLength: 200, maxLength: 300, batchSize: 1, printOutputs: false, speedRepeats: 1, maxRegression: 10, command: [] },
      { out: () => {}, interrupted: () => (live ? live.prompts.length >= numInputs : false), live: (x) => (live = x) },
    );
    for (const p of r.prompts) console.log(JSON.stringify({ arch, label, verdict: p.verdict, floor: { u: p.floor?.unionMaxAbs, kl: p.floor?.maxKl }, paired: p.floor?.paired }));
    rmSync(dir, { recursive: true, force: true });
  }
}
process.exit(0);
