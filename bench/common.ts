// What the benchmarks share: running the PyTorch baselines and small statistics.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../ts/package';

/** a baseline run that takes longer than this is stopped */
const PYTHON_TIMEOUT_MS = 15 * 60 * 1000;

/** Where the bench keeps what it writes once (PNG copies of MNIST): $TORCHFOCAL_CACHE, else node_modules/.cache/torchfocal. */
export function benchCacheDir(): string {
  return (
    process.env.TORCHFOCAL_CACHE ?? path.join(PACKAGE_ROOT, 'node_modules', '.cache', 'torchfocal')
  );
}

/** The python that runs the baselines: explicit, $TORCHFOCAL_PYTHON or Debian's. */
export function pythonPath(explicit?: string): string {
  return explicit ?? process.env.TORCHFOCAL_PYTHON ?? '/usr/bin/python3';
}

/**
 * PyTorch at its best on this CPU: one BLAS thread (DESIGN.md: a threaded OpenBLAS beside
 * LibTorch's own threads costs up to 3×), and glibc's allocator held to the settings the addon
 * makes for itself (src/train/runtime.cpp `configure_allocator`). Without them glibc hands
 * ResNet-32's 8 MB activations back to the OS and faults them in again each step: 0.3–1.8 s of
 * kernel time over a bench's PyTorch epochs, and 10–25% slower epochs (bench/NOTES.md §30).
 */
export const PYTORCH_BEST_ENV: Readonly<Record<string, string>> = {
  OPENBLAS_NUM_THREADS: '1',
  MALLOC_MMAP_THRESHOLD_: String(32 << 20),
  MALLOC_TRIM_THRESHOLD_: String(1 << 30),
};

/**
 * This process's environment without thread or allocator settings (native() sets
 * OPENBLAS_NUM_THREADS), so that a baseline runs with exactly the settings it is given.
 */
export function untunedEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of [
    'OPENBLAS_NUM_THREADS',
    'OMP_NUM_THREADS',
    'MKL_NUM_THREADS',
    'GOTO_NUM_THREADS',
    'MALLOC_MMAP_THRESHOLD_',
    'MALLOC_TRIM_THRESHOLD_',
    'MALLOC_TOP_PAD_',
    'GLIBC_TUNABLES',
  ]) {
    delete env[k];
  }
  return env;
}

/** Why `script` cannot run under `python` (a readable reason), or undefined when it can. */
export async function pythonUnavailable(
  python: string,
  script: string,
  imports: string,
): Promise<string | undefined> {
  if (!fs.existsSync(script)) return `${script} is missing`;
  try {
    const { code, stderr } = await exec(python, ['-c', imports], process.env);
    return code === 0 ? undefined : `${python} cannot run '${imports}' (${lastLine(stderr)})`;
  } catch (err) {
    return `${python} did not start (${(err as Error).message}); set TORCHFOCAL_PYTHON`;
  }
}

/**
 * Calls `onLine` with each non-blank line of `stream` as it completes (and the last, unfinished
 * one when the stream ends); `onData` sees every chunk first.
 */
export function eachLine(
  stream: NodeJS.ReadableStream,
  onLine: (line: string) => void,
  onData: (chunk: string) => void = () => {},
): void {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    onData(d);
    pending += d;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) onLine(line);
  });
  stream.on('end', () => {
    if (pending.trim()) onLine(pending);
    pending = '';
  });
}

/** Runs a process to its end; stderr lines are passed on as they come. */
export function exec(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  onStderrLine?: (line: string) => void,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGTERM'), PYTHON_TIMEOUT_MS);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    eachLine(
      child.stderr,
      (line) => onStderrLine?.(line),
      (d) => (stderr += d),
    );
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal) stderr += `\nkilled by ${signal}`;
      resolve({ code, stdout, stderr });
    });
  });
}

export function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1] ?? '';
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function checkInt(name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) {
    throw new Error(`${name}: expected an integer >= ${min}, got ${v}`);
  }
}
