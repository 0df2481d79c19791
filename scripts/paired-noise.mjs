// Issue 29 item 2: the noise of the paired check (the candidate against the floor, both at the
// dtype) on identical copies: per fixture and prompt, the paired figures beside the floor's own
// (against the float32 reference), to size FLOOR_POLICY's paired bounds. ORT-injected on the CPU.
//   npm run -s build && node scripts/paired-noise.mjs [archs|all] [dtypes] [prompts] [accuracy_level]
import { rmSync } from 'node:fs';
import { runCompare } from '../dist/compare/run.js';
import { tinyModelDir, TINY_ARCHS } from '../dist/fixtures/checkpoints.js';
import { editedFixture } from '../dist/fixtures/defects.js';

const [archArg = 'all', dtypeArg = 'int8', n = '8', levelArg] = process.argv.slice(2);
for (const arch of archArg === 'all' ? TINY_ARCHS : archArg.split(',')) {
  const copy = editedFixture(arch, 'identical', () => {});
  for (const dtype of dtypeArg.split(',')) {
    let live;
    const numInputs = Number(n);
    const r = await runCompare(
      { model: tinyModelDir(arch), candidateModel: copy, dtype, device: 'cpu', useKernel: true, kernels: 'ort', numInputs, minLength: 200, maxLength: 300, batchSize: 1, ...(levelArg !== undefined && dtype !== 'float32' ? { accuracyLevel: Number(levelArg) } : {}), printOutputs: false, speedRepeats: 1, maxRegression: 10, command: [] },
      { out: () => {}, interrupted: () => (live ? live.prompts.length >= numInputs : false), live: (x) => (live = x) },
    );
    for (const p of r.prompts) console.log(JSON.stringify({ arch, dtype, prompt: p.index, verdict: p.verdict, floor: { unionMaxAbs: p.floor?.unionMaxAbs, maxKl: p.floor?.maxKl }, paired: p.floor?.paired }));
  }
  rmSync(copy, { recursive: true, force: true });
}
