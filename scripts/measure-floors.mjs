// The identical-copy floors behind compare/tolerance.ts (issue 29 item 1): compare on each tiny
// fixture with the reference checkpoint as its own candidate, per dtype, and the worst figures over
// every teacher-forced position, one JSON line per architecture and dtype.
//
//   npm run -s build && node scripts/measure-floors.mjs [archs|all] [dtypes] [prompts] [min,max] [device] [candidate]
//   node scripts/measure-floors.mjs all float32,float16,int8,int4 8 200,300 cpu injected
//
// candidate: injected (ORT kernel injection), plain (fusegen's loop on the plain graph) or wgsl.
import { runCompare } from '../dist/compare/run.js';
import { tinyModelDir, TINY_ARCHS } from '../dist/fixtures/checkpoints.js';

const [archArg = 'all', dtypeArg = 'float32,float16,int8,int4', n = '8', lens = '200,300', device = 'cpu', candidate = 'injected'] = process.argv.slice(2);
if (device === 'webgpu') process.env.VK_ICD_FILENAMES ??= '/usr/share/vulkan/icd.d/lvp_icd.json';
const archs = archArg === 'all' ? TINY_ARCHS : archArg.split(',');
const [minLength, maxLength] = lens.split(',').map(Number);
const numInputs = Number(n);
for (const arch of archs) {
  for (const dtype of dtypeArg.split(',')) {
    const t = performance.now();
    let live;
    const r = await runCompare(
      { model: tinyModelDir(arch), dtype, device, useKernel: candidate !== 'plain', kernels: candidate === 'wgsl' ? 'wgsl' : 'ort', numInputs, minLength, maxLength, batchSize: 1, printOutputs: false, speedRepeats: 1, maxRegression: 10, command: [] },
      // Stop once the prompts are judged: the timed runs are not needed here.
      { out: () => {}, interrupted: () => (live ? live.prompts.length >= numInputs : false), live: (x) => (live = x) },
    );
    const sections = r.prompts.filter((p) => p.logits).flatMap((p) => [p.logits.prefill, p.logits.decode]);
    const worst = (f) => Math.max(...sections.map(f));
    console.log(JSON.stringify({
      arch, dtype, device, candidate, prompts: r.prompts.length, seconds: +((performance.now() - t) / 1000).toFixed(1),
      verdicts: r.summary,
      refTop10MaxAbs: worst((s) => s.maxAbs), unionMaxAbs: worst((s) => s.unionMaxAbs), fullMaxAbs: worst((s) => s.fullMaxAbs),
      maxKl: worst((s) => s.maxKl), meanKl: worst((s) => s.meanKl), minTop1: Math.min(...sections.map((s) => s.top1Agreement)),
      notMatch: r.prompts.filter((p) => p.verdict !== 'match').map((p) => `${p.index} ${p.verdict}: ${p.reason.slice(0, 160)}`),
      // A floored dtype (compare/tolerance.ts FLOOR_POLICY): the floor's worst figures, and the candidate's worst share of its own prompt's floor.
      ...(r.prompts.some((p) => p.floor) ? {
        floor: {
          unionMaxAbs: Math.max(...r.prompts.map((p) => p.floor?.unionMaxAbs ?? 0)), maxKl: Math.max(...r.prompts.map((p) => p.floor?.maxKl ?? 0)), minTop1: Math.min(...r.prompts.map((p) => p.floor?.top1Agreement ?? 1)),
          candidateShare: {
            unionMaxAbs: Math.max(...r.prompts.map((p) => Math.max(p.logits.prefill.unionMaxAbs, p.logits.decode.unionMaxAbs) / p.floor.unionMaxAbs)),
            maxKl: Math.max(...r.prompts.map((p) => Math.max(p.logits.prefill.maxKl, p.logits.decode.maxKl) / p.floor.maxKl)),
          },
        },
      } : {}),
    }));
  }
}
