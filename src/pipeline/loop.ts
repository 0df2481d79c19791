/**
 * fusegen's generate loop, shared by every engine that runs its own steps (the ONNX Runtime
 * injected graph, the WGSL kernels). Rows are right-padded: each keeps its own length and
 * positions. The engine supplies one step; the loop owns tokenization, capacity checks,
 * end-of-sequence, min_new_tokens, sampling, top-k recording and timings.
 */
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type { Checkpoint } from '../arch/checkpoint.js';
import { checkCapacity, finishSequences, topK } from './common.js';
import { makeSampler } from './sampling.js';
import { promptIds } from './tokenizer.js';
import type { StepInput, Stepper } from '../step.js';
import type { GenerateRequest, GenerateResult, TopK } from './types.js';

export type { StepInput, Stepper } from '../step.js';

export async function generateLoop(stepper: Stepper, request: GenerateRequest, ckpt: Checkpoint, tokenizer: PreTrainedTokenizer, maxTokens: number): Promise<GenerateResult> {
  const t0 = performance.now();
  const prompts = promptIds(tokenizer, request);
  const B = prompts.length;
  const lens = prompts.map((p) => p.length);
  const longest = Math.max(...lens);
  checkCapacity(ckpt, maxTokens, longest, request.maxNewTokens);
  const V = ckpt.dims.vocabSize;
  const k = request.recordTopK ?? 0;
  const sample = makeSampler(request.doSample, request.seed ?? 0, ckpt.sampling);
  const eos = request.ignoreEos ? [] : ckpt.eosTokenIds;
  const needLogits = request.doSample || k > 0;

  const generated: number[][] = Array.from({ length: B }, () => []);
  const recorded: TopK[][] = Array.from({ length: B }, () => []);
  const done = new Array<boolean>(B).fill(false);
  const stepTimes: number[] = [];
  const suppressAt = (t: number) => (t < (request.minNewTokens ?? 0) ? eos : []); // as HF's MinNewTokensLengthLogitsProcessor
  const ahead = !needLogits && stepper.feedsBack === true ? Math.max(1, stepper.stepsAhead ?? 1) : 0;
  let input: StepInput = { tokens: prompts, start: new Array<number>(B).fill(0), last: lens.map((n) => n - 1), suppress: suppressAt(0) };
  /** The input after `input`: its tokens are known only once `input`'s ids are, unless fed from the device. */
  const after = (prev: StepInput, t: number, tokens: number[][]): StepInput => ({
    tokens,
    start: prev.start.map((s, b) => s + prev.tokens[b]!.length),
    last: new Array<number>(B).fill(0),
    suppress: suppressAt(t),
  });
  await stepper.begin(B, Math.min(maxTokens, longest + request.maxNewTokens));
  /** Submitted steps not read yet, oldest first; the last one's input is what comes next after. */
  const inFlight: Array<{ input: StepInput; result: Promise<{ logits?: Float32Array; ids?: number[] }> }> = [];
  const submit = (next: StepInput, logits: boolean) => {
    const result = stepper.step(next, logits);
    result.catch(() => {}); // awaited in its round, or in finally after a break
    inFlight.push({ input: next, result });
  };
  submit(input, needLogits);
  try {
    for (let t = 0; t < request.maxNewTokens; t++) {
      // Run ahead: steps t + 1 .. t + ahead are on the device while step t's ids come back.
      while (ahead && inFlight.length <= ahead && t + inFlight.length < request.maxNewTokens) {
        submit({ ...after(inFlight[inFlight.length - 1]!.input, t + inFlight.length, prompts.map(() => [0])), fromDevice: true }, false);
      }
      const current = inFlight.shift()!;
      input = current.input;
      const r = await current.result;
      for (let b = 0; b < B; b++) {
        let chosen: number;
        if (r.logits) {
          const row = r.logits.subarray(b * V, (b + 1) * V);
          for (const e of input.suppress) row[e] = -Infinity;
          chosen = sample(row);
          if (k > 0 && !done[b]) recorded[b]!.push(topK(row, k));
        } else chosen = r.ids![b]!;
        if (!done[b]) {
          generated[b]!.push(chosen);
          if (eos.includes(chosen)) done[b] = true;
        }
      }
      stepTimes.push(performance.now());
      if (done.every(Boolean) || t + 1 === request.maxNewTokens) break;
      // Finished rows keep stepping (batch shapes stay fixed); their tokens are ignored.
      if (!ahead) submit(after(input, t + 1, generated.map((g) => [g[g.length - 1]!])), needLogits);
    }
  } finally {
    for (const f of inFlight) await f.result.catch(() => {}); // steps still in flight finish before the engine is released
    stepper.end();
  }
  return {
    sequences: finishSequences(tokenizer, request.prompts, prompts, generated, eos, k > 0 ? recorded : undefined),
    promptLength: longest,
    steps: stepTimes.length,
    timings: {
      firstTokenMs: stepTimes[0]! - t0,
      decodeStepMs: stepTimes.slice(1).map((t, i) => t - stepTimes[i]!),
      totalMs: performance.now() - t0,
    },
  };
}
