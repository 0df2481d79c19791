/**
 * Exports a checkpoint as a model directory that transformers.js loads offline: its config
 * and tokenizer files, and `onnx/model{,_fp16}.onnx` with external data. Exports are cached
 * under a key made of the checkpoint's content and the export options; a directory is built
 * under a temporary name and renamed when complete, so an interrupted export is never used.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, openSync, readFileSync, readSync, closeSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Checkpoint } from '../checkpoint/checkpoint.js';
import { openWeights } from '../checkpoint/checkpoint.js';
import type { FloatType } from './blocks.js';
import { buildReferenceDecoder } from './decoder.js';
import type { Graph } from './ir.js';
import { writeModel } from './onnx-writer.js';
import { WeightSource } from './weights.js';


const COPIED_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

export interface ExportOptions {
  dtype: FloatType;
  /** Defaults to $FUSEGEN_CACHE, else ~/.cache/fusegen. */
  cacheDir?: string;
}

export interface ExportedModel {
  dir: string;
  /** transformers.js' dtype name for the file written: fp32 -> model.onnx, fp16 -> model_fp16.onnx */
  tjsDtype: 'fp32' | 'fp16';
  cached: boolean;
  key: string;
  exportMs: number;
}

export function defaultCacheDir(): string {
  return process.env['FUSEGEN_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'fusegen');
}

export function exportReferenceModel(ckpt: Checkpoint, o: ExportOptions): ExportedModel {
  const t0 = performance.now();
  const cacheDir = o.cacheDir ?? defaultCacheDir();
  const tjsDtype = o.dtype === 'float16' ? 'fp16' : 'fp32';
  const store = openWeights(ckpt);
  try {
    // Building the graph reads only tensor headers (weights are produced when written), so
    // its structure can be part of the cache key: any change to the emitters is a new export.
    const graph = buildReferenceDecoder({
      spec: ckpt.spec,
      dims: ckpt.dims,
      config: ckpt.config,
      weights: new WeightSource(store, ckpt.spec.weightPrefixes, ckpt.dir),
      dtype: o.dtype,
    });
    const key = contentKey(ckpt, [o.dtype, graphSignature(graph)], cacheDir);
    const dir = join(cacheDir, 'exports', key);
    if (existsSync(join(dir, 'fusegen-export.json'))) return { dir, tjsDtype, cached: true, key, exportMs: performance.now() - t0 };

    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, 'onnx'), { recursive: true });
    try {
      for (const f of COPIED_FILES) if (existsSync(join(ckpt.dir, f))) copyFileSync(join(ckpt.dir, f), join(tmp, f));
      const file = tjsDtype === 'fp16' ? 'model_fp16.onnx' : 'model.onnx';
      const written = writeModel(graph, { path: join(tmp, 'onnx', file), opsets: [{ domain: '', version: 20 }], metadata: { source: ckpt.dir } });
      writeFileSync(join(tmp, 'fusegen-export.json'), JSON.stringify({ key, source: ckpt.dir, dtype: o.dtype, file, ...written }, null, 2));
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    return { dir, tjsDtype, cached: false, key, exportMs: performance.now() - t0 };
  } finally {
    store.close();
  }
}

/** The graph's structure: nodes, I/O and initializer names, types and shapes (no data). */
function graphSignature(g: Graph): string {
  const h = createHash('sha256');
  h.update(JSON.stringify([g.inputs, g.outputs, g.nodes, g.initializers.map((i) => [i.name, i.type, i.dims])]));
  return h.digest('hex');
}

/**
 * sha256 over the options, config and tokenizer files and every weight file's content.
 * Weight-file digests are memoized by (path, size, mtime) so large checkpoints are hashed once.
 */
function contentKey(ckpt: Checkpoint, options: string[], cacheDir: string): string {
  const h = createHash('sha256');
  h.update(options.join('\0'));
  const memoPath = join(cacheDir, 'file-digests.json');
  const memo: Record<string, string> = existsSync(memoPath) ? safeJson(memoPath) : {};
  let memoChanged = false;
  const files = readdirSync(ckpt.dir).filter((f) => COPIED_FILES.includes(f) || f.endsWith('.safetensors') || f === 'model.safetensors.index.json').sort();
  for (const f of files) {
    const path = join(ckpt.dir, f);
    const st = statSync(path);
    const memoKey = `${path}\0${st.size}\0${st.mtimeMs}`;
    let digest = memo[memoKey];
    if (!digest) {
      digest = fileDigest(path);
      if (st.size > 16 << 20) {
        memo[memoKey] = digest;
        memoChanged = true;
      }
    }
    h.update(`${f}\0${digest}\0`);
  }
  if (memoChanged) {
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(`${memoPath}.tmp-${process.pid}`, JSON.stringify(memo));
    renameSync(`${memoPath}.tmp-${process.pid}`, memoPath);
  }
  return `${ckpt.modelType}-${h.digest('hex').slice(0, 20)}`;
}

function fileDigest(path: string): string {
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

function safeJson(path: string): Record<string, string> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}
