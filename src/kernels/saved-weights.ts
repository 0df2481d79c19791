/**
 * The WGSL engine's weights to and from a file (--save_mp_checkpoint_path): every GPU buffer
 * read back as uploaded (quantized blocks, packed rows, f16 or bf16 as the kernels read them)
 * and written in order, with the structure that names them; loading streams the file into new
 * buffers through GpuStream, hashing as it reads, so a reload is the injection byte for byte
 * and a file that changed since it was saved is refused before any step runs.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { InputError } from '../errors.js';
import { storageBuffer, type GpuContext } from './device.js';
import { CHUNK_BYTES, GpuStream, type GpuWeights } from './weights.js';

/** The structure of a rank's weights with each buffer replaced by its index, and where each buffer's bytes are in the file. */
export interface SavedWeightsLayout {
  tree: unknown;
  buffers: Array<{ label: string; offset: number; size: number }>;
}

/** Bytes read back from the GPU at a time while saving. */
const READBACK_BYTES = 64 << 20;

function isBuffer(v: unknown): v is GPUBuffer {
  return typeof v === 'object' && v !== null && typeof (v as GPUBuffer).mapAsync === 'function' && typeof (v as GPUBuffer).size === 'number';
}

/**
 * A digest of the code that decides the layout saved here (this module, the upload and the
 * quantizer): a directory written by other code is refused rather than read in a layout it
 * may not have. Any edit of those files changes it, conservatively.
 */
export function weightsLayoutDigest(): string {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  const h = createHash('sha256');
  for (const f of [`./saved-weights.${ext}`, `./weights.${ext}`, `../inject/quantize.${ext}`]) h.update(readFileSync(new URL(f, import.meta.url)));
  return h.digest('hex').slice(0, 16);
}

/** Writes every buffer of `weights` to `path` (each once, however often the structure names it). */
export async function saveGpuWeights(ctx: GpuContext, weights: GpuWeights, path: string): Promise<{ layout: SavedWeightsLayout; bytes: number; sha256: string }> {
  const buffers: GPUBuffer[] = [];
  const tree = JSON.parse(
    JSON.stringify(weights, (_k, v: unknown) => {
      if (!isBuffer(v)) return v;
      let i = buffers.indexOf(v);
      if (i < 0) i = buffers.push(v) - 1;
      return { $buffer: i };
    }),
  ) as unknown;
  const h = createHash('sha256');
  const staging = ctx.device.createBuffer({ size: READBACK_BYTES, usage: 0x1 | 0x8 }); // MAP_READ | COPY_DST
  const fd = openSync(path, 'w');
  const layout: SavedWeightsLayout = { tree, buffers: [] };
  let offset = 0;
  try {
    for (const b of buffers) {
      layout.buffers.push({ label: b.label, offset, size: b.size });
      for (let at = 0; at < b.size; at += READBACK_BYTES) {
        const n = Math.min(READBACK_BYTES, b.size - at);
        const enc = ctx.device.createCommandEncoder();
        enc.copyBufferToBuffer(b, at, staging, 0, n);
        ctx.device.queue.submit([enc.finish()]);
        await staging.mapAsync(1, 0, n);
        const bytes = new Uint8Array(staging.getMappedRange(0, n));
        h.update(bytes);
        writeSync(fd, bytes);
        staging.unmap();
      }
      offset += b.size;
    }
  } finally {
    closeSync(fd);
    staging.destroy();
  }
  return { layout, bytes: offset, sha256: h.digest('hex') };
}

/** Streams a saved rank's weights into new GPU buffers; the file's sha256 must be the manifest's. */
export async function loadGpuWeights(ctx: GpuContext, layout: SavedWeightsLayout, path: string, sha256: string): Promise<GpuWeights> {
  const stream = new GpuStream(ctx);
  const h = createHash('sha256');
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  const made: GPUBuffer[] = [];
  const fd = openSync(path, 'r');
  try {
    for (const b of layout.buffers) {
      const buffer = storageBuffer(ctx, b.size, b.label);
      made.push(buffer);
      for (let at = 0; at < b.size; at += CHUNK_BYTES) {
        const n = readSync(fd, chunk, 0, Math.min(CHUNK_BYTES, b.size - at), b.offset + at);
        const bytes = chunk.subarray(0, n);
        h.update(bytes);
        await stream.write(buffer, at, bytes);
      }
    }
    await stream.flush();
    if (h.digest('hex') !== sha256) throw new InputError(path, 'content differs from the sha256 its manifest records (modified or corrupted since it was saved); save the model again');
  } catch (e) {
    for (const b of made) b.destroy();
    throw e;
  } finally {
    stream.destroy();
    closeSync(fd);
  }
  return JSON.parse(JSON.stringify(layout.tree), (_k, v: unknown) => (typeof v === 'object' && v !== null && '$buffer' in v ? made[(v as { $buffer: number }).$buffer]! : v)) as GpuWeights;
}
