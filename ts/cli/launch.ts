// `train --nproc N`: starts N ranks of one data-parallel run on this machine, as torchrun does,
// and watches them. Each rank is this CLI again with torchrun's variables set (WORLD_SIZE, RANK,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so a scheduler that launches torchrun jobs can launch
// torchfocal ranks itself.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import type { DistributedOptions } from '../train/options';
import { ExitError } from './output';

export interface LaunchOptions {
  nproc: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort?: number;
  /** seconds the others wait for a rank that stopped before they give up (and are stopped) */
  timeoutSeconds: number;
}

/** The rank this process is, when a launcher (ours or torchrun's) set the variables. */
export function rankFromEnv(
  env: NodeJS.ProcessEnv,
  timeoutSeconds: number,
): DistributedOptions | undefined {
  if (env.WORLD_SIZE === undefined || env.RANK === undefined) return undefined;
  const number = (name: string) => {
    const v = Number(env[name]);
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new Error(`${name}=${env[name]}: expected an integer >= 0`);
    }
    return v;
  };
  if (!env.MASTER_PORT) throw new Error('WORLD_SIZE and RANK are set but MASTER_PORT is not');
  return {
    worldSize: number('WORLD_SIZE'),
    rank: number('RANK'),
    store: { host: env.MASTER_ADDR || '127.0.0.1', port: number('MASTER_PORT') },
    timeoutSeconds,
  };
}

/**
 * A port for this node's rendezvous store, below the kernel's ephemeral range: a port from inside
 * it (listen on 0, then close) can be taken again before the store binds it, as the source port
 * of any outgoing connection (a test run side by side, Gloo's own: EADDRINUSE, seen in a check).
 * Random, so that launchers side by side rarely try the same one, and checked by binding it.
 */
export async function freePort(): Promise<number> {
  const ephemeral = ephemeralRangeStart();
  const from = Math.max(1024, ephemeral - 12000);
  for (let tries = 0; tries < 100 && from < ephemeral; tries++) {
    const port = from + Math.floor(Math.random() * (ephemeral - from));
    if (await bindable(port)) return port;
  }
  return listenOnZero();
}

// The first port of ip_local_port_range (Linux); 32768, the usual, elsewhere.
function ephemeralRangeStart(): number {
  try {
    const low = Number(
      fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
    );
    return Number.isSafeInteger(low) && low > 1024 ? low : 32768;
  } catch {
    return 32768;
  }
}

// Whether a server can listen on `port` on every address, as the store does.
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

function listenOnZero(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Runs this node's ranks with `args` (the train arguments without the launcher's) and resolves
 * when all have exited 0. When one fails, the others get `timeoutSeconds` to stop on their own
 * (their collectives fail when a peer is gone) and are then killed; the error names the rank.
 */
export async function launch(
  o: LaunchOptions,
  args: string[],
  threadsGiven: boolean,
): Promise<void> {
  const port = o.masterPort ?? (o.nnodes === 1 ? await freePort() : 29500);
  // Each rank gets its share of the cores unless --threads says otherwise.
  const threads = Math.max(1, Math.floor(os.availableParallelism() / o.nproc));
  const children: { rank: number; child: ChildProcess; stderr: string }[] = [];
  for (let local = 0; local < o.nproc; local++) {
    const rank = o.nodeRank * o.nproc + local;
    const child = spawn(
      process.execPath,
      [process.argv[1], 'train', ...args, ...(threadsGiven ? [] : ['--threads', String(threads)])],
      {
        env: {
          ...process.env,
          WORLD_SIZE: String(o.nnodes * o.nproc),
          RANK: String(rank),
          LOCAL_RANK: String(local),
          LOCAL_WORLD_SIZE: String(o.nproc),
          MASTER_ADDR: o.masterAddr,
          MASTER_PORT: String(port),
        },
        // Rank 0 speaks for the run; the others' output is kept for when they fail.
        stdio: rank === 0 ? 'inherit' : ['ignore', 'ignore', 'pipe'],
      },
    );
    const entry = { rank, child, stderr: '' };
    child.stderr?.on('data', (d) => (entry.stderr += d));
    children.push(entry);
  }
  // Ctrl-C reaches every rank through the terminal, but a SIGINT sent to this pid alone (`timeout
  // -s INT`, a scheduler) does not: both signals are passed on as SIGTERM (a rank that already
  // has the terminal's SIGINT stops once). The ranks stop together at one step, rank 0
  // checkpoints it, and this process exits as its own signal says (130 SIGINT, 143 SIGTERM).
  let signalled: number | undefined;
  const forward = (sig: NodeJS.Signals) => {
    signalled ??= sig === 'SIGTERM' ? 143 : 130;
    children.forEach((c) => c.child.exitCode === null && c.child.kill('SIGTERM'));
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  try {
    const exits = children.map(
      (c) =>
        new Promise<{ rank: number; code: number | null; signal: NodeJS.Signals | null }>(
          (resolve) =>
            c.child.on('exit', (code, signal) => resolve({ rank: c.rank, code, signal })),
        ),
    );
    const pending = new Set(exits);
    let failure: { rank: number; code: number | null; signal: NodeJS.Signals | null } | undefined;
    while (pending.size > 0) {
      const tagged = [...pending].map((p) => p.then((r) => ({ r, p })));
      const { r, p } = await Promise.race(tagged);
      pending.delete(p);
      if (!failure && (r.code !== 0 || r.signal)) {
        failure = r;
        // The others get the collective timeout (plus a margin) to stop, then are killed.
        const deadline = setTimeout(
          () => children.forEach((c) => c.child.exitCode === null && c.child.kill('SIGKILL')),
          (o.timeoutSeconds + 10) * 1000,
        );
        deadline.unref();
      }
    }
    if (failure?.code === 130 || failure?.code === 143) {
      // rank 0 has printed how to resume; nothing to add
      throw new ExitError('interrupted', signalled ?? failure.code);
    }
    if (failure) {
      const own = children.find((c) => c.rank === failure!.rank)!;
      const lastLine = own.stderr
        .trim()
        .split('\n')
        .pop()
        ?.replace(/^torchfocal: /, '');
      const how = failure.signal
        ? `was killed by ${failure.signal}`
        : `exited with status ${failure.code}${lastLine ? ` (${lastLine})` : ''}`;
      throw new ExitError(
        `rank ${failure.rank} of ${o.nnodes * o.nproc} ${how}; the other ranks were stopped`,
        1,
      );
    }
  } finally {
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
  }
}

/** `args` without the launcher's own options (`--name value` and `--name=value` forms). */
export function withoutOptions(args: string[], names: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (names.includes(a)) {
      i++; // and its value
    } else if (!names.some((n) => a.startsWith(`${n}=`))) {
      out.push(a);
    }
  }
  return out;
}
