// `torchfocal experiment starve`: the original experiment's table in one run.
import { Command } from 'commander';
import { runStarve, type StarveRow } from '../experiment/starve';
import { addTrainingOptions, defaultRunDir, type TrainingFlags } from './train';
import { intAtLeast, unitFraction } from './parse';
import { EpochProgress, epochEvent, epochLine, printJson, round } from './output';

interface StarveFlags extends TrainingFlags {
  class: number;
  keep: number;
  ablation?: boolean;
  losses?: string[];
  out?: string;
}

export function experimentCommand(): Command {
  const experiment = new Command('experiment').description('imbalance experiments');
  const starve = new Command('starve').description(
    'starve one class, then train balanced-ce, imbalanced-ce and imbalanced-focal',
  );
  addTrainingOptions(starve)
    .option('--class <n>', 'the class to starve', intAtLeast(0), 6)
    .option('--keep <fraction>', 'fraction of its training images to keep', unitFraction, 0.01)
    .option('--ablation', 'add focal runs with alpha only (gamma 0) and gamma only (alpha 1)')
    .option(
      '--losses <list>',
      'add an imbalanced row per loss, e.g. cb-focal,balanced-softmax,logit-adjust',
      (v: string) =>
        v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
    )
    .option('--out <dir>', 'checkpoints in DIR/<run>, report in DIR (default runs/starve-<time>)')
    .action(async (flags: StarveFlags) => {
      const progress = new EpochProgress();
      const out = flags.out ?? defaultRunDir('starve', flags.model);
      const { rows, findings, report } = await runStarve(
        { ...flags, out, starvedClass: flags.class },
        {
          onProgress: progress.update,
          onRunStart: (name) => {
            if (!flags.json) console.log(`== ${name}`);
          },
          onEpoch: (name, r) => {
            progress.stop();
            if (flags.json) printJson({ ...epochEvent(r), run: name });
            else console.log(epochLine(r));
          },
        },
      );
      if (flags.json) {
        printJson({
          event: 'experiment',
          starvedClass: flags.class,
          keep: flags.keep,
          findings,
          report,
          rows: rows.map(({ history, trainCounts, ...row }) => ({
            ...row,
            epochs: history.length,
          })),
        });
      } else {
        console.log(starveTable(rows, flags.class));
        for (const f of findings) console.log(f);
        console.error(`report written to ${report}`);
      }
    });
  experiment.addCommand(starve);
  return experiment;
}

export function starveTable(rows: StarveRow[], starved: number): string {
  const header = `${'run'.padEnd(30)} test acc  class-${starved} acc  bal. acc  macro-F1  train time`;
  const lines = rows.map(
    (r) =>
      `${r.name.padEnd(30)} ${r.testAcc.toFixed(3).padStart(8)}  ${r.classAcc.toFixed(3).padStart(11)}  ${r.balancedAccuracy
        .toFixed(3)
        .padStart(
          8,
        )}  ${r.macroF1.toFixed(3).padStart(8)}  ${`${round(r.trainSeconds, 1)}s`.padStart(10)}`,
  );
  return [header, ...lines].join('\n');
}
