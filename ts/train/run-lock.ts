// One writer per run folder: a training process holds `<out>/.torchfocal.lock` (its pid, host and
// start time, created with O_EXCL) from before its first write to its end. A second writer is
// refused in one line naming the holder; a lock left by a dead process of this host (SIGKILL,
// power loss; its pid maybe reused since by a younger process) is taken over with a warning; a
// lock of another host is never taken over, since its pid cannot be checked from here.
import { closeSync, openSync, readFileSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export const LOCK_FILE = '.torchfocal.lock';

export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the holder took the lock */
  started: string;
}

export interface RunLock {
  readonly dir: string;
  readonly file: string;
  /** set when a stale lock was taken over: what was said about it */
  readonly tookOver?: string;
  /**
   * removes the lock file (when it is still this process's), and the folders the lock created
   * when they were left empty (a run that failed before writing); safe to call twice
   */
  release(): void;
}

// Locks this process holds: removed on exit too (process.exit from a signal handler, say).
const held = new Set<{ file: string; token: string }>();
// Folders claimed by `claimFreshDir` in this process: removed at exit when still empty (a run
// that failed before its first write leaves no empty run folder behind).
const claimed = new Set<string>();
let exitHook = false;

function cleanUpAtExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const e of held) releaseSync(e.file, e.token);
    for (const d of claimed) {
      try {
        rmdirSync(d); // only an empty one
      } catch {
        // written to: the run's
      }
    }
  });
}

/**
 * Takes the run folder `dir` for this process, creating it (and its parents) first. Throws one
 * line when another live process holds it, or when it cannot be created or written.
 */
export async function acquireRunLock(
  dir: string,
  onWarning: (message: string) => void = () => {},
): Promise<RunLock> {
  const created = await makeDir(dir);
  const file = path.join(dir, LOCK_FILE);
  const me: LockHolder = {
    pid: process.pid,
    host: os.hostname(),
    started: new Date().toISOString(),
  };
  const token = JSON.stringify(me) + '\n';
  let tookOver: string | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    if (await createExclusive(file, token, dir)) {
      const entry = { file, token };
      held.add(entry);
      cleanUpAtExit();
      return {
        dir,
        file,
        tookOver,
        release() {
          if (!held.delete(entry)) return;
          releaseSync(file, token);
          for (const d of [...created].reverse()) {
            try {
              rmdirSync(d); // only an empty one
            } catch {
              break;
            }
          }
        },
      };
    }
    // Someone holds it: alive, elsewhere, or dead.
    const text = await fs.readFile(file, 'utf8').catch(() => undefined);
    if (text === undefined) continue; // released in between: try again
    const holder = parseHolder(text);
    if (!holder) {
      // Just created and not yet written, or garbage: a young file is a live writer's.
      const age = await fs.stat(file).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age < 10_000) throw busy(dir, file, undefined);
    } else if (holder.host !== os.hostname()) {
      throw new Error(
        `${dir} is locked by process ${holder.pid} on host ${holder.host} (since ${holder.started}): ` +
          `one training run writes a folder at a time; if that run is gone, remove ${file}`,
      );
    } else if (alive(holder.pid) && !startedAfter(holder.pid, holder.started)) {
      throw busy(dir, file, holder);
    }
    // Stale: move it aside under a name of our own, then check it was still the stale one.
    const aside = `${file}.stale.${process.pid}.${attempt}`;
    try {
      await fs.rename(file, aside);
    } catch {
      continue; // taken over or released by someone else meanwhile
    }
    const moved = await fs.readFile(aside, 'utf8').catch(() => '');
    if (moved !== text) {
      // A live lock was taken over in between: put it back, it is not ours to break.
      await fs.link(aside, file).catch(() => {});
      await fs.unlink(aside).catch(() => {});
      throw busy(dir, file, parseHolder(moved));
    }
    await fs.unlink(aside).catch(() => {});
    tookOver =
      `${dir}: took over the lock of process ${holder?.pid ?? '(unknown)'}` +
      `${holder ? ` (started ${holder.started})` : ''}, which is no longer running`;
    onWarning(tookOver);
  }
  throw busy(dir, file, undefined);
}

/**
 * Runs `write` holding `dir`'s run lock: this process's own when it holds that of `dir` or of a
 * folder above it already (a training run saving its epoch, or its best/), else one taken for
 * the write alone (an API caller's `Trainer.save`).
 */
export async function withRunLock<T>(dir: string, write: () => Promise<T>): Promise<T> {
  const target = path.resolve(dir);
  const covers = (lockFile: string) => {
    const rel = path.relative(path.dirname(path.resolve(lockFile)), target);
    return !rel.startsWith('..') && !path.isAbsolute(rel);
  };
  if ([...held].some((e) => covers(e.file))) return write();
  const lock = await acquireRunLock(dir);
  try {
    return await write();
  } finally {
    lock.release();
  }
}

function busy(dir: string, file: string, holder: LockHolder | undefined): Error {
  const who = holder
    ? `process ${holder.pid} on this host (since ${holder.started})`
    : 'another process';
  return Object.assign(
    new Error(
      `${dir} is being written by ${who}: one training run writes a folder at a time; wait for it to finish, or give another --out (lock: ${file})`,
    ),
    { code: 'ERR_RUN_LOCKED' },
  );
}

/**
 * Creates the lock file with `token` in it, or says false when it exists. The line is written to
 * a file of this process first and hard-linked to the lock's name (a link never replaces a
 * name), so that a reader never finds the lock empty and can always name its holder; where the
 * file system has no hard links, the lock is created empty (O_EXCL) and then written.
 */
async function createExclusive(file: string, token: string, dir: string): Promise<boolean> {
  const own = `${file}.${process.pid}.${Date.now()}`;
  const cannot = (err: unknown) =>
    new Error(
      `${dir}: cannot write to this folder (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  try {
    await fs.writeFile(own, token, { flag: 'wx' });
  } catch (err) {
    throw cannot(err);
  }
  try {
    await fs.link(own, file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'].includes(code ?? '')) throw cannot(err);
  } finally {
    await fs.unlink(own).catch(() => {});
  }
  return createEmptyThenWrite(file, token, dir);
}

async function createEmptyThenWrite(file: string, token: string, dir: string): Promise<boolean> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'wx');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    throw new Error(`${dir}: cannot write to this folder (${code ?? (err as Error).message})`);
  }
  try {
    await handle.writeFile(token);
  } catch (err) {
    await handle.close().catch(() => {});
    await fs.unlink(file).catch(() => {});
    throw new Error(
      `${dir}: cannot write to this folder (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  await handle.close();
  return true;
}

function releaseSync(file: string, token: string): void {
  try {
    if (readFileSync(file, 'utf8') === token) unlinkSync(file);
  } catch {
    // already gone
  }
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const h = JSON.parse(text) as LockHolder;
    return Number.isSafeInteger(h?.pid) && typeof h.host === 'string' ? h : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Creates `base`, or `base-2`, `base-3`, … when that name is taken, and returns the one it made.
 * mkdir is atomic, so two processes started in the same second never get the same folder (a
 * check-then-create would hand both the same name, and one of them the other's run lock).
 */
export async function claimFreshDir(base: string): Promise<string> {
  await makeDir(path.dirname(path.resolve(base)));
  for (let n = 1; ; n++) {
    const dir = n === 1 ? base : `${base}-${n}`;
    try {
      await fs.mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && n < 10_000) continue;
      throw new Error(
        `${dir}: cannot create this folder (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
    cleanUpAtExit();
    claimed.add(path.resolve(dir));
    return dir;
  }
}

/**
 * True when process `pid` started after `iso` (the time its lock says it was taken): then it is
 * not the lock's holder but a later process that got the dead holder's pid. Linux only (its
 * /proc); elsewhere a live pid is taken as the holder.
 */
function startedAfter(pid: number, iso: string): boolean {
  const taken = Date.parse(iso);
  if (!Number.isFinite(taken)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): state is the
    // first, starttime (clock ticks after boot, in USER_HZ = 100) the 20th.
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const boot = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    if (!Number.isFinite(ticks) || !Number.isFinite(boot)) return false;
    // A second of slack: btime is whole seconds, and a holder writes its lock after it starts.
    return boot * 1000 + ticks * 10 > taken + 1000;
  } catch {
    return false;
  }
}

/**
 * `mkdir -p` with a bounded number of steps (one per missing ancestor). Node's own recursive
 * mkdir spins forever on paths such as /proc/foo/bar, where mkdir says ENOENT under an existing
 * parent.
 */
export async function makeDir(dir: string): Promise<string[]> {
  const missing: string[] = [];
  let at = path.resolve(dir);
  for (;;) {
    const kind = await fs.stat(at).then(
      (s) => (s.isDirectory() ? 'dir' : 'other'),
      (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? 'none' : err),
    );
    if (kind === 'dir') break;
    if (kind === 'other')
      throw new Error(`${dir}: cannot create this folder (${at} is not a folder)`);
    if (kind !== 'none')
      throw new Error(`${dir}: cannot create this folder (${kind.code ?? kind.message})`);
    missing.push(at);
    const parent = path.dirname(at);
    if (parent === at) break;
    at = parent;
  }
  missing.reverse();
  for (const d of missing) {
    try {
      await fs.mkdir(d);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (
        code === 'EEXIST' &&
        (await fs.stat(d).then(
          (s) => s.isDirectory(),
          () => false,
        ))
      )
        continue;
      throw new Error(
        `${dir}: cannot create this folder (${code ?? (err as Error).message} at ${d})`,
      );
    }
  }
  return missing;
}

/** For tests and tools: writes a lock as another holder would have (pid, host, start time). */
export function writeLockFile(dir: string, holder: LockHolder): void {
  const fd = openSync(path.join(dir, LOCK_FILE), 'wx');
  try {
    writeSync(fd, JSON.stringify(holder) + '\n');
  } finally {
    closeSync(fd);
  }
}
