/**
 * Bad input at the library level: each case copies a tiny fixture checkpoint into a fresh
 * temp dir, breaks one thing, and checks the typed error and that it names the culprit (the
 * file, the JSON field, the tensor). Also: a failed export never poisons the export cache,
 * and a successful one is reused until the checkpoint's content changes.
 */
import { describe, it, expect, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { tinyModelDir, type FixtureArch } from '../fixtures/checkpoints.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { openSafetensorsFile, writeSafetensors, type TensorToWrite } from '../src/checkpoint/safetensors.js';
import { CapacityError, FusegenError, InputError, UnsupportedError, UsageError } from '../src/errors.js';
import { exportReferenceModel } from '../src/graph/export.js';
import { main } from '../src/cli/main.js';
import { prepareOutputDir } from '../src/report/write.js';

type ErrorClass = typeof InputError | typeof UnsupportedError | typeof UsageError | typeof CapacityError;

const tmpDirs: string[] = [];

function tmpDir(tag: string): string {
  const d = fs.mkdtempSync(join(os.tmpdir(), `fusegen-bad-${tag}-`));
  tmpDirs.push(d);
  return d;
}

afterEach(() => {
  for (const d of tmpDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A private copy of a tiny fixture checkpoint. */
function copyFixture(arch: FixtureArch): string {
  const dir = tmpDir(arch);
  fs.cpSync(tinyModelDir(arch), dir, { recursive: true });
  return dir;
}

function readConfig(dir: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
}

/** Copies `arch`'s fixture and edits its config.json. */
function withConfig(arch: FixtureArch, edit: (c: Record<string, unknown>) => void): { dir: string; configPath: string } {
  const dir = copyFixture(arch);
  const config = readConfig(dir);
  edit(config);
  const configPath = join(dir, 'config.json');
  fs.writeFileSync(configPath, JSON.stringify(config, null, 2));
  return { dir, configPath };
}

/**
 * Rewrites `dir/model.safetensors` through the real writer, copying every tensor from the
 * original except where `edit` says otherwise: null drops the tensor, a spec + data replaces it.
 */
function rewriteWeights(
  dir: string,
  edit: (t: TensorToWrite, data: () => Float32Array) => { spec: TensorToWrite; data: Float32Array } | null | undefined,
): void {
  const file = join(dir, 'model.safetensors');
  const store = openSafetensorsFile(file);
  try {
    const replaced = new Map<string, Float32Array>();
    const specs: TensorToWrite[] = [];
    for (const name of store.names()) {
      const info = store.info(name);
      if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') throw new Error(`fixture tensor ${name} is ${info.dtype}`);
      const spec: TensorToWrite = { name, dtype: info.dtype, shape: info.shape };
      const change = edit(spec, () => store.readFloat32(name));
      if (change === null) continue;
      if (change === undefined) {
        specs.push(spec);
      } else {
        specs.push(change.spec);
        replaced.set(change.spec.name, change.data);
      }
    }
    // writeSafetensors renames a temp file over the original; the open store keeps reading the old inode.
    writeSafetensors(file, specs, (t) => replaced.get(t.name) ?? store.readFloat32(t.name));
  } finally {
    store.close();
  }
}

/**
 * Rewrites `dir/model.safetensors` by hand with `name` relabelled as an integer tensor (I32 has
 * F32's element size, so the header stays self-consistent): the writer refuses to write non-float
 * dtypes, but checkpoints in the wild can contain them.
 */
function relabelDtype(dir: string, name: string, dtype: 'I32'): void {
  const file = join(dir, 'model.safetensors');
  const store = openSafetensorsFile(file);
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  try {
    for (const n of store.names()) {
      const info = store.info(n);
      const raw = store.readRaw(n);
      header[n] = { dtype: n === name ? dtype : info.dtype, shape: info.shape, data_offsets: [offset, offset + raw.length] };
      chunks.push(raw);
      offset += raw.length;
    }
  } finally {
    store.close();
  }
  if (!(name in header)) throw new Error(`no tensor ${name} to relabel`);
  const text = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Buffer.concat([text, Buffer.alloc((8 - (text.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(padded.length));
  fs.writeFileSync(file, Buffer.concat([len, padded, ...chunks]));
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error, but the call returned normally');
}

/**
 * Asserts a FusegenError of class `cls` whose culprit is `culprit` (a string: exact match; a
 * RegExp: matched) and whose message contains every fragment. The message always starts with the
 * culprit, so what the CLI prints (`error: <message>`) names it too.
 */
function expectError(fn: () => unknown, cls: ErrorClass, culprit: string | RegExp, ...fragments: string[]): FusegenError {
  const e = caught(fn);
  expect(e, String(e)).toBeInstanceOf(cls);
  const fe = e as FusegenError;
  if (typeof culprit === 'string') expect(fe.culprit).toBe(culprit);
  else expect(fe.culprit).toMatch(culprit);
  expect(fe.message.startsWith(`${fe.culprit}: `)).toBe(true);
  for (const f of fragments) expect(fe.message).toContain(f);
  expect(fe.message).not.toContain('\n');
  return fe;
}

/** Runs the reference export of `dir` into `cacheDir`. */
function exportDir(dir: string, cacheDir: string) {
  return exportReferenceModel(openCheckpoint(dir), { dtype: 'float32', cacheDir });
}

/** Directories under <cacheDir>/exports that are not complete exports, and leftover temp entries anywhere in the cache. */
function cacheDebris(cacheDir: string): string[] {
  const bad: string[] = [];
  const exports = join(cacheDir, 'exports');
  if (fs.existsSync(exports)) {
    for (const e of fs.readdirSync(exports, { withFileTypes: true })) {
      if (e.isDirectory() && !fs.existsSync(join(exports, e.name, 'fusegen-export.json'))) bad.push(`incomplete ${e.name}`);
    }
  }
  if (fs.existsSync(cacheDir)) {
    for (const rel of fs.readdirSync(cacheDir, { recursive: true }) as string[]) {
      if (/\.tmp(-|$)/.test(rel)) bad.push(`temp ${rel}`);
    }
  }
  return bad;
}

describe('checkpoint directory and config.json', () => {
  it('missing model directory', () => {
    const dir = join(tmpDir('missing'), 'no-such-model');
    expectError(() => openCheckpoint(dir), InputError, dir, 'not found');
  });

  it('model path that is a file, not a directory', () => {
    const file = join(tmpDir('file'), 'model.safetensors');
    fs.writeFileSync(file, 'not a directory');
    expectError(() => openCheckpoint(file), InputError, file, 'not a directory');
  });

  it('missing config.json', () => {
    const dir = copyFixture('opt');
    fs.rmSync(join(dir, 'config.json'));
    expectError(() => openCheckpoint(dir), InputError, join(dir, 'config.json'), 'not found');
  });

  it('config.json that is not JSON', () => {
    const dir = copyFixture('opt');
    fs.writeFileSync(join(dir, 'config.json'), '{"model_type": "opt",');
    expectError(() => openCheckpoint(dir), InputError, join(dir, 'config.json'), 'malformed JSON');
  });

  it('config.json that is a JSON array', () => {
    const dir = copyFixture('opt');
    fs.writeFileSync(join(dir, 'config.json'), JSON.stringify([readConfig(tinyModelDir('opt'))]));
    expectError(() => openCheckpoint(dir), InputError, join(dir, 'config.json'), 'JSON object');
  });

  it('model_type missing', () => {
    const { dir, configPath } = withConfig('opt', (c) => delete c['model_type']);
    expectError(() => openCheckpoint(dir), InputError, `${configPath}: model_type`, 'missing');
  });

  it('unknown model_type: UnsupportedError listing the supported types', () => {
    const { dir, configPath } = withConfig('opt', (c) => (c['model_type'] = 'mamba'));
    const e = expectError(() => openCheckpoint(dir), UnsupportedError, `${configPath}: model_type`, '"mamba"');
    for (const t of ['gpt2', 'opt', 'bloom', 'llama']) expect(e.message).toContain(t);
  });
});

describe('config.json dimensions', () => {
  it('gpt2 without n_embd names the field', () => {
    const { dir, configPath } = withConfig('gpt2', (c) => delete c['n_embd']);
    expectError(() => openCheckpoint(dir), InputError, new RegExp(`^${escape(configPath)}: n_embd\\b`), 'missing');
  });

  it('opt without hidden_size names the field', () => {
    const { dir, configPath } = withConfig('opt', (c) => delete c['hidden_size']);
    expectError(() => openCheckpoint(dir), InputError, `${configPath}: hidden_size`, 'missing');
  });

  it('a dimension of the wrong type ("four") names the field and the value', () => {
    for (const arch of ['opt', 'llama'] as const) {
      const { dir, configPath } = withConfig(arch, (c) => (c['num_attention_heads'] = 'four'));
      expectError(() => openCheckpoint(dir), InputError, `${configPath}: num_attention_heads`, 'positive integer', '"four"');
    }
  });

  it('a negative or fractional dimension names the field', () => {
    const { dir, configPath } = withConfig('bloom', (c) => (c['n_layer'] = 1.5));
    expectError(() => openCheckpoint(dir), InputError, `${configPath}: n_layer`, '1.5');
    const neg = withConfig('llama', (c) => (c['intermediate_size'] = -128));
    expectError(() => openCheckpoint(neg.dir), InputError, `${neg.configPath}: intermediate_size`, '-128');
  });

  // BUG (src/arch/gpt2.ts): n_inner is cast, never checked; a bad value only surfaces at export,
  // blamed on a tensor ("the config implies [64, wide]"), not on the field.
  it('gpt2 n_inner of the wrong type names the field when the checkpoint is opened', () => {
    const { dir, configPath } = withConfig('gpt2', (c) => (c['n_inner'] = 'wide'));
    expectError(() => openCheckpoint(dir), InputError, `${configPath}: n_inner`, '"wide"');
  });

  it('hidden size not divisible by the number of heads (opt: num_attention_heads)', () => {
    const { dir, configPath } = withConfig('opt', (c) => (c['num_attention_heads'] = 5));
    expectError(() => openCheckpoint(dir), InputError, `${configPath}: num_attention_heads`, '64', '5');
  });

  // BUG (src/arch/checkpoint.ts, fixed): the head-dim check always blames num_attention_heads, a
  // field gpt2's config.json does not have (its heads are n_head).
  it('hidden size not divisible by the number of heads (gpt2: blames n_head, the field it has)', () => {
    const { dir, configPath } = withConfig('gpt2', (c) => (c['n_head'] = 5));
    expectError(() => openCheckpoint(dir), InputError, `${configPath}: n_head`, '64', '5');
  });

  it('llama num_key_value_heads that does not divide the heads', () => {
    const { dir, configPath } = withConfig('llama', (c) => (c['num_key_value_heads'] = 3));
    expectError(() => openCheckpoint(dir), InputError, `${configPath}: num_key_value_heads`, '3', '4');
  });
});

describe('unsupported features are refused by field', () => {
  const cases: Array<[string, FixtureArch, string, unknown, string?]> = [
    ['gpt2 relu', 'gpt2', 'activation_function', 'relu'],
    ['llama yarn rope scaling (4.x layout)', 'llama', 'rope_scaling', { rope_type: 'yarn', factor: 4 }, 'rope_scaling.rope_type'],
    ['llama yarn rope scaling (5.x layout)', 'llama', 'rope_parameters', { rope_type: 'yarn', rope_theta: 10000, factor: 4 }, 'rope_parameters.rope_type'],
    ['rope parameters per layer type', 'llama', 'rope_parameters', { full_attention: { rope_type: 'default', rope_theta: 10000 } }],
    ['a key llama3 scaling does not have', 'llama', 'rope_scaling', { rope_type: 'linear', factor: 2, low_freq_factor: 1 }, 'rope_scaling.low_freq_factor'],
    ['OPT LayerNorms without weights', 'opt', 'layer_norm_elementwise_affine', false],
    ['beam search in config.json', 'gpt2', 'num_beams', 4],
    ['pruned heads', 'bloom', 'pruned_heads', { '0': [1] }],
    ['an unknown key', 'llama', 'attn_logit_softcapping', 50],
    ['an unknown key (gpt2)', 'gpt2', 'rotary_dim', 16],
  ];
  it.each(cases)('%s', (_label, arch, field, value, blamed) => {
    const { dir, configPath } = withConfig(arch, (c) => (c[field] = value));
    expectError(() => openCheckpoint(dir), UnsupportedError, `${configPath}: ${blamed ?? field}`);
  });

  it('the rejected value is named in the message', () => {
    const relu = withConfig('gpt2', (c) => (c['activation_function'] = 'relu'));
    expectError(() => openCheckpoint(relu.dir), UnsupportedError, `${relu.configPath}: activation_function`, '"relu"');
    const yarn = withConfig('llama', (c) => (c['rope_scaling'] = { rope_type: 'yarn', factor: 4 }));
    expectError(() => openCheckpoint(yarn.dir), UnsupportedError, `${yarn.configPath}: rope_scaling.rope_type`, 'yarn');
    const unknown = withConfig('llama', (c) => (c['attn_logit_softcapping'] = 50));
    expectError(() => openCheckpoint(unknown.dir), UnsupportedError, `${unknown.configPath}: attn_logit_softcapping`, 'unknown config key');
  });

  it('the two rope layouts may not disagree', () => {
    const both = withConfig('llama', (c) => {
      c['rope_theta'] = 10000;
      c['rope_parameters'] = { rope_type: 'default', rope_theta: 500000 };
    });
    expectError(() => openCheckpoint(both.dir), InputError, `${both.configPath}: rope_theta`, '500000');
  });

  it('a generation_config.json setting that changes the chosen tokens is refused; harmless ones are not', () => {
    const dir = copyFixture('llama');
    const path = join(dir, 'generation_config.json');
    fs.writeFileSync(path, JSON.stringify({ eos_token_id: 2, do_sample: true, temperature: 0.6, top_p: 0.9, max_length: 4096, transformers_version: '5.0.0' }));
    expect(openCheckpoint(dir).sampling).toEqual({ temperature: 0.6, topK: 50, topP: 0.9 });
    fs.writeFileSync(path, JSON.stringify({ eos_token_id: 2, repetition_penalty: 1.1 }));
    expectError(() => openCheckpoint(dir), UnsupportedError, `${path}: repetition_penalty`, '1.1');
    fs.writeFileSync(path, JSON.stringify({ eos_token_id: 2, watermarking_config: { greenlist_ratio: 0.25 } }));
    expectError(() => openCheckpoint(dir), UnsupportedError, `${path}: watermarking_config`, 'changes which tokens are chosen');
    fs.writeFileSync(path, JSON.stringify({ eos_token_id: 2, frobnicate: true }));
    expectError(() => openCheckpoint(dir), UnsupportedError, `${path}: frobnicate`, 'unknown generation config key');
  });

  it('the unmodified fixtures open cleanly (the cases above fail for their one change)', () => {
    for (const arch of ['gpt2', 'opt', 'bloom', 'llama'] as const) {
      const ckpt = openCheckpoint(copyFixture(arch));
      expect(ckpt.modelType).toBe(arch);
      expect(ckpt.dims.hiddenSize).toBe(64);
    }
  });
});

describe('config variants fusegen reads (once refused)', () => {
  it('rope_parameters (transformers 5) is read, not defaulted: theta and llama3 scaling', () => {
    const v5 = withConfig('llama', (c) => {
      delete c['rope_theta'];
      c['rope_parameters'] = { rope_type: 'llama3', rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
    });
    const v4 = withConfig('llama', (c) => {
      c['rope_theta'] = 500000;
      c['rope_scaling'] = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
    });
    const rope = openCheckpoint(v5.dir).dims.rope;
    expect(rope).toEqual({ type: 'llama3', theta: 500000, partialFactor: 1, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 });
    expect(openCheckpoint(v4.dir).dims.rope).toEqual(rope);
  });

  it('OPT post-LayerNorm and projected embeddings, BLOOM post-LayerNorm residual', () => {
    const post = openCheckpoint(withConfig('opt', (c) => (c['do_layer_norm_before'] = false)).dir);
    expect(post.dims.residualFromNorm).toBe(true);
    expect(post.spec.layer(0, post.dims, post.config).inputNorm).toBeUndefined();
    expect(post.spec.globals(post.dims, post.config).finalNorm?.weight.source).toBe('layers.1.final_layer_norm.weight');
    // The fixture's weights have no 32-wide embedding: the config is read, then refused against the
    // embedding table at open (issue 23 item 4); the reading itself is checked through the spec.
    const projected = withConfig('opt', (c) => (c['word_embed_proj_dim'] = 32));
    expectError(() => openCheckpoint(projected.dir), InputError, `${projected.configPath}: word_embed_proj_dim`, 'is 32', 'has 64 columns');
    const projConfig = readConfig(projected.dir);
    const projDims = post.spec.dims(projConfig, projected.configPath);
    expect(projDims.embedDim).toBe(32);
    expect(post.spec.globals(projDims, projConfig).projectIn?.source).toBe('project_in.weight');
    expect(openCheckpoint(withConfig('bloom', (c) => (c['apply_residual_connection_post_layernorm'] = true)).dir).dims.residualFromNorm).toBe(true);
  });

  it('tie_word_embeddings: absent means the model type\'s default, false unties', () => {
    const head = (arch: FixtureArch, edit: (c: Record<string, unknown>) => void) => {
      const c = openCheckpoint(withConfig(arch, edit).dir);
      return c.spec.globals(c.dims, c.config).lmHead.source;
    };
    expect(head('gpt2', (c) => delete c['tie_word_embeddings'])).toBe('wte.weight');
    expect(head('gpt2', (c) => (c['tie_word_embeddings'] = false))).toBe('lm_head.weight');
    expect(head('llama', (c) => delete c['tie_word_embeddings'])).toBe('lm_head.weight');
    expect(head('llama', (c) => (c['tie_word_embeddings'] = true))).toBe('embed_tokens.weight');
  });
});

describe('tokenizer and generation config', () => {
  it('missing tokenizer.json', () => {
    const dir = copyFixture('llama');
    fs.rmSync(join(dir, 'tokenizer.json'));
    expectError(() => openCheckpoint(dir), InputError, join(dir, 'tokenizer.json'), 'not found');
  });

  it('malformed generation_config.json', () => {
    const dir = copyFixture('gpt2');
    fs.writeFileSync(join(dir, 'generation_config.json'), '{"eos_token_id": 50256');
    expectError(() => openCheckpoint(dir), InputError, join(dir, 'generation_config.json'), 'malformed JSON');
  });

  it('generation_config.json that is not an object', () => {
    const dir = copyFixture('gpt2');
    fs.writeFileSync(join(dir, 'generation_config.json'), '"greedy"');
    expectError(() => openCheckpoint(dir), InputError, join(dir, 'generation_config.json'), 'JSON object');
  });
});

describe('weights, checked when the reference export runs', () => {
  it('no weights at all', () => {
    const dir = copyFixture('opt');
    fs.rmSync(join(dir, 'model.safetensors'));
    const cache = tmpDir('cache');
    expectError(() => exportDir(dir, cache), InputError, dir, 'no weights', 'model.safetensors');
    expect(cacheDebris(cache)).toEqual([]);
  });

  it('a tensor missing from the weights is named', () => {
    const dir = copyFixture('gpt2');
    const dropped = 'transformer.h.1.ln_2.bias';
    rewriteWeights(dir, (t) => (t.name === dropped ? null : undefined));
    const check = openSafetensorsFile(join(dir, 'model.safetensors'));
    expect(check.names()).not.toContain(dropped);
    expect(check.names().length).toBeGreaterThan(10);
    check.close();
    const cache = tmpDir('cache');
    expectError(() => exportDir(dir, cache), InputError, dir, 'h.1.ln_2.bias');
    expect(cacheDebris(cache)).toEqual([]);
  });

  it('a tensor with the wrong shape is named with both shapes', () => {
    const dir = copyFixture('gpt2');
    const name = 'transformer.h.0.ln_1.weight';
    rewriteWeights(dir, (t, data) => (t.name === name ? { spec: { ...t, shape: [32] }, data: data().slice(0, 32) } : undefined));
    const cache = tmpDir('cache');
    expectError(() => exportDir(dir, cache), InputError, dir, `"${name}"`, '[32]', '[64]');
  });

  it('a fused QKV matrix too small for the configured heads is named (bloom)', () => {
    const dir = copyFixture('bloom');
    const name = 'transformer.h.1.self_attention.query_key_value.weight';
    // [3E, E] -> [2E, E]: the q/k/v row slices for the last heads fall outside it.
    rewriteWeights(dir, (t, data) => (t.name === name ? { spec: { ...t, shape: [128, 64] }, data: data().slice(0, 128 * 64) } : undefined));
    const cache = tmpDir('cache');
    expectError(() => exportDir(dir, cache), InputError, dir, `"${name}"`);
  });

  // BUG (src/graph/decoder.ts, embed): the learned position table's row count is never checked
  // against the config, so generating past the table's end crashes ONNX Runtime (Gather out of
  // bounds, exit 1) instead of an InputError before any work.
  it('a learned position table shorter than the configured positions is named with both shapes', () => {
    const { dir } = withConfig('gpt2', (c) => {
      c['n_positions'] = 4096;
      c['n_ctx'] = 4096;
    });
    const cache = tmpDir('cache');
    expectError(() => exportDir(dir, cache), InputError, dir, 'wpe.weight', '1024', '4096');
  });

  it('a truncated model.safetensors is named', () => {
    const dir = copyFixture('llama');
    const file = join(dir, 'model.safetensors');
    const size = fs.statSync(file).size;
    fs.truncateSync(file, Math.floor(size / 2));
    const cache = tmpDir('cache');
    expectError(() => exportDir(dir, cache), InputError, file);
    expect(cacheDebris(cache)).toEqual([]);
  });

  it('an integer tensor where a float weight belongs is named', () => {
    const dir = copyFixture('opt');
    const name = 'model.decoder.layers.1.fc2.weight';
    relabelDtype(dir, name, 'I32');
    const cache = tmpDir('cache');
    expectError(() => exportDir(dir, cache), InputError, join(dir, 'model.safetensors'), `"${name}"`, 'I32');
  });
});

describe('the export cache', () => {
  it('a failed export leaves no incomplete directory and no temp files; fixing the input then exports', () => {
    const dir = copyFixture('opt');
    const cache = tmpDir('cache');
    // The bad tensor is found while the ONNX file is being written, inside the temp directory.
    relabelDtype(dir, 'model.decoder.layers.1.fc2.weight', 'I32');
    expectError(() => exportDir(dir, cache), InputError, join(dir, 'model.safetensors'), 'I32');
    expect(cacheDebris(cache)).toEqual([]);
    const exportsDir = join(cache, 'exports');
    const before = fs.existsSync(exportsDir) ? fs.readdirSync(exportsDir) : [];
    expect(before).toEqual([]);

    fs.copyFileSync(join(tinyModelDir('opt'), 'model.safetensors'), join(dir, 'model.safetensors'));
    const good = exportDir(dir, cache);
    expect(good.cached).toBe(false);
    expect(fs.existsSync(join(good.dir, 'fusegen-export.json'))).toBe(true);
    expect(fs.existsSync(join(good.dir, 'onnx', 'model.onnx'))).toBe(true);
    expect(cacheDebris(cache)).toEqual([]);
  });

  it('a successful export is reused, and a changed weight file gives a new key', () => {
    const dir = copyFixture('gpt2');
    const cache = tmpDir('cache');
    const first = exportDir(dir, cache);
    expect(first.cached).toBe(false);
    expect(first.dir).toBe(join(cache, 'exports', first.key));
    const again = exportDir(dir, cache);
    expect(again.cached).toBe(true);
    expect(again.key).toBe(first.key);
    expect(again.dir).toBe(first.dir);

    // Same names, shapes and size: only one value changes.
    rewriteWeights(dir, (t, data) => {
      if (t.name !== 'transformer.h.0.ln_1.bias') return undefined;
      const d = data();
      d[0] = d[0]! + 0.5;
      return { spec: t, data: d };
    });
    const changed = exportDir(dir, cache);
    expect(changed.cached).toBe(false);
    expect(changed.key).not.toBe(first.key);
    expect(fs.existsSync(join(changed.dir, 'fusegen-export.json'))).toBe(true);
    expect(cacheDebris(cache)).toEqual([]);
  });

  it('an export directory without its completion marker is rebuilt, not used', () => {
    const dir = copyFixture('bloom');
    const cache = tmpDir('cache');
    const first = exportDir(dir, cache);
    // What an interrupted export that somehow reached the final name would leave.
    fs.rmSync(join(first.dir, 'fusegen-export.json'));
    fs.writeFileSync(join(first.dir, 'onnx', 'model.onnx'), 'partial');
    const again = exportDir(dir, cache);
    expect(again.cached).toBe(false);
    expect(again.key).toBe(first.key);
    expect(fs.existsSync(join(again.dir, 'fusegen-export.json'))).toBe(true);
    expect(fs.statSync(join(again.dir, 'onnx', 'model.onnx')).size).toBeGreaterThan(1000);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('output locations, checked before any work', () => {
  async function run(args: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out, err };
  }
  /** A plain file, and a path under it. */
  function aFile(): { file: string; under: string } {
    const d = tmpDir('out');
    const file = join(d, 'reports.txt');
    fs.writeFileSync(file, 'not a directory');
    return { file, under: join(file, 'sub', 'dir') };
  }
  // A model directory that does not exist: were the model opened (or exported) first, the error
  // would name it. The output check names the flag instead, so it ran before any model work.
  const noModel = () => join(tmpDir('nomodel'), 'missing-model');
  const cases = (flag: string): Array<[string, () => string, RegExp]> => [
    ['a file', () => aFile().file, /: is a file, not a directory$/],
    ['a path under a file', () => aFile().under, /: lies under .*reports\.txt, a file, not a directory$/],
    ['a place under /proc (where a recursive mkdir never returns)', () => '/proc/fusegen-no-such/reports', /: cannot create \/proc\/fusegen-no-such \(ENOENT: .*\)$/],
    ['an existing directory that takes no files (/proc)', () => '/proc', /: not writable \(ENOENT: .*\)$/],
  ].map(([what, path, tail]) => [`${flag} ${what as string}`, path as () => string, tail as RegExp]);

  for (const command of ['compare', 'bench'] as const) {
    it.each(cases('--report_dir'))(`${command}: %s is one line naming the flag and the path, exit 2, before the model is touched`, async (_what, path, tail) => {
      const dir = path();
      const t = performance.now();
      const r = await run([command, '--model', noModel(), '--report_dir', dir]);
      expect(performance.now() - t).toBeLessThan(5_000);
      expect(r.err).toEqual([expect.stringMatching(new RegExp(`^error: --report_dir: ${escape(dir)}${tail.source.replace(/^\^?/, '')}`))]);
      expect(r.out).toEqual([]);
      expect(r.code).toBe(2);
    }, 20_000);
  }

  it.each(cases('--out'))('dashboard: %s as the page\'s directory is one line naming the flag and the path, exit 2', async (_what, path, tail) => {
    const reports = tmpDir('dash');
    const dir = path();
    const r = await run(['dashboard', '--report_dir', reports, '--out', join(dir, 'dashboard.html')]);
    expect(r.err).toEqual([expect.stringMatching(new RegExp(`^error: --out: ${escape(dir)}${tail.source.replace(/^\^?/, '')}`))]);
    expect(r.out).toEqual([]);
    expect(r.code).toBe(2);
  }, 20_000);

  it('dashboard: without --out, an unwritable report directory is blamed on --report_dir', async () => {
    const r = await run(['dashboard', '--report_dir', '/proc']);
    expect(r.err).toEqual([expect.stringMatching(/^error: --report_dir: \/proc: not writable \(ENOENT: /)]);
    expect(r.code).toBe(2);
  });

  it('dashboard: --out never replaces a directory or a file that is not a dashboard; it does replace a dashboard', async () => {
    const reports = tmpDir('dash');
    const report = join(reports, 'x-compare.html');
    fs.writeFileSync(report, '<h1>a compare report</h1>');
    const r = await run(['dashboard', '--report_dir', reports, '--out', report]);
    expect(r.err).toEqual([`error: --out: ${report}: exists and is not a fusegen dashboard; not replacing it`]);
    expect(r.code).toBe(2);
    expect(fs.readFileSync(report, 'utf8')).toBe('<h1>a compare report</h1>');
    const asDir = join(reports, 'page');
    fs.mkdirSync(asDir);
    const d = await run(['dashboard', '--report_dir', reports, '--out', asDir]);
    expect(d.err).toEqual([`error: --out: ${asDir}: is a directory; name the page's file`]);
    expect(d.code).toBe(2);
    const page = join(reports, 'dash.html');
    expect((await run(['dashboard', '--report_dir', reports, '--out', page])).code).toBe(0);
    fs.writeFileSync(page, fs.readFileSync(page, 'utf8').replace('</body>', '<p>stale</p></body>'));
    expect((await run(['dashboard', '--report_dir', reports, '--out', page])).code).toBe(0);
    expect(fs.readFileSync(page, 'utf8')).not.toContain('stale');
    expect(fs.readdirSync(reports).sort()).toEqual(['dash.html', 'page', 'x-compare.html']);
  });

  it('prepareOutputDir creates missing parents one by one, proves the directory writable and leaves no probe behind', () => {
    const base = tmpDir('prep');
    const target = join(base, 'a', 'b', 'c');
    expect(prepareOutputDir('--report_dir', target)).toBe(target);
    expect(fs.statSync(target).isDirectory()).toBe(true);
    expect(fs.readdirSync(target)).toEqual([]);
    expect(prepareOutputDir('--report_dir', target)).toBe(target); // existing: fine again
    expect(prepareOutputDir('--x', join(base, 'a', 'b', 'c', '..', '..', '..', 'f', 'g'))).toBe(join(base, 'f', 'g'));
    fs.writeFileSync(join(base, 'file'), '');
    const e = caught(() => prepareOutputDir('--x', join(base, 'file', 'y')));
    expect(e).toBeInstanceOf(UsageError);
    expect((e as UsageError).message).toBe(`--x: ${join(base, 'file', 'y')}: lies under ${join(base, 'file')}, a file, not a directory`);
    expect(fs.readdirSync(base).sort()).toEqual(['a', 'f', 'file']);
  });
});
