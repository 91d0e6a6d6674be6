// `torchfocal experiment --config FILE.json` (a sweep: mean ± std over seeds) and
// `torchfocal experiment starve` (the original experiment's table in one run).
import { Command } from 'commander';
import { cacheDir } from '../data/cache';
import { runStarve, type StarveRow } from '../experiment/starve';
import { loadSweepConfig, runSweep, type MeanStd, type SweepGroup } from '../experiment/sweep';
import { addTrainingOptions, defaultRunDir, type TrainingFlags } from './train';
import { intAtLeast, noDecodeCacheOption, unitFraction } from './parse';
import {
  EpochProgress,
  epochEvent,
  epochLine,
  ExitError,
  invokedAs,
  printJson,
  round,
} from './output';
import { ExperimentInterrupted } from '../experiment/interrupted';

interface StarveFlags extends TrainingFlags {
  decodeCache: boolean;
  class: number;
  keep: number;
  ablation?: boolean;
  losses?: string[];
  out?: string;
  resume?: boolean;
}

interface SweepFlags {
  config?: string;
  out?: string;
  decodeCache: boolean;
  resume?: boolean;
  json?: boolean;
  threads?: number;
  device?: string;
}

export function experimentCommand(): Command {
  const experiment = new Command('experiment')
    .description('imbalance experiments: a sweep from a JSON file (--config), or a subcommand')
    // `experiment starve --out DIR` gives --out to starve, not to the sweep (see main.ts)
    .enablePositionalOptions()
    .option('--config <file>', 'JSON file of a sweep: models × imbalance × losses × seeds')
    .option('--out <dir>', 'checkpoints in DIR/<run>, report in DIR (default runs/sweep-…-<time>)')
    .option(
      '--threads <n>',
      'CPU threads for every run, over the config (0 = all cores)',
      intAtLeast(0),
    )
    .option('--device <name>', 'auto, cpu or cuda for every run, over the config')
    .option('--json', 'print JSON lines on stdout (progress goes to stderr)')
    .option(RESUME_FLAG, RESUME_HELP)
    .addOption(noDecodeCacheOption())
    .action(sweepAction);
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
    .option(RESUME_FLAG, RESUME_HELP)
    .addOption(noDecodeCacheOption())
    .action(async (flags: StarveFlags) => {
      const progress = new EpochProgress();
      if (flags.resume && !flags.out) throw new Error('--resume needs --out DIR: the experiment');
      const out = flags.out ?? (await defaultRunDir('starve', flags.model));
      // json, class, decodeCache: the CLI's words
      const { json, class: starvedClass, decodeCache, ...options } = flags;
      void json;
      const { rows, findings, report } = await interruptible(out, flags.json, (signal) =>
        runStarve(
          { ...options, out, starvedClass },
          {
            signal,
            decodeCache: decodeCache ? cacheDir() : undefined,
            onProgress: progress.update,
            onRunStart: (name) => {
              if (!flags.json) console.log(`== ${name}`);
            },
            onEpoch: (name, r) => {
              progress.stop();
              if (flags.json)
                printJson({ ...epochEvent(r, flags.evalEvery !== undefined), run: name });
              else console.log(epochLine(r));
            },
          },
        ),
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

async function sweepAction(flags: SweepFlags): Promise<void> {
  if (flags.config === undefined) {
    throw new Error("experiment: give --config FILE.json (a sweep) or a subcommand ('starve')");
  }
  const config = await loadSweepConfig(flags.config);
  if (flags.threads !== undefined) config.threads = flags.threads;
  if (flags.device !== undefined) config.device = flags.device;
  if (flags.resume && !flags.out) throw new Error('--resume needs --out DIR: the sweep');
  const out = flags.out ?? (await defaultRunDir('sweep', config.models.join('+')));
  const progress = new EpochProgress();
  const { groups } = await interruptible(out, flags.json, (signal) =>
    runSweep(config, {
      out,
      signal,
      decodeCache: flags.decodeCache ? cacheDir() : undefined,
      resume: flags.resume,
      onProgress: (_, p) => progress.update(p),
      onRunStart: (run, total) => {
        if (!flags.json) console.log(`== [${run.index + 1}/${total}] ${run.name}`);
      },
      onEpoch: (run, r) => {
        progress.stop();
        if (flags.json) {
          printJson({
            ...epochEvent(r, config.evalEvery !== undefined),
            run: run.name,
            group: run.group,
            seed: run.seed,
          });
        } else console.log(epochLine(r));
      },
      onRun: (row) => {
        if (!flags.json) return;
        const { history, trainCounts, index, dir, ...rest } = row;
        void [trainCounts, index, dir];
        printJson({ event: 'run', ...rest, epochs: history.length });
      },
    }),
  );
  if (flags.json) printJson({ event: 'done', report: out, groups });
  else {
    console.log(sweepTable(groups));
    console.error(`report written to ${out}`);
  }
}

const RESUME_FLAG = '--resume';
const RESUME_HELP =
  'continue an interrupted experiment in --out: finished runs are kept, the interrupted one resumes, the rest run';

/**
 * Runs an experiment under Ctrl-C / SIGTERM: the running run stops at its next step and
 * checkpoints it; the runs that finished are reported; exit 130 (SIGINT) or 143 (SIGTERM) with
 * the command that continues.
 */
async function interruptible<T>(
  out: string,
  json: boolean | undefined,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const interrupt = new AbortController();
  let code = 130;
  const stop = (sig: NodeJS.Signals) => {
    if (!interrupt.signal.aborted) code = sig === 'SIGTERM' ? 143 : 130;
    interrupt.abort();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    return await run(interrupt.signal);
  } catch (err) {
    if (!(err instanceof ExperimentInterrupted)) {
      // stopped while the shared dataset loaded: no run had started
      if (interrupt.signal.aborted && (err as Error).name === 'AbortError') {
        throw new ExitError('interrupted while loading the data: no run was started', code);
      }
      throw err;
    }
    const { finished, interrupted, checkpoint, report, pending } = err;
    if (json) {
      printJson({ event: 'interrupted', finished, interrupted, checkpoint, report, pending });
    }
    const done =
      finished.length > 0
        ? `${finished.length} run(s) finished (${finished.join(', ')})${report ? `, reported in ${report}` : ''}`
        : 'no run finished';
    const stopped = interrupted
      ? checkpoint
        ? `; ${interrupted} was stopped, ${checkpoint} holds it up to its last finished step`
        : `; ${interrupted} was stopped before its first checkpoint`
      : '';
    const args = process.argv.slice(process.argv.indexOf('experiment'));
    const more = [
      ...(args.includes(RESUME_FLAG) ? [] : [RESUME_FLAG]),
      ...(args.includes('--out') || args.some((a) => a.startsWith('--out=')) ? [] : ['--out', out]),
    ];
    const resume =
      finished.length > 0 || checkpoint
        ? `; continue with ${invokedAs()} ${[...args, ...more].join(' ')}`
        : '; nothing was kept';
    throw new ExitError(`interrupted: ${done}${stopped}${resume}`, code);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

/** The groups, one line each: mean ± std over seeds, and the class each group recalls worst. */
export function sweepTable(groups: SweepGroup[]): string {
  const ms = (s: MeanStd) => `${s.mean.toFixed(3)} ± ${s.std.toFixed(3)}`;
  const width = Math.max(5, ...groups.map((g) => g.name.length));
  const header = `${'group'.padEnd(width)}  n  ${'test acc'.padStart(13)}  ${'bal. acc'.padStart(13)}  ${'macro-F1'.padStart(13)}  ${'lowest recall'.padStart(19)}  train time`;
  const lines = groups.map((g) => {
    const worst = g.recall.reduce((w, s, c) => (s.mean < g.recall[w].mean ? c : w), 0);
    return `${g.name.padEnd(width)} ${String(g.n).padStart(2)}  ${ms(g.testAcc)}  ${ms(g.balancedAccuracy)}  ${ms(g.macroF1)}  ${`${ms(g.recall[worst])} (${worst})`.padStart(19)}  ${`${g.trainSeconds.mean.toFixed(1)}s`.padStart(10)}`;
  });
  return [header, ...lines].join('\n');
}

export function starveTable(rows: StarveRow[], starved: number): string {
  // the starved class's recall: the original test.py's "fraction of 6s predicted as 6"
  const recall = `class-${starved} recall`;
  const header = `${'run'.padEnd(30)} test acc  ${recall}  bal. acc  macro-F1  train time`;
  const lines = rows.map(
    (r) =>
      `${r.name.padEnd(30)} ${r.testAcc.toFixed(3).padStart(8)}  ${r.classAcc.toFixed(3).padStart(recall.length)}  ${r.balancedAccuracy
        .toFixed(3)
        .padStart(
          8,
        )}  ${r.macroF1.toFixed(3).padStart(8)}  ${`${round(r.trainSeconds, 1)}s`.padStart(10)}`,
  );
  return [header, ...lines].join('\n');
}
