// `torchfocal bench` (and `npm run bench`): times torchfocal against PyTorch on this machine and
// prints the ratios. The harness and the Python baselines live in bench/ at the package's root.
import { Command } from 'commander';
import { formatBenchReport, type BenchReport } from '../../bench/report';
import { runBench } from '../../bench/run';
import { intAtLeast } from './parse';
import { printJson } from './output';

interface BenchFlags {
  json?: boolean;
  threads: number;
  repeats?: number;
  quick?: boolean;
  python?: string;
  device: string;
}

export function benchCommand(): Command {
  return new Command('bench')
    .description(
      'time LeNet epochs (torchfocal vs PyTorch tuned, default and the original PNG loop), evaluation and one-image prediction, a ResNet-32 epoch, and the focal op (vs cross-entropy and the original composed loss)',
    )
    .option('--json', 'print one JSON object of named figures on stdout')
    .option(
      '--threads <n>',
      'torchfocal threads, and PyTorch best-run threads (0 = all cores)',
      intAtLeast(0),
      0,
    )
    .option(
      '--repeats <n>',
      'timed LeNet epochs per configuration, interleaved, medians reported (default 5, quick 1)',
      intAtLeast(1),
    )
    .option('--device <name>', 'cpu or cuda: where torchfocal and the PyTorch loops train', 'cpu')
    .option(
      '--quick',
      'one timed epoch each, two inference rounds, 2,000 ResNet-32 images; no PNG-decoding loop',
    )
    .option(
      '--python <path>',
      'python with torch for the baselines (default $TORCHFOCAL_PYTHON or /usr/bin/python3)',
    )
    .action(async (flags: BenchFlags) => {
      const report = await runBench({
        threads: flags.threads,
        repeats: flags.repeats,
        quick: flags.quick,
        python: flags.python,
        device: flags.device,
        log: (line) => process.stderr.write(line + '\n'),
      });
      printBenchReport(report, flags.json ?? false);
    });
}

/** Prints the report on stdout: one JSON object, or the readable table. */
function printBenchReport(report: BenchReport, json: boolean): void {
  if (json) printJson(report);
  else process.stdout.write(formatBenchReport(report).join('\n') + '\n');
}
