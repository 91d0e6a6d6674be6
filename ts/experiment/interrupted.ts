// An experiment or sweep stopped by a signal: the runs that finished are kept (and reported),
// the interrupted run's folder holds it up to its last finished step, the others never started.
import fs from 'node:fs/promises';
import path from 'node:path';
import { openCheckpoint } from '../train/checkpoint';
import { Trainer } from '../train/trainer';
import {
  runTraining,
  summarizeRun,
  type RunHooks,
  type RunSpec,
  type RunSummary,
} from '../train/run';
import type { DataSplit, Dataset } from '../data/dataset';
import type { ReportRun } from '../report/types';

export class ExperimentInterrupted extends Error {
  override name = 'AbortError';
  constructor(
    /** names of the runs that finished, in order */
    readonly finished: string[],
    /** the run that was stopped, if one was under way */
    readonly interrupted: string | undefined,
    /** its folder, when it holds a checkpoint (a resume continues it) */
    readonly checkpoint: string | undefined,
    /** the report of the finished runs (report.html), when any finished and `out` was given */
    readonly report: string | undefined,
    /** runs not started */
    readonly pending: number,
    cause: unknown,
  ) {
    super('the experiment was interrupted', { cause });
  }
}

/**
 * What to throw when run `run` (`index` of `total`, in `dir`) of an experiment was stopped by
 * `err`: its folder when it holds a checkpoint, and `reportFinished`'s report (given a finding
 * line) when any run finished.
 */
export async function interruption(
  err: unknown,
  run: { name: string; index: number; dir: string | undefined },
  finished: string[],
  total: number,
  reportFinished: ((finding: string) => Promise<string>) | undefined,
): Promise<ExperimentInterrupted> {
  const stage = (err as { stage?: string }).stage;
  const notStarted = stage === 'not-started';
  const started = stage !== 'loading' && !notStarted;
  const kept = started && (await holdsCheckpoint(run.dir)) ? path.resolve(run.dir!) : undefined;
  const report =
    reportFinished && finished.length > 0
      ? await reportFinished(
          `Interrupted: ${finished.length} of ${total} runs finished; ${run.name} was stopped.`,
        )
      : undefined;
  const pending = total - run.index - (notStarted ? 0 : 1);
  return new ExperimentInterrupted(
    finished,
    notStarted ? undefined : run.name,
    kept,
    report,
    pending,
    err,
  );
}

export function isAbort(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

/** Whether `dir` holds a checkpoint a resume can open. */
export async function holdsCheckpoint(dir: string | undefined): Promise<boolean> {
  if (dir === undefined) return false;
  return openCheckpoint(dir).then(
    () => true,
    () => false,
  );
}

/**
 * A finished run of an earlier (interrupted) invocation: its folder's report.json, written by
 * runTraining once the run is complete. Undefined when the run did not finish.
 */
export async function finishedRun(dir: string): Promise<ReportRun | undefined> {
  try {
    const json = JSON.parse(await fs.readFile(path.join(dir, 'report.json'), 'utf8'));
    const run = json?.runs?.[0];
    return run && Array.isArray(run.history) && run.eval ? (run as ReportRun) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A run whose checkpoint holds all its epochs but that was stopped in its final evaluation
 * (no report.json): evaluated from its checkpoint, as a finished run.
 */
export async function evaluateFinished(
  dir: string,
  test: Dataset,
  how: { threads?: number; device?: string },
  signal?: AbortSignal,
): Promise<RunSummary> {
  const opened = await openCheckpoint(dir);
  const trainer = await Trainer.load(opened, how);
  try {
    await trainer.setData({ test });
    // stopped again here: an interruption of a run whose checkpoint is kept, as before
    const evaluation = await trainer.evaluate({ signal });
    return {
      testAcc: evaluation.accuracy,
      balancedAccuracy: evaluation.balancedAccuracy,
      macroF1: evaluation.macroF1,
      trainSeconds: trainer.history.reduce((s, r) => s + r.seconds, 0),
      checkpoint: path.resolve(dir),
      trainCounts: (opened.config.data?.trainCounts as number[] | undefined) ?? [],
      history: trainer.history,
      eval: evaluation,
    };
  } finally {
    trainer.dispose();
  }
}

/** A summary from a finished run's report entry. */
export function summaryOf(run: ReportRun, dir: string): RunSummary {
  const { history, eval: evaluation, trainCounts, trainSeconds } = run;
  return {
    testAcc: evaluation.accuracy,
    balancedAccuracy: evaluation.balancedAccuracy,
    macroF1: evaluation.macroF1,
    trainSeconds,
    checkpoint: path.resolve(dir),
    trainCounts,
    history,
    eval: evaluation,
  };
}

/**
 * Trains one run of an experiment: a fresh run (replacing the folder's), or, on resume, the
 * earlier invocation's run taken from its folder when it finished, continued when it holds a
 * checkpoint. An interruption carries `stage` as runTraining marks it.
 */
export async function experimentRun(
  spec: RunSpec,
  dir: string | undefined,
  resume: boolean,
  hooks: RunHooks & { data: DataSplit },
  onStart: () => void,
): Promise<RunSummary> {
  if (resume && dir) {
    const earlier = await finishedRun(dir);
    if (earlier) return summaryOf(earlier, dir);
  }
  if (hooks.signal?.aborted) {
    throw Object.assign(new Error('not started'), { name: 'AbortError', stage: 'not-started' });
  }
  onStart();
  const continues = resume && (await holdsCheckpoint(dir));
  // a finished run of an earlier invocation leaves report.json: not this one's until it ends
  if (dir && !continues) await fs.rm(path.join(dir, 'report.json'), { force: true });
  try {
    const result = await runTraining(
      // an experiment's folder is the experiment's: a re-run replaces its runs
      continues ? { ...spec, out: dir, resume: true } : { ...spec, out: dir, overwrite: true },
      hooks,
    );
    return summarizeRun(result);
  } catch (err) {
    // stopped in its final evaluation last time: all its epochs are in the checkpoint
    if (continues && /is finished: it has trained/.test((err as Error).message)) {
      return evaluateFinished(
        dir!,
        hooks.data.test,
        { threads: spec.threads, device: spec.device },
        hooks.signal,
      );
    }
    throw err;
  }
}
