// `npm run bench`: every benchmark (LeNet epoch, focal op), printed as `torchfocal bench` prints it.
//   node dist/bench/run.js [--json] [--quick] [--device cpu|cuda] [--threads N] [--repeats N] [--python PATH]
import { parseArgs } from 'node:util';
import { runBench } from '../ts/bench/run';
import { printBenchReport } from '../ts/cli/bench';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      threads: { type: 'string' },
      repeats: { type: 'string' },
      python: { type: 'string' },
      device: { type: 'string' },
    },
  });
  const report = await runBench({
    threads: values.threads === undefined ? undefined : Number(values.threads),
    repeats: values.repeats === undefined ? undefined : Number(values.repeats),
    quick: values.quick,
    python: values.python,
    device: values.device,
    log: (line) => process.stderr.write(line + '\n'),
  });
  printBenchReport(report, values.json ?? false);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
