/**
 * What a --dtype means, once: its float type, the bits of its quantized weights, the bytes a
 * weight takes, what the reference runs beside it, and which engines run it (every other one
 * refuses it, saying why). The ORT plan (planFor), the WGSL engine, the reference pipelines,
 * pipelineInfo's weight bytes, compare's and bench's reference dtype and the CLI's --dtype
 * (parser, help and the check before any work) all read this table.
 */
import { UnsupportedError } from '../errors.js';
import type { FloatType } from '../graph/blocks.js';
import type { DType, Device } from './types.js';

/**
 * What runs a model: the two reference libraries (transformers.js on fusegen's plain export,
 * Hugging Face transformers in Python), fusegen's loop on ONNX Runtime graphs (plain or
 * kernel-injected), the WGSL engine, and llama.cpp on fusegen's GGUF export (node-llama-cpp).
 */
export type Engine = 'transformersjs' | 'hf' | 'ort' | 'wgsl' | 'llamacpp';

export interface DTypeSpec {
  /**
   * Float type of the activations and of the weights left unquantized (embedding tables, norms):
   * `device` is float32 on the CPU and float16 on GPU devices (what defaultDtype picks). The WGSL
   * engine stores its weight matrices in it and keeps activations float32 whatever it is.
   */
  float: FloatType | 'bfloat16' | 'device';
  /** Bits of the block-quantized weights of every projection and the LM head; 0: not quantized. */
  bits: 0 | 4 | 8;
  /** Bytes a weight takes, for bandwidth figures (quantized: bits / 8; scales and float tables not counted). */
  bytesPerWeight: number;
  /** What the reference runs beside a candidate of this dtype in bench (no reference library runs fusegen's int8/int4); compare judges float16, int8 and int4 against float32 beside their floor. */
  reference: DType;
  /** The engines that run it, in the order --help names them. */
  engines: readonly Engine[];
  /** Why each engine that does not run it refuses it (one clause). */
  refused: Partial<Record<Engine, string>>;
  /** The GGUF type of the projections and the LM head where llama.cpp runs it (fusegen's own F16 conversion and Q8_0 / Q4_0 quantization, graph/gguf.ts). */
  gguf?: 'F32' | 'F16' | 'Q8_0' | 'Q4_0';
}

const EVERY_ENGINE: readonly Engine[] = ['transformersjs', 'hf', 'ort', 'wgsl'];
const QUANTIZED_REFUSED = {
  transformersjs: "the reference runs the checkpoint's float weights: fusegen's block quantization is what compare measures against it",
  hf: "the reference runs the checkpoint's float weights: fusegen's block quantization is what compare measures against it",
};

/** Every --dtype, in the order --help lists them. */
export const DTYPES: Record<DType, DTypeSpec> = {
  float32: { float: 'float32', bits: 0, bytesPerWeight: 4, reference: 'float32', engines: [...EVERY_ENGINE, 'llamacpp'], refused: {}, gguf: 'F32' },
  float16: { float: 'float16', bits: 0, bytesPerWeight: 2, reference: 'float16', engines: [...EVERY_ENGINE, 'llamacpp'], refused: {}, gguf: 'F16' },
  // llama.cpp's own block formats, written by fusegen's quantizer: Q8_0 and Q4_0 (blocks of 32, one f16 scale each); embeddings stay float32.
  int8: { float: 'device', bits: 8, bytesPerWeight: 1, reference: 'float32', engines: ['ort', 'wgsl', 'llamacpp'], refused: QUANTIZED_REFUSED, gguf: 'Q8_0' },
  int4: { float: 'device', bits: 4, bytesPerWeight: 0.5, reference: 'float32', engines: ['ort', 'wgsl', 'llamacpp'], refused: QUANTIZED_REFUSED, gguf: 'Q4_0' },
  // The WGSL engine stores the weights bfloat16 (the top half of a float32: a shift widens them) and
  // keeps activations, the KV cache and accumulation float32, as it does for float16. No reference
  // library runs fusegen's bfloat16 (transformers.js takes fp32 and fp16 exports; the hf reference
  // is generate's only), so compare and bench hold it against float32, as they do int8 and int4.
  bfloat16: {
    float: 'bfloat16',
    bits: 0,
    bytesPerWeight: 2,
    reference: 'float32',
    engines: ['hf', 'wgsl'],
    refused: {
      transformersjs: 'transformers.js runs fp32 and fp16 exports',
      ort: 'ONNX Runtime has no bfloat16 kernels for these ops',
      llamacpp: "fusegen's GGUF export writes F32, F16, Q8_0 and Q4_0",
    },
  },
};

/** Whether `engine` runs `dtype`. */
export function runsDtype(dtype: DType, engine: Engine): boolean {
  return DTYPES[dtype].engines.includes(engine);
}

/** The dtypes some engine among `engines` runs, in the table's order. */
export function dtypesFor(engines: readonly Engine[]): DType[] {
  return (Object.keys(DTYPES) as DType[]).filter((d) => DTYPES[d].engines.some((e) => engines.includes(e)));
}

/** `a, b or c`. */
export function orList(xs: readonly string[]): string {
  return xs.length <= 1 ? (xs[0] ?? '') : `${xs.slice(0, -1).join(', ')} or ${xs[xs.length - 1]}`;
}

/**
 * Refuses, before any work, a dtype `engine` does not run: `--dtype: <dtype> is not available
 * for <name> (<what it runs>): <why>`.
 */
export function refuseDtype(dtype: DType, engine: Engine, name: string): void {
  if (runsDtype(dtype, engine)) return;
  const why = DTYPES[dtype].refused[engine];
  throw new UnsupportedError('--dtype', `${dtype} is not available for ${name} (${orList(dtypesFor([engine]))})${why ? `: ${why}` : ''}`);
}

/** The float type of a dtype's activations and unquantized weights on `device` (see DTypeSpec.float). */
export function floatOf(dtype: DType, device: Device): FloatType | 'bfloat16' {
  const f = DTYPES[dtype].float;
  return f === 'device' ? (device === 'cpu' ? 'float32' : 'float16') : f;
}

/** Bytes a weight takes in `dtype` (pipelineInfo's parameter bytes). */
export function bytesPerWeight(dtype: DType): number {
  return DTYPES[dtype].bytesPerWeight;
}

/** What the reference runs beside a candidate in `dtype`. */
export function referenceDtype(dtype: DType): DType {
  return DTYPES[dtype].reference;
}
