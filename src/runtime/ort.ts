/**
 * The only module that imports onnxruntime-node. Sessions per device, tensors, and proof of
 * where nodes really ran: a profiled first run lists each node's execution provider, and a
 * compute node that fell back to the CPU fails the run instead of slowing it silently.
 */
import { existsSync, readdirSync, readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { float16BitsToFloat32 } from '../checkpoint/safetensors.js';
import { noWebgpuAdapter, UnsupportedError } from '../errors.js';

export type Device = 'cpu' | 'webgpu' | 'cuda';
export type OrtTensor = ort.Tensor;
export type Feeds = Record<string, ort.Tensor>;

const EP_NAMES: Record<Device, string> = { cpu: 'CPUExecutionProvider', webgpu: 'WebGpuExecutionProvider', cuda: 'CUDAExecutionProvider' };

/** Ops whose work must run on the requested device (shape arithmetic may stay on the CPU). */
const COMPUTE_OPS = new Set([
  'MatMul', 'Gemm', 'MatMulNBits', 'GroupQueryAttention', 'MultiHeadAttention', 'Softmax',
  'LayerNormalization', 'SkipLayerNormalization', 'SkipSimplifiedLayerNormalization', 'SimplifiedLayerNormalization',
  'FastGelu', 'BiasGelu', 'Gelu', 'RotaryEmbedding',
]);

export const CUDA_MISSING = 'cuda: the CUDA execution provider is not installed (see README: ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js)';

/** The CUDA EP ships separately from onnxruntime-node; it is usable once its library is installed. */
export function cudaInstalled(): boolean {
  const require = createRequire(import.meta.url);
  const bin = join(dirname(require.resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', `${process.platform}`, process.arch);
  return existsSync(bin) && readdirSync(bin).some((f) => f.startsWith('libonnxruntime_providers_cuda'));
}

export interface SessionOptions {
  /** Keep these outputs on the device (WebGPU, CUDA): no copy to the host per step. */
  deviceOutputs?: string[];
  graphCapture?: boolean;
}

export interface Placement {
  /** Execution provider -> number of nodes it ran. */
  byProvider: Record<string, number>;
  /** Compute nodes that ran somewhere other than the requested device. */
  fallbacks: string[];
}

/** A session that failed for want of a device becomes one clear line. */
export function deviceError(device: Device, e: unknown): unknown {
  const msg = e instanceof Error ? e.message : String(e);
  return device === 'webgpu' && /adapter/i.test(msg) ? noWebgpuAdapter() : e;
}

export class Session {
  private placement: Placement | undefined;

  private constructor(
    readonly device: Device,
    private readonly session: ort.InferenceSession,
    private readonly profileDir: string,
  ) {}

  static async create(path: string, device: Device, o: SessionOptions = {}): Promise<Session> {
    if (device === 'cuda' && !cudaInstalled()) throw new UnsupportedError('--device', CUDA_MISSING);
    const profileDir = mkdtempSync(join(tmpdir(), 'fusegen-profile-'));
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: [device],
      graphOptimizationLevel: 'all',
      enableProfiling: true,
      profileFilePrefix: join(profileDir, 'run'),
      logSeverityLevel: 3,
    };
    if (o.deviceOutputs && device !== 'cpu') {
      options.preferredOutputLocation = Object.fromEntries(o.deviceOutputs.map((n) => [n, 'gpu-buffer' as const]));
    }
    if (o.graphCapture) options.enableGraphCapture = true;
    try {
      return new Session(device, await ort.InferenceSession.create(path, options), profileDir);
    } catch (e) {
      rmSync(profileDir, { recursive: true, force: true });
      throw deviceError(device, e);
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** Runs; the first run is profiled to record node placement, then profiling stops. */
  async run(feeds: Feeds, fetches?: Record<string, ort.Tensor | null>): Promise<Record<string, ort.Tensor>> {
    const out = fetches ? await this.session.run(feeds, fetches) : await this.session.run(feeds);
    if (!this.placement) this.placement = this.readPlacement();
    return out;
  }

  /** Where the profiled run placed nodes; throws when compute fell back off the device. */
  verifyPlacement(): Placement {
    const p = this.placement;
    if (!p) throw new Error('verifyPlacement() before the first run');
    if (p.fallbacks.length > 0) {
      throw new UnsupportedError('--device', `${this.device}: ${p.fallbacks.length} compute node(s) fell back to another execution provider (${p.fallbacks.slice(0, 3).join(', ')}${p.fallbacks.length > 3 ? ', ...' : ''})`);
    }
    return p;
  }

  private readPlacement(): Placement {
    this.session.endProfiling();
    const files = readdirSync(this.profileDir).filter((f) => f.endsWith('.json'));
    const byProvider: Record<string, number> = {};
    const fallbacks: string[] = [];
    for (const f of files) {
      const events = JSON.parse(readFileSync(join(this.profileDir, f), 'utf8')) as Array<{ cat?: string; name?: string; args?: { provider?: string; op_name?: string } }>;
      for (const e of events) {
        if (e.cat !== 'Node' || !e.args?.provider || !e.name?.endsWith('_kernel_time')) continue;
        byProvider[e.args.provider] = (byProvider[e.args.provider] ?? 0) + 1;
        if (e.args.provider !== EP_NAMES[this.device] && COMPUTE_OPS.has(e.args.op_name ?? '')) fallbacks.push(`${e.name.replace(/_kernel_time$/, '')} (${e.args.op_name} on ${e.args.provider})`);
      }
    }
    rmSync(this.profileDir, { recursive: true, force: true });
    return { byProvider, fallbacks };
  }

  async release(): Promise<void> {
    await this.session.release();
    rmSync(this.profileDir, { recursive: true, force: true });
  }
}

export function int64(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(Array.from(values, (v) => BigInt(v))), dims);
}

export function int32(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  return new ort.Tensor('int32', Int32Array.from(values), dims);
}

export function zeros(type: 'float32' | 'float16', dims: number[]): ort.Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  return type === 'float32' ? new ort.Tensor('float32', new Float32Array(n), dims) : new ort.Tensor('float16', new Uint16Array(n), dims);
}

/** Host copy of a tensor's data as float32 (float16 widened). */
export async function readFloat32(t: ort.Tensor): Promise<Float32Array> {
  const data = t.location === 'cpu' ? t.data : await t.getData();
  if (data instanceof Float32Array) return data;
  if (data instanceof Uint16Array) return Float32Array.from(data, float16BitsToFloat32);
  throw new Error(`readFloat32: unexpected ${t.type}`);
}
