// Probe: host cost of encoding and submitting a compute pass through Dawn's Node binding, with
// nothing else running (no GPU work in flight): 125 dispatches (an opt-1.3b decode step's
// count), each with its own bind group of NB storage buffers, NP pipelines taking turns.
//   node bench/probes/dispatch-host.mjs [NB=9] [NP=5] [MB=64]     (FUSEGEN_DAWN_TOGGLES as the engine)
import { create, globals } from 'webgpu';

const [NB, NP, MB] = [9, 5, 64].map((d, i) => Number(process.argv[2 + i] ?? d));
const DISPATCHES = 125;
Object.assign(globalThis, globals);
const toggles = process.env.FUSEGEN_DAWN_TOGGLES;
const gpu = create([...(toggles ? [`enable-dawn-features=${toggles}`] : []), 'disable-dawn-features=timestamp_quantization']);
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
const device = await adapter.requestDevice({ requiredLimits: { maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage } });
const decl = Array.from({ length: NB }, (_, i) => `@group(0) @binding(${i + 1}) var<storage, read_write> b${i}: array<f32>;`).join('\n');
// Never true: every binding is used, and the dispatch does almost no work.
const body = Array.from({ length: NB }, (_, i) => `b${i}[0] = 1.0;`).join(' ');
const pipes = Array.from({ length: NP }, (_, p) => {
  const code = `@group(0) @binding(0) var<uniform> u: vec4<u32>;\n${decl}\n@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { if (g.x == ${1e6 + p}u + u.x) { ${body} } }`;
  return device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
});
const ub = device.createBuffer({ size: 16, usage: 0x40 | 0x8 });
const bufs = Array.from({ length: 40 }, () => device.createBuffer({ size: MB * 2 ** 20, usage: 0x80 | 0x8 | 0x4 }));
const groups = Array.from({ length: DISPATCHES }, (_, k) =>
  device.createBindGroup({ layout: pipes[k % NP].getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: ub } }, ...Array.from({ length: NB }, (_, i) => ({ binding: i + 1, resource: { buffer: bufs[(k * 3 + i) % bufs.length] } }))] }),
);
const rows = [];
for (let it = 0; it < 60; it++) {
  const t0 = performance.now();
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  groups.forEach((g, k) => {
    pass.setPipeline(pipes[k % NP]);
    pass.setBindGroup(0, g);
    pass.dispatchWorkgroups(64);
  });
  pass.end();
  const cb = enc.finish();
  const t1 = performance.now();
  device.queue.submit([cb]);
  const t2 = performance.now();
  await device.queue.onSubmittedWorkDone();
  const t3 = performance.now();
  if (it >= 10) rows.push([t1 - t0, t2 - t1, t3 - t2]);
}
const med = (i) => rows.map((r) => r[i]).sort((a, b) => a - b)[rows.length >> 1];
console.log(JSON.stringify({ adapter: adapter.info.description || adapter.info.device, NB, NP, MB, toggles: toggles ?? '', dispatches: DISPATCHES, encodeMs: med(0), submitMs: med(1), waitMs: med(2), usPerDispatch: ((med(0) + med(1)) / DISPATCHES) * 1e3 }));
process.exit(0);
