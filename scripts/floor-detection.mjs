// Issue 29 item 2: int8/int4 verdicts judged against the reference's own quantization error (the
// floor, compare/tolerance.ts FLOOR_POLICY). For every tiny fixture: an identical copy (must pass)
// and planted defects in a copy of the candidate checkpoint (should fail), ORT-injected on the CPU.
// One JSON line per run: verdict counts, the candidate's and the floor's worst figures.
//
//   npm run -s build && node scripts/floor-detection.mjs [archs|all] [dtypes] [prompts] [defect prompts]
//   node scripts/floor-detection.mjs all int8,int4 8 4
import { rmSync } from 'node:fs';
import { runCompare } from '../dist/compare/run.js';
import { tinyModelDir, TINY_ARCHS } from '../dist/fixtures/checkpoints.js';
import { FIRST_MLP_OUT, FIRST_QUERY, scaledFixture } from '../dist/fixtures/defects.js';

const [archArg = 'all', dtypeArg = 'int8,int4', n = '8', nDefect = '4'] = process.argv.slice(2);
const archs = archArg === 'all' ? TINY_ARCHS : archArg.split(',');

const DEFECTS = [
  { name: 'query x1.05', match: FIRST_QUERY, factor: 1.05 },
  { name: 'query x1.02', match: FIRST_QUERY, factor: 1.02 },
  { name: 'mlp out x1.05', match: FIRST_MLP_OUT, factor: 1.05 },
];

const worst = (p, key) => Math.max(p.logits?.prefill[key] ?? 0, p.logits?.decode[key] ?? 0);
for (const arch of archs) {
  for (const dtype of dtypeArg.split(',')) {
    for (const defect of [undefined, ...DEFECTS]) {
      const copy = defect ? scaledFixture(arch, defect.match, defect.factor, 'defect') : undefined;
      const numInputs = Number(defect ? nDefect : n);
      let live;
      const r = await runCompare(
        { model: tinyModelDir(arch), ...(copy ? { candidateModel: copy.dir } : {}), dtype, device: 'cpu', useKernel: true, kernels: 'ort', numInputs, minLength: 200, maxLength: 300, batchSize: 1, printOutputs: false, speedRepeats: 1, maxRegression: 10, command: [] },
        { out: () => {}, interrupted: () => (live ? live.prompts.length >= numInputs : false), live: (x) => (live = x) },
      );
      if (copy) rmSync(copy.dir, { recursive: true, force: true });
      const p = r.prompts;
      console.log(JSON.stringify({
        arch, dtype, defect: defect ? `${defect.name} (${copy.tensor})` : 'identical copy', prompts: p.length, verdicts: r.summary,
        candidate: { unionMaxAbs: Math.max(...p.map((x) => worst(x, 'unionMaxAbs'))), maxKl: Math.max(...p.map((x) => worst(x, 'maxKl'))) },
        floor: { unionMaxAbs: Math.max(...p.map((x) => x.floor?.unionMaxAbs ?? NaN)), maxKl: Math.max(...p.map((x) => x.floor?.maxKl ?? NaN)), top1: Math.min(...p.map((x) => x.floor?.top1Agreement ?? NaN)) },
        reasons: [...new Set(p.filter((x) => x.verdict === 'mismatch').map((x) => x.reason.replace(/\d[\d.e+-]*/g, '#').slice(0, 90)))],
      }));
    }
  }
}
