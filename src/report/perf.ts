/**
 * Performance figures from repeated generate runs: the seed's three lines, computed as the
 * seed computes them, and the figures as the field defines them (vLLM, optimum-benchmark,
 * GenAI-Perf): time to first token, time per output token excluding prefill, decode and
 * prefill tokens/s, weight bandwidth from the real parameter bytes, and 2 x params FLOPs
 * per generated token.
 */
import type { ModelDims } from '../arch/spec.js';
import type { DType, GenerateResult, PipelineInfo } from '../pipeline/types.js';

export interface RunTiming {
  totalMs: number;
  result: GenerateResult;
}

/** Drops warm-up runs: the seed's 3 by default (1 when there are only a few). */
export function measured<T>(runs: T[], warmup?: number): T[] {
  if (warmup !== undefined) return runs.slice(warmup);
  if (runs.length > 3) return runs.slice(3);
  return runs.length > 1 ? runs.slice(1) : runs;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i]!;
}

const f82 = (x: number) => x.toFixed(2).padStart(8);

/**
 * utils.py's Performance.print_perf_stats: latency = run time / max_new_tokens (prefill
 * folded in), parameters = 12 * layers * hidden^2, bytes = 2 for float16, 4 for float32,
 * else 1, and "flops" = parameters * bytes * batch per second.
 */
export function seedPerfLines(runs: RunTiming[], maxNewTokens: number, dims: ModelDims, dtype: DType, batch: number): string[] {
  const lat = measured(runs).map((r) => r.totalMs / 1000 / maxNewTokens);
  if (lat.length === 0) return [];
  const avg = lat.reduce((a, b) => a + b, 0) / lat.length;
  const params = dims.numLayers * dims.hiddenSize * dims.hiddenSize * 12;
  const bytes = dtype === 'float16' ? 2 : dtype === 'float32' ? 4 : 1;
  return [
    `Avg Per Token Latency: ${f82(avg * 1000)} ms`,
    `Avg BW: ${f82(((1 / avg) * params * bytes) / 1e9)} GB/s`,
    `Avg flops: ${f82(((1 / avg) * params * bytes * batch) / 1e12)} TFlops/s`,
  ];
}

export interface DecodeFigures {
  runs: number;
  /** Time to first token (tokenization and prefill), median over runs. */
  ttftMs: number;
  /** Time per output token after the first (prefill excluded): median and p90 over all decode steps. */
  tpotMs: number;
  tpotP90Ms: number;
  /** Throughput: tokens over the summed decode time, so slow steps count in full. */
  decodeTokensPerSec: number;
  prefillTokensPerSec: number;
  bandwidthGBps: number;
  tflops: number;
}

export function decodeFigures(runs: RunTiming[], info: PipelineInfo, batch: number, warmup?: number): DecodeFigures {
  const m = measured(runs, warmup);
  const ttft = median(m.map((r) => r.result.timings.firstTokenMs));
  const steps = m.flatMap((r) => r.result.timings.decodeStepMs);
  const tpot = median(steps);
  const meanStep = steps.reduce((a, b) => a + b, 0) / steps.length;
  const prompt = median(m.map((r) => r.result.promptLength));
  return {
    runs: m.length,
    ttftMs: ttft,
    tpotMs: tpot,
    tpotP90Ms: percentile(steps, 90),
    decodeTokensPerSec: (batch * 1000) / meanStep,
    prefillTokensPerSec: (batch * prompt * 1000) / ttft,
    bandwidthGBps: info.parameterBytes / (tpot / 1000) / 1e9,
    tflops: (2 * info.parameters * batch) / (tpot / 1000) / 1e12,
  };
}

/** `label`: the pipeline that ran, as the caller names it (default: `<info.name> pipeline`). */
export function decodeStats(runs: RunTiming[], info: PipelineInfo, batch: number, label = `${info.name} pipeline`): string[] {
  const d = decodeFigures(runs, info, batch);
  const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
  return [
    `fusegen figures (${label}, ${info.device}, ${info.dtype}, batch ${batch}, ${d.runs} runs after warm-up):`,
    `  Time to first token:   ${fmt(d.ttftMs)} ms (prefill ${fmt(d.prefillTokensPerSec, 1)} tokens/s)`,
    `  Time per output token: ${fmt(d.tpotMs, 3)} ms (p90 ${fmt(d.tpotP90Ms, 3)} ms; prefill excluded)`,
    `  Decode throughput:     ${fmt(d.decodeTokensPerSec, 1)} tokens/s`,
    `  Weight bandwidth:      ${fmt(d.bandwidthGBps, 3)} GB/s (${info.parameterBytes} bytes of weights per decode step)`,
    `  Compute:               ${fmt(d.tflops, 4)} TFLOP/s (2 x ${info.parameters} parameters x tokens)`,
  ];
}
