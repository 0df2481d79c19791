/**
 * A small graph IR: nodes, lazily produced initializers, typed inputs and outputs.
 * Names follow onnxruntime-genai's builder (`/model/layers.0/attn/q_proj/MatMul`), so the
 * plain and the fused graph of one model can be compared node by node.
 */

export type ElemType = 'float32' | 'float16' | 'int64' | 'int32' | 'bool' | 'uint8';
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  type: ElemType;
  shape: Dim[];
}

export type Attr =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: number[] }
  | { kind: 'floats'; value: number[] }
  | { kind: 'tensor'; value: TensorValue };

export const int = (value: number): Attr => ({ kind: 'int', value });
export const float = (value: number): Attr => ({ kind: 'float', value });
export const str = (value: string): Attr => ({ kind: 'string', value });
export const ints = (value: number[]): Attr => ({ kind: 'ints', value });

export interface Node {
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Record<string, Attr>;
}

export type TensorData = Float32Array | BigInt64Array | Int32Array | Uint8Array;

export interface TensorValue {
  type: ElemType;
  dims: number[];
  data: TensorData;
}

/**
 * Weights are produced on demand when the writer streams them to external data, so a graph
 * of a multi-GB model never holds its weights. Float data is always produced as float32 and
 * converted to `type` by the writer.
 */
export interface Initializer {
  name: string;
  type: ElemType;
  dims: number[];
  data: () => TensorData;
}

export interface OpOptions {
  /** Node name; outputs are `${name}/output_${i}`. */
  name: string;
  outputs?: number;
  domain?: string;
  /** Name the (single) output explicitly, e.g. a graph output. */
  outputNames?: string[];
}

export class Graph {
  readonly nodes: Node[] = [];
  readonly initializers: Initializer[] = [];
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  private readonly constants = new Map<string, string>();
  private readonly used = new Set<string>();
  private readonly initializerNames = new Set<string>();

  constructor(readonly name: string) {}

  input(name: string, type: ElemType, shape: Dim[]): string {
    this.inputs.push({ name, type, shape });
    return name;
  }

  output(name: string, type: ElemType, shape: Dim[]): void {
    this.outputs.push({ name, type, shape });
  }

  /** Adds one node; returns its output names. */
  op(opType: string, inputs: string[], attributes: Record<string, Attr>, o: OpOptions): string[] {
    if (this.used.has(o.name)) throw new Error(`graph ${this.name}: duplicate node name ${o.name}`);
    this.used.add(o.name);
    const count = o.outputNames?.length ?? o.outputs ?? 1;
    const outputs = o.outputNames ?? Array.from({ length: count }, (_, i) => `${o.name}/output_${i}`);
    this.nodes.push({ name: o.name, opType, domain: o.domain ?? '', inputs, outputs, attributes });
    return outputs;
  }

  /** Single-output shorthand. */
  op1(opType: string, inputs: string[], name: string, attributes: Record<string, Attr> = {}): string {
    return this.op(opType, inputs, attributes, { name })[0]!;
  }

  /** Adds a weight once; a second use of the same name (a tied table) reuses it. */
  initializer(init: Initializer): string {
    if (!this.initializerNames.has(init.name)) {
      this.initializerNames.add(init.name);
      this.initializers.push(init);
    }
    return init.name;
  }

  /** Small constants, de-duplicated by value: `/model/constants/INT64/[0, 1]`. */
  constInt64(values: number[], scalar = false): string {
    return this.constant('int64', values, scalar, () => BigInt64Array.from(values.map(BigInt)));
  }

  constFloat(values: number[], type: ElemType, scalar = false): string {
    return this.constant(type, values, scalar, () => Float32Array.from(values));
  }

  private constant(type: ElemType, values: number[], scalar: boolean, data: () => TensorData): string {
    const key = `${type}/${scalar ? '' : '['}${values.join(', ')}${scalar ? '' : ']'}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `/model/constants/${key.toUpperCase()}`;
      this.constants.set(key, name);
      this.initializer({ name, type, dims: scalar ? [] : [values.length], data });
    }
    return name;
  }
}
