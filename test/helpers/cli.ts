// Runs the built CLI in a child process, as a user would.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';

export const CLI = path.join(__dirname, '..', '..', 'ts', 'cli', 'main.js');
export const ROOT = path.join(__dirname, '..', '..', '..');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

// The CLI keeps decoded image folders in its cache folder: runs from tests keep them in one of
// this test process (unless TORCHFOCAL_CACHE says otherwise), not in the user's.
let testCache: string | undefined;

/** Runs a process to its end, collecting its output. */
export function runProcess(
  file: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd ?? ROOT,
      env: {
        TORCHFOCAL_CACHE: (testCache ??= tempDir('torchfocal-cache-')),
        ...process.env,
        ...options.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

export function runCli(
  args: string[],
  /** shell: a `sh -c` script that runs the CLI as `exec "$@"` (to set limits first, say) */
  options: { cwd?: string; env?: NodeJS.ProcessEnv; shell?: string } = {},
): Promise<CliResult> {
  const command = [process.execPath, CLI, ...args];
  return options.shell
    ? runProcess('sh', ['-c', options.shell, 'sh', ...command], options)
    : runProcess(command[0], command.slice(1), options);
}

/** `train` arguments for a quick run: a two-epoch single-threaded MLP on DATASET into OUT. */
export function quickTrainArgs(dataset: string, out: string, ...extra: string[]): string[] {
  const base = ['--model', 'mlp', '--epochs', '2', '--threads', '1', '--json'];
  return ['train', '--dataset', dataset, ...base, '--out', out, ...extra];
}

/** JSON lines of a --json run's stdout; throws if any line is not JSON. */
export function jsonLines(stdout: string): Record<string, any>[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));
}

// Folders from tempDir go when the test file's last test is done, passed or failed: they hold
// exported zoos (370 MB in one), checkpoints and image folders, and CI's disk is shared.
const made: string[] = [];
test.after.always('remove the temp folders', () => {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

export function tempDir(prefix = 'torchfocal-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Debian's python3 with torch, the independent reference for cross-checks. */
export const PYTHON = process.env.TORCHFOCAL_PYTHON ?? '/usr/bin/python3';
