// A PyTorch baseline (bench/pytorch_lenet.py or pytorch_resnet32.py --serve) kept running, so
// that its timed epochs and inference blocks can be interleaved with torchfocal's: on this VM the
// same configuration moves by up to ±30% from one minute to the next, and figures taken minutes
// apart compare the minutes.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { eachLine, lastLine, round, untunedEnv } from './common';
import type { OriginalRun, TimedRun } from './lenet';

/** pytorch_lenet.py's exit status when PIL is missing for --original */
const EXIT_MISSING_DEPENDENCY = 3;
/** a baseline that runs longer than this in all is stopped */
const TIMEOUT_MS = 15 * 60 * 1000;

/** The baseline cannot run here (PIL missing for the PNG loop): a note, not a failure. */
export class MissingDependency extends Error {}

export interface PythonRun {
  python: string;
  script: string;
  seed: number;
  warmup: number;
  log: (line: string) => void;
}

export class PythonEpochs {
  private stdout = '';
  private stderr = '';
  private waiting: ((line: string | null) => void) | null = null;
  private lines: string[] = [];
  private closed = false;
  private exited: Promise<number | null>;

  private constructor(
    private readonly child: ChildProcessByStdio<Writable, Readable, Readable>,
    private readonly label: string,
    private readonly script: string,
  ) {
    const timer = setTimeout(() => child.kill('SIGTERM'), TIMEOUT_MS);
    this.exited = new Promise((resolve, reject) => {
      child.on('error', (err) => {
        clearTimeout(timer);
        this.closed = true;
        this.deliver(null);
        reject(err);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (signal) this.stderr += `\nkilled by ${signal}`;
        this.closed = true;
        this.deliver(null);
        resolve(code);
      });
    });
    this.exited.catch(() => {}); // a spawn error is reported by the next read, not as unhandled
  }

  /**
   * Starts the script with --serve, `args` (`env` laid over an environment cleared of
   * thread settings) and resolves once its warm-up epochs are done.
   */
  static async start(
    run: PythonRun,
    label: string,
    args: string[],
    env: Record<string, string>,
  ): Promise<PythonEpochs> {
    const argv = [
      run.script,
      ...args,
      '--serve',
      '--warmup',
      String(run.warmup),
      '--seed',
      String(run.seed),
      '--json',
    ];
    const child = spawn(run.python, argv, {
      env: { ...untunedEnv(), ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const baseline = new PythonEpochs(child, label, path.basename(run.script));
    eachLine(
      child.stderr,
      (line) => run.log(`${label}: ${line}`),
      (d) => (baseline.stderr += d),
    );
    eachLine(
      child.stdout,
      (line) => baseline.deliver(line),
      (d) => (baseline.stdout += d),
    );
    child.stdin.on('error', () => {}); // an early exit is reported by next(), with its reason
    const ready = await baseline.next();
    if (ready?.ready !== true) {
      baseline.kill(); // it said something else, or has exited already
      const code = await baseline.exited;
      if (code === EXIT_MISSING_DEPENDENCY) throw new MissingDependency(lastLine(baseline.stderr));
      throw baseline.failure(code);
    }
    return baseline;
  }

  /** Runs one timed epoch; resolves with its seconds. */
  async epoch(): Promise<number> {
    const answer = await this.request('epoch');
    if (typeof answer.seconds !== 'number') {
      throw new Error(`${this.label}: an epoch answered ${JSON.stringify(answer)}`);
    }
    return answer.seconds;
  }

  /** Sends one request line (pytorch_lenet.py's doc lists them); resolves with its answer. */
  async request(line: string): Promise<Record<string, unknown>> {
    this.child.stdin.write(line + '\n');
    const answer = await this.next();
    if (answer === null) {
      this.kill();
      throw this.failure(await this.exited);
    }
    return answer;
  }

  /** Ends the requests: the baseline measures inference and reports all its figures. */
  async finish(): Promise<TimedRun | OriginalRun> {
    this.child.stdin.end();
    const code = await this.exited;
    if (code !== 0) throw this.failure(code);
    let out: Record<string, unknown>;
    try {
      out = JSON.parse(lastLine(this.stdout)) as Record<string, unknown>;
    } catch {
      throw new Error(`${this.label}: ${this.script} printed no JSON (${lastLine(this.stdout)})`);
    }
    return toRun(out);
  }

  /** Stops the baseline without its figures (the bench failed elsewhere). */
  kill(): void {
    this.child.kill('SIGTERM');
  }

  private async next(): Promise<Record<string, unknown> | null> {
    const line =
      this.lines.shift() ??
      (this.closed ? null : await new Promise<string | null>((r) => (this.waiting = r)));
    if (line === null) return null;
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      return null;
    }
  }

  private deliver(line: string | null): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(line);
    } else if (line !== null) {
      this.lines.push(line);
    }
  }

  private failure(code: number | null): Error {
    return new Error(`${this.label}: ${this.script} exited with ${code}: ${lastLine(this.stderr)}`);
  }
}

/** The script's JSON as the bench reports it. */
function toRun(out: Record<string, unknown>): TimedRun | OriginalRun {
  const result: TimedRun = {
    seconds: round(out.median as number, 3),
    epochSeconds: (out.epochSeconds as number[]).map((s) => round(s, 3)),
    threads: out.threads as number,
    blas: (out.blas as string | null) ?? null,
    openblasThreads: (out.openblasThreads as string | null) ?? null,
    malloc: (out.malloc as string | null) ?? null,
    torch: out.torch as string,
    userSeconds: round(out.userSeconds as number, 3),
    systemSeconds: round(out.systemSeconds as number, 3),
    ...(typeof out.layout === 'string' && { layout: out.layout }),
  };
  if (out.mode !== 'original') return result;
  return {
    ...result,
    images: out.images as number,
    epochImages: out.epochImages as number,
    measuredSeconds: (out.measuredSeconds as number[]).map((s) => round(s, 3)),
    decoder: out.decoder as string,
  };
}
