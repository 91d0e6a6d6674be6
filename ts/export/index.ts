// A checkpoint's network as a file another runtime loads (`torchfocal export`).
import fs from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { channelNormalisation, openCheckpoint, type OpenCheckpoint } from '../train/checkpoint';
import { Trainer } from '../train/trainer';
import { encodeOnnx, inputDescription } from './onnx';

export const EXPORT_FORMATS = ['onnx'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportOptions {
  format: ExportFormat;
  /** the file to write (replaced atomically: never a partial file) */
  out: string;
  /** CPU threads while the network is loaded (0 = all cores) */
  threads?: number;
  /** a damaged newest checkpoint: the previous one is exported and this says so */
  onWarning?: (message: string) => void;
}

export interface ExportSummary {
  format: ExportFormat;
  file: string;
  bytes: number;
  opset: number;
  model: string;
  classes: string[];
  inputSize: number;
  channels: number;
  /** the normalisation in front of the network, for inputs in [0, 1] */
  mean: number[];
  std: number[];
  /** what the model's input is */
  input: string;
}

/**
 * Writes the network of a checkpoint (a folder, or one opened with `openCheckpoint`) as an ONNX
 * model: its input an image already resized to the network's side and scaled to [0, 1], the
 * checkpoint's normalisation in front, logits out, class names in the metadata.
 */
export async function exportModel(
  checkpoint: string | OpenCheckpoint,
  options: ExportOptions,
): Promise<ExportSummary> {
  if (!(EXPORT_FORMATS as readonly string[]).includes(options.format)) {
    throw new Error(`format: '${options.format}' is not one of ${EXPORT_FORMATS.join(', ')}`);
  }
  const out = options.out;
  await checkFolder(out); // before the network is loaded: a wrong path fails at once
  const opened = typeof checkpoint === 'string' ? await openCheckpoint(checkpoint) : checkpoint;
  const trainer = await Trainer.load(
    opened,
    { threads: options.threads, device: 'cpu' },
    options.onWarning,
  );
  let graph;
  try {
    graph = await trainer.exportGraph();
  } finally {
    trainer.dispose();
  }
  const { config } = opened;
  let normalisation;
  try {
    normalisation = channelNormalisation(config, graph.channels);
  } catch (err) {
    throw new Error(`${opened.dir}: ${(err as Error).message}`);
  }
  const classes = config.options.classNames;
  const bytes = encodeOnnx(graph, {
    model: config.options.model,
    classNames: classes,
    ...normalisation,
  });
  await writeFileAtomic(out, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)).catch(
    (err: NodeJS.ErrnoException) => {
      throw new Error(`${out}: cannot write it (${err.code ?? err.message})`);
    },
  );
  return {
    format: options.format,
    file: out,
    bytes: bytes.length,
    opset: graph.opset,
    model: config.options.model,
    classes,
    inputSize: graph.inputSize,
    channels: graph.channels,
    ...normalisation,
    input: inputDescription(graph.channels, graph.inputSize),
  };
}

// The folder `file` goes into must exist and take files.
async function checkFolder(file: string): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const stat = await fs.stat(dir).catch(() => undefined);
  if (!stat?.isDirectory()) throw new Error(`${file}: the folder ${dir} does not exist`);
  await fs.access(dir, fs.constants.W_OK).catch(() => {
    throw new Error(`${file}: the folder ${dir} is not writable`);
  });
}
