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
  /** Keep ONNX Runtime's profiler on for every run (until takeProfile), not only the first. */
  profile?: boolean;
}

/** One node's host time in a run: on the CPU its compute, on a GPU its dispatch. */
export interface OrtNodeTime {
  name: string;
  op: string;
  provider: string;
  us: number;
}

/** One GPU program's time in a run (WebGPU EP, from timestamp queries). */
export interface OrtKernelTime {
  node: string;
  op: string;
  program: string;
  us: number;
}

/** One session run as the profiler saw it, in the order runs happened. */
export interface OrtRun {
  wallUs: number;
  nodes: OrtNodeTime[];
  kernels: OrtKernelTime[];
}

interface ProfileEvent {
  cat?: string;
  name?: string;
  ts?: number;
  dur?: number;
  args?: { provider?: string; op_name?: string };
}

/**
 * Runs of an ONNX Runtime profile file (chrome trace format). "Node" events carry each node's
 * host time, op and provider; the WebGPU EP adds "Api" events named node&op&program with
 * GPU durations, timestamped on the host clock, so each is assigned to the run it started in.
 */
export function readOrtProfile(file: string): OrtRun[] {
  const events = JSON.parse(readFileSync(file, 'utf8')) as ProfileEvent[];
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts! - b.ts!);
  const out: OrtRun[] = runs.map((r) => ({ wallUs: r.dur ?? 0, nodes: [], kernels: [] }));
  const runAt = (ts: number): OrtRun | undefined => {
    let i = -1;
    while (i + 1 < runs.length && runs[i + 1]!.ts! <= ts) i++;
    return out[i];
  };
  for (const e of events) {
    if (e.ts === undefined || e.dur === undefined || !e.name) continue;
    if (e.cat === 'Node' && e.args?.provider && e.name.endsWith('_kernel_time')) {
      runAt(e.ts)?.nodes.push({ name: e.name.replace(/_kernel_time$/, ''), op: e.args.op_name ?? '', provider: e.args.provider, us: e.dur });
    } else if (e.cat === 'Api') {
      const [node = e.name, op = '', program = op] = e.name.split('&');
      runAt(e.ts)?.kernels.push({ node, op, program, us: e.dur });
    }
  }
  return out;
}

/** A temporary folder for profile files: `prefix` is ORT's profileFilePrefix; `take` reads and removes them. */
export class ProfileDir {
  private readonly dir = mkdtempSync(join(tmpdir(), 'fusegen-profile-'));
  readonly prefix = join(this.dir, 'run');

  take(): OrtRun[] {
    const runs = readdirSync(this.dir).filter((f) => f.endsWith('.json')).flatMap((f) => readOrtProfile(join(this.dir, f)));
    this.remove();
    return runs;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Placement {
  /** Execution provider -> number of nodes it ran. */
  byProvider: Record<string, number>;
  /** Compute nodes that ran somewhere other than the requested device. */
  fallbacks: string[];
}

/**
 * The WebGPU EP's options: its defaults, overridden by $FUSEGEN_ORT_WEBGPU_OPTIONS (a JSON object
 * of onnxruntime-node's webgpu options, e.g. {"storageBufferCacheMode":"bucket"}) for A/B runs.
 */
export function webgpuEpOptions(): Record<string, string | boolean> {
  const raw = process.env['FUSEGEN_ORT_WEBGPU_OPTIONS'];
  if (!raw) return { ...WEBGPU_EP_DEFAULTS };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = undefined;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UnsupportedError('FUSEGEN_ORT_WEBGPU_OPTIONS', `expected a JSON object, got ${raw}`);
  return { ...WEBGPU_EP_DEFAULTS, ...(parsed as Record<string, string | boolean>) };
}

/**
 * "simple" keeps released storage buffers for reuse by exact size. The default ("bucket")
 * keeps a few per size class, too few for a decode step's 2 x layers new KV-cache outputs
 * at batch 8: opt-1.3b's attention then took 400 us of host time a call, against 135 us with
 * "simple", and the step 28.4 against 22.5 ms (bench/results/2026-12-03-h200-ort-profile).
 * bloom-560m with the sliced MLP, batch 8: 20.83 ms a step against 24.70 with "bucket"
 * (bench/results/2026-12-04-h200-sliced-mlp).
 * The cost: buffers of sizes no longer used stay allocated until the session is released.
 */
const WEBGPU_EP_DEFAULTS: Record<string, string | boolean> = { storageBufferCacheMode: 'simple' };

/** A session that failed for want of a device becomes one clear line. */
export function deviceError(device: Device, e: unknown): unknown {
  const msg = e instanceof Error ? e.message : String(e);
  return device === 'webgpu' && /adapter/i.test(msg) ? noWebgpuAdapter() : e;
}

/** Nodes per execution provider, and the compute nodes that ran off the requested device. */
export function placementOf(runs: OrtRun[], device: Device): Placement {
  const byProvider: Record<string, number> = {};
  const fallbacks: string[] = [];
  for (const n of runs.flatMap((r) => r.nodes)) {
    byProvider[n.provider] = (byProvider[n.provider] ?? 0) + 1;
    if (n.provider !== EP_NAMES[device] && COMPUTE_OPS.has(n.op)) fallbacks.push(`${n.name} (${n.op} on ${n.provider})`);
  }
  return { byProvider, fallbacks };
}

export class Session {
  private placement: Placement | undefined;

  private constructor(
    readonly device: Device,
    private readonly session: ort.InferenceSession,
    private readonly profileDir: ProfileDir,
    private readonly profileAll: boolean,
  ) {}

  static async create(path: string, device: Device, o: SessionOptions = {}): Promise<Session> {
    if (device === 'cuda' && !cudaInstalled()) throw new UnsupportedError('--device', CUDA_MISSING);
    const profileDir = new ProfileDir();
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: [device === 'webgpu' ? { name: 'webgpu', ...webgpuEpOptions() } : device],
      graphOptimizationLevel: 'all',
      enableProfiling: true,
      profileFilePrefix: profileDir.prefix,
      logSeverityLevel: 3,
    };
    if (o.deviceOutputs && device !== 'cpu') {
      options.preferredOutputLocation = Object.fromEntries(o.deviceOutputs.map((n) => [n, 'gpu-buffer' as const]));
    }
    if (o.graphCapture) options.enableGraphCapture = true;
    try {
      return new Session(device, await ort.InferenceSession.create(path, options), profileDir, o.profile === true);
    } catch (e) {
      profileDir.remove();
      throw deviceError(device, e);
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** Runs; the first run is profiled to record node placement, then profiling stops (unless `profile`). */
  async run(feeds: Feeds, fetches?: Record<string, ort.Tensor | null>): Promise<Record<string, ort.Tensor>> {
    const out = fetches ? await this.session.run(feeds, fetches) : await this.session.run(feeds);
    if (!this.placement && !this.profileAll) this.placement = placementOf(this.endProfile(), this.device);
    return out;
  }

  /** With `profile`: ends profiling and returns every run so far (placement is known after it). */
  takeProfile(): OrtRun[] {
    if (!this.profileAll || this.placement) throw new Error('takeProfile() needs a session created with profile, once');
    const runs = this.endProfile();
    this.placement = placementOf(runs, this.device);
    return runs;
  }

  /** Where the profiled run placed nodes; throws when compute fell back off the device. */
  verifyPlacement(): Placement {
    const p = this.placement;
    if (!p) throw new Error('verifyPlacement() before the placement is known (the first run, or takeProfile with profile)');
    if (p.fallbacks.length > 0) {
      throw new UnsupportedError('--device', `${this.device}: ${p.fallbacks.length} compute node(s) fell back to another execution provider (${p.fallbacks.slice(0, 3).join(', ')}${p.fallbacks.length > 3 ? ', ...' : ''})`);
    }
    return p;
  }

  private endProfile(): OrtRun[] {
    this.session.endProfiling();
    return this.profileDir.take();
  }

  async release(): Promise<void> {
    await this.session.release();
    this.profileDir.remove();
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

/**
 * The first `rows` entries of a host tensor's leading dimension, as a tensor over the same memory
 * (a prefix of a row-major array): an op that writes it in place writes the whole tensor's rows.
 */
export function leadingRows(t: ort.Tensor, rows: number): ort.Tensor {
  if (rows === t.dims[0]) return t;
  const data = t.data as Float32Array | Uint16Array;
  const per = data.length / t.dims[0]!;
  return new ort.Tensor(t.type as 'float32' | 'float16', data.subarray(0, rows * per), [rows, ...t.dims.slice(1)]);
}

/** Host copy of a tensor's data as float32 (float16 widened). */
export async function readFloat32(t: ort.Tensor): Promise<Float32Array> {
  const data = t.location === 'cpu' ? t.data : await t.getData();
  if (data instanceof Float32Array) return data;
  if (data instanceof Uint16Array) return Float32Array.from(data, float16BitsToFloat32);
  throw new Error(`readFloat32: unexpected ${t.type}`);
}
