// A network's operator graph (src/export/onnx_graph.h) as an ONNX model file: the normalisation
// put in front, the class names and how to prepare an image in the model's metadata. Encoded with
// protobufjs from the official schema, ONNX 1.12.0's onnx/onnx.proto, kept unchanged beside this
// file.
import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import type { NativeOnnxGraph, NativeTensor } from '../native';
import { PACKAGE_ROOT, packageVersion } from '../package';

/** What the model's metadata says about it, and the normalisation it starts with. */
export interface OnnxModelInfo {
  /** the zoo network's name */
  model: string;
  classNames: string[];
  /** per channel, for inputs in [0, 1]: the network sees (x − mean) / std */
  mean: number[];
  std: number[];
}

/** How an exported model wants its input, in words (its doc string and metadata say it). */
export function inputDescription(channels: number, size: number): string {
  return `input: float32 N×${channels}×${size}×${size} in [0, 1], already resized to ${size}×${size} bilinear`;
}

/** Whether the normalisation changes nothing (mean 0 and std 1 on every channel). */
export function isIdentity(n: { mean: number[]; std: number[] }): boolean {
  return n.mean.every((m) => m === 0) && n.std.every((s) => s === 1);
}

// The values of the normalisation in front of the network: its two nodes' outputs, its constants.
const NORMALISATION = {
  sub: 'normalisation/sub',
  div: 'normalisation/div',
  mean: 'normalisation.mean',
  std: 'normalisation.std',
};

// The IR version that goes with each opset the native graph may be written in (ONNX's
// versioning table: opset 13 came with IR version 7, in ONNX 1.8).
const IR_VERSIONS: Record<number, number> = { 13: 7 };

/** The ONNX ModelProto of `graph` with `info`'s normalisation and metadata, as bytes. */
export function encodeOnnx(graph: NativeOnnxGraph, info: OnnxModelInfo): Uint8Array {
  const irVersion = IR_VERSIONS[graph.opset];
  if (irVersion === undefined)
    throw new Error(`ONNX export: no IR version for opset ${graph.opset}`);
  const c = graph.channels;
  if (info.classNames.length !== graph.numClasses) {
    throw new Error(
      `ONNX export: ${info.classNames.length} class names for ${graph.numClasses} outputs`,
    );
  }
  if (info.mean.length !== c || info.std.length !== c) {
    throw new Error(
      `ONNX export: the normalisation has ${info.mean.length} means and ${info.std.length} stds for ${c} channels`,
    );
  }
  const { DataType, AttributeType, ModelProto } = schema();
  const tensor = (name: string, dims: number[], dataType: number, data: ArrayBufferView) => ({
    name,
    dims,
    data_type: dataType,
    raw_data: bytesOf(data),
  });
  // x → (x − mean) / std, per channel, ahead of the network (nothing when it is the identity)
  const identity = isIdentity(info);
  const normalised = identity ? graph.input : NORMALISATION.div;
  const prefix = identity
    ? { nodes: [], initializers: [] }
    : {
        nodes: [
          {
            op_type: 'Sub',
            name: NORMALISATION.sub,
            input: [graph.input, NORMALISATION.mean],
            output: [NORMALISATION.sub],
          },
          {
            op_type: 'Div',
            name: NORMALISATION.div,
            input: [NORMALISATION.sub, NORMALISATION.std],
            output: [NORMALISATION.div],
          },
        ],
        initializers: [
          tensor(NORMALISATION.mean, [1, c, 1, 1], DataType.FLOAT, Float32Array.from(info.mean)),
          tensor(NORMALISATION.std, [1, c, 1, 1], DataType.FLOAT, Float32Array.from(info.std)),
        ],
      };
  // the network's names are module paths ("1.0.conv1"): none can be the prefix's
  const taken = new Set([
    ...graph.nodes.flatMap((n) => n.outputs),
    ...graph.initializers.map((t) => t.name),
  ]);
  for (const name of Object.values(NORMALISATION)) {
    if (taken.has(name))
      throw new Error(`ONNX export: the network already names a value '${name}'`);
  }
  const nodes = graph.nodes.map((n) => ({
    op_type: n.opType,
    name: n.name,
    input: n.inputs.map((x) => (x === graph.input ? normalised : x)),
    output: n.outputs,
    attribute: n.attributes.map((a) =>
      a.type === 'ints'
        ? { name: a.name, type: AttributeType.INTS, ints: a.value }
        : a.type === 'int'
          ? { name: a.name, type: AttributeType.INT, i: a.value }
          : { name: a.name, type: AttributeType.FLOAT, f: a.value },
    ),
  }));
  const s = graph.inputSize;
  const valueInfo = (name: string, dims: ({ dim_param: string } | { dim_value: number })[]) => ({
    name,
    type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: dims } } },
  });
  const describe = inputDescription(c, s);
  const model = {
    ir_version: irVersion,
    opset_import: [{ domain: '', version: graph.opset }],
    producer_name: 'torchfocal',
    producer_version: packageVersion(),
    doc_string: `torchfocal ${info.model}, ${info.classNames.length} classes. ${describe}; output: logits float32 N×${info.classNames.length} (softmax gives the class probabilities); class names: metadata 'class_names'.`,
    graph: {
      name: info.model,
      node: [...prefix.nodes, ...nodes],
      initializer: [...prefix.initializers, ...graph.initializers.map(initializer)],
      input: [
        valueInfo(graph.input, [
          { dim_param: 'N' },
          { dim_value: c },
          { dim_value: s },
          { dim_value: s },
        ]),
      ],
      output: [valueInfo(graph.output, [{ dim_param: 'N' }, { dim_value: graph.numClasses }])],
    },
    metadata_props: Object.entries({
      class_names: JSON.stringify(info.classNames),
      network: info.model,
      input_size: String(s),
      channels: String(c),
      mean: JSON.stringify(info.mean),
      std: JSON.stringify(info.std),
      input: describe,
    }).map(([key, value]) => ({ key, value })),
  };
  const problem = ModelProto.verify(model);
  if (problem) throw new Error(`ONNX export: ${problem}`);
  return ModelProto.encode(ModelProto.fromObject(model)).finish();

  function initializer(t: NativeTensor) {
    if (t.dtype !== 'F32' && t.dtype !== 'I64') {
      throw new Error(`ONNX export: tensor '${t.name}' has dtype ${t.dtype}`);
    }
    const data = t.data instanceof Uint8Array ? t.data : new Uint8Array(t.data);
    return tensor(t.name, t.shape, t.dtype === 'F32' ? DataType.FLOAT : DataType.INT64, data);
  }
}

// raw_data is little-endian, as the engine's tensors are on every platform the addon builds on.
function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

interface Schema {
  ModelProto: protobuf.Type;
  DataType: Record<string, number>;
  AttributeType: Record<string, number>;
}

let loaded: Schema | undefined;

// The schema, parsed once, with its own field names (keepCase: `ir_version`, not `irVersion`).
function schema(): Schema {
  if (!loaded) {
    const file = path.join(PACKAGE_ROOT, 'ts', 'export', 'onnx.proto');
    const { root } = protobuf.parse(fs.readFileSync(file, 'utf8'), { keepCase: true });
    loaded = {
      ModelProto: root.lookupType('onnx.ModelProto'),
      DataType: root.lookupEnum('onnx.TensorProto.DataType').values,
      AttributeType: root.lookupEnum('onnx.AttributeProto.AttributeType').values,
    };
  }
  return loaded;
}
