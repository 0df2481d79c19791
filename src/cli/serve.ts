/**
 * `fusegen serve`: an OpenAI-compatible server over a fusegen pipeline (serve/server.ts), the
 * WGSL engine on a GPU the point of it. Validates like generate, loads, listens (loopback
 * unless --host says otherwise), and on Ctrl-C stops taking requests, ends those in flight and
 * exits 0.
 */
import { basename } from 'node:path';
import { checkWeightShapes } from '../graph/export.js';
import { UsageError } from '../errors.js';
import { backendFor, createPipeline, engineOf } from '../pipeline/ds-pipeline.js';
import { defaultDtype, defaultKernelsHelp, type DType, type Device, type Kernels } from '../pipeline/types.js';
import { ensureDefaultModel } from '../../fixtures/checkpoints.js';
import { buildServer } from '../../serve/server.js';
import { accuracyLevelOption, allowNonfiniteOption, checkAccuracyLevel, checkDtype, checkKvBudget, dtypeOption, intAtLeast, oneOf, text, type OptionTable } from './options.js';
import { checkpointPathOption, checkWorldSize, openModel, worldSizeOption } from './load-options.js';
import { checkDevice } from './validate.js';

export interface ServeCliOptions {
  model: string | undefined;
  checkpoint_path: string | undefined;
  served_model_name: string | undefined;
  device: Device;
  dtype: DType | undefined;
  use_kernel: boolean;
  kernels: Kernels | undefined;
  accuracy_level: 0 | 4 | undefined;
  world_size: number;
  max_model_len: number;
  max_batch_size: number;
  max_num_batched_tokens: number;
  block_size: number;
  num_kv_blocks: number | undefined;
  max_tokens_limit: number | undefined;
  host: string;
  port: number;
  api_key: string | undefined;
  request_timeout_s: number;
  max_body_bytes: number;
  allow_nonfinite: boolean;
}

export const serveOptions: OptionTable<ServeCliOptions> = {
  model: { flag: 'model', arg: 'dir', help: 'Hugging Face checkpoint directory (or a saved injected model)', defaultHelp: 'the embedded tiny OPT with random weights', parse: text },
  checkpoint_path: checkpointPathOption,
  served_model_name: { flag: 'served_model_name', arg: 'name', help: 'the model name clients send and /v1/models lists', defaultHelp: "the model directory's name", parse: text },
  device: { flag: 'device', arg: 'name', help: 'cpu | webgpu | cuda', default: 'cpu', parse: oneOf<Device>(['cpu', 'webgpu', 'cuda']) },
  dtype: dtypeOption(['ort', 'wgsl'], 'default: float16 on gpu devices, float32 on cpu'),
  use_kernel: { flag: 'use_kernel', help: 'serve the kernel-injected pipeline (default: the plain graph under fusegen\'s loop)', default: false },
  kernels: { flag: 'kernels', arg: 'backend', help: 'with --use_kernel: ort or wgsl', defaultHelp: defaultKernelsHelp(), parse: oneOf<Kernels>(['ort', 'wgsl']) },
  accuracy_level: accuracyLevelOption,
  world_size: worldSizeOption,
  max_model_len: { flag: 'max_model_len', arg: 'n', help: 'positions a request may hold, prompt and generated together (the ORT pipelines reserve this much KV cache a slot)', default: 1024, parse: intAtLeast(2) },
  max_batch_size: { flag: 'max_batch_size', arg: 'n', help: 'requests in the running batch at once (KV slots); more wait in a queue', default: 16, parse: intAtLeast(1) },
  max_num_batched_tokens: { flag: 'max_num_batched_tokens', arg: 'n', help: "tokens a step may carry while prompts join running requests (rows x padded length): a joining prompt goes in by chunks that fit (chunked prefill), as vLLM's flag of that name bounds a step", default: 512, parse: intAtLeast(1) },
  block_size: { flag: 'block_size', arg: 'n', help: 'positions a KV block holds (WGSL engine: requests take blocks from a pool as they grow, vLLM\'s paged KV cache)', default: 16, parse: intAtLeast(1) },
  num_kv_blocks: { flag: 'num_kv_blocks', arg: 'n', help: 'KV blocks in the pool (WGSL engine), one kept for idle rows; fewer than the default bounds memory: requests wait, or the latest is preempted and recomputed, while the pool is full', defaultHelp: 'every slot\'s --max_model_len, and one', parse: intAtLeast(2) },
  max_tokens_limit: { flag: 'max_tokens_limit', arg: 'n', help: 'largest max_tokens a request may ask', defaultHelp: '--max_model_len', parse: intAtLeast(1) },
  host: { flag: 'host', arg: 'address', help: 'address to listen on (0.0.0.0 exposes the server to the network)', default: '127.0.0.1', parse: text },
  port: { flag: 'port', arg: 'n', help: 'port to listen on (0: any free port, printed)', default: 8000, parse: intAtLeast(0) },
  api_key: { flag: 'api_key', arg: 'key', help: 'required as "Authorization: Bearer KEY" on every route but /health', env: 'FUSEGEN_API_KEY', parse: text },
  request_timeout_s: { flag: 'request_timeout_s', arg: 's', help: 'a request unfinished after this long ends with 504', default: 600, parse: intAtLeast(1) },
  max_body_bytes: { flag: 'max_body_bytes', arg: 'n', help: 'largest request body (413 above it)', default: 1 << 20, parse: intAtLeast(1024) },
  allow_nonfinite: allowNonfiniteOption,
};

export interface ServeIo {
  out: (line: string) => void;
  /** Resolves when the user interrupts (Ctrl-C): the server then shuts down. */
  stopped: Promise<void>;
}

export async function runServe(o: ServeCliOptions, io: ServeIo): Promise<number> {
  if (o.kernels && !o.use_kernel) throw new UsageError('--kernels', 'picks the kernel-injection backend: add --use_kernel');
  if (o.port > 65535) throw new UsageError('--port', `${o.port} is not a TCP port`);
  const backend = backendFor({ device: o.device, hfBaseline: false, useKernel: o.use_kernel, kernels: o.kernels, worldSize: o.world_size, ...(o.accuracy_level !== undefined ? { accuracyLevel: o.accuracy_level } : {}) });
  const engine = engineOf(backend);
  const dtype = o.dtype ?? defaultDtype(o.device);
  checkDtype(dtype, engine);
  checkAccuracyLevel(o.accuracy_level, dtype, engine === 'ort');
  checkDevice(o.device, [engine]);
  const ckpt = openModel(o.model, o.checkpoint_path, o.allow_nonfinite, ensureDefaultModel);
  checkWeightShapes(ckpt);
  checkWorldSize(o.world_size, ckpt);
  if (o.max_model_len > ckpt.dims.maxPositions) throw new UsageError('--max_model_len', `${o.max_model_len} exceeds the model's ${ckpt.dims.maxPositions} positions`);
  // The WGSL engine pages its KV cache: a pool of blocks, by default as large as every slot's whole cache.
  const paged = engine === 'wgsl';
  if (!paged && o.num_kv_blocks !== undefined) throw new UsageError('--num_kv_blocks', `the ${engine} pipeline holds a whole cache per slot (--max_batch_size x --max_model_len); a paged KV pool is the WGSL engine's (--use_kernel --kernels wgsl on --device webgpu)`);
  const blocks = o.num_kv_blocks ?? o.max_batch_size * Math.ceil(o.max_model_len / o.block_size) + 1;
  if (paged && (blocks - 1) * o.block_size < o.max_model_len) throw new UsageError('--num_kv_blocks', `${blocks} blocks of ${o.block_size} (one kept for idle rows) hold fewer positions than one request may take (--max_model_len ${o.max_model_len})`);
  if (paged) checkKvBudget(1, blocks * o.block_size, ckpt.dims, undefined, { batch: '--num_kv_blocks', tokens: '--num_kv_blocks' });
  else checkKvBudget(o.max_batch_size, o.max_model_len, ckpt.dims);

  const pipeline = await createPipeline(ckpt, backend, { device: o.device, dtype, maxTokens: o.max_model_len });
  const modelName = o.served_model_name ?? basename(ckpt.dir);
  let server;
  try {
    server = await buildServer({ pipeline, modelName, maxBatch: o.max_batch_size, maxBatchedTokens: o.max_num_batched_tokens, ...(paged ? { paging: { blockSize: o.block_size, blocks } } : {}), maxTokensLimit: o.max_tokens_limit ?? o.max_model_len, bodyLimit: o.max_body_bytes, requestTimeoutMs: o.request_timeout_s * 1000, ...(o.api_key !== undefined ? { apiKey: o.api_key } : {}) });
    const address = await server.app.listen({ host: o.host, port: o.port });
    const kv = paged ? `a KV pool of ${blocks} blocks of ${o.block_size} positions` : `slots of ${o.max_model_len} positions`;
    io.out(`serving ${modelName} (${pipeline.info.name} pipeline, ${dtype} on ${o.device}, ${o.max_batch_size} slots, ${kv}) at ${address}/v1`);
    if (o.host !== '127.0.0.1' && o.host !== 'localhost' && o.host !== '::1') io.out(`note: listening on ${o.host}, reachable beyond this machine${o.api_key ? '' : ' and without --api_key'}`);
  } catch (e) {
    await server?.close();
    await pipeline.dispose();
    if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new UsageError('--port', `${o.port} is in use on ${o.host}`);
    if ((e as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL' || (e as NodeJS.ErrnoException).code === 'ENOTFOUND') throw new UsageError('--host', `${o.host} is not an address of this machine`);
    throw e;
  }
  await io.stopped;
  io.out('shutting down: requests in flight end now');
  await server.close();
  await pipeline.dispose();
  return 0;
}
