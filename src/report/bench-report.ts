/**
 * The bench report: plain data, versioned. `bench` builds it; the JSON, HTML and dashboard
 * readers see only this object (and never import bench/). Its JSON Schema and validator are in
 * bench-validate.ts. Bump BENCH_SCHEMA when a field changes meaning.
 *
 * samples, versus, gate and llamaCppTimings came after the first reports were written: all
 * optional, so those reports (bench/results) stay valid and the schema stays /1.
 */
import type { KernelTime } from '../kernels/engine.js';
import type { LlamaCppTimings } from '../pipeline/llamacpp.js';
import type { DType, Device } from '../pipeline/types.js';
import type { StepTimes } from '../pipeline/wgsl.js';
import type { Environment } from './environment.js';
import type { LoadStats } from './load.js';
import type { RatioInterval, RunSamples } from './speed-stats.js';

export const BENCH_SCHEMA = 'fusegen.bench/1';

export type BenchPipeline = 'reference' | 'ort' | 'wgsl' | 'llamacpp';

export interface Stats {
  mean: number;
  median: number;
  p90: number;
  p99: number;
}

/** One ONNX Runtime node role's time in a step (bench/op-profile.ts sums profiled runs into these). */
export interface OpTime {
  /** The node's name with /layers.N/ as /layers.*\/. */
  role: string;
  op: string;
  /** Per step. */
  calls: number;
  /** Host time per step: on the CPU the op's compute, on a GPU its dispatch. */
  hostUs: number;
  /** GPU time per step (WebGPU timestamp queries; 0 where none). */
  gpuUs: number;
}

export interface ProgramTime {
  /** op/program, e.g. GroupQueryAttention/FlashAttentionDecodeQKV. */
  program: string;
  calls: number;
  gpuUs: number;
}

export interface OpProfile {
  /** Steps averaged over. */
  steps: number;
  /** Session.run wall time per step. */
  wallUs: number;
  hostUs: number;
  gpuUs: number;
  /** Largest first: by GPU time where the profile has any, else by host time. */
  ops: OpTime[];
  programs: ProgramTime[];
}

/** Ops, largest first by GPU or by host time. */
export function byTime(ops: OpTime[], key: 'gpuUs' | 'hostUs'): OpTime[] {
  return [...ops].sort((a, b) => b[key] - a[key]);
}

export interface BenchRow {
  pipeline: BenchPipeline;
  batch: number;
  promptLength: number;
  maxNewTokens: number;
  loadMs: number;
  /**
   * The load of the pipeline that ran this row, measured around it (added after the first
   * reports): wall time and peak RSS during it (see report/load.ts). A sweep loads each
   * pipeline once, so its rows share one.
   */
  load?: LoadStats;
  executionProviders: string[];
  /** MatMulNBits' accuracy_level of a quantized ORT-injected graph. */
  accuracyLevel?: 0 | 4;
  ttftMs: Stats;
  tpotMs: Stats;
  e2eMs: Stats;
  decodeTokensPerSec: number;
  prefillTokensPerSec: number;
  bandwidthGBps: number;
  tflops: number;
  peakRssMB: number;
  /** Median decode-step latency at each context position, and the positions more than 3x the median (cliffs). */
  perPosition: Array<[number, number]>;
  outlierPositions: number[];
  /** The measured runs' raw timings (warm-up excluded), for intervals and later baselines. */
  samples?: RunSamples[];
  /**
   * Against the sweep's first pipeline at the same batch and prompt length: its median time per
   * output token over this row's (above 1: this row faster), with a bootstrap interval.
   */
  versus?: { pipeline: BenchPipeline; tpotSpeedup: RatioInterval };
  /** WGSL engine only: host time encoding a step (of it, in queue.submit) vs waiting for the GPU and the readback. */
  stepProfile?: StepTimes;
  /** WGSL engine only: GPU time of one decode step's dispatches in one pass, as they run (timestamp queries). */
  stepGpuUs?: number;
  /** WGSL engine only: GPU time per kernel of that step (each dispatch in its own pass), largest first. */
  kernelProfile?: KernelTime[];
  /** WGSL engine only: the same for the prompt's step (the time to first token's GPU part). */
  prefillGpuUs?: number;
  prefillKernelProfile?: KernelTime[];
  /** ONNX Runtime pipelines with --profile: the prompt's step and the mean decode step, per op. */
  opProfile?: { prefill: OpProfile; decode: OpProfile };
  /**
   * llamacpp only (added after the first reports): llama.cpp's own counters (llama_perf_context)
   * for one more run of the point after the measured ones, the prompt's step and the decode steps
   * each beside fusegen's wall time of it, and the backend (cpu, or vulkan and its devices) that ran.
   */
  llamaCppTimings?: LlamaCppTimings;
}

/** One row's speed against the same point of a baseline report. */
export interface BaselineRow {
  pipeline: BenchPipeline;
  batch: number;
  promptLength: number;
  baselineTpotMs: number;
  tpotMs: number;
  /** The baseline's median time per output token over this run's (above 1: this run faster), with its interval. */
  speedRatio: RatioInterval;
  /** (1 - speedRatio.estimate) x 100. */
  regressionPct: number;
  /** The slowdown is significant: the whole interval below 1. */
  significant: boolean;
  /** Significant and more than the allowed regression: this row fails the gate. */
  fails: boolean;
}

/** `bench --baseline`: each row against the baseline report's row of the same point. */
export interface BenchGate {
  exitCode: 0 | 1;
  reasons: string[];
  baseline: {
    file: string;
    maxRegressionPct: number;
    rows: BaselineRow[];
    /** Rows of this run the baseline has no point for (pipeline/batch/prompt). */
    unmatched: string[];
  };
}

export interface BenchReport {
  schema: typeof BENCH_SCHEMA;
  status: 'complete' | 'interrupted';
  createdAt: string;
  model: { dir: string; modelType: string; parameters: number };
  device: Device;
  dtype: DType;
  environment: Environment;
  rows: BenchRow[];
  /** With --baseline. */
  gate?: BenchGate;
}

/** A row's point, as gate reasons and the console name it. */
export function pointName(r: Pick<BenchRow, 'pipeline' | 'batch' | 'promptLength'>): string {
  return `${r.pipeline} b${r.batch} p${r.promptLength}`;
}
