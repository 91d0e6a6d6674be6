// `torchfocal eval`: a checkpoint on a dataset's test split; `--class N` prints test.py's number.
import { Command } from 'commander';
import { loadTestSet } from '../data/index';
import { openCheckpoint, Trainer, type CheckpointConfig } from '../train/trainer';
import { recordedImageSize } from '../train/checkpoint';
import { DEFAULT_TOP_K, type Evaluation } from '../train/evaluation';
import { cacheDir } from '../data/cache';
import { intAtLeast, maxPixelsOption, noDecodeCacheOption } from './parse';
import { EpochProgress, warnOnStderr, printJson } from './output';
import { checkpointDataset, datasetSpec } from '../train/resume';

interface EvalFlags {
  checkpoint: string;
  dataset?: string;
  class?: string;
  json?: boolean;
  threads: number;
  device: string;
  evalBatchSize?: number;
  topK: number;
  maxPixels?: number;
  decodeCache: boolean;
}

export function evalCommand(): Command {
  return new Command('eval')
    .description("evaluate a checkpoint on a dataset's test split")
    .requiredOption('--checkpoint <dir>', 'checkpoint directory written by train')
    .option(
      '--dataset <spec>',
      'mnist, fashion-mnist, cifar10[:DIR], cifar100[:DIR] or PATH (default: the one it was trained on)',
    )
    .option('--class <n>', 'print only the recall of this class (index or name), like test.py')
    .option('--json', 'print the EVAL object as JSON')
    .option('--threads <n>', 'CPU threads (0 = all cores)', intAtLeast(0), 0)
    .option('--device <name>', 'auto, cpu or cuda', 'auto')
    .option('--eval-batch-size <n>', 'images per batch (default: as trained)', intAtLeast(1))
    .option(
      '--top-k <k>',
      'also report top-k accuracy (when the dataset has more than k classes)',
      intAtLeast(1),
      DEFAULT_TOP_K,
    )
    .addOption(
      maxPixelsOption(
        'image folders: skip test images of more pixels (default: as trained, 4096²)',
      ),
    )
    .addOption(noDecodeCacheOption())
    .action(async (flags: EvalFlags) => {
      const opened = await openCheckpoint(flags.checkpoint); // verified once, loaded below
      const { config } = opened;
      // The recorded folder, or the same place beside the checkpoint when both have moved.
      const spec = flags.dataset ?? (await checkpointDataset(opened)) ?? 'mnist';
      // The test split alone: an image folder's training/ is neither listed nor decoded; a
      // training run kept it decoded in the cache, as eval does.
      const progress = new EpochProgress();
      const data = await loadTestSet(spec, {
        onProgress: progress.loading,
        cache: flags.decodeCache ? cacheDir() : undefined,
        onWarning: warnOnStderr,
        size: recordedImageSize(config),
        maxPixels: flags.maxPixels ?? (config.data?.maxPixels as number | undefined),
        // as trained: grey or RGB whatever the test images' own colours
        channels: (config.options.channels ?? 1) as 1 | 3,
      });
      const names = config.options.classNames;
      if (data.test.classNames.length !== names.length) {
        throw new Error(
          `--dataset: ${spec} has ${data.test.classNames.length} classes but the checkpoint was trained on ${names.length}`,
        );
      }
      const mismatch = flags.dataset && datasetMismatch(config, spec, data.test.classNames);
      if (mismatch) warnOnStderr(mismatch);
      const classIndex = flags.class === undefined ? undefined : resolveClass(flags.class, names);
      const trainer = await Trainer.load(
        opened,
        { threads: flags.threads, device: flags.device, evalBatchSize: flags.evalBatchSize },
        warnOnStderr,
      );
      try {
        await trainer.setData({ test: data.test });
        const evaluation = await trainer.evaluate({ topK: flags.topK });
        if (classIndex !== undefined) {
          const recall = evaluation.perClass[classIndex].recall;
          if (flags.json) printJson({ class: classIndex, name: names[classIndex], recall });
          else console.log(recall.toFixed(4));
        } else if (flags.json) {
          printJson(evaluation);
        } else {
          console.log(formatEvaluation(evaluation));
        }
      } finally {
        trainer.dispose();
      }
    });
}

export function resolveClass(value: string, names: string[]): number {
  const byName = names.indexOf(value);
  if (byName >= 0) return byName;
  const n = Number(value);
  if (/^\d+$/.test(value) && n < names.length) return n;
  throw new Error(
    `--class: '${value}' is not a class of this checkpoint (0..${names.length - 1} or a name: ${names.join(', ')})`,
  );
}

// The training split's common image size, where the checkpoint records it.
/**
 * Why `spec` may not be what the checkpoint was trained on (another dataset name, or other
 * class names), in one line; undefined when it is.
 */
export function datasetMismatch(
  config: CheckpointConfig,
  spec: string,
  classNames: string[],
): string | undefined {
  const trained = config.data?.dataset;
  const names = config.options.classNames;
  const sameName = typeof trained !== 'string' || datasetSpec(trained) === datasetSpec(spec);
  const sameClasses =
    names.length === classNames.length && names.every((n, i) => n === classNames[i]);
  if (sameName && sameClasses) return undefined;
  const list = (n: string[]) => n.slice(0, 5).join(', ') + (n.length > 5 ? ', …' : '');
  const what = sameClasses ? 'another dataset' : 'other class names';
  return `the checkpoint was trained on '${trained ?? 'an unrecorded dataset'}' (classes ${list(names)}) but is evaluated on '${spec}' (classes ${list(classNames)}): ${what}; figures use the checkpoint's class names`;
}

export function formatEvaluation(e: Evaluation): string {
  const top = e.topK ? `, top-${e.topK.k} accuracy ${e.topK.accuracy.toFixed(4)}` : '';
  const lines = [
    `accuracy ${e.accuracy.toFixed(4)}, balanced accuracy ${e.balancedAccuracy.toFixed(4)}, macro-F1 ${e.macroF1.toFixed(4)}${top}`,
    'class            support  recall  precision  f1',
  ];
  for (const k of e.perClass) {
    lines.push(
      `${`${k.class} ${k.name}`.padEnd(16)} ${String(k.support).padStart(7)}  ${k.recall.toFixed(3)}   ${k.precision.toFixed(3)}      ${k.f1.toFixed(3)}`,
    );
  }
  return lines.join('\n');
}
