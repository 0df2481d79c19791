// Probe: does loading onnxruntime-node (its own Dawn) before Dawn's Node binding change the adapter's features?
const order = process.argv[2] ?? 'dawn-first';
if (order === 'ort-first') await import('onnxruntime-node');
const { openGpu } = await import('../../dist/src/kernels/device.js');
if (order === 'dawn-after-tjs') await import('@huggingface/transformers');
const ctx = await openGpu();
console.log(JSON.stringify({ order, f16: ctx.f16, timestamps: ctx.timestamps, adapter: ctx.adapter }));
process.exit(0);
