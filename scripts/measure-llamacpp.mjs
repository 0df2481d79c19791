#!/usr/bin/env node
/**
 * The llamacpp pipeline (llama.cpp through node-llama-cpp, CPU) as a second opinion, measured
 * (issue 27 item 3): where the figures in compare/tolerance.ts's policy comment and in
 * .notes/readme-llamacpp.md come from.
 *
 *   node scripts/measure-llamacpp.mjs goldens [dtype]            every mapped tiny fixture and HF-written conformance case
 *   node scripts/measure-llamacpp.mjs compare <dtype> <n> <cases> compare --candidate llamacpp (8 prompts at 200-300 tokens) per case
 *
 * `goldens`: against Hugging Face's goldens (greedy ids of the eight seed prompts alone and in one
 * left-padded batch, the top-10 logits of every step, the text): worst |logit error| and whether
 * the ids are equal, per case, beside fusegen's own plain pipeline on the same case where the
 * figures differ (which side is right).
 * `compare`: runCompare as `compare --candidate llamacpp` on identical copies: per case the worst
 * union top-10 |error|, KL and top-1 agreement against the transformers.js reference.
 * Build first (npm run -s build; or tsc --outDir elsewhere in the tree and set FUSEGEN_DIST to it).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

// The build to measure: dist/ (npm run -s build), or another outDir of the same tree ($FUSEGEN_DIST).
const dist = resolve(process.env.FUSEGEN_DIST ?? join(import.meta.dirname, '..', 'dist'));
const load = (p) => import(pathToFileURL(join(dist, p)).href);
const { openCheckpoint } = await load('src/arch/checkpoint.js');
const { GGUF_MODEL_TYPES } = await load('src/arch/gguf.js');
const { listConformanceCases, loadConformanceGolden, conformanceModelDir } = await load('fixtures/conformance.js');
const { tinyModelDir } = await load('fixtures/checkpoints.js');
const { LlamaCppPipeline } = await load('src/pipeline/llamacpp.js');
const { InjectedPipeline } = await load('src/pipeline/injected.js');
const { NO_FUSIONS } = await load('src/inject/plan.js');
const { runCompare } = await load('compare/run.js');

const [mode = 'goldens', dtype = 'float32', nArg = '8', casesArg = 'all'] = process.argv.slice(2);

/** Largest |logit error| over the golden's top-k of every step (a golden id outside ours: how far above our k-th it is). */
function maxErr(seq, gold) {
  let err = 0;
  gold.steps.forEach((step, i) => {
    const ours = seq.topK?.[i];
    if (!ours) return (err = Infinity);
    const kth = ours.values[ours.values.length - 1];
    step.ids.forEach((id, j) => {
      const k = ours.ids.indexOf(id);
      err = Math.max(err, k < 0 ? Math.max(0, step.values[j] - kth) : Math.abs(ours.values[k] - step.values[j]));
    });
  });
  return err;
}

function cases() {
  const tiny = ['llama', 'gpt2', 'bloom'].filter((a) => GGUF_MODEL_TYPES.includes(a)).map((a) => ({ name: `tiny-${a}`, dir: tinyModelDir(a), golden: JSON.parse(readFileSync(join(tinyModelDir(a), '..', '..', 'golden', `${a}.json`), 'utf8')) }));
  const conf = listConformanceCases()
    .filter((c) => c.expect === 'ok' && GGUF_MODEL_TYPES.includes(c.model_type))
    .map((c) => ({ name: c.name, dir: conformanceModelDir(c.name, 'v5'), golden: loadConformanceGolden(c.name) }));
  const all = [...tiny, ...conf].filter((c) => existsSync(c.dir));
  return casesArg === 'all' ? all : all.filter((c) => casesArg.split(',').includes(c.name));
}

async function goldens() {
  for (const c of cases()) {
    const ckpt = openCheckpoint(c.dir);
    let pipe;
    try {
      pipe = await LlamaCppPipeline.create(ckpt, { device: 'cpu', dtype, maxTokens: 1024 });
    } catch (e) {
      console.log(JSON.stringify({ case: c.name, refused: e.message.split('\n')[0] }));
      continue;
    }
    const g = c.golden;
    const batch = await pipe.generate({ prompts: g.batch.prompts, maxNewTokens: g.max_new_tokens, doSample: false, recordTopK: g.top_k });
    let idsEqual = 0;
    let textEqual = 0;
    let worst = 0;
    batch.sequences.forEach((s, i) => {
      const row = g.batch.rows[i];
      if (JSON.stringify(s.newIds) === JSON.stringify(row.new_ids)) idsEqual++;
      if (s.text === row.text) textEqual++;
      worst = Math.max(worst, maxErr(s, row));
    });
    let singleEqual = 0;
    for (const row of g.single) {
      const r = await pipe.generate({ prompts: [row.prompt], maxNewTokens: g.max_new_tokens, doSample: false, recordTopK: g.top_k });
      const s = r.sequences[0];
      if (JSON.stringify(s.newIds) === JSON.stringify(row.new_ids) && JSON.stringify(s.promptIds) === JSON.stringify(row.input_ids)) singleEqual++;
      worst = Math.max(worst, maxErr(s, row));
    }
    await pipe.dispose();
    const out = { case: c.name, dtype, gguf: Object.keys(pipe.gguf.types).join('+'), batchIds: `${idsEqual}/${g.batch.rows.length}`, batchText: `${textEqual}/${g.batch.rows.length}`, singleIds: `${singleEqual}/${g.single.length}`, worstLogitError: Number(worst.toExponential(3)) };
    if (dtype === 'float32' && worst > 1e-3) {
      // Which side is right: fusegen's plain pipeline on the same case against the same goldens.
      const plain = await InjectedPipeline.create(ckpt, { device: 'cpu', dtype: 'float32', maxTokens: 1024, fusions: NO_FUSIONS });
      const pb = await plain.generate({ prompts: g.batch.prompts, maxNewTokens: g.max_new_tokens, doSample: false, recordTopK: g.top_k });
      out.fusegenPlainWorst = Number(Math.max(...pb.sequences.map((s, i) => maxErr(s, g.batch.rows[i]))).toExponential(3));
      await plain.dispose();
    }
    console.log(JSON.stringify(out));
  }
}

async function compare() {
  for (const c of cases()) {
    // The seed's lengths 200-300, within the model's positions (the conformance gpt2 cases have 64).
    const maxLength = Math.min(300, openCheckpoint(c.dir).dims.maxPositions);
    const minLength = Math.min(200, Math.round(maxLength * 0.66));
    let report;
    try {
      report = await runCompare(
        { model: c.dir, dtype, device: 'cpu', useKernel: false, kernels: 'ort', candidate: 'llamacpp', numInputs: Number(nArg), minLength, maxLength, batchSize: 1, printOutputs: false, speedRepeats: 1, maxRegression: 10, command: ['measure-llamacpp'] },
        { out: () => {}, interrupted: () => false },
      );
    } catch (e) {
      console.log(JSON.stringify({ case: c.name, refused: e.message.split('\n')[0] }));
      continue;
    }
    if (report.status !== 'complete') console.log(JSON.stringify({ case: c.name, status: report.status, stoppedBy: report.stoppedBy }));
    let union = 0;
    let kl = 0;
    let top1 = 1;
    for (const p of report.prompts) {
      if (!p.logits) continue;
      let agree = 0;
      let positions = 0;
      for (const part of [p.logits.prefill, p.logits.decode]) {
        union = Math.max(union, part.unionMaxAbs ?? part.maxAbs);
        kl = Math.max(kl, part.maxKl ?? 0);
        agree += part.top1Agreement * part.positions;
        positions += part.positions;
      }
      // compare's check: the share of all the prompt's teacher-forced positions whose argmax agrees.
      if (positions) top1 = Math.min(top1, agree / positions);
    }
    const s = report.summary;
    console.log(JSON.stringify({ case: c.name, dtype, lengths: `${minLength}-${maxLength}`, prompts: report.prompts.length, verdicts: `${s.matches} match, ${s.tolerated} tolerated, ${s.mismatches} mismatch, ${s.errored} errored`, unionMaxAbs: Number(union.toExponential(3)), maxKl: Number(kl.toExponential(3)), minTop1: top1, status: report.status, reasons: report.prompts.filter((p) => p.verdict !== 'match').map((p) => p.reason.slice(0, 160)) }));
  }
}

await (mode === 'compare' ? compare() : goldens());
