/**
 * Writes a Graph as an ONNX model with its weights as external data, streamed one tensor at
 * a time, and reads a model back for inspection. Files are written under temporary names
 * and renamed at the end, so an interrupted export never leaves a half-written model.
 */
import { closeSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import { float32ToFloat16Bits } from '../checkpoint/safetensors.js';
import type { Attr, ElemType, Graph, TensorData, TensorValue, ValueInfo } from './ir.js';
import { AttributeType, DataLocation, DataType, ModelProto } from './onnx-proto.js';

export interface Opset {
  domain: string;
  version: number;
}

export interface WriteModelOptions {
  /** Target path of the .onnx file; external data goes beside it as `<file>_data`. */
  path: string;
  opsets: Opset[];
  /** Tensors smaller than this are stored inline. */
  inlineBelowBytes?: number;
  metadata?: Record<string, string>;
}

export interface WrittenModel {
  modelBytes: number;
  externalBytes: number;
}

/** Tensor bytes in the element type's little-endian layout. */
function tensorBytes(type: ElemType, data: TensorData): Uint8Array {
  if (type === 'float16') {
    if (!(data instanceof Float32Array)) throw new Error('float16 tensors are produced as Float32Array');
    const out = new Uint16Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = float32ToFloat16Bits(data[i]!);
    return new Uint8Array(out.buffer);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function valueInfo(v: ValueInfo) {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: DataType[v.type],
        shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function tensorProto(name: string, t: TensorValue) {
  return { name, dims: t.dims, dataType: DataType[t.type], rawData: tensorBytes(t.type, t.data) };
}

function attribute(name: string, a: Attr) {
  switch (a.kind) {
    case 'int':
      return { name, type: AttributeType.INT, i: a.value };
    case 'float':
      return { name, type: AttributeType.FLOAT, f: a.value };
    case 'string':
      return { name, type: AttributeType.STRING, s: new TextEncoder().encode(a.value) };
    case 'ints':
      return { name, type: AttributeType.INTS, ints: a.value };
    case 'floats':
      return { name, type: AttributeType.FLOATS, floats: a.value };
    case 'tensor':
      return { name, type: AttributeType.TENSOR, t: tensorProto('', a.value) };
  }
}

const ALIGN = 64;

export function writeModel(graph: Graph, o: WriteModelOptions): WrittenModel {
  const dataName = `${basename(o.path)}_data`;
  const dataPath = join(o.path, '..', dataName);
  const tmpData = `${dataPath}.tmp-${process.pid}`;
  const inlineBelow = o.inlineBelowBytes ?? 1024;
  const fd = openSync(tmpData, 'w');
  let offset = 0;
  const initializer = [];
  try {
    for (const init of graph.initializers) {
      const bytes = tensorBytes(init.type, init.data());
      const proto: Record<string, unknown> = { name: init.name, dims: init.dims, dataType: DataType[init.type] };
      if (bytes.byteLength < inlineBelow) {
        proto['rawData'] = bytes;
      } else {
        offset = Math.ceil(offset / ALIGN) * ALIGN;
        writeSync(fd, bytes, 0, bytes.byteLength, offset);
        proto['dataLocation'] = DataLocation.EXTERNAL;
        proto['externalData'] = [
          { key: 'location', value: dataName },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(bytes.byteLength) },
        ];
        offset += bytes.byteLength;
      }
      initializer.push(proto);
    }
  } finally {
    closeSync(fd);
  }
  const model = ModelProto.fromObject({
    irVersion: 9,
    producerName: 'fusegen',
    producerVersion: '0.1.0',
    opsetImport: o.opsets,
    metadataProps: Object.entries(o.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: {
      name: graph.name,
      node: graph.nodes.map((n) => ({
        name: n.name,
        opType: n.opType,
        domain: n.domain,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attributes).map(([k, a]) => attribute(k, a)),
      })),
      initializer,
      input: graph.inputs.map(valueInfo),
      output: graph.outputs.map(valueInfo),
    },
  });
  const encoded = ModelProto.encode(model).finish();
  const tmpModel = `${o.path}.tmp-${process.pid}`;
  writeFileSync(tmpModel, encoded);
  renameSync(tmpData, dataPath);
  renameSync(tmpModel, o.path);
  return { modelBytes: encoded.byteLength, externalBytes: offset };
}

/** The structure of a written model (no weights), for tests and reports. */
export interface ModelSummary {
  opsets: Opset[];
  inputs: string[];
  outputs: string[];
  nodes: Array<{ name: string; opType: string; domain: string; inputs: string[]; outputs: string[] }>;
  initializers: Array<{ name: string; dims: number[]; external: boolean }>;
}

export function readModelSummary(path: string): ModelSummary {
  const m = ModelProto.toObject(ModelProto.decode(readFileSync(path)), { longs: Number, defaults: true }) as {
    opsetImport: Opset[];
    graph: {
      input: Array<{ name: string }>;
      output: Array<{ name: string }>;
      node: Array<{ name: string; opType: string; domain: string; input: string[]; output: string[] }>;
      initializer: Array<{ name: string; dims: number[]; dataLocation: number }>;
    };
  };
  return {
    opsets: m.opsetImport,
    inputs: m.graph.input.map((i) => i.name),
    outputs: m.graph.output.map((i) => i.name),
    nodes: m.graph.node.map((n) => ({ name: n.name, opType: n.opType, domain: n.domain, inputs: n.input, outputs: n.output })),
    initializers: m.graph.initializer.map((t) => ({ name: t.name, dims: t.dims, external: t.dataLocation === DataLocation.EXTERNAL })),
  };
}
