/** Shared test helpers: Hugging Face goldens and the fixture models. */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { TopK } from '../src/pipeline/types.js';

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
