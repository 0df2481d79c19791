/** Shared test helpers: Hugging Face goldens and the fixture models. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
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

