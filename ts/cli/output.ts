// What the CLI prints: the original experiment's epoch line, JSON lines, a progress bar.
import cliProgress from 'cli-progress';
import type { EpochResult, Progress } from '../train/trainer';

/** `epoch 0, loss 1.443379, train acc 0.529, test acc 0.877, time 23.4s` (train.py's format) */
export function epochLine(r: EpochResult): string {
  const test = r.testAcc === undefined ? '' : `, test acc ${r.testAcc.toFixed(3)}`;
  const skipped = r.skippedSteps ? `, ${r.skippedSteps} steps skipped (non-finite loss)` : '';
  return `epoch ${r.epoch}, loss ${r.loss.toFixed(6)}, train acc ${r.trainAcc.toFixed(3)}${test}, time ${r.seconds.toFixed(1)}s${skipped}`;
}

/** The epoch JSON line; `withEval` adds the epoch's EVAL when the test set was evaluated. */
export function epochEvent(r: EpochResult, withEval = false): Record<string, unknown> {
  return {
    event: 'epoch',
    epoch: r.epoch,
    loss: round(r.loss, 6),
    trainAcc: round(r.trainAcc, 4),
    ...(r.testAcc === undefined ? {} : { testAcc: round(r.testAcc, 4) }),
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
 * otherwise, so logs and pipes stay clean.
 */
export class EpochProgress {
  #bar?: cliProgress.SingleBar;
  #epoch = -1;
  readonly #label: string;

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
          format: `${this.#label}epoch ${p.epoch} [{bar}] {value}/{total} steps | {rate} steps/s | ETA {eta}s | loss {loss}`,
          clearOnComplete: true,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(p.steps, 0, { loss: '-', rate: '-' });
      this.#start = Date.now();
    }
    const rate = (p.step / Math.max(1e-3, (Date.now() - this.#start) / 1000)).toFixed(1);
    this.#bar?.update(p.step, { loss: p.loss.toFixed(4), rate });
    if (p.step === p.steps) this.stop();
  };

  #start = Date.now();

  stop(): void {
    this.#bar?.stop();
    this.#bar = undefined;
  }
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

/** A warning as the CLI prints it: one line on stderr. */
export function warnOnStderr(message: string): void {
  process.stderr.write(`torchfocal: warning: ${message}\n`);
}
