/**
 * Exports a checkpoint as a model directory that transformers.js loads offline: its config
 * and tokenizer files, and `onnx/model{,_fp16}.onnx` with external data. Exports are cached
 * under a key made of the checkpoint's content and the export options; a directory is built
 * under a temporary name and renamed when complete, so an interrupted export is never used.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Checkpoint } from '../arch/checkpoint.js';
import { openWeights } from '../arch/checkpoint.js';
import { fileSha256 } from '../checkpoint/saved.js';
import type { FloatType } from './blocks.js';
import { buildReferenceDecoder } from './decoder.js';
import type { Graph } from './ir.js';
import { writeModel, type Opset } from './onnx-writer.js';
import { WeightSource } from './weights.js';


export const COPIED_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

export interface ExportOptions {
  dtype: FloatType;
  /** Defaults to $FUSEGEN_CACHE, else ~/.cache/fusegen. */
  cacheDir?: string;
}

export interface ExportedModel {
  dir: string;
  /** Path of the .onnx file inside `dir`. */
  path: string;
  cached: boolean;
  key: string;
  exportMs: number;
  /** Whatever the builder reported (fusion counts, ...), kept in fusegen-export.json. */
  meta: Record<string, unknown>;
}

export function defaultCacheDir(): string {
  return process.env['FUSEGEN_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'fusegen');
}

export interface GraphExport {
  /** Distinguishes exports of one checkpoint: `reference-float32`, `injected-...`. */
  variant: string;
  /** File name inside the export directory, e.g. `onnx/model.onnx`. */
  file: string;
  opsets: Opset[];
  /** Also copy config and tokenizer files (what transformers.js loads). */
  copyModelFiles: boolean;
  build: (weights: WeightSource) => { graph: Graph; meta?: Record<string, unknown> };
}

/** Builds a graph from the checkpoint and writes it, or reuses an identical earlier export. */
export function exportGraph(ckpt: Checkpoint, spec: GraphExport, cacheDir = defaultCacheDir()): ExportedModel {
  const t0 = performance.now();
  const store = openWeights(ckpt);
  try {
    // Building the graph reads only tensor headers (weights are produced when written), so
    // its structure can be part of the cache key: any change to the emitters is a new export.
    const { graph, meta = {} } = spec.build(new WeightSource(store, ckpt.spec.weightPrefixes, ckpt.dir));
    // What fusegen read from the config is keyed too: constants computed from it (rotary
    // frequencies, ALiBi slopes, scales) are not in the graph's structure.
    // Weights are checked for NaN/Inf as the export reads them, so an export made with
    // --allow_nonfinite is keyed apart: a later run without the flag never reuses it unchecked.
    const key = contentKey(ckpt, [spec.variant, graphSignature(graph), JSON.stringify(ckpt.dims), ckpt.allowNonfinite ? 'nonfinite-allowed' : 'finite-checked'], cacheDir);
    const dir = join(cacheDir, 'exports', key);
    const path = join(dir, spec.file);
    const manifest = join(dir, 'fusegen-export.json');
    if (existsSync(manifest)) return { dir, path, cached: true, key, exportMs: performance.now() - t0, meta };

    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(dirname(join(tmp, spec.file)), { recursive: true });
    try {
      if (spec.copyModelFiles) for (const f of COPIED_FILES) if (existsSync(join(ckpt.dir, f))) copyFileSync(join(ckpt.dir, f), join(tmp, f));
      const written = writeModel(graph, { path: join(tmp, spec.file), opsets: spec.opsets, metadata: { source: ckpt.dir, variant: spec.variant } });
      writeFileSync(join(tmp, 'fusegen-export.json'), JSON.stringify({ key, source: ckpt.dir, variant: spec.variant, file: spec.file, ...written, ...meta }, null, 2));
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    return { dir, path, cached: false, key, exportMs: performance.now() - t0, meta };
  } finally {
    store.close();
  }
}

/**
 * Holds every tensor the plain graph reads against the shape config.json implies, before any
 * export or run: the graph is built in memory as an export would build it, which reads tensor
 * headers only (weights are produced when written), and dropped. A config that disagrees with
 * its tensors (intermediate_size, num_key_value_heads, head_dim ...) is refused with one line
 * naming config.json and the tensor (exit 2), not found halfway through an export (exit 1).
 */
export function checkWeightShapes(ckpt: Checkpoint): void {
  if (ckpt.saved) return; // held against the config when it was saved; its files against their sha256 when loaded
  const store = openWeights(ckpt);
  try {
    buildReferenceDecoder({ spec: ckpt.spec, dims: ckpt.dims, config: ckpt.config, weights: new WeightSource(store, ckpt.spec.weightPrefixes, ckpt.configPath), dtype: 'float32' });
  } finally {
    store.close();
  }
}

/** The plain graph in the layout transformers.js loads: config, tokenizer, onnx/model{,_fp16}.onnx. */
export function exportReferenceModel(ckpt: Checkpoint, o: ExportOptions): ExportedModel & { tjsDtype: 'fp32' | 'fp16' } {
  const tjsDtype = o.dtype === 'float16' ? 'fp16' : 'fp32';
  const exported = exportGraph(
    ckpt,
    {
      variant: `reference-${o.dtype}`,
      file: tjsDtype === 'fp16' ? 'onnx/model_fp16.onnx' : 'onnx/model.onnx',
      opsets: [{ domain: '', version: 20 }],
      copyModelFiles: true,
      build: (weights) => ({ graph: buildReferenceDecoder({ spec: ckpt.spec, dims: ckpt.dims, config: ckpt.config, weights, dtype: o.dtype }) }),
    },
    o.cacheDir,
  );
  return { ...exported, tjsDtype };
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
  // The weights are the directory's own, or (--checkpoint_path) the listing and the shards it names.
  const own = readdirSync(ckpt.dir).filter((f) => COPIED_FILES.includes(f) || (!ckpt.weights && (f.endsWith('.safetensors') || f === 'model.safetensors.index.json')));
  const files: Array<[string, string]> = [...own.sort().map((f): [string, string] => [f, join(ckpt.dir, f)]), ...(ckpt.weights ? [ckpt.weights.source, ...ckpt.weights.files] : []).map((p): [string, string] => [`weights:${p}`, p])];
  for (const [f, path] of files) {
    const st = statSync(path);
    const memoKey = `${path}\0${st.size}\0${st.mtimeMs}`;
    let digest = memo[memoKey];
    if (!digest) {
      digest = fileSha256(path);
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

/** The checkpoint's content key alone (config, tokenizer and weight files; digests memoized as for exports): what a saved injected model records of its source. */
export function checkpointKey(ckpt: Checkpoint, cacheDir = defaultCacheDir()): string {
  return contentKey(ckpt, [], cacheDir);
}

function safeJson(path: string): Record<string, string> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}
