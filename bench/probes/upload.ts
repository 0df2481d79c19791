/**
 * Probe: where the WGSL engine's load goes. Host-to-GPU streaming through Dawn's writeBuffer at
 * several chunk sizes and drain intervals, against a ring of MAP_WRITE staging buffers copied
 * on the GPU; then uploadWeights on a real checkpoint at several chunk sizes, and the host's
 * own rates (reading the files from the page cache, sha256). One JSON line per measurement.
 *   node dist/bench/probes/upload.js --model DIR [--mib 2048] [--chunks 1,2,4,8,16] [--flushes 64,256]
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openCheckpoint } from '../../src/arch/checkpoint.js';
import { openGpu, storageBuffer } from '../../src/kernels/device.js';
import { uploadWeights } from '../../src/kernels/weights.js';

const { values } = parseArgs({ options: { model: { type: 'string' }, mib: { type: 'string', default: '2048' }, chunks: { type: 'string', default: '1,2,4,8,16' }, flushes: { type: 'string', default: '64,256' } } });
const MiB = 2 ** 20;
const total = Number(values.mib) * MiB;
const ctx = await openGpu();
const q = ctx.device.queue;
const dst = storageBuffer(ctx, 256 * MiB, 'probe destination');
const say = (o: Record<string, unknown>) => console.log(JSON.stringify(o));
const rate = (bytes: number, ms: number) => Number((bytes / ms / 1e6).toFixed(2)); // GB/s

for (const chunkMiB of values.chunks.split(',').map(Number)) {
  const chunk = new Uint8Array(chunkMiB * MiB).fill(1);
  for (const flushMiB of values.flushes.split(',').map(Number)) {
    const t = performance.now();
    let pending = 0;
    for (let done = 0; done < total; done += chunk.length) {
      q.writeBuffer(dst, done % (256 * MiB - chunk.length + 1) & ~15, chunk);
      pending += chunk.length;
      if (pending >= flushMiB * MiB) {
        q.submit([]);
        await q.onSubmittedWorkDone();
        pending = 0;
      }
    }
    q.submit([]);
    await q.onSubmittedWorkDone();
    say({ probe: 'writeBuffer', chunkMiB, flushMiB, GBps: rate(total, performance.now() - t) });
  }
  // A ring of mapped staging buffers: fill (the copy a file read would make into it), unmap, copy on the GPU, map again.
  const ring = Array.from({ length: 4 }, () => ctx.device.createBuffer({ size: chunk.length, usage: 0x2 | 0x4, mappedAtCreation: true })); // MAP_WRITE | COPY_SRC
  const ready: Array<Promise<void> | undefined> = ring.map(() => undefined);
  const t = performance.now();
  let i = 0;
  for (let done = 0; done < total; done += chunk.length, i++) {
    const r = i % ring.length;
    await ready[r];
    new Uint8Array(ring[r]!.getMappedRange()).set(chunk);
    ring[r]!.unmap();
    const enc = ctx.device.createCommandEncoder();
    enc.copyBufferToBuffer(ring[r]!, 0, dst, done % (256 * MiB - chunk.length + 1) & ~15, chunk.length);
    q.submit([enc.finish()]);
    ready[r] = ring[r]!.mapAsync(2); // WRITE
  }
  await Promise.all(ready);
  say({ probe: 'mapped ring of 4', chunkMiB, GBps: rate(total, performance.now() - t) });
  for (const b of ring) b.destroy();
}

if (values.model) {
  const ckpt = openCheckpoint(values.model);
  const files = readdirSync(values.model).filter((f) => f.endsWith('.safetensors')).map((f) => join(values.model!, f));
  const buf = Buffer.allocUnsafe(8 * MiB);
  let bytes = 0;
  let t = performance.now();
  const h = createHash('sha256');
  for (const f of files) {
    const fd = openSync(f, 'r');
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) bytes += n;
    closeSync(fd);
  }
  say({ probe: 'read files (page cache)', GB: bytes / 1e9, GBps: rate(bytes, performance.now() - t) });
  t = performance.now();
  for (let done = 0; done < bytes; done += buf.length) h.update(buf);
  say({ probe: 'sha256', GBps: rate(bytes, performance.now() - t) });
  for (const chunkMiB of [2, 4, 8]) {
    for (const type of ['f16'] as const) {
      t = performance.now();
      const w = await uploadWeights(ctx, ckpt, type, { bits: 0, blockSize: 32 }, { chunkBytes: chunkMiB * MiB });
      say({ probe: 'uploadWeights', type, chunkMiB, GB: w.bytes / 1e9, s: Number(((performance.now() - t) / 1000).toFixed(2)), GBps: rate(w.bytes, performance.now() - t) });
      for (const v of Object.values(w)) if (v && typeof v === 'object' && 'destroy' in v) (v as GPUBuffer).destroy();
    }
  }
}
process.exit(0);
