// compare --candidate_url's log-probability bounds (compare/tolerance.ts LOGPROB_TOLERANCE): the
// noise of identical copies, a tiny fixture served by fusegen's ORT-injected pipeline on the CPU
// through the test's completions server (fixtures/completions-server.ts: vLLM's dialect, echo,
// top-5 log-probabilities from the logits' log-softmax) against the in-process transformers.js
// reference, at the seed's lengths; then, with DEFECTS > 0, planted defects (fixtures/defects.ts)
// served the same way, each beside the logits compare of the same defect (--candidate_model),
// to see what the log-probability check catches of what the logits check does. One JSON line each.
//
//   npm run -s build && node scripts/remote-noise.mjs [archs|all] [dtype] [prompts] [defects per arch] [seed] [echo|no-echo]
//   node scripts/remote-noise.mjs all float32 8 0
import { rmSync } from 'node:fs';
import { runCompare } from '../dist/compare/run.js';
import { tinyModelDir, TINY_ARCHS } from '../dist/fixtures/checkpoints.js';
import { serveCompletions } from '../dist/fixtures/completions-server.js';
import { plantedDefects } from '../dist/fixtures/defects.js';
import { openCheckpoint } from '../dist/src/arch/checkpoint.js';
import { createPipeline } from '../dist/src/pipeline/ds-pipeline.js';
import { loadTokenizer } from '../dist/src/pipeline/tokenizer.js';

const [archArg = 'all', dtype = 'float32', promptsArg = '8', defectsArg = '0', seedArg = '1', echoArg = 'echo'] = process.argv.slice(2);
const archs = archArg === 'all' ? TINY_ARCHS : archArg.split(',');
const MAX = 300;

async function served(dir, f) {
  const ckpt = openCheckpoint(dir);
  const pipe = await createPipeline(ckpt, { kind: 'ort' }, { device: 'cpu', dtype, maxTokens: MAX + 1 });
  const srv = await serveCompletions({ pipe, tokenizer: await loadTokenizer(ckpt), vocabSize: ckpt.dims.vocabSize }, { echo: echoArg === 'echo' });
  try {
    return await f(srv.url);
  } finally {
    await srv.close();
    await pipe.dispose();
  }
}

async function compare(arch, o, numInputs) {
  let live;
  const r = await runCompare(
    { model: tinyModelDir(arch), dtype, device: 'cpu', useKernel: true, kernels: 'ort', numInputs, minLength: 200, maxLength: MAX, batchSize: 1, printOutputs: false, speedRepeats: 1, maxRegression: 10, command: [], ...o },
    { out: () => {}, interrupted: () => (live ? live.prompts.length >= numInputs : false), live: (x) => (live = x) },
  );
  return r;
}

const worst = (r, f) => Math.max(...r.prompts.map(f));
for (const arch of archs) {
  const r = await served(tinyModelDir(arch), (url) => compare(arch, { candidateUrl: url, useKernel: false }, Number(promptsArg)));
  for (const p of r.prompts) {
    const l = p.logprobs;
    console.log(JSON.stringify({ arch, dtype, copy: 'identical', prompt: p.index, verdict: p.verdict, from: l?.from, positions: (l?.prefill?.positions ?? 0) + (l?.decode.positions ?? 0), maxAbs: Math.max(l?.prefill?.maxAbs ?? 0, l?.decode.maxAbs ?? 0), maxKl: Math.max(l?.prefill?.maxKl ?? 0, l?.decode.maxKl ?? 0), top1: Math.min(l?.prefill?.top1Agreement ?? 1, l?.decode.top1Agreement ?? 1), ...(p.verdict === 'match' ? {} : { reason: p.reason }) }));
  }
  for (const d of plantedDefects(arch, Number(seedArg), Number(defectsArg))) {
    const remote = await served(d.dir, (url) => compare(arch, { candidateUrl: url, useKernel: false }, 1));
    const local = await compare(arch, { candidateModel: d.dir }, 1);
    const effect = worst(local, (p) => Math.max(p.logits?.prefill.fullMaxAbs ?? 0, p.logits?.decode.fullMaxAbs ?? 0));
    console.log(JSON.stringify({
      arch,
      dtype,
      kind: d.kind,
      what: d.what,
      effect,
      logits: local.summary.mismatches + local.summary.errored > 0,
      logprobs: remote.summary.mismatches + remote.summary.errored > 0,
      maxAbs: worst(remote, (p) => Math.max(p.logprobs?.prefill?.maxAbs ?? 0, p.logprobs?.decode.maxAbs ?? 0)),
      maxKl: worst(remote, (p) => Math.max(p.logprobs?.prefill?.maxKl ?? 0, p.logprobs?.decode.maxKl ?? 0)),
    }));
    rmSync(d.dir, { recursive: true, force: true });
  }
}
