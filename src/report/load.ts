/**
 * What loading a pipeline costs: its wall time and the process's peak resident set size while
 * it loads (export or cache hit, session or GPU upload, warm-up compile). The seed's
 * `--use_meta_tensor` exists so that a large model never sits whole in host memory; these
 * figures show whether it does.
 *
 * The peak is the kernel's high-water mark (VmHWM), reset just before the load where Linux
 * allows it (/proc/self/clear_refs, "5"), so it is the peak of this load alone even after
 * earlier loads in the same process (bench). Elsewhere it falls back to the process's lifetime
 * peak (process.resourceUsage().maxRSS), an upper bound, and says so.
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface LoadStats {
  /** Wall time of the load, ms. */
  ms: number;
  /** Highest resident set size during the load, MiB. */
  peakRssMB: number;
  /** Resident set size just before the load, MiB. */
  startRssMB: number;
  /** Resident set size when the load finished, MiB. */
  endRssMB: number;
  /** Of `ms`, the weights' way to the device, where the pipeline measures it (the WGSL engine). */
  weightsMs?: number;
  /** How the peak was taken: the high-water mark reset before the load, or the process's lifetime peak (an upper bound). */
  peakSource: 'vmhwm-reset' | 'process-maxrss';
}

const MiB = 2 ** 20;

/** VmHWM in bytes, or undefined where /proc/self/status has none. */
function highWaterMark(): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Resets VmHWM to the current RSS; false where the kernel does not let us. */
function resetHighWaterMark(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return highWaterMark() !== undefined;
  } catch {
    return false;
  }
}

/** Runs `load` and measures it; a pipeline's own measure of its weights' upload comes along. */
export async function measureLoad<T extends { info?: { weightsMs?: number } }>(load: () => Promise<T>): Promise<{ value: T; load: LoadStats }> {
  const startRss = process.memoryUsage.rss();
  const reset = resetHighWaterMark();
  const t0 = performance.now();
  const value = await load();
  const ms = performance.now() - t0;
  const endRss = process.memoryUsage.rss();
  const hwm = reset ? highWaterMark() : undefined;
  const peak = Math.max(hwm ?? process.resourceUsage().maxRSS * 1024, endRss);
  return {
    value,
    load: {
      ms, peakRssMB: peak / MiB, startRssMB: startRss / MiB, endRssMB: endRss / MiB, peakSource: hwm !== undefined ? 'vmhwm-reset' : 'process-maxrss',
      ...(value.info?.weightsMs !== undefined ? { weightsMs: value.info.weightsMs } : {}),
    },
  };
}

/** generate --test_performance's line, under fusegen's figures: the load's time and peak RSS, against the weights' bytes on disk. */
export function loadLine(s: LoadStats, weightBytes: number): string {
  const peak = s.peakSource === 'vmhwm-reset' ? 'peak RSS during load' : "peak RSS (the process's lifetime peak)";
  const streamed = s.weightsMs !== undefined ? `; weights on the device in ${(s.weightsMs / 1000).toFixed(2)} s` : '';
  return `  Load:                  ${(s.ms / 1000).toFixed(2)} s, ${peak} ${s.peakRssMB.toFixed(0)} MiB (${s.startRssMB.toFixed(0)} MiB before, ${s.endRssMB.toFixed(0)} MiB after; weights ${(weightBytes / MiB).toFixed(0)} MiB on disk${streamed})`;
}
