/**
 * Imports run one way, down the data flow (issue 22): a module knows only the layers below it.
 * Architecture names appear only in src/arch/ (and fixtures/, which writes checkpoints): every
 * other layer reads traits and dimensions, never a model_type.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { supportedModelTypes } from '../src/arch/index.js';

const ROOT = join(import.meta.dirname, '..');

/** Layers from the bottom up; a layer may import its own and lower ranks only. Equal ranks may not import each other. */
const RANK: Record<string, number> = {
  'src/errors.ts': 0,
  'src/step.ts': 0,
  'src/types': 0,
  'src/checkpoint': 1,
  'src/arch': 2,
  'src/graph': 3,
  'src/inject': 4,
  'src/runtime': 5,
  'src/kernels': 5,
  'src/remote': 5,
  'src/pipeline': 6,
  fixtures: 7,
  'src/report': 8,
  compare: 9,
  bench: 9,
  serve: 9,
  'src/cli': 10,
};

function layerOf(file: string): string {
  const rel = relative(ROOT, file).replaceAll('\\', '/');
  const hit = Object.keys(RANK).find((l) => rel === l || rel.startsWith(`${l}/`));
  if (!hit) throw new Error(`${rel} is in no layer: add it to RANK`);
  return hit;
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return name === 'models' || name === 'conformance' || name === 'results' || name === 'golden' ? [] : sources(p);
    return p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

const FILES = ['src', 'fixtures', 'compare', 'bench', 'serve'].flatMap((d) => sources(join(ROOT, d)));

function relativeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^;'"]*?from\s+'(\.[^']+)'/g), ...text.matchAll(/import\(\s*'(\.[^']+)'\s*\)/g)]
    .map((m) => normalize(join(dirname(file), m[1]!.replace(/\.js$/, '.ts'))));
}

describe('import direction', () => {
  it('covers the tree: every source file is in a layer', () => {
    expect(FILES.length).toBeGreaterThan(60);
    for (const f of FILES) expect(() => layerOf(f)).not.toThrow();
  });

  it('no import runs back up (or sideways between layers of one rank)', () => {
    const back: string[] = [];
    for (const f of FILES) {
      const from = layerOf(f);
      for (const target of relativeImports(f)) {
        const to = layerOf(target);
        if (to !== from && RANK[to]! >= RANK[from]!) back.push(`${relative(ROOT, f)} -> ${relative(ROOT, target)} (${from} -> ${to})`);
      }
    }
    expect(back).toEqual([]);
  });

  it('no command file of the CLI imports another (main.ts dispatches to them)', () => {
    const commands = FILES.filter((f) => /src\/cli\/(generate|compare|bench|dashboard|serve)\.ts$/.test(f));
    expect(commands.length).toBe(5);
    const cross = commands.flatMap((f) => relativeImports(f).filter((t) => /src\/cli\/(generate|compare|bench|dashboard|serve)\.ts$/.test(t) && t !== f).map((t) => `${relative(ROOT, f)} -> ${relative(ROOT, t)}`));
    expect(cross).toEqual([]);
  });
});

/** Literals that spell an architecture's name but choose no architecture, with the reason. */
const NOT_ARCHITECTURES: Record<string, string> = {
  // DeepSpeed's checkpoint descriptions say `"type": "bloom"` for a plain HF state dict in files.
  'src/checkpoint/description.ts': "const STATE_DICT_TYPES = ['ds_model', 'bloom'];",
};

describe('architecture names', () => {
  it('appear as string literals only in src/arch/ and fixtures/', () => {
    const names = supportedModelTypes.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    const literal = new RegExp(`(['"\`])(${names.join('|')})\\1`);
    const found = FILES.filter((f) => !['src/arch', 'fixtures'].includes(layerOf(f)))
      .flatMap((f) => readFileSync(f, 'utf8').split('\n').map((line, i) => [f, i, line] as const))
      .filter(([f, , line]) => literal.test(line.replace(/\/\/.*$|^\s*\*.*$/, '')) && NOT_ARCHITECTURES[relative(ROOT, f)] !== line.trim())
      .map(([f, i, line]) => `${relative(ROOT, f)}:${i + 1}: ${line.trim()}`);
    expect(found).toEqual([]);
  });
});
