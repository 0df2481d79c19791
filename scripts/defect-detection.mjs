// Issue 29 item 2: what compare catches among planted defects of many kinds
// (fixtures/defects.ts plantedDefects: its own seeds and kinds), per dtype, counted among the
// defects that matter: those that move the float32 logits by more than 0.05 anywhere in the
// vocabulary (the float32 candidate's fullMaxAbs). Identical copies in every dtype are the false
// alarms. ORT-injected candidates on the CPU at the seed's lengths (200-300 tokens). One JSON line
// per run, then a summary line per dtype: detection with every check, and without the twin (the
// candidate's own pipeline on the reference checkpoint), so one run gives both rates.
//
//   npm run -s build && node scripts/defect-detection.mjs [archs|all] [dtypes] [defects per arch] [prompts] [seed] [accuracy_level]
//   node scripts/defect-detection.mjs all float32,int8 16 1 1
// On a GPU: DEVICE=webgpu KERNELS=wgsl (the candidate's engine), and MATERIAL_FROM=an earlier run's
// JSONL on the CPU with float32 (same seed and count: the same defects), whose float32 effects
// decide which defects matter instead of a float32 compare here:
//   DEVICE=webgpu KERNELS=wgsl MATERIAL_FROM=bench/results/2026-12-07-cpu-defect-detection/detection.jsonl node scripts/defect-detection.mjs all float16 16 1 1
import { readFileSync, rmSync } from 'node:fs';
import { runCompare } from '../dist/compare/run.js';
import { tinyModelDir, TINY_ARCHS } from '../dist/fixtures/checkpoints.js';
import { editedFixture, plantedDefects } from '../dist/fixtures/defects.js';

const [archArg = 'all', dtypeArg = 'float32,int8', nArg = '16', promptsArg = '1', seedArg = '1', levelArg] = process.argv.slice(2);
const archs = archArg === 'all' ? TINY_ARCHS : archArg.split(',');
const dtypes = dtypeArg.split(',');
const MATERIAL = 0.05;
const DEVICE = process.env.DEVICE ?? 'cpu';
const KERNELS = process.env.KERNELS ?? 'ort';
/** arch|kind|what -> float32 effect, from an earlier run's lines. */
const known = process.env.MATERIAL_FROM
  ? new Map(readFileSync(process.env.MATERIAL_FROM, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((l) => l.kind && typeof l.effect === 'number').map((l) => [`${l.arch}|${l.kind}|${l.what}`, l.effect]))
  : undefined;

async function compare(arch, candidate, dtype, numInputs) {
  let live;
  const r = await runCompare(
    { model: tinyModelDir(arch), candidateModel: candidate, dtype, device: dtype === 'float32' ? 'cpu' : DEVICE, useKernel: true, kernels: dtype === 'float32' ? 'ort' : KERNELS, numInputs, minLength: 200, maxLength: 300, batchSize: 1, ...(levelArg !== undefined && dtype !== 'float32' ? { accuracyLevel: Number(levelArg) } : {}), printOutputs: false, speedRepeats: 1, maxRegression: 10, command: [] },
    { out: () => {}, interrupted: () => (live ? live.prompts.length >= numInputs : false), live: (x) => (live = x) },
  );
  const worst = (key) => Math.max(...r.prompts.map((p) => Math.max(p.logits?.prefill[key] ?? 0, p.logits?.decode[key] ?? 0)));
  // Flagged by the twin alone (the candidate's own pipeline on the reference checkpoint; compare/tolerance.ts TWIN_POLICY): every other check passed.
  const twinOnly = r.prompts.some((p) => p.verdict === 'mismatch' && p.reason.startsWith('apart from the same pipeline on the reference checkpoint'));
  const twin = r.prompts.some((p) => p.twin) ? { unionMaxAbs: Math.max(...r.prompts.map((p) => p.twin?.unionMaxAbs ?? 0)), maxKl: Math.max(...r.prompts.map((p) => p.twin?.maxKl ?? 0)) } : undefined;
  const paired = r.prompts.some((p) => p.floor?.paired) ? { unionMaxAbs: Math.max(...r.prompts.map((p) => p.floor?.paired?.unionMaxAbs ?? 0)), maxKl: Math.max(...r.prompts.map((p) => p.floor?.paired?.maxKl ?? 0)), top1: Math.min(...r.prompts.map((p) => p.floor?.paired?.top1Agreement ?? 1)) } : undefined;
  const flagged = r.summary.mismatches + r.summary.errored > 0;
  return { flagged, withoutTwin: flagged && !twinOnly, summary: r.summary, fullMaxAbs: worst('fullMaxAbs'), maxKl: worst('maxKl'), ...(paired ? { paired } : {}), ...(twin ? { twin } : {}) };
}

const totals = Object.fromEntries(dtypes.map((d) => [d, { falseAlarms: 0, identical: 0, material: 0, flagged: 0, flaggedWithoutTwin: 0, byKind: {} }]));
for (const arch of archs) {
  const copy = editedFixture(arch, 'identical', () => {});
  for (const dtype of dtypes) {
    const r = await compare(arch, copy, dtype, 2);
    totals[dtype].identical++;
    if (r.flagged) totals[dtype].falseAlarms++;
    console.log(JSON.stringify({ arch, dtype, defect: 'identical copy', ...r }));
  }
  rmSync(copy, { recursive: true, force: true });
  for (const d of plantedDefects(arch, Number(seedArg), Number(nArg))) {
    const effect = known?.get(`${arch}|${d.kind}|${d.what}`);
    if (known && effect === undefined) throw new Error(`MATERIAL_FROM has no line for ${arch} ${d.kind} ${d.what}: run it with the same seed and count`);
    const f32 = known && !dtypes.includes('float32') ? undefined : await compare(arch, d.dir, 'float32', Number(promptsArg));
    const material = (effect ?? f32.fullMaxAbs) > MATERIAL;
    const line = { arch, kind: d.kind, what: d.what, effect: effect ?? f32.fullMaxAbs, material, verdicts: {} };
    for (const dtype of dtypes) {
      const r = dtype === 'float32' ? f32 : material ? await compare(arch, d.dir, dtype, Number(promptsArg)) : undefined;
      if (!r) continue;
      line.verdicts[dtype] = { flagged: r.flagged, withoutTwin: r.withoutTwin, fullMaxAbs: r.fullMaxAbs, maxKl: r.maxKl, ...(r.paired ? { paired: r.paired } : {}), ...(r.twin ? { twin: r.twin } : {}) };
      if (material) {
        const t = totals[dtype];
        t.material++;
        if (r.flagged) t.flagged++;
        if (r.withoutTwin) t.flaggedWithoutTwin++;
        const k = (t.byKind[d.kind] ??= { material: 0, flagged: 0 });
        k.material++;
        if (r.flagged) k.flagged++;
      }
    }
    console.log(JSON.stringify(line));
    rmSync(d.dir, { recursive: true, force: true });
  }
}
for (const [dtype, t] of Object.entries(totals)) console.log(JSON.stringify({ summary: dtype, device: dtype === 'float32' ? 'cpu' : DEVICE, kernels: dtype === 'float32' ? 'ort' : KERNELS, seed: Number(seedArg), ...t, detection: t.material ? t.flagged / t.material : null, detectionWithoutTwin: t.material ? t.flaggedWithoutTwin / t.material : null }));
