/**
 * Writes a compare report as `<dir>/<YYYYMMDD-HHMMSS>-<model>-compare.json` and `.html`
 * beside it. Each file is written to a temporary file in the same directory, flushed, and
 * renamed over its name, so a reader never sees half a report.
 *
 * `prepareOutputDir` creates an output directory and proves it writable (a probe file created
 * and removed) before a command does any work, so a bad `--report_dir` or `--out` costs one
 * line and exit 2, never a finished run.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join, parse, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import type { CompareReport } from './compare-report.js';
import { validateCompareReport } from './compare-validate.js';
import { renderCompareHtml } from './html.js';

/** `2024-05-01T12:03:04.567Z` -> `20240501-120304` (UTC). */
export function reportTimestamp(createdAt: string): string {
  const d = new Date(createdAt);
  if (Number.isNaN(d.getTime())) throw new Error(`invalid compare report: createdAt: not a date (${JSON.stringify(createdAt)})`);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

/** The last path component of a model directory, reduced to `[A-Za-z0-9._-]`. */
export function modelBasename(dir: string): string {
  const last = dir.split(/[\\/]+/).filter((s) => s.length > 0).pop() ?? '';
  const safe = last.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);
  return /^[._]*$/.test(safe) ? 'model' : safe;
}

const errno = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? '';
const reason = (e: unknown): string => {
  const code = errno(e);
  const msg = (e as Error).message.replace(/^[A-Z]+: /, '').replace(/,.*$/, '');
  return code ? `${code}: ${msg}` : msg;
};

/**
 * Creates `dir` (and its parents) and proves it writable by creating and removing a probe file;
 * returns its absolute path. Every failure is one UsageError naming `flag` and the path: a file
 * where a directory should be, a path under a file, an unwritable or virtual place (/proc,
 * /sys). Parents are made one by one: Node's recursive mkdir loops forever under /proc.
 */
export function prepareOutputDir(flag: string, dir: string): string {
  const abs = resolve(dir);
  const fail = (why: string): never => {
    throw new UsageError(flag, `${dir}: ${why}`);
  };
  // The nearest existing ancestor (or abs itself) must be a directory.
  const missing: string[] = [];
  let at = abs;
  for (;;) {
    let st;
    try {
      st = statSync(at);
    } catch (e) {
      // ENOTDIR: a file further up, which the walk reaches and names.
      if ((errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') && at !== parse(at).root) {
        missing.unshift(at);
        at = dirname(at);
        continue;
      }
      return fail(`cannot use it (${reason(e)})`);
    }
    if (!st.isDirectory()) return fail(at === abs ? 'is a file, not a directory' : `lies under ${at}, a file, not a directory`);
    break;
  }
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (e) {
      if (errno(e) !== 'EEXIST') return fail(`cannot create ${d} (${reason(e)})`);
      if (!statSync(d).isDirectory()) return fail(`${d} is a file, not a directory`);
    }
  }
  const probe = join(abs, `.fusegen-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const fd = openSync(probe, 'wx');
    try {
      writeSync(fd, 'probe');
    } finally {
      closeSync(fd);
    }
    unlinkSync(probe);
  } catch (e) {
    rmSync(probe, { force: true });
    return fail(`not writable (${reason(e)})`);
  }
  return abs;
}

let seq = 0;

/** Writes `text` to a temporary file beside `path`, flushes it and renames it into place. */
export function writeTextAtomic(path: string, text: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.${seq++}.tmp`);
  try {
    const fd = openSync(tmp, 'wx');
    try {
      const bytes = Buffer.from(text, 'utf8');
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

export function writeCompareReports(report: CompareReport, dir: string): { json: string; html: string } {
  validateCompareReport(report);
  const stem = `${reportTimestamp(report.createdAt)}-${modelBasename(report.model.dir)}-compare`;
  // Render before touching the disk: a rendering error leaves nothing behind.
  const json = `${JSON.stringify(report, null, 2)}\n`;
  const html = renderCompareHtml(report);
  prepareOutputDir('--report_dir', dir);
  const out = { json: join(dir, `${stem}.json`), html: join(dir, `${stem}.html`) };
  writeTextAtomic(out.json, json);
  writeTextAtomic(out.html, html);
  return out;
}
