/**
 * Resolves an architecture's weight views against a checkpoint's tensors: finds the name
 * under the spec's prefixes, checks the shape the graph expects, and produces the data
 * (sliced, transposed) on demand, one tensor at a time.
 */
import { float32ArrayToBFloat16Bits, float32ToFloat16Bits, type TensorStore } from '../checkpoint/safetensors.js';
import { InputError } from '../errors.js';
import type { WeightView } from '../arch/spec.js';

/** The 16-bit float formats the half reads produce: IEEE binary16, or bfloat16 (a float32's top half). */
export type HalfFormat = 'F16' | 'BF16';

/** float32 values to `format` bits (round to nearest, ties to even), into `out`. */
function toHalf(src: Float32Array, out: Uint16Array, format: HalfFormat): Uint16Array {
  if (format === 'BF16') return float32ArrayToBFloat16Bits(src, out);
  for (let i = 0; i < src.length; i++) out[i] = float32ToFloat16Bits(src[i]!);
  return out;
}

export class WeightSource {
  constructor(
    private readonly store: TensorStore,
    private readonly prefixes: readonly string[],
    /** Named in errors: the checkpoint directory. */
    private readonly where: string,
  ) {}

  /** The checkpoint's name for a spec-relative name, trying each prefix. */
  resolve(name: string): string {
    for (const candidate of [name, ...this.prefixes.map((p) => p + name)]) {
      if (this.store.has(candidate)) return candidate;
    }
    throw new InputError(this.where, `missing tensor "${name}" (also looked for ${this.prefixes.map((p) => `"${p}${name}"`).join(', ')})`);
  }

  has(name: string): boolean {
    return [name, ...this.prefixes.map((p) => p + name)].some((n) => this.store.has(n));
  }

  /** Shape after slicing and transposing; `expected` is checked when given. */
  shape(view: WeightView, expected?: number[]): number[] {
    const name = this.resolve(view.source);
    const src = this.store.info(name).shape;
    if (src.length !== 1 && src.length !== 2) throw new InputError(this.where, `tensor "${name}" has rank ${src.length}, expected 1 or 2`);
    const rows = view.rows ? sum(view.rows, src[0]!, name, this.where) : src[0]!;
    const cols = src.length === 2 ? (view.cols ? sum(view.cols, src[1]!, name, this.where) : src[1]!) : undefined;
    let shape = cols === undefined ? [rows] : [rows, cols];
    if (view.transpose && cols !== undefined) shape = [cols, rows];
    if (expected && (expected.length !== shape.length || expected.some((d, i) => d !== shape[i]))) {
      throw new InputError(this.where, `tensor "${name}" has shape [${src.join(', ')}]; the config implies [${expected.join(', ')}]${view.transpose ? ' (transposed)' : ''}`);
    }
    return shape;
  }

  /**
   * The view as float16 (or, with `format` BF16, bfloat16) bits. Tensors stored in that format and
   * selected by whole rows are copied as they are, bit for bit (no float conversion: multi-GB
   * checkpoints upload fast); anything else is converted, rounding to nearest even.
   */
  readHalf(view: WeightView, format: HalfFormat = 'F16'): Uint16Array {
    const name = this.resolve(view.source);
    const info = this.store.info(name);
    if (info.dtype !== format || view.cols || view.offset || (view.transpose && info.shape.length === 2)) {
      const f32 = this.read(view);
      return toHalf(f32, new Uint16Array(f32.length), format);
    }
    const raw = this.store.readRaw(name);
    const all = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
    if (!view.rows) return all;
    const width = info.shape.length === 2 ? info.shape[1]! : 1;
    const out = new Uint16Array(view.rows.reduce((a, [, n]) => a + n, 0) * width);
    let off = 0;
    for (const [r0, n] of view.rows) {
      out.set(all.subarray(r0 * width, (r0 + n) * width), off);
      off += n * width;
    }
    return out;
  }

  /**
   * Whether rows of the view can be read a few at a time straight from the file (readRows):
   * a 1-D tensor, or a 2-D one not transposed (the view's rows are the tensor's rows).
   */
  streamable(view: WeightView): boolean {
    return !view.transpose || this.store.info(this.resolve(view.source)).shape.length !== 2;
  }

  /**
   * Rows [r0, r0 + count) of read(view), reading only those rows' bytes from the file: how a
   * large tensor streams in bounded chunks. The view must be streamable. With `into` (large
   * enough) the rows land there and a view of it is returned: a streamed load reuses one buffer.
   */
  readRows(view: WeightView, r0: number, count: number, into?: Float32Array): Float32Array {
    const { name, width, outCols, runs } = this.rowRuns(view, r0, count);
    const out = into ? into.subarray(0, count * outCols) : new Float32Array(count * outCols);
    const range = (start: number, n: number, dest?: Float32Array): Float32Array =>
      this.store.readFloat32Range ? this.store.readFloat32Range(name, start, n, dest) : this.store.readFloat32(name).subarray(start, start + n);
    let at = 0;
    for (const [s, m] of runs) {
      if (!view.cols) {
        const dest = out.subarray(at * outCols, (at + m) * outCols);
        const data = range(s * width, m * width, dest);
        if (data.buffer !== dest.buffer || data.byteOffset !== dest.byteOffset) dest.set(data); // a store without range reads
      } else {
        if (!this.scratch || this.scratch.length < m * width) this.scratch = new Float32Array(m * width);
        const data = range(s * width, m * width, this.scratch);
        for (let i = 0; i < m; i++) {
          let c = 0;
          for (const [c0, cn] of view.cols) {
            out.set(data.subarray(i * width + c0, i * width + c0 + cn), (at + i) * outCols + c);
            c += cn;
          }
        }
      }
      at += m;
    }
    if (view.offset) for (let i = 0; i < out.length; i++) out[i] = out[i]! + view.offset;
    return out;
  }

  private scratch: Float32Array | undefined;

  /** readRows as float16 (or bfloat16) bits: whole rows stored in that format are copied as they are (as readHalf does), anything else converted. `into` as for readRows. */
  readRowsHalf(view: WeightView, r0: number, count: number, into?: Uint16Array, format: HalfFormat = 'F16'): Uint16Array {
    const name = this.resolve(view.source);
    const { width, outCols, runs } = this.rowRuns(view, r0, count);
    const out = into ? into.subarray(0, count * outCols) : new Uint16Array(count * outCols);
    if (this.store.info(name).dtype !== format || view.cols || view.offset || !this.store.readRawRange) {
      return toHalf(this.readRows(view, r0, count, this.halfRowsScratch(count * outCols)), out, format);
    }
    let at = 0;
    for (const [s, m] of runs) {
      this.store.readRawRange(name, s * width, m * width, new Uint8Array(out.buffer, out.byteOffset + at * outCols * 2, m * width * 2));
      at += m;
    }
    return out;
  }

  private f32Scratch: Float32Array | undefined;

  private halfRowsScratch(n: number): Float32Array {
    if (!this.f32Scratch || this.f32Scratch.length < n) this.f32Scratch = new Float32Array(n);
    return this.f32Scratch;
  }

  /** The tensor rows that rows [r0, r0 + count) of a streamable view come from, as runs [first, count]. */
  private rowRuns(view: WeightView, r0: number, count: number): { name: string; width: number; outCols: number; runs: Array<[number, number]> } {
    const name = this.resolve(view.source);
    if (!this.streamable(view)) throw new Error(`tensor "${name}": a transposed view is read whole, not by rows`);
    const src = this.store.info(name).shape;
    const width = src.length === 2 ? src[1]! : 1;
    const outCols = view.cols ? view.cols.reduce((a, [, n]) => a + n, 0) : width;
    const runs: Array<[number, number]> = [];
    let skip = r0;
    let left = count;
    for (const [start, n] of view.rows ?? [[0, src[0]!]]) {
      if (left === 0) break;
      if (skip >= n) {
        skip -= n;
        continue;
      }
      const m = Math.min(n - skip, left);
      runs.push([start + skip, m]);
      skip = 0;
      left -= m;
    }
    if (left > 0) throw new Error(`tensor "${name}": rows ${r0}..${r0 + count - 1} are past the view's end`);
    return { name, width, outCols, runs };
  }

  read(view: WeightView): Float32Array {
    const name = this.resolve(view.source);
    const src = this.store.info(name).shape;
    const data = this.store.readFloat32(name);
    const nRows = src[0]!;
    const nCols = src.length === 2 ? src[1]! : 1;
    const rows = view.rows ?? [[0, nRows]];
    const cols = view.cols ?? [[0, nCols]];
    const outRows = rows.reduce((a, [, n]) => a + n, 0);
    const outCols = cols.reduce((a, [, n]) => a + n, 0);
    let out = data;
    if (view.rows || view.cols) {
      out = new Float32Array(outRows * outCols);
      let r = 0;
      for (const [r0, rn] of rows) {
        for (let i = r0; i < r0 + rn; i++, r++) {
          let c = 0;
          for (const [c0, cn] of cols) {
            out.set(data.subarray(i * nCols + c0, i * nCols + c0 + cn), r * outCols + c);
            c += cn;
          }
        }
      }
    }
    if (view.transpose && src.length === 2) out = transpose(out, outRows, outCols);
    if (view.offset) out = out.map((v) => v + view.offset!);
    return out;
  }
}

function sum(ranges: Array<[number, number]>, extent: number, name: string, where: string): number {
  let total = 0;
  for (const [start, n] of ranges) {
    if (start < 0 || n < 0 || start + n > extent) throw new InputError(where, `tensor "${name}" is too small for the configured dimensions (needs index ${start + n} of ${extent})`);
    total += n;
  }
  return total;
}

export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  const B = 64; // blocked for cache locality on large matrices
  for (let i0 = 0; i0 < rows; i0 += B) {
    for (let j0 = 0; j0 < cols; j0 += B) {
      const iEnd = Math.min(i0 + B, rows);
      const jEnd = Math.min(j0 + B, cols);
      for (let i = i0; i < iEnd; i++) for (let j = j0; j < jEnd; j++) out[j * rows + i] = a[i * cols + j]!;
    }
  }
  return out;
}
