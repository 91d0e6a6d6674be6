#!/usr/bin/env node
// The torchfocal command line (contract: DESIGN.md). Errors: one line on stderr, exit 1.
import { Command, CommanderError } from 'commander';
import { ExitError } from './output';
import { trainCommand } from './train';
import { evalCommand } from './eval';
import { predictCommand } from './predict';
import { experimentCommand } from './experiment';
import { benchCommand } from './bench';
import { infoCommand } from './info';
import { packageVersion } from '../package';

export async function main(args: string[]): Promise<number> {
  // --verbose may stand anywhere, before or after the command name.
  const verbose = args.includes('--verbose');
  const argv = args.filter((a) => a !== '--verbose');
  const program = new Command('torchfocal')
    .description('train image classifiers on class-imbalanced data (LibTorch from Node.js)')
    .version(packageVersion(), '-V, --version', 'print the package version')
    .option('--verbose', 'print stack traces of errors')
    .showHelpAfterError('(run with --help for usage)')
    // options after a command name are that command's: `experiment starve --out` is starve's,
    // though `experiment` has an --out of its own (needs the whole chain positional)
    .enablePositionalOptions()
    .exitOverride();
  for (const cmd of [
    trainCommand(),
    evalCommand(),
    predictCommand(),
    experimentCommand(),
    benchCommand(),
    infoCommand(),
  ]) {
    cmd.exitOverride();
    program.addCommand(cmd);
  }
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already printed its one-line message (or the help/version text)
      return err.exitCode;
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`torchfocal: ${message.split('\n')[0]}\n`);
    if (verbose && err instanceof Error && err.stack) {
      process.stderr.write(err.stack + '\n');
    }
    return err instanceof ExitError ? err.exitCode : 1;
  }
}

if (require.main === module) {
  // A closed pipe (`torchfocal train --json | head -1`) is the reader's choice, not a crash.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
