/**
 * A long sweep's progress on stderr. On a terminal: one bar redrawn in place, with the run
 * count, the time left and the current point (cli-progress). Elsewhere (logs, CI, tests): one
 * line per point, which stays readable in a log file.
 */
import cliProgress from 'cli-progress';
import type { BenchProgress } from '../../bench/run.js';

export interface ProgressSink {
  update(p: BenchProgress): void;
  /** Ends the bar (also when the run failed), so later output starts on a clean line. */
  stop(): void;
}

export function progressSink(err: (line: string) => void, terminal?: NodeJS.WritableStream): ProgressSink {
  if (!terminal) {
    return {
      update: (p) => {
        if (p.step === 'warm-up') err(`[${p.point}/${p.points}] ${p.what}`);
        if (p.step === 'profile warm-up') err(`profiling ${p.what} per op`);
      },
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar(
    { stream: terminal, format: 'bench [{bar}] run {value}/{total} | {eta_formatted} left | {what}', hideCursor: true, etaBuffer: 8, fps: 4 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update: (p) => {
      const payload = { what: `[${p.point}/${p.points}] ${p.what}, ${p.step}` };
      if (started) bar.update(p.run, payload);
      else bar.start(p.runs, p.run, payload);
      started = true;
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}
