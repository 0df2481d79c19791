/**
 * Probe: GPU time of the decode attention kernel (flash-decoding split, reading the packed
 * qkv and writing the caches, as a decode step runs it), per dispatch in a chain of 24 (one
 * per layer, a barrier between each, like a step), against context length and keys per
 * split; an opt-1.3b-shaped head layout (32 heads of 64). Says whether its cost follows the
 * keys it reads or is fixed, and a trivial kernel chained the same way gives the floor.
 *   node dist/bench/probes/attention-chain.js [--keys 16,80,128,512,2048] [--splits 128,64]
 */
import { parseArgs } from 'node:util';
import { AttentionKernels } from '../../src/kernels/attention.js';
import { openGpu, storageBuffer, upload } from '../../src/kernels/device.js';

const { values } = parseArgs({ options: { keys: { type: 'string', default: '16,80,128,512,2048' }, splits: { type: 'string', default: '128,64' } } });
const ctx = await openGpu();
if (!ctx.timestamps) throw new Error('attention-chain: the adapter has no timestamp queries');
const H = 32, D = 64, M = 2048, LAYERS = 24, REPS = 7;
const qkv = upload(ctx, Float32Array.from({ length: 3 * H * D }, (_, i) => Math.sin(i)));
const caches = Array.from({ length: LAYERS }, () => [storageBuffer(ctx, H * M * D * 4), storageBuffer(ctx, H * M * D * 4)] as const);
const out = storageBuffer(ctx, H * D * 4);
const qs = ctx.device.createQuerySet({ type: 'timestamp', count: 2 });
const resolved = ctx.device.createBuffer({ size: 16, usage: 0x200 | 0x4 });

/** Median microseconds per dispatch of `encode`'s LAYERS dispatches in one pass. */
async function timeChain(encode: (pass: GPUComputePassEncoder) => void): Promise<{ usPerDispatch: number; min: number }> {
  const times: number[] = [];
  for (let r = 0; r < REPS + 1; r++) {
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    encode(pass);
    pass.end();
    const read = ctx.device.createBuffer({ size: 16, usage: 0x1 | 0x8 });
    enc.resolveQuerySet(qs, 0, 2, resolved, 0);
    enc.copyBufferToBuffer(resolved, 0, read, 0, 16);
    ctx.device.queue.submit([enc.finish()]);
    await read.mapAsync(1);
    const [t0, t1] = new BigUint64Array(read.getMappedRange());
    if (r > 0) times.push(Number(t1! - t0!) / 1e3 / LAYERS);
    read.unmap();
    read.destroy();
  }
  times.sort((a, b) => a - b);
  return { usPerDispatch: Number(times[REPS >> 1]!.toFixed(2)), min: Number(times[0]!.toFixed(2)) };
}

// The floor: a kernel of 32 workgroups that each read and write one value, chained the same way.
const floorModule = ctx.device.createShaderModule({
  code: '@group(0) @binding(0) var<storage, read_write> b: array<f32>;\n@compute @workgroup_size(128) fn main(@builtin(workgroup_id) w: vec3<u32>, @builtin(local_invocation_index) l: u32) { if (l == 0u) { b[w.x] = b[w.x] + 1.0; } }',
});
const floorPipe = ctx.device.createComputePipeline({ layout: 'auto', compute: { module: floorModule, entryPoint: 'main' } });
const floorGroup = ctx.device.createBindGroup({ layout: floorPipe.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] });
console.log(JSON.stringify({ kernel: 'trivial', ...(await timeChain((pass) => {
  for (let l = 0; l < LAYERS; l++) {
    pass.setPipeline(floorPipe);
    pass.setBindGroup(0, floorGroup);
    pass.dispatchWorkgroups(32);
  }
})) }));

for (const split of values.splits.split(',').map(Number)) {
  const kern = new AttentionKernels(ctx, { split });
  for (const keys of values.keys.split(',').map(Number)) {
    const positions = upload(ctx, Uint32Array.of(keys - 1));
    const valid = upload(ctx, Uint32Array.of(1));
    const t = await timeChain((pass) => {
      for (const [kCache, vCache] of caches) {
        kern.encodeAttention(pass, { q: qkv, packedQkv: {}, kCache, vCache, positions, valid, out }, { T: 1, S: 1, H, Hkv: H, D, M, scale: 0.125, maxKeys: keys });
      }
    });
    console.log(JSON.stringify({ kernel: 'attention', split, keys, ...t }));
    kern.clear();
  }
}
process.exit(0);
