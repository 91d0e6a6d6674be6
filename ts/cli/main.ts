#!/usr/bin/env node
// The torchfocal command line (contract: DESIGN.md). Errors: one line on stderr, exit 1 (2 for usage).
import { Command, CommanderError } from 'commander';
import { ExitError } from './output';
import { trainCommand } from './train';
import { evalCommand } from './eval';
import { predictCommand } from './predict';
import { exportCommand } from './export';
import { experimentCommand } from './experiment';
import { benchCommand } from './bench';
import { infoCommand } from './info';
import { dataCommand } from './data';
import { packageVersion } from '../package';
import { ERROR_CODES, hasErrorCode } from '../native';

/** The exit status of a usage error: a bad option, a missing argument, an unknown command. */
const USAGE_EXIT = 2;

/** The whole command tree, each command's usage errors printed as one `torchfocal:` line. */
export function buildProgram(): Command {
  const program = new Command('torchfocal')
    .description('train image classifiers on class-imbalanced data (LibTorch from Node.js)')
    .version(packageVersion(), '-V, --version', 'print the package version')
    .option('--verbose', 'print stack traces of errors')
    // options after a command name are that command's: `experiment starve --out` is starve's,
    // though `experiment` has an --out of its own (needs the whole chain positional)
    .enablePositionalOptions()
    .exitOverride();
  const commands = [
    trainCommand(),
    evalCommand(),
    predictCommand(),
    exportCommand(),
    experimentCommand(),
    benchCommand(),
    infoCommand(),
    dataCommand(),
  ];
  for (const cmd of [program, ...commands, ...commands.flatMap((c) => c.commands)]) {
    // A usage error is one line, `torchfocal: …`, like every other error (exit 2).
    cmd.exitOverride().configureOutput({
      outputError: (text, write) =>
        write(
          `torchfocal: ${text
            .replace(/^error: /, '')
            .trim()
            .replace(/\s*\n\s*/g, ' ')}\n`,
        ),
    });
  }
  for (const cmd of commands) program.addCommand(cmd);
  return program;
}

export async function main(args: string[]): Promise<number> {
  // --verbose may stand anywhere, before or after the command name.
  const verbose = args.includes('--verbose');
  const argv = args.filter((a) => a !== '--verbose');
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already printed its one-line message (or the help/version text)
      const usage = err.exitCode !== 0 && err.code !== 'commander.executeSubCommandAsync';
      return usage ? USAGE_EXIT : err.exitCode;
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`torchfocal: ${message.split('\n')[0]}\n`);
    if (verbose && err instanceof Error && err.stack) {
      process.stderr.write(err.stack + '\n');
    }
    if (err instanceof ExitError) return err.exitCode;
    return hasErrorCode(err, ERROR_CODES.invalidArgument) ? USAGE_EXIT : 1;
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
