/**
 * Where a run happened: versions, commit, platform. Both suites (compare/, bench/) record it in
 * their reports, so it lives here, below both: neither suite imports the other.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fusegenVersion } from '../checkpoint/saved.js';

/** A dependency's version, found by walking up from its entry point (exports maps hide package.json). */
export function packageVersion(name: string): string {
  try {
    let dir = dirname(createRequire(import.meta.url).resolve(name));
    while (dir !== dirname(dir)) {
      const p = join(dir, 'package.json');
      if (existsSync(p)) {
        const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name) return pkg.version ?? 'unknown';
      }
      dir = dirname(dir);
    }
  } catch {
    // not installed
  }
  return 'unknown';
}

export function projectRoot(): string {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

/** What every report records about where it ran. */
export interface Environment {
  node: string;
  platform: string;
  fusegen: string;
  onnxruntimeNode: string;
  transformersJs: string;
  gitCommit: string | null;
}

export function environment(): Environment {
  const root = projectRoot();
  let gitCommit: string | null = null;
  try {
    gitCommit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() || null;
  } catch {
    gitCommit = null;
  }
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    fusegen: fusegenVersion(),
    onnxruntimeNode: packageVersion('onnxruntime-node'),
    transformersJs: packageVersion('@huggingface/transformers'),
    gitCommit,
  };
}
