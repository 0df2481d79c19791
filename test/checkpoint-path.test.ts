/**
 * Issue 24 item 2: `--checkpoint_path`. The seed's checkpoint description ({"type", "checkpoints":
 * [shards relative to it], "version"}) or a model.safetensors.index.json lists the safetensors
 * shards the weights come from; the config and tokenizer come from --model (default: the
 * description's directory). A checkpoint split into shards so described gives the same greedy
 * tokens as the single file, on every pipeline (and compare's verdicts); the export cache follows
 * the shards' content.
 * Every bad listing is refused before any work in one line naming the file and the culprit,
 * exit 2.
 */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { openSafetensorsFile, writeSafetensors } from '../src/checkpoint/safetensors.js';
import { main } from '../src/cli/main.js';

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
if (!process.env['VK_ICD_FILENAMES'] && fs.existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;

const tmp: string[] = [];
const tmpDir = (tag: string) => {
  const d = fs.mkdtempSync(join(tmpdir(), `fusegen-ckpt-${tag}-`));
  tmp.push(d);
  return d;
};
let cache: string;
const savedCache = process.env['FUSEGEN_CACHE'];
beforeAll(() => {
  cache = tmpDir('cache');
  process.env['FUSEGEN_CACHE'] = cache;
});
afterAll(() => {
  if (savedCache === undefined) delete process.env['FUSEGEN_CACHE'];
  else process.env['FUSEGEN_CACHE'] = savedCache;
  for (const d of tmp) fs.rmSync(d, { recursive: true, force: true });
});

const MODEL_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

interface Split {
  /** Config and tokenizer only. */
  model: string;
  /** The shards, checkpoints.json and model.safetensors.index.json. */
  weights: string;
  description: string;
  index: string;
  shards: string[];
  names: string[][];
}

/** The tiny checkpoint's config in one directory and its weights in `n` shards in another, described both ways. */
function split(arch: 'opt' | 'llama', n: number, scale: Record<string, number> = {}): Split {
  const root = tmpDir(`split-${arch}`);
  const model = join(root, 'model');
  const weights = join(root, 'weights');
  fs.mkdirSync(model);
  fs.mkdirSync(weights);
  for (const f of MODEL_FILES) if (fs.existsSync(join(tinyModelDir(arch), f))) fs.copyFileSync(join(tinyModelDir(arch), f), join(model, f));
  const store = openSafetensorsFile(join(tinyModelDir(arch), 'model.safetensors'));
  const all = store.names();
  const shards: string[] = [];
  const names: string[][] = [];
  for (let s = 0; s < n; s++) {
    const part = all.filter((_, i) => i % n === s);
    const file = `part-${s + 1}-of-${n}.safetensors`;
    writeSafetensors(join(weights, file), part.map((name) => ({ name, dtype: 'F32' as const, shape: store.info(name).shape })), (t) => store.readFloat32(t.name).map((v) => v * (scale[t.name] ?? 1)));
    shards.push(file);
    names.push(part);
  }
  store.close();
  const description = join(weights, 'checkpoints.json');
  fs.writeFileSync(description, JSON.stringify({ type: 'ds_model', checkpoints: shards, version: 1.0 }));
  const index = join(weights, 'model.safetensors.index.json');
  fs.writeFileSync(index, JSON.stringify({ metadata: {}, weight_map: Object.fromEntries(names.flatMap((ns, s) => ns.map((name) => [name, shards[s]!]))) }));
  return { model, weights, description, index, shards, names };
}

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

/** The continuations generate printed (each record is `\nin=...\nout=...\n----`). */
const texts = (out: string[]) => out.flatMap((l) => l.split('\n')).filter((l) => l.startsWith('out='));

describe('a checkpoint in shards, described, gives the single file\'s greedy tokens (issue 24 item 2)', () => {
  const PIPELINES: Array<[string, string[]]> = [
    ['plain', []],
    ['ORT-injected', ['--use_kernel']],
    ['reference (transformers.js)', ['--hf_baseline']],
    ['WGSL engine', ['--use_kernel', '--device', 'webgpu', '--dtype', 'float32']],
  ];
  it.each(PIPELINES)('llama, %s: description, index, directory form and the single file agree token for token', async (_, flags) => {
    const s = split('llama', 3);
    const gen = (...a: string[]) => run(['generate', '--greedy', '--max_new_tokens', '12', '--batch_size', '3', ...flags, ...a]);
    const single = await gen('--model', tinyModelDir('llama'));
    expect(single.code, single.err.join('\n')).toBe(0);
    expect(texts(single.out)).toHaveLength(3);
    for (const args of [
      ['--model', s.model, '--checkpoint_path', s.description],
      ['--model', s.model, '--checkpoint_path', s.index],
      ['--model', s.model, '--checkpoint_path', s.weights, '--use_meta_tensor'], // a directory: its model.safetensors.index.json
    ]) {
      const r = await gen(...args);
      expect(r.err, args.join(' ')).toEqual([]);
      expect(texts(r.out), args.join(' ')).toEqual(texts(single.out));
    }
  }, 120_000);

  it("opt: without --model the description's directory gives the config; ds_inference_config.json is found in a directory; base_dir is honoured", async () => {
    const s = split('opt', 2);
    for (const f of MODEL_FILES) if (fs.existsSync(join(s.model, f))) fs.copyFileSync(join(s.model, f), join(s.weights, f));
    const single = await run(['generate', '--greedy', '--max_new_tokens', '10', '--model', tinyModelDir('opt')]);
    const alone = await run(['generate', '--greedy', '--max_new_tokens', '10', '--checkpoint_path', s.description]);
    expect(alone.err).toEqual([]);
    expect(texts(single.out)).toHaveLength(1);
    expect(texts(alone.out)).toEqual(texts(single.out));
    fs.writeFileSync(join(s.weights, 'ds_inference_config.json'), JSON.stringify({ type: 'BLOOM', checkpoints: s.shards, version: '1.0' }));
    const dir = await run(['generate', '--greedy', '--max_new_tokens', '10', '--checkpoint_path', s.weights]);
    expect(texts(dir.out)).toEqual(texts(single.out));
    const root = join(s.weights, '..');
    fs.writeFileSync(join(root, 'up.json'), JSON.stringify({ type: 'ds_model', base_dir: 'weights', checkpoints: s.shards, version: 1 }));
    const based = await run(['generate', '--greedy', '--max_new_tokens', '10', '--model', s.model, '--checkpoint_path', join(root, 'up.json')]);
    expect(based.err).toEqual([]);
    expect(texts(based.out)).toEqual(texts(single.out));
    expect(openCheckpoint(s.model, { checkpointPath: s.description }).weights?.files).toEqual(s.shards.map((f) => join(s.weights, f)));
  }, 120_000);

  it('the export cache follows the listed shards: changed weights in a shard are a new export and new tokens', async () => {
    const a = split('llama', 2);
    const gen = (s: Split) => run(['generate', '--greedy', '--max_new_tokens', '12', '--model', s.model, '--checkpoint_path', s.description]);
    const first = await gen(a);
    const exports = () => fs.readdirSync(join(cache, 'exports')).filter((d) => !d.includes('.tmp-')).length;
    const before = exports();
    // The same directory, the same file names: the last layer's down projection scaled by 5 in place.
    const down = a.names.flat().find((n) => /layers\.1\.mlp\.down_proj\.weight$/.test(n))!;
    const shard = a.names.findIndex((ns) => ns.includes(down));
    const changed = split('llama', 2, { [down]: 5 });
    fs.copyFileSync(join(changed.weights, changed.shards[shard]!), join(a.weights, a.shards[shard]!));
    const second = await gen(a);
    expect(second.err).toEqual([]);
    expect(exports()).toBe(before + 1);
    expect(texts(second.out)).not.toEqual(texts(first.out));
  }, 120_000);
});

describe('bad listings are refused before any work: one line naming the file and the culprit, exit 2 (issue 24 item 2)', () => {
  let s: Split;
  beforeAll(() => {
    s = split('opt', 3);
  });
  const desc = (body: unknown, name = 'bad.json'): string => {
    const f = join(s.weights, name);
    fs.writeFileSync(f, typeof body === 'string' ? body : JSON.stringify(body));
    return f;
  };
  const ds = (checkpoints: unknown, more: Record<string, unknown> = {}) => ({ type: 'ds_model', checkpoints, version: 1.0, ...more });

  const CASES: Array<{ label: string; file: () => string; culprit?: () => string; says: RegExp; extra?: string[] }> = [
    { label: 'a shard path that leaves the directory', file: () => desc(ds(['part-1-of-3.safetensors', '../model/outside.safetensors'])), says: /checkpoints\[1\] "\.\.\/model\/outside\.safetensors" leaves / },
    { label: 'an absolute shard path', file: () => desc(ds([join(s.weights, 'part-1-of-3.safetensors')])), says: /checkpoints\[0\] ".*part-1-of-3\.safetensors" leaves / },
    { label: 'base_dir that leaves the directory', file: () => desc(ds(['part-1-of-3.safetensors'], { base_dir: '..' })), says: /base_dir "\.\." leaves / },
    { label: 'a missing shard', file: () => desc(ds(['part-1-of-3.safetensors', 'part-9-of-3.safetensors'])), says: /checkpoints\[1\] "part-9-of-3\.safetensors" does not exist in / },
    { label: 'a shard listed twice', file: () => desc(ds(['part-1-of-3.safetensors', 'part-2-of-3.safetensors', 'part-3-of-3.safetensors', './part-2-of-3.safetensors'])), says: /checkpoints\[3\] "\.\/part-2-of-3\.safetensors" is listed twice \(also checkpoints\[1\]\)/ },
    {
      label: 'a tensor in two shards',
      file: () => {
        fs.copyFileSync(join(s.weights, 'part-1-of-3.safetensors'), join(s.weights, 'copy.safetensors'));
        return desc(ds(['part-1-of-3.safetensors', 'part-2-of-3.safetensors', 'part-3-of-3.safetensors', 'copy.safetensors']));
      },
      culprit: () => join(s.weights, 'copy.safetensors'),
      says: /tensor "model\.decoder\.[a-z_.0-9]+" is also in shard "part-1-of-3\.safetensors"; a tensor must be in exactly one shard/,
    },
    { label: 'a tensor in no listed shard (a shard left out)', file: () => desc(ds(['part-1-of-3.safetensors', 'part-2-of-3.safetensors'])), says: /no listed shard holds tensor "[a-z_.0-9]+" \(nor "model\.decoder\.[a-z_.0-9]+"/ },
    { label: 'a pickled .bin shard', file: () => desc(ds(['pytorch_model.bin'])), says: /checkpoints\[0\] "pytorch_model\.bin" is not a \.safetensors file/ },
    { label: 'a Megatron description', file: () => desc({ type: 'Megatron', checkpoints: ['part-1-of-3.safetensors'], version: 1 }), says: /type "Megatron": Megatron-LM checkpoints are not read/ },
    { label: 'an unknown type', file: () => desc({ type: 'gguf', checkpoints: ['part-1-of-3.safetensors'], version: 1 }), says: /type "gguf": expected "ds_model" or "BLOOM"/ },
    { label: 'an unknown key', file: () => desc(ds(['part-1-of-3.safetensors'], { dtype_hint: 'fp16' })), says: /unknown key "dtype_hint"/ },
    { label: 'a key given twice', file: () => desc('{"type": "ds_model", "checkpoints": ["part-1-of-3.safetensors"], "version": 1, "checkpoints": ["part-2-of-3.safetensors"]}'), says: /key "checkpoints" appears twice/ },
    { label: 'checkpoints pre-sharded for tensor parallelism', file: () => desc(ds({ tp: ['a.safetensors'], non_tp: ['b.safetensors'] })), says: /checkpoints: an object of tp\/non_tp lists/ },
    { label: 'mp_size 2', file: () => desc(ds(['part-1-of-3.safetensors'], { mp_size: 2 })), says: /mp_size: 2: checkpoints pre-sharded for tensor parallelism are not read/ },
    { label: 'an empty checkpoints list', file: () => desc(ds([])), says: /checkpoints: expected a non-empty list of shard files/ },
    { label: 'malformed JSON', file: () => desc('{"type": "ds_model", "checkpoints": ['), says: /malformed JSON/ },
    { label: 'neither a description nor an index', file: () => desc({ files: ['part-1-of-3.safetensors'] }), says: /neither a checkpoint description .* nor a safetensors index/ },
    { label: 'an index listing a tensor twice', file: () => desc('{"weight_map": {"model.decoder.embed_tokens.weight": "part-1-of-3.safetensors", "model.decoder.embed_tokens.weight": "part-2-of-3.safetensors"}}', 'model.safetensors.index.json'), says: /weight_map lists tensor "model\.decoder\.embed_tokens\.weight" twice/ },
    { label: 'an index naming a shard outside its directory', file: () => desc({ weight_map: { 'model.decoder.embed_tokens.weight': '../model/x.safetensors' } }, 'model.safetensors.index.json'), says: /weight_map entry "model\.decoder\.embed_tokens\.weight" names "\.\.\/model\/x\.safetensors", which is outside the checkpoint directory/ },
    { label: 'an index naming a missing shard', file: () => desc({ weight_map: { 'model.decoder.embed_tokens.weight': 'gone.safetensors' } }, 'model.safetensors.index.json'), says: /weight_map maps "model\.decoder\.embed_tokens\.weight" to shard "gone\.safetensors", which does not exist/ },
    { label: 'an index missing a tensor the model reads', file: () => desc({ weight_map: Object.fromEntries(s.names[0]!.map((n) => [n, s.shards[0]])) }, 'model.safetensors.index.json'), says: /no listed shard holds tensor/ },
    { label: 'a file that does not exist', file: () => join(s.weights, 'nothing.json'), says: /checkpoint description not found/ },
    {
      label: 'a directory holding neither ds_inference_config.json nor an index',
      file: () => {
        const d = join(s.weights, 'empty');
        fs.mkdirSync(d, { recursive: true });
        return d;
      },
      says: /holds neither ds_inference_config\.json nor model\.safetensors\.index\.json/,
    },
    { label: '--reference hf, which loads --model with from_pretrained', file: () => s.description, culprit: () => '--checkpoint_path', says: /from_pretrained/, extra: ['--hf_baseline', '--reference', 'hf'] },
  ];

  it.each(CASES)('$label', async (c) => {
    const file = c.file();
    const r = await run(['generate', '--greedy', '--max_new_tokens', '2', '--model', s.model, '--checkpoint_path', file, ...(c.extra ?? [])]);
    expect(r.out).toEqual([]);
    expect(r.err).toHaveLength(1);
    const culprit = c.culprit?.() ?? file;
    expect(r.err[0]!.startsWith(`error: ${culprit}: `), r.err[0]).toBe(true);
    expect(r.err[0]).toMatch(c.says);
    expect(r.code).toBe(2);
    expect(fs.existsSync(join(cache, 'exports')) ? fs.readdirSync(join(cache, 'exports')).filter((d) => d.includes('.tmp-')) : []).toEqual([]);
  }, 60_000);

  it('bench refuses a bad listing the same way, before any point runs: no report', async () => {
    const reportDir = tmpDir('reports');
    const file = desc(ds(['part-1-of-3.safetensors', 'part-9-of-3.safetensors']));
    const r = await run(['bench', '--model', s.model, '--checkpoint_path', file, '--report_dir', reportDir, '--repeats', '1', '--max_new_tokens', '2']);
    expect(r.code).toBe(2);
    expect(r.out).toEqual([]);
    expect(r.err).toEqual([expect.stringMatching(new RegExp(`^error: ${file.replace(/[.]/g, '\\.')}: checkpoints\\[1\\] "part-9-of-3\\.safetensors" does not exist`))]);
    expect(fs.readdirSync(reportDir)).toEqual([]);
  }, 60_000);

  it('compare runs both sides from the shards a description lists (the same verdicts as the single file) and refuses a bad listing before any work', async () => {
    const reportDir = tmpDir('compare');
    const args = ['compare', '--use_kernel', '--num_inputs', '2', '--min_length', '20', '--max_length', '30', '--report_dir', reportDir];
    const single = await run([...args, '--model', tinyModelDir('opt')]);
    const listed = await run([...args, '--model', s.model, '--checkpoint_path', s.description, '--use_meta_tensor']);
    expect(listed.code, listed.err.join('\n')).toBe(0);
    const matches = (out: string[]) => out.find((l) => l.startsWith('Matches:'));
    expect(matches(listed.out)).toMatch(/^Matches: 2 \/ Mismatches: 0/);
    expect(matches(listed.out)).toBe(matches(single.out));
    const before = fs.readdirSync(reportDir).length;
    const bad = desc(ds(['part-1-of-3.safetensors', '../model/x.safetensors']));
    const refused = await run([...args, '--model', s.model, '--checkpoint_path', bad]);
    expect(refused.code).toBe(2);
    expect(refused.out).toEqual([]);
    expect(refused.err).toEqual([expect.stringMatching(new RegExp(`^error: ${bad.replace(/[.]/g, '\\.')}: checkpoints\\[1\\] "\\.\\./model/x\\.safetensors" leaves `))]);
    expect(fs.readdirSync(reportDir).length).toBe(before);
  }, 120_000);

  it('bench runs from the shards a description lists', async () => {
    const reportDir = tmpDir('reports');
    const r = await run(['bench', '--model', s.model, '--checkpoint_path', s.description, '--report_dir', reportDir, '--repeats', '1', '--max_new_tokens', '2', '--pipelines', 'ort']);
    expect(r.code, r.err.join('\n')).toBe(0);
    expect(fs.readdirSync(reportDir).some((f) => f.endsWith('-bench.json'))).toBe(true);
  }, 60_000);
});
