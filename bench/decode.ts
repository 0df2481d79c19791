/**
 * Decode benchmark: one or more pipelines on the same checkpoint and prompts, measured side
 * by side in one process (warm-up excluded, fixed output length), written as JSON.
 *   node dist/bench/decode.js --model DIR --device webgpu --dtype float16 \
 *     --pipelines reference,injected,wgsl --batch_sizes 1,8 --max_new_tokens 128 --repeats 5 --out FILE
 */
import { writeFileSync, renameSync } from 'node:fs';
import { hostname } from 'node:os';
import { openCheckpoint } from '../src/checkpoint/checkpoint.js';
import { InjectedPipeline } from '../src/pipeline/injected.js';
import { ReferencePipeline } from '../src/pipeline/reference.js';
import { WgslPipeline } from '../src/pipeline/wgsl.js';
import type { DType, Device, TextGenerationPipeline } from '../src/pipeline/types.js';
import { decodeFigures, median, type RunTiming } from '../src/report/perf.js';
import { seedBatch } from '../fixtures/prompts.js';

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  if (v === undefined) throw new Error(`--${name} is required`);
  return v;
}

const model = arg('model');
const device = arg('device', 'cpu') as Device;
const dtype = arg('dtype', device === 'cpu' ? 'float32' : 'float16') as DType;
const pipelines = arg('pipelines', 'reference,injected').split(',');
const batches = arg('batch_sizes', '1').split(',').map(Number);
const maxNewTokens = Number(arg('max_new_tokens', '64'));
const repeats = Number(arg('repeats', '5'));
const out = arg('out', '');

const ckpt = openCheckpoint(model);
const rows: Array<Record<string, unknown>> = [];
for (const name of pipelines) {
  const maxTokens = 64 + maxNewTokens;
  const pipe: TextGenerationPipeline =
    name === 'reference'
      ? await ReferencePipeline.create(ckpt, { device, dtype, maxTokens })
      : name === 'wgsl'
        ? await WgslPipeline.create(ckpt, { dtype, maxTokens })
        : await InjectedPipeline.create(ckpt, { device, dtype, maxTokens });
  for (const batch of batches) {
    const request = { prompts: seedBatch(batch), maxNewTokens, doSample: false, ignoreEos: true };
    const runs: RunTiming[] = [];
    for (let i = 0; i < repeats + 1; i++) {
      const t = performance.now();
      const result = await pipe.generate(request);
      runs.push({ totalMs: performance.now() - t, result });
    }
    const f = decodeFigures(runs, pipe.info, batch, 1);
    const row = { pipeline: name, device, dtype, batch, maxNewTokens, loadMs: pipe.info.loadMs, executionProviders: pipe.info.executionProviders, medianTotalMs: median(runs.slice(1).map((r) => r.totalMs)), ...f };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
  await pipe.dispose();
}
const report = { schema: 'fusegen.decode-bench/1', model, modelType: ckpt.modelType, dims: ckpt.dims, host: hostname(), date: new Date().toISOString(), rows };
if (out) {
  writeFileSync(`${out}.tmp`, JSON.stringify(report, null, 2));
  renameSync(`${out}.tmp`, out);
}
