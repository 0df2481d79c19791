/**
 * scripts/provision.sh, which `npm test` runs first: silent when lavapipe and Chromium are there;
 * when they are not and it may not install them, one line naming what to install, exit 1, at
 * once. The checked paths are overridden (FUSEGEN_LVP_ICD, FUSEGEN_CHROMIUM) to simulate a bare
 * machine, and FUSEGEN_PROVISION=check (or a real non-root user) keeps it from installing.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const SCRIPT = join(ROOT, 'scripts', 'provision.sh');

function provision(env: Record<string, string>, asNobody = false) {
  const base = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env };
  const t = performance.now();
  // As a real non-root user (when the tests run as root): the script comes on stdin, so that
  // user need not be able to read the checkout.
  const p = asNobody
    ? spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', '-s'], { input: readFileSync(SCRIPT), env: base, encoding: 'utf8', timeout: 10_000 })
    : spawnSync('bash', [SCRIPT], { env: base, encoding: 'utf8', timeout: 10_000 });
  return { status: p.status, stdout: p.stdout, stderr: p.stderr, ms: performance.now() - t };
}

const MISSING = { FUSEGEN_LVP_ICD: '/nonexistent/lvp_icd.json', FUSEGEN_CHROMIUM: '/nonexistent/chromium' };

describe('scripts/provision.sh', () => {
  it('a bare machine it may not provision: one line naming both, exit 1, within a second', () => {
    const r = provision({ ...MISSING, FUSEGEN_PROVISION: 'check' });
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^npm test needs Mesa >= 25 lavapipe \(\/nonexistent\/lvp_icd\.json; Debian 12: mesa-vulkan-drivers libvulkan1 from bookworm-backports\) and Chromium at \/nonexistent\/chromium \(Debian: apt-get install chromium\): run `sudo bash scripts\/provision\.sh`/);
    expect(r.status).toBe(1);
    expect(r.ms).toBeLessThan(1000);
  });

  it('names only what is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-provision-'));
    const icd = join(dir, 'lvp_icd.json');
    writeFileSync(icd, '{}');
    const r = provision({ FUSEGEN_LVP_ICD: icd, FUSEGEN_CHROMIUM: '/nonexistent/chromium', FUSEGEN_PROVISION: 'check' });
    expect(r.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^npm test needs Chromium at \/nonexistent\/chromium .*\(FUSEGEN_PROVISION=check\)$/)]);
    expect(r.status).toBe(1);
  });

  it('says nothing and exits 0 at once when both are there', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-provision-'));
    const icd = join(dir, 'lvp_icd.json');
    const chromium = join(dir, 'chromium');
    writeFileSync(icd, '{}');
    writeFileSync(chromium, '#!/bin/sh\n');
    chmodSync(chromium, 0o755);
    const r = provision({ FUSEGEN_LVP_ICD: icd, FUSEGEN_CHROMIUM: chromium });
    expect(r).toMatchObject({ status: 0, stdout: '', stderr: '' });
    expect(r.ms).toBeLessThan(1000);
  });

  it('as a user without root or passwordless sudo: the same one line, exit 1, nothing installed', () => {
    // A real non-root user where the tests run as root; elsewhere FUSEGEN_PROVISION=check stands
    // in for it (a developer's passwordless sudo must not install packages from a test).
    const nobody = process.getuid?.() === 0 && existsSync('/usr/bin/setpriv');
    const r = provision(nobody ? MISSING : { ...MISSING, FUSEGEN_PROVISION: 'check' }, nobody);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(nobody ? /^npm test needs Mesa >= 25 lavapipe .* and Chromium .*\(not root and no passwordless sudo\)$/ : /^npm test needs /)]);
    expect(r.status).toBe(1);
    expect(r.ms).toBeLessThan(1000);
  });

  it('runs before the tests in `npm test`, and CI uses it rather than anything outside the repository', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts['test']).toMatch(/^bash scripts\/provision\.sh && /);
    const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8');
    expect(ci).toContain('bash scripts/provision.sh');
    expect(ci).not.toContain('../');
  });
});
