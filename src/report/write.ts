/**
 * Where reports go, and how they get there.
 *
 * - `prepareOutputDir` creates an output directory and proves it writable (a probe file created
 *   and removed) before a command does any work, so a bad `--report_dir` or `--out` costs one
 *   line and exit 2, never a finished run.
 * - Reports are named `<YYYYMMDD-HHMMSS-mmm>-<random>-<model>-<kind>` (UTC, milliseconds, six
 *   random hex digits) and created exclusively: each file is written to a temporary file in the
 *   same directory, flushed, and hard-linked to its name, which fails rather than replace an
 *   existing file (then the whole set takes another random suffix). A reader never sees half a
 *   report, and no run's report replaces another's.
 * - `prepareOutputFile` does the same for a file a command will replace (`--summary_md`,
 *   `--benchmark_json`): its directory made and probed, the file itself a writable regular file
 *   where it exists; `prepareAppendFile` for a file a command appends to (`$GITHUB_STEP_SUMMARY`).
 * - `writeTextAtomic` replaces a file whole (the dashboard page, which is rebuilt from the reports).
 */
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, fsyncSync, linkSync, mkdirSync, openSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join, parse, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import type { CompareReport } from './compare-report.js';
import { validateCompareReport } from './compare-validate.js';
import { renderCompareHtml } from './html.js';

/** `2024-05-01T12:03:04.567Z` -> `20240501-120304-567` (UTC, to the millisecond). */
export function reportTimestamp(createdAt: string): string {
  const d = new Date(createdAt);
  if (Number.isNaN(d.getTime())) throw new Error(`invalid report: createdAt: not a date (${JSON.stringify(createdAt)})`);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}-${p(d.getUTCMilliseconds(), 3)}`;
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

/**
 * Proves before any work that `file` can be replaced whole (writeTextAtomic): its directory is
 * created and probed as prepareOutputDir does, and the file, where it exists, is a regular file
 * this process may write. Every failure is one UsageError naming `flag` and the path. Returns
 * the absolute path.
 */
export function prepareOutputFile(flag: string, file: string): string {
  const abs = resolve(file);
  const fail = (why: string): never => {
    throw new UsageError(flag, `${file}: ${why}`);
  };
  if (/[\\/]$/.test(file)) return fail('names a directory, not a file');
  prepareOutputDir(flag, dirname(file));
  let st;
  try {
    st = statSync(abs);
  } catch (e) {
    if (errno(e) === 'ENOENT') return abs;
    return fail(`cannot use it (${reason(e)})`);
  }
  if (st.isDirectory()) return fail('is a directory, not a file');
  // A device or a pipe would be replaced by the rename, not written to.
  if (!st.isFile()) return fail('is not a regular file');
  try {
    accessSync(abs, constants.W_OK);
  } catch (e) {
    return fail(`not writable (${reason(e)})`);
  }
  return abs;
}

/**
 * Proves before any work that text can be appended to `file` (opened for appending, which
 * creates it where it is missing, and closed); its directory must exist. `culprit` names where
 * the path came from (an environment variable). Returns the absolute path.
 */
export function prepareAppendFile(culprit: string, file: string): string {
  const abs = resolve(file);
  const fail = (why: string): never => {
    throw new UsageError(culprit, `${file}: ${why}`);
  };
  try {
    if (statSync(abs).isDirectory()) return fail('is a directory, not a file');
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if (errno(e) !== 'ENOENT') return fail(`cannot use it (${reason(e)})`);
  }
  try {
    closeSync(openSync(abs, 'a'));
  } catch (e) {
    return fail(`cannot append to it (${reason(e)})`);
  }
  return abs;
}

let seq = 0;

/** Writes `text` to a fresh temporary file in `dir` and flushes it; returns its path. */
function writeTemp(dir: string, name: string, text: string): string {
  const tmp = join(dir, `.${name}.${process.pid}.${Date.now()}.${seq++}.tmp`);
  try {
    const fd = openSync(tmp, 'wx');
    try {
      const bytes = Buffer.from(text, 'utf8');
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return tmp;
}

/** Writes `text` to a temporary file beside `path`, flushes it and renames it over `path`. */
export function writeTextAtomic(path: string, text: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = writeTemp(dir, basename(path), text);
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Places a flushed temporary file at `path` only if nothing is there: a hard link, which fails
 * with EEXIST instead of replacing. Where the file system has no hard links, a rename after a
 * check (a window of microseconds for a race, never a half file).
 */
function placeExclusive(tmp: string, path: string): boolean {
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    if (errno(e) === 'EEXIST') return false;
    if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK'].includes(errno(e))) throw e;
  }
  try {
    statSync(path);
    return false;
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
  }
  renameSync(tmp, path);
  return true;
}

/** A short random suffix that tells apart reports of the same millisecond. */
export function reportSuffix(): string {
  return randomBytes(3).toString('hex');
}

/**
 * Writes a set of files `<dir>/<stem><suffix>` for `stem = <prefix>-<random>-<tail>`, each
 * exclusively created: none replaces an existing file. When any name of the set is taken, the
 * files placed so far are removed and the set tries another random part. Returns the paths by
 * suffix. `dir` must exist (prepareOutputDir).
 */
export function writeReportFiles(dir: string, prefix: string, tail: string, files: Array<{ suffix: string; text: string }>, random: () => string = reportSuffix): Record<string, string> {
  const temps = files.map((f) => ({ ...f, tmp: writeTemp(dir, `${prefix}${f.suffix}`, f.text) }));
  try {
    for (let attempt = 0; attempt < 20; attempt++) {
      const stem = join(dir, `${prefix}-${random()}-${tail}`);
      const placed: string[] = [];
      for (const f of temps) {
        if (placeExclusive(f.tmp, `${stem}${f.suffix}`)) placed.push(`${stem}${f.suffix}`);
        else break;
      }
      if (placed.length === temps.length) return Object.fromEntries(temps.map((f) => [f.suffix, `${stem}${f.suffix}`]));
      for (const p of placed) rmSync(p, { force: true });
    }
    throw new Error(`${dir}: 20 report names in a row were taken`);
  } finally {
    for (const f of temps) rmSync(f.tmp, { force: true });
  }
}

export function writeCompareReports(report: CompareReport, dir: string): { json: string; html: string } {
  validateCompareReport(report);
  // Render before touching the disk: a rendering error leaves nothing behind.
  const json = `${JSON.stringify(report, null, 2)}\n`;
  const html = renderCompareHtml(report);
  prepareOutputDir('--report_dir', dir);
  const out = writeReportFiles(dir, reportTimestamp(report.createdAt), `${modelBasename(report.model.dir)}-compare`, [
    { suffix: '.json', text: json },
    { suffix: '.html', text: html },
  ]);
  return { json: out['.json']!, html: out['.html']! };
}
