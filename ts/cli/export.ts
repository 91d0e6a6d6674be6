// `torchfocal export`: a checkpoint's network as an ONNX file for onnxruntime and the like.
import { Command, Option } from 'commander';
import { EXPORT_FORMATS, exportModel, type ExportFormat, type ExportSummary } from '../export';
import { isIdentity } from '../export/onnx';
import { intAtLeast } from './parse';
import { printJson, warnOnStderr } from './output';

interface ExportFlags {
  checkpoint: string;
  format: ExportFormat;
  out: string;
  json?: boolean;
  threads: number;
}

export function exportCommand(): Command {
  return new Command('export')
    .description(
      "write a checkpoint's network as an ONNX model (normalisation in front, class names in its metadata)",
    )
    .requiredOption('--checkpoint <dir>', 'checkpoint directory written by train')
    .addOption(
      new Option('--format <format>', 'file format').choices([...EXPORT_FORMATS]).default('onnx'),
    )
    .requiredOption('--out <file>', 'the model file to write (model.onnx)')
    .option('--json', 'print one JSON object on stdout')
    .option('--threads <n>', 'CPU threads (0 = all cores)', intAtLeast(0), 0)
    .action(async (flags: ExportFlags) => {
      const summary = await exportModel(flags.checkpoint, {
        format: flags.format,
        out: flags.out,
        threads: flags.threads,
        onWarning: warnOnStderr,
      });
      if (flags.json) printJson(summary);
      else console.log(summaryLine(summary));
    });
}

/** `wrote model.onnx (ONNX opset 13, 1.2 MB): lenet, 10 classes, input float32 N×1×28×28 …` */
export function summaryLine(s: ExportSummary): string {
  const size =
    s.bytes >= 1e6 ? `${(s.bytes / 1e6).toFixed(1)} MB` : `${(s.bytes / 1e3).toFixed(1)} kB`;
  const normalisation = isIdentity(s)
    ? 'no normalisation'
    : `normalised with mean ${JSON.stringify(s.mean)}, std ${JSON.stringify(s.std)}`;
  return `wrote ${s.file} (ONNX opset ${s.opset}, ${size}): ${s.model}, ${s.classes.length} classes, ${s.input}, ${normalisation}`;
}
