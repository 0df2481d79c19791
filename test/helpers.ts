/** Shared test helpers: Hugging Face goldens and the fixture models. */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { FusegenError } from '../src/errors.js';
import type { SequenceResult, TopK } from '../src/pipeline/types.js';

export interface GoldenRow {
  new_ids: number[];
  text: string;
  steps: TopK[];
}
export interface Golden {
  max_new_tokens: number;
  top_k: number;
  checkpoint: { config_sha256: string; weights_sha256: string };
  single: Array<GoldenRow & { prompt: string; input_ids: number[] }>;
  batch: { prompts: string[]; input_ids: number[][]; rows: GoldenRow[] };
}

export function loadGolden(arch: string): Golden {
  return JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'golden', `${arch}.json`), 'utf8')) as Golden;
}

/** Float32 pipelines against Hugging Face's float32 goldens: the largest accepted |logit error|. */
export const LOGIT_ATOL = 1e-4;

export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/**
 * Largest |ours - golden| over the golden's top-k ids at every step; Infinity if an id is missing
 * from ours. With `rtol`, the largest |ours - golden| - rtol * |golden| (compare it with the policy's
 * atol: compare/tolerance.ts's atol + rtol * |reference|).
 */
export function maxLogitError(seq: Pick<SequenceResult, 'topK'>, gold: Pick<GoldenRow, 'steps'>, rtol = 0): number {
  let err = 0;
  gold.steps.forEach((step, i) => {
    const ours = seq.topK?.[i];
    if (!ours) {
      err = Infinity;
      return;
    }
    // A golden id outside our top-k is a tie at the boundary only if its golden logit does not
    // exceed our k-th by more than the tolerance (ours for it is at most our k-th).
    const kth = ours.values[ours.values.length - 1]!;
    step.ids.forEach((id, j) => {
      const k = ours.ids.indexOf(id);
      const gold = step.values[j]!;
      err = Math.max(err, (k < 0 ? Math.max(0, gold - kth) : Math.abs(ours.values[k]! - gold)) - rtol * Math.abs(gold));
    });
  });
  return err;
}

/** What a step that may be refused gave: its value, or what it threw. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

export async function settle<T>(step: () => T | Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await step() };
  } catch (error) {
    return { ok: false, error };
  }
}

export function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** A refusal as the principles ask for it: a FusegenError whose message is one line and names `what`. */
export function expectOneLineRefusal(error: unknown, what: string | RegExp, context: string): void {
  expect(error, `${context}: expected a FusegenError, got ${errorText(error)}`).toBeInstanceOf(FusegenError);
  const message = (error as Error).message;
  expect(message.includes('\n'), `${context}: the refusal is not one line: ${JSON.stringify(message)}`).toBe(false);
  if (typeof what === 'string') expect(message, context).toContain(what);
  else expect(message, context).toMatch(what);
}

/** Debian's Chromium, driven by playwright-core (no browser download); .ci/run installs it. */
export const CHROMIUM = '/usr/bin/chromium';

/** Headless Chromium with a fresh profile and no background networking. */
export async function launchChromium(): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  const profile = mkdtempSync(join(tmpdir(), 'fusegen-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1200, height: 900 },
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Opens a local file with every non-file request blocked (and recorded in `network`);
 * returns the page with the console errors, warnings and page errors it raised.
 */
export async function openOffline(context: BrowserContext, file: string, network: string[]): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') errors.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    if (!r.url().startsWith('file:')) network.push(r.url());
  });
  await page.route('**', (r) => (r.request().url().startsWith('file:') ? r.continue() : r.abort()));
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  return { page, errors };
}

/**
 * Runs the built CLI in a child, waits until `ready` appears on its stdout or stderr, presses
 * Ctrl-C, waits for the first-interrupt notice, presses it again, and returns the exit code,
 * the output and how long the second Ctrl-C took to end it.
 */
export async function interruptTwice(args: string[], ready: { stream: 'stdout' | 'stderr'; re: RegExp }): Promise<{ code: number | null; stdout: string; stderr: string; secondMs: number }> {
  const BIN = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'main.js');
  expect(existsSync(BIN), `${BIN} is missing: build first (npm run build)`).toBe(true);
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (out.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const waitFor = (stream: 'stdout' | 'stderr', re: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (re.test(out[stream])) resolve();
        else if (child.exitCode !== null) reject(new Error(`exited ${child.exitCode} before ${re}: ${out.stderr}`));
        else setTimeout(check, 20);
      };
      check();
    });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await waitFor(ready.stream, ready.re);
    child.kill('SIGINT');
    await waitFor('stderr', /interrupt: finishing the current step/);
    const t = performance.now();
    child.kill('SIGINT');
    const code = await exited;
    return { code, ...out, secondMs: performance.now() - t };
  } finally {
    child.kill('SIGKILL');
  }
}

/** The planted defects of the compare and triage tests live in fixtures/ (scripts use them too). */
export { editedFixture, scaledAttentionFixture, scaledFixture } from '../fixtures/defects.js';

/** The variables a launcher sets, which the CLI reads as defaults: cleared for every inProcessCli run unless the run sets them. */
export const LAUNCHER_ENV = ['LOCAL_RANK', 'WORLD_SIZE', 'FUSEGEN_RANK_DEVICES'];

/** Runs the CLI in this process with `env` over a cleared launcher environment (restored after): its exit code and lines. */
export async function inProcessCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string[]; err: string[] }> {
  const saved = new Map([...LAUNCHER_ENV, ...Object.keys(env)].map((k) => [k, process.env[k]]));
  for (const k of saved.keys()) delete process.env[k];
  Object.assign(process.env, env);
  const out: string[] = [];
  const err: string[] = [];
  const { main } = await import('../src/cli/main.js'); // loaded only by the tests that run the CLI
  try {
    const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out, err };
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
