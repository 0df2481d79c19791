/**
 * Writes a compare report as `<dir>/<YYYYMMDD-HHMMSS>-<model>-compare.json` and `.html`
 * beside it. Each file is written to a temporary file in the same directory, flushed, and
 * renamed over its name, so a reader never sees half a report.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
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
  mkdirSync(dir, { recursive: true });
  const out = { json: join(dir, `${stem}.json`), html: join(dir, `${stem}.html`) };
  writeTextAtomic(out.json, json);
  writeTextAtomic(out.html, html);
  return out;
}
