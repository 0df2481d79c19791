/**
 * The subset of onnx.proto (ONNX IR) that fusegen writes and reads, as a protobufjs schema.
 * Field numbers are those of onnx/onnx.proto; names are protobufjs' camelCase.
 */
import protobuf from 'protobufjs';

const repeated = (type: string, id: number) => ({ rule: 'repeated', type, id });
const field = (type: string, id: number) => ({ type, id });

const schema = {
  nested: {
    onnx: {
      nested: {
        ModelProto: {
          fields: {
            irVersion: field('int64', 1),
            producerName: field('string', 2),
            producerVersion: field('string', 3),
            domain: field('string', 4),
            modelVersion: field('int64', 5),
            docString: field('string', 6),
            graph: field('GraphProto', 7),
            opsetImport: repeated('OperatorSetIdProto', 8),
            metadataProps: repeated('StringStringEntryProto', 14),
          },
        },
        OperatorSetIdProto: { fields: { domain: field('string', 1), version: field('int64', 2) } },
        StringStringEntryProto: { fields: { key: field('string', 1), value: field('string', 2) } },
        GraphProto: {
          fields: {
            node: repeated('NodeProto', 1),
            name: field('string', 2),
            initializer: repeated('TensorProto', 5),
            docString: field('string', 10),
            input: repeated('ValueInfoProto', 11),
            output: repeated('ValueInfoProto', 12),
            valueInfo: repeated('ValueInfoProto', 13),
          },
        },
        NodeProto: {
          fields: {
            input: repeated('string', 1),
            output: repeated('string', 2),
            name: field('string', 3),
            opType: field('string', 4),
            attribute: repeated('AttributeProto', 5),
            docString: field('string', 6),
            domain: field('string', 7),
          },
        },
        AttributeProto: {
          fields: {
            name: field('string', 1),
            f: field('float', 2),
            i: field('int64', 3),
            s: field('bytes', 4),
            t: field('TensorProto', 5),
            floats: repeated('float', 7),
            ints: repeated('int64', 8),
            type: field('int32', 20),
          },
        },
        TensorProto: {
          fields: {
            dims: repeated('int64', 1),
            dataType: field('int32', 2),
            name: field('string', 8),
            rawData: field('bytes', 9),
            externalData: repeated('StringStringEntryProto', 13),
            dataLocation: field('int32', 14),
          },
        },
        ValueInfoProto: { fields: { name: field('string', 1), type: field('TypeProto', 2) } },
        TypeProto: { fields: { tensorType: field('TypeProtoTensor', 1) } },
        TypeProtoTensor: { fields: { elemType: field('int32', 1), shape: field('TensorShapeProto', 2) } },
        TensorShapeProto: { fields: { dim: repeated('Dimension', 1) } },
        Dimension: { fields: { dimValue: field('int64', 1), dimParam: field('string', 2) } },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(schema);
export const ModelProto = root.lookupType('onnx.ModelProto');

/** onnx.TensorProto.DataType */
export const DataType = { float32: 1, uint8: 2, int32: 6, int64: 7, bool: 9, float16: 10 } as const;
/** onnx.AttributeProto.AttributeType */
export const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;
export const DataLocation = { DEFAULT: 0, EXTERNAL: 1 } as const;
