// Runs fuzz cases FROM..FROM+COUNT-1 of one kind in this process, announcing each case before
// it runs so that the parent knows which one a crash happened in.
//   node dist/test/fuzz/worker.js KIND SEED FROM COUNT
import fs from 'node:fs';
import { caseRng, KINDS, runCase, type Kind } from './cases';

async function main(): Promise<void> {
  const [kind, seed, from, count] = process.argv.slice(2);
  if (!KINDS.includes(kind as Kind)) throw new Error(`unknown kind '${kind}'`);
  const start = Number(from);
  const end = start + Number(count);
  for (let i = start; i < end; i++) {
    fs.writeSync(1, `case ${i}\n`);
    const outcome = await runCase(kind as Kind, caseRng(Number(seed), i));
    fs.writeSync(1, `${outcome} ${i}\n`);
  }
  fs.writeSync(1, 'done\n');
  process.exit(0); // the fuzz trainer's engine work is finished; do not wait for GC
}

main().catch((err: unknown) => {
  fs.writeSync(2, `fuzz worker: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(3);
});
