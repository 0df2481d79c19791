/** config.json and generation_config.json: parsed, with checked field accessors. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.js';

export type RawConfig = Record<string, unknown>;

export function readJsonObject(path: string): RawConfig {
  if (!existsSync(path)) throw new InputError(path, 'file not found');
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InputError(path, `malformed JSON (${(e as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InputError(path, 'expected a JSON object');
  }
  return value as RawConfig;
}

export function readModelConfig(dir: string): { config: RawConfig; path: string } {
  if (!existsSync(dir)) throw new InputError(dir, 'model directory not found');
  if (!statSync(dir).isDirectory()) throw new InputError(dir, 'not a directory');
  const path = join(dir, 'config.json');
  const config = readJsonObject(path);
  if (typeof config['model_type'] !== 'string') throw new InputError(`${path}: model_type`, 'missing or not a string');
  return { config, path };
}

/** generation_config.json is optional; an unreadable one is still an error. */
export function readGenerationConfig(dir: string): RawConfig {
  const path = join(dir, 'generation_config.json');
  return existsSync(path) ? readJsonObject(path) : {};
}

/** Reads the first present key of `keys` as a positive integer. */
export function positiveInt(config: RawConfig, path: string, ...keys: string[]): number {
  const key = keys.find((k) => config[k] !== undefined && config[k] !== null);
  if (key === undefined) throw new InputError(`${path}: ${keys.join(' | ')}`, 'missing');
  const v = config[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw new InputError(`${path}: ${key}`, `expected a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function optionalPositiveInt(config: RawConfig, path: string, key: string): number | undefined {
  return config[key] === undefined || config[key] === null ? undefined : positiveInt(config, path, key);
}

export function positiveNumber(config: RawConfig, path: string, key: string, fallback?: number): number {
  const v = config[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new InputError(`${path}: ${key}`, 'missing');
  }
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new InputError(`${path}: ${key}`, `expected a positive number, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function optionalString(config: RawConfig, path: string, key: string): string | undefined {
  const v = config[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new InputError(`${path}: ${key}`, `expected a string, got ${JSON.stringify(v)}`);
  return v;
}

export function optionalBool(config: RawConfig, path: string, key: string, fallback: boolean): boolean {
  const v = config[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw new InputError(`${path}: ${key}`, `expected true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** A token id field that may be a number or a list of numbers (HF allows both for eos). */
export function tokenIds(config: RawConfig, key: string): number[] {
  const v = config[key];
  if (typeof v === 'number' && Number.isSafeInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isSafeInteger(x));
  return [];
}
