/**
 * The only module that imports `webgpu` (Dawn's Node binding). Opens the process's GPU
 * devices (one, or one per rank of --world_size), loads WGSL kernels from src/kernels/wgsl,
 * and offers the small buffer helpers the engine and the kernel tests share.
 *
 * The objects `create()` returns must stay referenced for as long as their devices live
 * (losing one crashes the process), so they are kept in a module-level map.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { create, globals } from 'webgpu';
import { noWebgpuAdapter, UsageError } from '../errors.js';

export interface AdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
}

export interface GpuContext {
  device: GPUDevice;
  adapter: AdapterInfo;
  /** Devices opened on one adapter share this (several ranks on one GPU). */
  adapterKey: string;
  /** shader-f16: weights can be stored as f16. */
  f16: boolean;
  timestamps: boolean;
}

/**
 * Extra Dawn toggles for the engine's device, from `FUSEGEN_DAWN_TOGGLES` (comma-separated, e.g.
 * `skip_validation,disable_robustness`); none by default: on the H200 skipping validation and
 * robustness changed nothing measurable once decode steps run ahead (bench/results). Timestamp
 * quantization (a browser's guard against timing attacks) is always off, so that kernel
 * profiles resolve single dispatches.
 */
function dawnToggles(): string[] {
  return (process.env['FUSEGEN_DAWN_TOGGLES'] ?? '').split(',').map((t) => t.trim()).filter(Boolean);
}

/** Dawn instances: the shared one, and one per rank given its own GPU (FUSEGEN_RANK_DEVICES). */
const roots = new Map<string, GPU>();
/** Devices opened so far, by rank: every caller of openGpu shares rank 0's. */
const devices: Array<Promise<GpuContext>> = [];

function dawnInstance(): GPU {
  Object.assign(globalThis, globals);
  const toggles = dawnToggles();
  return create([...(toggles.length ? [`enable-dawn-features=${toggles.join(',')}`] : []), 'disable-dawn-features=timestamp_quantization']);
}

/**
 * Per rank, the physical GPU its device opens on (`FUSEGEN_RANK_DEVICES`, comma-separated): Mesa's
 * Vulkan device-select layer's PCI tags, `pci-DDDD_BB_DD_F` (from `nvidia-smi --query-gpu=pci.bus_id`).
 * Dawn picks the first adapter that matches a name, and identical GPUs share one; Vulkan reads
 * DRI_PRIME when an instance is created, so each rank gets its own Dawn instance with
 * DRI_PRIME=<tag>! (only that GPU visible) set while it opens. Needs the layer
 * (mesa-vulkan-drivers); without a match it falls back to the first GPU.
 */
function rankDevices(): string[] | undefined {
  const raw = process.env['FUSEGEN_RANK_DEVICES']?.trim();
  return raw ? raw.split(',').map((t) => t.trim()) : undefined;
}

/** An adapter for rank r's device (Dawn's adapters each create one device, so a fresh one per rank). */
async function openAdapter(tag: string | undefined): Promise<GPUAdapter> {
  const key = tag ?? '';
  let root = roots.get(key);
  const saved = process.env['DRI_PRIME'];
  if (tag) process.env['DRI_PRIME'] = `${tag}!`;
  try {
    if (!root) roots.set(key, (root = dawnInstance()));
    const adapter = await root.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw noWebgpuAdapter();
    return adapter;
  } finally {
    if (tag) {
      if (saved === undefined) delete process.env['DRI_PRIME'];
      else process.env['DRI_PRIME'] = saved;
    }
  }
}

async function openDevice(adapter: GPUAdapter, adapterKey: string): Promise<GpuContext> {
  const f16 = adapter.features.has('shader-f16');
  const timestamps = adapter.features.has('timestamp-query');
  const requiredFeatures: GPUFeatureName[] = [];
  if (f16) requiredFeatures.push('shader-f16');
  if (timestamps) requiredFeatures.push('timestamp-query');
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
      maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage,
    },
  });
  const i = adapter.info;
  return { device, adapter: { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description }, adapterKey, f16, timestamps };
}

/** The process's GPU device (rank 0's). */
export async function openGpu(): Promise<GpuContext> {
  return (await openGpus(1))[0]!;
}

/**
 * `n` devices, one per rank of a layer split (--world_size), each opened once per process and
 * in rank order (a rank's Vulkan environment is set while it opens). Each is its own GPUDevice
 * with its own queue and memory: on the GPU FUSEGEN_RANK_DEVICES names for the rank, else on
 * the adapter Dawn picks, which every such rank then shares.
 */
export async function openGpus(n: number): Promise<GpuContext[]> {
  const tags = rankDevices();
  if (n > 1 && tags && tags.length < n) throw new UsageError('FUSEGEN_RANK_DEVICES', `names ${tags.length} GPU${tags.length === 1 ? '' : 's'} for --world_size ${n}: give one PCI tag (pci-DDDD_BB_DD_F) per rank`);
  for (let r = devices.length; r < n; r++) {
    const tag = tags?.[r];
    const previous = devices[r - 1];
    devices.push((async () => {
      await previous?.catch(() => undefined);
      const a = await openAdapter(tag);
      return openDevice(a, tag ?? `${a.info.vendor}/${a.info.device}/${a.info.description}`);
    })());
  }
  return Promise.all(devices.slice(0, n));
}

function wgslDir(): string {
  // src/kernels/wgsl, found from src/kernels (tests) or dist/src/kernels (the CLI).
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return join(dir, 'src', 'kernels', 'wgsl');
}

/** A kernel's WGSL text with `{{NAME}}` placeholders replaced. */
export function loadWgsl(file: string, defines: Record<string, string | number> = {}): string {
  let code = readFileSync(join(wgslDir(), file), 'utf8');
  for (const [k, v] of Object.entries(defines)) code = code.replaceAll(`{{${k}}}`, String(v));
  const left = code.match(/\{\{[A-Z_0-9]+\}\}/);
  if (left) throw new Error(`${file}: placeholder ${left[0]} not defined`);
  return code;
}

/**
 * One compute pipeline. Convention for every kernel: `@group(0) @binding(0)` is a uniform
 * `Params` struct, bindings 1.. are storage buffers in the order the kernel lists them.
 */
export class Kernel {
  readonly pipeline: GPUComputePipeline;

  constructor(
    readonly ctx: GpuContext,
    readonly label: string,
    file: string,
    defines: Record<string, string | number> = {},
    entryPoint = 'main',
  ) {
    const module = ctx.device.createShaderModule({ label, code: loadWgsl(file, defines) });
    this.pipeline = ctx.device.createComputePipeline({ label, layout: 'auto', compute: { module, entryPoint } });
  }

  /** Bind groups are made once per set of buffers and reused every step. `undefined` leaves a binding number out. */
  bind(params: GPUBuffer, storage: Array<GPUBuffer | undefined>, label = this.label): GPUBindGroup {
    return this.ctx.device.createBindGroup({
      label,
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [params, ...storage].flatMap((buffer, binding) => (buffer ? [{ binding, resource: { buffer } }] : [])),
    });
  }

  encode(pass: GPUComputePassEncoder, group: GPUBindGroup, x: number, y = 1, z = 1): void {
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
  }
}

const STORAGE = 0x80 | 0x8 | 0x4; // STORAGE | COPY_DST | COPY_SRC

export function storageBuffer(ctx: GpuContext, bytes: number, label?: string): GPUBuffer {
  return ctx.device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: STORAGE });
}

/** A storage buffer holding `data` (padded to 16 bytes). */
export function upload(ctx: GpuContext, data: ArrayBufferView, label?: string): GPUBuffer {
  const buf = storageBuffer(ctx, data.byteLength, label);
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // writeBuffer takes whole 4-byte words: pad odd-length f16 data.
  const words = bytes.byteLength % 4 ? Uint8Array.from({ length: Math.ceil(bytes.byteLength / 4) * 4 }, (_, i) => bytes[i] ?? 0) : bytes;
  ctx.device.queue.writeBuffer(buf, 0, words.buffer, words.byteOffset, words.byteLength);
  return buf;
}

/** A uniform buffer with the given 32-bit words (u32 or f32 views of one ArrayBuffer). */
export function uniform(ctx: GpuContext, words: ArrayBuffer, label?: string): GPUBuffer {
  const buf = ctx.device.createBuffer({ label, size: Math.max(16, Math.ceil(words.byteLength / 16) * 16), usage: 0x40 | 0x8 }); // UNIFORM | COPY_DST
  ctx.device.queue.writeBuffer(buf, 0, words);
  return buf;
}

/** Packs mixed u32/f32 params in declaration order (all 4-byte members). */
export function params(...fields: Array<{ u32: number } | { f32: number } | { i32: number }>): ArrayBuffer {
  const buf = new ArrayBuffer(Math.max(16, Math.ceil((fields.length * 4) / 16) * 16));
  const view = new DataView(buf);
  fields.forEach((f, i) => {
    if ('u32' in f) view.setUint32(i * 4, f.u32, true);
    else if ('i32' in f) view.setInt32(i * 4, f.i32, true);
    else view.setFloat32(i * 4, f.f32, true);
  });
  return buf;
}

/** Copies `bytes` of a buffer back to the host. */
export async function readback(ctx: GpuContext, buf: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const size = Math.ceil(bytes / 4) * 4;
  const staging = ctx.device.createBuffer({ size, usage: 0x1 | 0x8 }); // MAP_READ | COPY_DST
  const enc = ctx.device.createCommandEncoder();
  enc.copyBufferToBuffer(buf, 0, staging, 0, size);
  ctx.device.queue.submit([enc.finish()]);
  await staging.mapAsync(1); // GPUMapMode.READ
  const out = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return out;
}

/** Encodes one compute pass with `fn` and submits it. */
export function submit(ctx: GpuContext, fn: (pass: GPUComputePassEncoder) => void): void {
  const enc = ctx.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  fn(pass);
  pass.end();
  ctx.device.queue.submit([enc.finish()]);
}

/** float32 -> float16 bits for f16 weight buffers. */
export { float32ToFloat16Bits } from '../checkpoint/safetensors.js';
