// What the CLI prints: the original experiment's epoch line, JSON lines, a progress bar.
import path from 'node:path';
import cliProgress from 'cli-progress';
import type { EpochResult, Progress } from '../train/trainer';
import type { Selection } from '../train/selection';
import type { LoadProgress } from '../data/index';
import type { DownloadProgress } from '../data/download';

/** `epoch 0, loss 1.443379, train acc 0.529, test acc 0.877, time 23.4s` (train.py's format) */
export function epochLine(r: EpochResult): string {
  const test = r.testAcc === undefined ? '' : `, test acc ${r.testAcc.toFixed(3)}`;
  const val = r.val
    ? `, val loss ${r.val.loss.toFixed(4)}, val acc ${r.val.accuracy.toFixed(3)}, val bal acc ${r.val.balancedAccuracy.toFixed(3)}, val macro-F1 ${r.val.macroF1.toFixed(3)}`
    : '';
  const skipped = r.skippedSteps ? `, ${r.skippedSteps} steps skipped (non-finite loss)` : '';
  return `epoch ${r.epoch}, loss ${r.loss.toFixed(6)}, train acc ${r.trainAcc.toFixed(3)}${test}${val}, time ${r.seconds.toFixed(1)}s${skipped}`;
}

/** `picked epoch 3 by val-balanced-accuracy 0.9412 (its weights: best/)` */
export function pickedLine(best: Selection, saved: boolean): string {
  const where = saved ? ' (its weights: best/; the final EVAL is theirs)' : '';
  return `picked epoch ${best.epoch} by ${best.monitor} ${best.value.toFixed(4)}${where}`;
}

/** The epoch JSON line; `withEval` adds the epoch's EVAL when the test set was evaluated. */
export function epochEvent(r: EpochResult, withEval = false): Record<string, unknown> {
  return {
    event: 'epoch',
    epoch: r.epoch,
    loss: round(r.loss, 6),
    trainAcc: round(r.trainAcc, 4),
    ...(r.testAcc === undefined ? {} : { testAcc: round(r.testAcc, 4) }),
    ...(r.val && {
      val: {
        loss: round(r.val.loss, 6),
        accuracy: round(r.val.accuracy, 4),
        balancedAccuracy: round(r.val.balancedAccuracy, 4),
        macroF1: round(r.val.macroF1, 4),
      },
    }),
    seconds: round(r.seconds, 2),
    ...(r.skippedSteps ? { skippedSteps: r.skippedSteps } : {}),
    ...(withEval && r.eval ? { eval: r.eval } : {}),
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * A per-epoch bar on stderr (steps/s, ETA, running loss) when stderr is a terminal; nothing
 * otherwise, so logs and pipes stay clean. After the last step it stays up, saying
 * "evaluating", until the epoch's result arrives (stop()).
 */
export class EpochProgress {
  #bar?: cliProgress.SingleBar;
  #epoch = -1;
  readonly #label: string;
  // Where this process took the epoch up: a resumed epoch starts at its checkpoint's step, and
  // the rate counts only the steps run here.
  #fromStep = 0;
  #start = Date.now();

  constructor(label = '') {
    this.#label = label;
  }

  readonly update = (p: Progress): void => {
    if (!process.stderr.isTTY) return;
    if (p.epoch !== this.#epoch) {
      this.stop();
      this.#epoch = p.epoch;
      this.#bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: `${this.#label}epoch ${p.epoch} [{bar}] {value}/{total} steps | {rate} steps/s | ETA {eta}s | loss {loss}{phase}`,
          clearOnComplete: true,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(p.steps, p.step, { loss: '-', rate: '-', phase: '' });
      this.#fromStep = p.step;
      this.#start = Date.now();
      return;
    }
    this.#bar?.update(p.step, {
      loss: p.loss.toFixed(4),
      rate: stepRate(p.step - this.#fromStep, (Date.now() - this.#start) / 1000).toFixed(1),
      phase: p.step === p.steps ? ' | evaluating' : '',
    });
  };

  /** The image decoding before training: `decoding images [bar] n/total`. */
  readonly loading = (p: LoadProgress): void => {
    if (!process.stderr.isTTY) return;
    if (this.#epoch !== LOADING) {
      this.stop();
      this.#epoch = LOADING;
      this.#bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: `${this.#label}decoding images [{bar}] {value}/{total} files | ETA {eta}s`,
          clearOnComplete: true,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(p.total, p.decoded);
    }
    this.#bar?.update(p.decoded);
    if (p.decoded >= p.total) this.stop();
  };

  stop(): void {
    this.#bar?.stop();
    this.#bar = undefined;
    if (this.#epoch === LOADING) this.#epoch = -1;
  }
}

const LOADING = -2; // the bar's "epoch" while images are decoded

/**
 * A download's bar on stderr (megabytes received of the total, rate, ETA) when stderr is a
 * terminal; nothing otherwise. Without a size from the server it counts the megabytes alone.
 */
export class DownloadBar {
  #bar?: cliProgress.SingleBar;
  readonly #label: string;
  #start = Date.now();

  constructor(label = '') {
    this.#label = label;
  }

  readonly update = (p: DownloadProgress): void => {
    if (!process.stderr.isTTY) return;
    const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
    if (!this.#bar) {
      const format =
        p.total === undefined
          ? `${this.#label}downloading {received} MB | {rate} MB/s`
          : `${this.#label}downloading [{bar}] {received}/${mb(p.total)} MB | {rate} MB/s | ETA {eta}s`;
      this.#bar = new cliProgress.SingleBar(
        { stream: process.stderr, format, clearOnComplete: true, hideCursor: true },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(p.total ?? 0, p.received, { received: mb(p.received), rate: '-' });
      this.#start = Date.now();
      return;
    }
    const seconds = Math.max(1e-3, (Date.now() - this.#start) / 1000);
    this.#bar.update(p.received, { received: mb(p.received), rate: mb(p.received / seconds) });
  };

  stop(): void {
    this.#bar?.stop();
    this.#bar = undefined;
  }
}

/** Steps per second of `steps` run in `seconds` (a resumed epoch's earlier steps not counted). */
export function stepRate(steps: number, seconds: number): number {
  return steps / Math.max(1e-3, seconds);
}

/** A failure whose exit status is not the usual 1 (130: interrupted by a signal). */
export class ExitError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/**
 * The command line that ran this CLI, to print commands a user can paste: `npx torchfocal`
 * under npx, `torchfocal` when found on PATH, else the script's path (with `node` for a .js).
 */
export function invokedAs(
  env: NodeJS.ProcessEnv = process.env,
  script: string = process.argv[1] ?? 'torchfocal',
): string {
  // npx runs an installed bin; a child of `npx ava` inherits npm_command but not the path
  const installed = script.includes(`${path.sep}node_modules${path.sep}`);
  if (env.npm_command === 'exec' && installed) return 'npx torchfocal';
  const name = path.basename(script);
  const dirs = (env.PATH ?? '').split(path.delimiter).filter(Boolean);
  if (dirs.some((d) => path.resolve(d, name) === path.resolve(script))) return name;
  const relative = path.relative(process.cwd(), script);
  const shown = relative.startsWith('..') || path.isAbsolute(relative) ? script : relative;
  const runnable = shown.includes(path.sep) ? shown : `.${path.sep}${shown}`;
  return script.endsWith('.js') ? `node ${shown}` : runnable;
}

/** A warning as the CLI prints it: one line on stderr. */
export function warnOnStderr(message: string): void {
  process.stderr.write(`torchfocal: warning: ${message}\n`);
}
