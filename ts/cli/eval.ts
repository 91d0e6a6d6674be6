// `torchfocal eval`: a checkpoint on a dataset's test split; `--class N` prints test.py's number.
import { Command } from 'commander';
import { loadDataset } from '../data/index';
import { openCheckpoint, Trainer } from '../train/trainer';
import type { Evaluation } from '../train/evaluation';
import { intAtLeast } from './parse';
import { warnOnStderr, printJson } from './output';

interface EvalFlags {
  checkpoint: string;
  dataset?: string;
  class?: string;
  json?: boolean;
  threads: number;
  device: string;
  evalBatchSize?: number;
}

export function evalCommand(): Command {
  return new Command('eval')
    .description("evaluate a checkpoint on a dataset's test split")
    .requiredOption('--checkpoint <dir>', 'checkpoint directory written by train')
    .option('--dataset <spec>', 'mnist, fashion-mnist or PATH (default: the one it was trained on)')
    .option('--class <n>', 'print only the recall of this class (index or name), like test.py')
    .option('--json', 'print the EVAL object as JSON')
    .option('--threads <n>', 'CPU threads (0 = all cores)', intAtLeast(0), 0)
    .option('--device <name>', 'auto, cpu or cuda', 'auto')
    .option('--eval-batch-size <n>', 'images per batch (default: as trained)', intAtLeast(1))
    .action(async (flags: EvalFlags) => {
      const opened = await openCheckpoint(flags.checkpoint); // verified once, loaded below
      const { config } = opened;
      const spec = flags.dataset ?? String(config.data?.dataset ?? 'mnist');
      const data = await loadDataset(spec);
      const names = config.options.classNames;
      if (data.test.classNames.length !== names.length) {
        throw new Error(
          `--dataset: ${spec} has ${data.test.classNames.length} classes but the checkpoint was trained on ${names.length}`,
        );
      }
      const classIndex = flags.class === undefined ? undefined : resolveClass(flags.class, names);
      const trainer = await Trainer.load(
        opened,
        { threads: flags.threads, device: flags.device, evalBatchSize: flags.evalBatchSize },
        warnOnStderr,
      );
      try {
        await trainer.setData({ test: data.test });
        const evaluation = await trainer.evaluate();
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

export function formatEvaluation(e: Evaluation): string {
  const lines = [
    `accuracy ${e.accuracy.toFixed(4)}, balanced accuracy ${e.balancedAccuracy.toFixed(4)}, macro-F1 ${e.macroF1.toFixed(4)}`,
    'class            support  recall  precision  f1',
  ];
  for (const k of e.perClass) {
    lines.push(
      `${`${k.class} ${k.name}`.padEnd(16)} ${String(k.support).padStart(7)}  ${k.recall.toFixed(3)}   ${k.precision.toFixed(3)}      ${k.f1.toFixed(3)}`,
    );
  }
  return lines.join('\n');
}
