// One pipeline's load, measured as src/report/load.ts measures it (VmHWM reset through
// /proc/self/clear_refs just before createPipeline), against any build of fusegen: used to set
// the WGSL upload before streaming (a build of aa5e791) beside the one after.
//   node measure-load.mjs <fusegen root with dist/> <model dir> <plain|injected|reference|wgsl> <cpu|webgpu> <dtype>
// `upload` as the kind measures uploadWeights alone (the GPU device opened before the reset), the
// part of the WGSL load that streaming changed; dtype float16 or int4 there.
import { readFileSync, writeFileSync } from 'node:fs';
const [root, model, kind, device, dtype] = process.argv.slice(2);
const { openCheckpoint } = await import(`${root}/dist/src/arch/checkpoint.js`);
const { createPipeline } = await import(`${root}/dist/src/pipeline/ds-pipeline.js`);
const { NO_FUSIONS } = await import(`${root}/dist/src/inject/plan.js`);
const backend = { plain: { kind: 'ort', fusions: NO_FUSIONS }, injected: { kind: 'ort' }, reference: { kind: 'reference' }, wgsl: { kind: 'wgsl' } }[kind];
const mib = (b) => Math.round(b / 2 ** 20);
const hwm = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
const ckpt = openCheckpoint(model);
if (kind === 'upload') {
  const { openGpu } = await import(`${root}/dist/src/kernels/device.js`);
  const { uploadWeights } = await import(`${root}/dist/src/kernels/weights.js`);
  const ctx = await openGpu();
  const start = process.memoryUsage.rss();
  writeFileSync('/proc/self/clear_refs', '5');
  const t0 = performance.now();
  const w = await uploadWeights(ctx, ckpt, 'f16', { bits: dtype === 'int4' ? 4 : 0, blockSize: 32 }); // synchronous before streaming: await passes it through
  const ms = performance.now() - t0;
  await ctx.device.queue.onSubmittedWorkDone();
  console.log(JSON.stringify({ root, model, kind, device, dtype, loadMs: Math.round(ms), startRssMB: mib(start), peakRssMB: mib(hwm()), endRssMB: mib(process.memoryUsage.rss()), gpuMB: mib(w.bytes) }));
} else {
  const start = process.memoryUsage.rss();
  writeFileSync('/proc/self/clear_refs', '5');
  const t0 = performance.now();
  const pipe = await createPipeline(ckpt, backend, { device, dtype, maxTokens: 64 });
  const ms = performance.now() - t0;
  console.log(JSON.stringify({ root, model, kind, device, dtype, loadMs: Math.round(ms), startRssMB: mib(start), peakRssMB: mib(hwm()), endRssMB: mib(process.memoryUsage.rss()) }));
  await pipe.dispose();
}
