// `torchfocal predict`: classify image files (or every image in folders), like test.py.
import fs from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import { decodeGrayscale, isImageFile } from '../data/imagefolder';
import { Trainer } from '../train/trainer';
import { intAtLeast } from './parse';
import { warnOnStderr, printJson } from './output';

interface PredictFlags {
  checkpoint: string;
  json?: boolean;
  threads: number;
  device: string;
  evalBatchSize?: number;
}

export function predictCommand(): Command {
  return new Command('predict')
    .description('classify image files or folders of images with a checkpoint')
    .argument('<files...>', 'image files or folders')
    .requiredOption('--checkpoint <dir>', 'checkpoint directory written by train')
    .option('--json', 'one JSON line per image')
    .option('--threads <n>', 'CPU threads (0 = all cores)', intAtLeast(0), 0)
    .option('--device <name>', 'auto, cpu or cuda', 'auto')
    .option('--eval-batch-size <n>', 'images per batch (default: as trained)', intAtLeast(1))
    .action(async (inputs: string[], flags: PredictFlags) => {
      const files = await expandInputs(inputs);
      const trainer = await Trainer.load(
        flags.checkpoint,
        { threads: flags.threads, device: flags.device, evalBatchSize: flags.evalBatchSize },
        warnOnStderr,
      );
      try {
        // Images of one size go to the engine together; it resizes them to the network's input.
        const decoded = await Promise.all(
          files.map(async (f) => ({ file: f, ...(await decodeGrayscale(f)) })),
        );
        const bySize = new Map<string, typeof decoded>();
        for (const d of decoded) {
          const key = `${d.width}x${d.height}`;
          bySize.set(key, [...(bySize.get(key) ?? []), d]);
        }
        const results = new Map<string, Awaited<ReturnType<Trainer['predict']>>[number]>();
        for (const group of bySize.values()) {
          const { width, height } = group[0];
          const stack = new Uint8Array(group.length * width * height);
          group.forEach((d, i) => stack.set(d.pixels, i * width * height));
          const preds = await trainer.predict(stack, group.length, height, width);
          group.forEach((d, i) => results.set(d.file, preds[i]));
        }
        for (const file of files) {
          const p = results.get(file)!;
          if (flags.json)
            printJson({ file, class: p.class, name: p.name, probability: p.probability });
          else console.log(`${file}\t${p.name}\t${p.probability.toFixed(4)}`);
        }
      } finally {
        trainer.dispose();
      }
    });
}

/** Files as given; folders expand to their image files, sorted (not recursive, like test.py). */
async function expandInputs(inputs: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const input of inputs) {
    const stat = await fs.stat(input).catch(() => {
      throw new Error(`${input}: no such file or folder`);
    });
    if (!stat.isDirectory()) {
      files.push(input);
      continue;
    }
    const names = (await fs.readdir(input))
      .filter((n) => !n.startsWith('.') && isImageFile(n))
      .sort();
    if (names.length === 0) throw new Error(`${input}: no image files in this folder`);
    files.push(...names.map((n) => path.join(input, n)));
  }
  return files;
}
