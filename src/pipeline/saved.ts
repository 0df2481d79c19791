/**
 * The seed's --save_mp_checkpoint_path: the kernel-injected model saved in the form that loads
 * fastest (checkpoint/saved.ts describes it), and the checks a saved directory passes before a
 * pipeline runs it: its engine, dtype and rank count are the run's, the code that wrote its
 * layout is this one, and its source checkpoint, where still present, is unchanged.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { openCheckpoint, weightBytes, type Checkpoint } from '../arch/checkpoint.js';
import { fileSha256, fusegenVersion, SAVED_FORMAT, SAVED_MANIFEST, type SavedFile, type SavedManifest } from '../checkpoint/saved.js';
import { UsageError, InputError } from '../errors.js';
import { checkpointKey, COPIED_FILES } from '../graph/export.js';
import { ALL_FUSIONS } from '../inject/plan.js';
import { weightsLayoutDigest } from '../kernels/saved-weights.js';
import { parameterCount } from './common.js';
import type { Backend, PipelineRun } from './backend.js';
import { InjectedPipeline, type SavedOrt } from './injected.js';
import type { TextGenerationPipeline } from './types.js';
import { WgslPipeline } from './wgsl.js';

/** Whether a backend runs a kernel-injected model, which is what a save holds. */
function injects(b: Backend): boolean {
  return b.kind === 'wgsl' || (b.kind === 'ort' && Object.values(b.fusions ?? ALL_FUSIONS).some(Boolean));
}

/** The ORT graph's layout is the ONNX file itself, which ONNX Runtime reads as any model. */
const ORT_LAYOUT = 'onnx';

/**
 * Refuses, before any work, a --save_mp_checkpoint_path that cannot take the model: a file, or
 * a non-empty directory that is not an earlier save (which is replaced; nothing else is).
 */
export function checkSaveTarget(dir: string, backend: Backend): void {
  if (!injects(backend)) {
    throw new UsageError('--save_mp_checkpoint_path', 'saves the kernel-injected model: add --use_kernel (the WGSL engine, or the ORT-injected pipeline)');
  }
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw new UsageError('--save_mp_checkpoint_path', `${dir} is a file, not a directory`);
  if (readdirSync(dir).length > 0 && !existsSync(join(dir, SAVED_MANIFEST))) throw new UsageError('--save_mp_checkpoint_path', `${dir} is not empty and holds no saved model (${SAVED_MANIFEST}): give an empty or new directory`);
}

/**
 * Writes the pipeline's injected model to `dir`: the WGSL engine's GPU buffers (one file per
 * rank) or the ORT-injected graph and its external data, config and tokenizer copies, and the
 * manifest last. Written beside `dir` and renamed into place, so an interrupted save leaves
 * no half directory.
 */
export async function saveInjected(pipe: TextGenerationPipeline, ckpt: Checkpoint, dir: string): Promise<{ bytes: number; ms: number }> {
  const t0 = performance.now();
  const tmp = join(dirname(dir), `.${basename(dir)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    let body: Pick<SavedManifest, 'engine' | 'plan' | 'worldSize' | 'files' | 'detail' | 'fusegen'>;
    if (pipe instanceof WgslPipeline) {
      const { files, detail } = await pipe.engine.saveWeights(tmp);
      body = { engine: 'wgsl', plan: pipe.plan, worldSize: detail.ranks.length, files, detail, fusegen: { version: fusegenVersion(), layout: weightsLayoutDigest() } };
    } else if (pipe instanceof InjectedPipeline && pipe.fusionsOn) {
      const files: SavedFile[] = [];
      for (const f of [basename(pipe.graphPath), `${basename(pipe.graphPath)}_data`]) {
        const from = join(dirname(pipe.graphPath), f);
        if (!existsSync(from)) continue;
        copyFileSync(from, join(tmp, f));
        files.push({ name: f, bytes: statSync(from).size, sha256: fileSha256(from) });
      }
      const detail: SavedOrt = { file: basename(pipe.graphPath), fused: pipe.fused };
      body = { engine: 'ort', plan: pipe.plan, worldSize: 1, files, detail, fusegen: { version: fusegenVersion(), layout: ORT_LAYOUT } };
    } else {
      throw new UsageError('--save_mp_checkpoint_path', 'saves the kernel-injected model: add --use_kernel');
    }
    for (const f of COPIED_FILES) if (existsSync(join(ckpt.dir, f))) copyFileSync(join(ckpt.dir, f), join(tmp, f));
    const manifest: SavedManifest = {
      format: SAVED_FORMAT,
      ...body,
      dtype: pipe.info.dtype,
      source: { dir: ckpt.dir, key: checkpointKey(ckpt) },
      parameters: parameterCount(ckpt),
      sourceWeightBytes: weightBytes(ckpt),
    };
    writeFileSync(join(tmp, SAVED_MANIFEST), JSON.stringify(manifest, null, 1));
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
    return { bytes: manifest.files.reduce((a, f) => a + f.bytes, 0), ms: performance.now() - t0 };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Saved checkpoints whose code and source were already checked (the CLI checks before any work, createPipeline again). */
const unchanged = new WeakSet<Checkpoint>();

/**
 * A saved model runs only as it was saved: by its engine, at its dtype and rank count, read by
 * the code that wrote its layout, and from a source that has not changed since (where the
 * source is gone, the files' own sha256, checked as they load, still hold it). One line each.
 */
export function checkSavedRun(ckpt: Checkpoint, backend: Backend, run: PipelineRun): void {
  const s = ckpt.saved;
  if (!s) return;
  const saved = `${ckpt.dir} holds ${s.engine === 'wgsl' ? "the WGSL engine's" : "the ORT-injected pipeline's"} ${s.dtype} model${s.worldSize > 1 ? ` for --world_size ${s.worldSize}` : ''}`;
  const runsIt = s.engine === 'wgsl' ? backend.kind === 'wgsl' : backend.kind === 'ort' && injects(backend);
  if (!runsIt) throw new UsageError('--model', `${saved}: run it with --use_kernel${s.engine === 'wgsl' ? ' --device webgpu' : ' --kernels ort'} (other pipelines need the source checkpoint, ${s.source.dir})`);
  if (s.dtype !== run.dtype) throw new UsageError('--dtype', `${saved}; this run asks for ${run.dtype}`);
  const worldSize = backend.kind === 'wgsl' ? (backend.worldSize ?? 1) : 1;
  if (s.worldSize !== worldSize) throw new UsageError('--world_size', `${saved}; this run has ${worldSize} rank${worldSize === 1 ? '' : 's'}`);
  if (unchanged.has(ckpt)) return;
  const version = fusegenVersion();
  const layout = s.engine === 'wgsl' ? weightsLayoutDigest() : ORT_LAYOUT;
  if (s.fusegen.version !== version || s.fusegen.layout !== layout) {
    throw new InputError(join(ckpt.dir, SAVED_MANIFEST), `written by fusegen ${s.fusegen.version} (layout ${s.fusegen.layout}), this is ${version} (layout ${layout}): save the model again`);
  }
  if (existsSync(join(s.source.dir, 'config.json'))) {
    let key: string;
    try {
      key = checkpointKey(openCheckpoint(s.source.dir));
    } catch (e) {
      throw new InputError(join(ckpt.dir, SAVED_MANIFEST), `its source ${s.source.dir} no longer opens (${(e as Error).message}): save the model again`);
    }
    if (key !== s.source.key) throw new InputError(join(ckpt.dir, SAVED_MANIFEST), `its source ${s.source.dir} changed since it was saved (content key ${key}, saved from ${s.source.key}): save the model again`);
  }
  unchanged.add(ckpt);
}

/** The line a run prints once it saved the injected model. */
export function savedLine(dir: string, s: { bytes: number; ms: number }): string {
  return `saved the injected model to ${dir}: ${(s.bytes / 2 ** 20).toFixed(1)} MiB in ${(s.ms / 1000).toFixed(2)} s (run it with --model ${dir})`;
}
