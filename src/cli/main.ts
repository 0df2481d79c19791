#!/usr/bin/env node
/**
 * The CLI edge: parses flags from the option tables, runs the command, and turns every
 * FusegenError into one line on stderr with exit code 2. Nothing else catches errors.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { FusegenError, UsageError } from '../errors.js';
import { benchOptions, runBenchCommand, type BenchCliOptions } from './bench.js';
import { dashboardOptions, runDashboardCommand, type DashboardCliOptions } from './dashboard.js';
import { compareOptions, runCompareCommand, type CompareCliOptions } from './compare.js';
import { generateOptions, runGenerate, type GenerateOptions } from './generate.js';
import { runServe, serveOptions, type ServeCliOptions } from './serve.js';
import { defaultNote, type AbortWriter, type OptionTable } from './options.js';

function addOptions<O>(cmd: Command, table: OptionTable<O>): void {
  for (const spec of Object.values(table) as Array<OptionTable<O>[keyof O]>) {
    const opt = new Option(spec.arg ? `--${spec.flag} <${spec.arg}>` : `--${spec.flag}`, `${spec.help}${defaultNote(spec)}`);
    if (spec.arg) {
      opt.argParser((raw: string) => {
        // `--model --max_new_tokens 8`: the next flag is not the value of one that lacks its own.
        if (raw.startsWith('--')) throw new UsageError(`--${spec.flag}`, `needs a value, got the flag ${raw}`);
        return spec.parse ? spec.parse(raw, spec.flag) : raw;
      });
    }
    cmd.addOption(opt);
  }
  // Stray words are refused by name in refuseStray (commander's message does not name them).
  cmd.allowExcessArguments(true);
}

/**
 * A word that is no flag's value (`generate foo`, `--greedy 8`): refused naming it, and the
 * switch before it when that takes no value.
 */
function refuseStray<O>(cmd: Command, table: OptionTable<O>, argv: string[]): void {
  const stray = cmd.args[0];
  if (stray === undefined) return;
  const switches = new Set((Object.values(table) as Array<OptionTable<O>[keyof O]>).filter((s) => !s.arg).map((s) => `--${s.flag}`));
  const at = argv.findIndex((a, i) => a === stray && i > 0 && switches.has(argv[i - 1]!));
  const hint = at > 0 ? `${argv[at - 1]!} takes no value` : `'${cmd.name()}' takes only --flags, each value right after its flag`;
  throw new UsageError(`argument "${stray}"`, `unexpected: ${hint}`);
}

/** Parsed flags plus defaults (environment first, then the table's). */
function resolve<O>(table: OptionTable<O>, parsed: Record<string, unknown>): O {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(table) as Array<[string, OptionTable<O>[keyof O]]>) {
    const envRaw = spec.env ? process.env[spec.env] : undefined;
    out[key] = parsed[spec.flag] ?? (envRaw !== undefined && spec.parse ? parseEnv(spec.env!, envRaw, spec) : spec.default);
  }
  return out as O;
}

/** An environment default is blamed on the variable, not on a flag the user never typed. */
function parseEnv<T>(name: string, raw: string, spec: { flag: string; parse?: (raw: string, flag: string) => T }): T {
  try {
    return spec.parse!(raw, spec.flag);
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(`${name} (environment, default for --${spec.flag})`, e.message.slice(e.culprit.length + 2));
    throw e;
  }
}

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Where a progress bar may be drawn in place (stderr when it is a terminal). */
  terminal?: NodeJS.WritableStream;
}

const consoleIo: CliIo = { out: (l) => console.log(l), err: (l) => console.error(l), ...(process.stderr.isTTY ? { terminal: process.stderr } : {}) };


export async function main(argv: string[], io: CliIo = consoleIo): Promise<number> {
  let interrupted = false;
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  let abortWriter: AbortWriter;
  const onAbort = (w: AbortWriter) => {
    abortWriter = w;
  };
  // First Ctrl-C: the command finishes its current step and reports what finished. Second:
  // stop now, but still write the partial report (the points that finished) before exiting.
  const onSigint = () => {
    if (interrupted) {
      try {
        abortWriter?.();
      } catch (e) {
        io.err(`error: writing the partial report: ${(e as Error).message}`);
      }
      process.exit(130);
    }
    interrupted = true;
    stop();
    io.err('interrupt: finishing the current step; press Ctrl-C again to stop now (what finished is still reported)');
  };
  const program = new Command('fusegen')
    .description('Kernel-injected LLM inference for Node.js, checked against a reference pipeline')
    .exitOverride()
    // Commander's own errors (unknown option and its suggestion, missing value) as one line.
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()), outputError: (s, write) => write(oneLine(s)) });

  let code = 0;
  const generate = program.command('generate').description("run the seed's prompts through a pipeline (DeepSpeed's inference-test.py)").exitOverride();
  addOptions(generate, generateOptions);
  generate.action(async (parsed: Record<string, unknown>) => {
    refuseStray(generate, generateOptions, argv);
    code = await runGenerate(resolve<GenerateOptions>(generateOptions, parsed), { out: io.out, interrupted: () => interrupted });
  });
  const compare = program.command('compare').description("reference vs fusegen on the seed's prompts: verdicts, reports, gate (DeepSpeed's ds-hf-compare.py)").exitOverride();
  addOptions(compare, compareOptions);
  compare.action(async (parsed: Record<string, unknown>) => {
    refuseStray(compare, compareOptions, argv);
    code = await runCompareCommand(resolve<CompareCliOptions>(compareOptions, parsed), argv.slice(1), { out: io.out, err: io.err, interrupted: () => interrupted, onAbort });
  });
  const bench = program.command('bench').description('pipelines side by side: latency and throughput sweeps, reports for dashboards').exitOverride();
  addOptions(bench, benchOptions);
  bench.action(async (parsed: Record<string, unknown>) => {
    refuseStray(bench, benchOptions, argv);
    code = await runBenchCommand(resolve<BenchCliOptions>(benchOptions, parsed), { ...io, interrupted: () => interrupted, onAbort });
  });
  const dashboard = program.command('dashboard').description('one HTML page over all bench and compare reports: trends over time, every run linked').exitOverride();
  addOptions(dashboard, dashboardOptions);
  dashboard.action((parsed: Record<string, unknown>) => {
    refuseStray(dashboard, dashboardOptions, argv);
    code = runDashboardCommand(resolve<DashboardCliOptions>(dashboardOptions, parsed), { out: io.out });
  });

  const serve = program.command('serve').description('an OpenAI-compatible server over a pipeline, continuously batched: /v1/completions, /v1/chat/completions, /metrics').exitOverride();
  addOptions(serve, serveOptions);
  serve.action(async (parsed: Record<string, unknown>) => {
    refuseStray(serve, serveOptions, argv);
    process.once('SIGTERM', stop);
    code = await runServe(resolve<ServeCliOptions>(serveOptions, parsed), { out: io.out, stopped });
  });

  process.on('SIGINT', onSigint);
  try {
    if (argv.length === 0) throw new UsageError('command', 'missing: fusegen generate | compare | bench | serve | dashboard (fusegen --help describes them)');
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit through here with code 0.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof FusegenError) {
      io.err(`error: ${e.message}`);
      return 2;
    }
    io.err(`error: ${(e as Error).stack ?? String(e)}`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

function oneLine(s: string): string {
  return s.trim().split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
}

// Run when executed directly (also through npm's bin symlink), not when imported by tests.
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
