/**
 * Typed errors: every bad input becomes one of these, carrying the culprit (file, field or
 * flag). The CLI catches them once, prints `error: <culprit>: <message>` and exits 2.
 */
export type ErrorCode = 'usage' | 'input' | 'unsupported' | 'capacity';

export class FusegenError extends Error {
  readonly code: ErrorCode;
  /** What to blame: a flag (`--batch_size`), a file path, or `file: field`. */
  readonly culprit: string;

  constructor(code: ErrorCode, culprit: string, message: string) {
    super(`${culprit}: ${message}`);
    this.name = 'FusegenError';
    this.code = code;
    this.culprit = culprit;
  }
}

/** A bad flag or flag combination. */
export class UsageError extends FusegenError {
  constructor(flag: string, message: string) {
    super('usage', flag, message);
    this.name = 'UsageError';
  }
}

/** A missing, malformed or inconsistent input file. */
export class InputError extends FusegenError {
  constructor(path: string, message: string) {
    super('input', path, message);
    this.name = 'InputError';
  }
}

/** Well-formed input that fusegen does not (yet) handle: architecture, dtype, feature. */
export class UnsupportedError extends FusegenError {
  constructor(what: string, message: string) {
    super('unsupported', what, message);
    this.name = 'UnsupportedError';
  }
}

/** No WebGPU adapter: the same line from ONNX Runtime's EP and from our Dawn device. */
export function noWebgpuAdapter(): UnsupportedError {
  return new UnsupportedError('--device', 'webgpu: no WebGPU adapter (needs a Vulkan driver; without a GPU, Mesa lavapipe: see README)');
}

/** A request that would overrun a fixed capacity such as the KV cache (`--max_tokens`). */
export class CapacityError extends FusegenError {
  constructor(what: string, message: string) {
    super('capacity', what, message);
    this.name = 'CapacityError';
  }
}
