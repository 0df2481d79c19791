/**
 * A saved injected model (`--save_mp_checkpoint_path DIR`): the model as the injected pipeline
 * runs it, in the form that loads fastest, with config and tokenizer copied beside it, so that
 * `--model DIR` runs it without its source checkpoint. `fusegen-injected.json` describes it:
 *
 *   engine 'wgsl': per rank (--world_size), one file of the GPU buffers exactly as uploaded
 *   (quantized blocks, packed QKV and gate/up rows) and the structure that names them;
 *   engine 'ort': the fused ONNX graph and its external data.
 *
 * Every file's size and sha256, the source checkpoint's content key, fusegen's version and the
 * layout of the code that wrote it are recorded: a directory that does not match what reads
 * it is refused with one line, never loaded wrong.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { InputError } from '../errors.js';
import { readJsonObject } from './config.js';

export const SAVED_MANIFEST = 'fusegen-injected.json';
export const SAVED_FORMAT = 'fusegen-injected/1';

export interface SavedFile {
  /** Relative to the saved directory. */
  name: string;
  bytes: number;
  sha256: string;
}

export interface SavedManifest {
  format: typeof SAVED_FORMAT;
  engine: 'wgsl' | 'ort';
  /** fusegen's package version and a digest of the code that wrote the layout: another is refused. */
  fusegen: { version: string; layout: string };
  /** What was injected: the dtype, and the engine's own plan (WGSL matrix type and quantization; ORT's injection plan). */
  dtype: string;
  plan: unknown;
  /** Ranks the layers were split across (WGSL; 1 for ORT). */
  worldSize: number;
  /** The source checkpoint: where it was and its content key (config, tokenizer, weights). */
  source: { dir: string; key: string };
  /** Parameters of the source (for bandwidth and FLOP figures) and its weight bytes on disk. */
  parameters: number;
  sourceWeightBytes: number;
  /** Files holding the model (config and tokenizer copies are not listed: they are read as any checkpoint's). */
  files: SavedFile[];
  /** Engine-specific: WGSL's per-rank structure, ORT's graph file and fusion report. */
  detail: unknown;
}

/** The manifest of a saved directory, or undefined where `dir` holds none. Checks its form and every file's size (not content: the loader hashes as it reads). */
export function readSavedManifest(dir: string): SavedManifest | undefined {
  const path = join(dir, SAVED_MANIFEST);
  if (!existsSync(path)) return undefined;
  const m = readJsonObject(path) as Partial<SavedManifest>;
  const bad = (field: string, why: string) => new InputError(`${path}: ${field}`, why);
  if (m.format !== SAVED_FORMAT) throw bad('format', `expected ${JSON.stringify(SAVED_FORMAT)}, got ${JSON.stringify(m.format)}: written by another fusegen; save the model again`);
  if (m.engine !== 'wgsl' && m.engine !== 'ort') throw bad('engine', `expected "wgsl" or "ort", got ${JSON.stringify(m.engine)}`);
  if (typeof m.fusegen?.version !== 'string' || typeof m.fusegen.layout !== 'string') throw bad('fusegen', 'expected {version, layout} strings');
  if (typeof m.dtype !== 'string') throw bad('dtype', 'expected a string');
  if (!Number.isSafeInteger(m.worldSize) || m.worldSize! < 1) throw bad('worldSize', `expected a positive integer, got ${JSON.stringify(m.worldSize)}`);
  if (typeof m.source?.dir !== 'string' || typeof m.source.key !== 'string') throw bad('source', 'expected {dir, key} strings');
  for (const k of ['parameters', 'sourceWeightBytes'] as const) if (typeof m[k] !== 'number' || m[k]! < 0) throw bad(k, 'expected a non-negative number');
  if (!Array.isArray(m.files) || m.files.length === 0) throw bad('files', 'expected a non-empty list');
  for (const f of m.files) {
    if (typeof f?.name !== 'string' || isAbsolute(f.name) || normalize(f.name).startsWith('..')) throw bad('files', `${JSON.stringify(f?.name)} is not a path inside the directory`);
    if (!Number.isSafeInteger(f.bytes) || typeof f.sha256 !== 'string') throw bad('files', `${f.name}: expected bytes and sha256`);
    const p = join(dir, f.name);
    if (!existsSync(p)) throw new InputError(p, `file not found (listed in ${SAVED_MANIFEST})`);
    const size = statSync(p).size;
    if (size !== f.bytes) throw new InputError(p, `${size} bytes, ${SAVED_MANIFEST} lists ${f.bytes}: truncated or replaced; save the model again`);
  }
  return m as SavedManifest;
}

/** The saved file named `name` in the manifest. */
export function savedFile(m: SavedManifest, name: string): SavedFile {
  const f = m.files.find((x) => x.name === name);
  if (!f) throw new InputError(SAVED_MANIFEST, `lists no file ${name}`);
  return f;
}

/** sha256 of a whole file, read in 8 MiB chunks. */
export function fileSha256(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(8 << 20);
  try {
    let n: number;
    while ((n = readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** fusegen's package version (found from src/ or dist/src/). */
export function fusegenVersion(): string {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Every listed file's content against its sha256 (for files a library reads itself, such as ONNX Runtime's graph). */
export function checkSavedFiles(dir: string, m: SavedManifest): void {
  for (const f of m.files) {
    if (fileSha256(join(dir, f.name)) !== f.sha256) throw new InputError(join(dir, f.name), `content differs from the sha256 ${SAVED_MANIFEST} records (modified or corrupted since it was saved); save the model again`);
  }
}
