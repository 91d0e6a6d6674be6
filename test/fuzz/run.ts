// `npm run fuzz`: feeds mutated and random inputs to the IDX parser, the safetensors reader (and
// the native weight loader behind it), the image decoder, and the argument/option parsers (the
// native trainer's options and ops.focalLoss among them), in child processes. A case that kills
// its process (a signal, an abort, an uncaught non-Error) is a crash: it is reported with its
// number, which replays it, and the run goes on from the next case.
// Kind 'ops' is the API's typed-array and shape arguments (ops.focalLoss, predict's native call).
//   node dist/test/fuzz/run.js [--cases N per kind] [--seed S] [--kinds a,b] [--json]
import { spawn } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KINDS, type Kind } from './cases';

export interface KindReport {
  kind: Kind;
  cases: number;
  accepted: number;
  refused: number;
  crashes: { case: number; how: string }[];
  seconds: number;
}

const WORKER = path.join(__dirname, 'worker.js');
const BATCH = 2500; // cases per child process: bounded memory, cheap restarts

function runBatch(
  kind: Kind,
  seed: number,
  from: number,
  count: number,
): Promise<{
  last: number;
  done: boolean;
  accepted: number;
  refused: number;
  how: string;
  stderr: string;
}> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [WORKER, kind, String(seed), String(from), String(count)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, OMP_NUM_THREADS: '1' },
      },
    );
    let out = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const lines = out.split('\n');
      const started = lines.filter((l) => l.startsWith('case ')).map((l) => Number(l.slice(5)));
      resolve({
        last: started.length ? started[started.length - 1] : from - 1,
        done: lines.includes('done') && code === 0,
        accepted: lines.filter((l) => l.startsWith('accepted ')).length,
        refused: lines.filter((l) => l.startsWith('refused ')).length,
        how: signal ? `signal ${signal}` : `exit ${code}`,
        stderr,
      });
    });
  });
}

export async function fuzz(kind: Kind, cases: number, seed: number): Promise<KindReport> {
  const started = performance.now();
  const report: KindReport = { kind, cases: 0, accepted: 0, refused: 0, crashes: [], seconds: 0 };
  let next = 0;
  while (next < cases) {
    const count = Math.min(BATCH, cases - next);
    const r = await runBatch(kind, seed, next, count);
    report.accepted += r.accepted;
    report.refused += r.refused;
    if (r.done) {
      next += count;
    } else {
      const last = Math.max(r.last, next);
      report.crashes.push({
        case: last,
        how: `${r.how}${r.stderr ? `: ${r.stderr.trim().split('\n')[0]}` : ''}`,
      });
      next = last + 1;
    }
  }
  report.cases = cases;
  report.seconds = Math.round((performance.now() - started) / 100) / 10;
  return report;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cases: { type: 'string', default: '10000' },
      seed: { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
      kinds: { type: 'string', default: KINDS.join(',') },
    },
  });
  const kinds = values.kinds.split(',') as Kind[];
  const unknown = kinds.filter((k) => !KINDS.includes(k));
  if (unknown.length) throw new Error(`--kinds: unknown ${unknown.join(', ')} (known: ${KINDS})`);
  const cases = Number(values.cases);
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(cases) || cases < 1)
    throw new Error('--cases: expected an integer >= 1');
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error('--seed: expected an integer >= 0');
  const reports: KindReport[] = [];
  for (const kind of kinds) {
    const r = await fuzz(kind, cases, seed);
    reports.push(r);
    if (!values.json) {
      console.log(
        `${kind.padEnd(12)} ${r.cases} cases: ${r.accepted} accepted, ${r.refused} refused with an Error, ` +
          `${r.crashes.length} crashes (${r.seconds} s)`,
      );
      for (const c of r.crashes) console.log(`  crash at case ${c.case} (seed ${seed}): ${c.how}`);
    }
  }
  if (values.json) console.log(JSON.stringify({ seed, reports }));
  if (reports.some((r) => r.crashes.length > 0)) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`fuzz: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  });
}
