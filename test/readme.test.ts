// README's command-line block and the CLI agree: each option it lists exists, and each option
// the CLI has is listed.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { addTrainingOptions } from '../ts/cli/train';
import { buildProgram } from '../ts/cli/main';
import { ROOT } from './helpers/cli';

/** The usage lines of README's "Command line" block, joined per command. */
function readmeUsage(): Map<string, string> {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const block = /## Command line\n+```\n([\s\S]*?)\n```/.exec(readme)?.[1];
  if (!block) throw new Error("README.md: no code block under '## Command line'");
  const usage = new Map<string, string>();
  let current = '';
  for (const line of block.split('\n')) {
    const head = /^torchfocal (\S+)(?: (starve|fetch))?/.exec(line);
    if (head) {
      // `experiment starve` and `experiment --config` are two usages of two commands; `data
      // fetch` is a subcommand's
      current = head[2] ? `${head[1]} ${head[2]}` : head[1];
      usage.set(current, (usage.get(current) ?? '') + line);
    } else if (current) {
      usage.set(current, usage.get(current) + line);
    }
  }
  return usage;
}

function command(program: Command, name: string): Command {
  let cmd = program;
  for (const part of name.split(' ')) {
    const next = cmd.commands.find((c) => c.name() === part);
    if (!next) throw new Error(`README lists 'torchfocal ${name}', which the CLI does not have`);
    cmd = next;
  }
  return cmd;
}

/** The options a usage text names; `[TRAINING OPTIONS]` stands for those every trainer shares. */
function flags(text: string): Set<string> {
  const named = text.match(/--[a-z][a-z0-9-]*/g) ?? [];
  const shared = text.includes('[TRAINING OPTIONS]')
    ? addTrainingOptions(new Command('x')).options.map((o) => o.long!)
    : [];
  return new Set([...named, ...shared]);
}

test("every option in README's command-line block is accepted by the CLI, and the reverse", (t) => {
  const program = buildProgram();
  const usage = readmeUsage();
  t.true(usage.size >= 8, [...usage.keys()].join(', '));
  const unknown: string[] = [];
  const undocumented: string[] = [];
  for (const [name, text] of usage) {
    const cmd = name === '--version' ? program : command(program, name);
    const known = new Set(cmd.options.map((o) => o.long));
    for (const flag of flags(text)) if (!known.has(flag)) unknown.push(`${name} ${flag}`);
    if (name === '--version') continue;
    for (const option of cmd.options) {
      if (!flags(text).has(option.long!)) undocumented.push(`${name} ${option.long}`);
    }
  }
  t.deepEqual(unknown, [], 'README lists options the CLI does not accept');
  t.deepEqual(undocumented, [], "the CLI has options README's block does not list");
  // every command of the CLI has its usage line
  const missing = program.commands
    .map((c) => c.name())
    .filter((n) => ![...usage.keys()].some((k) => k === n || k.startsWith(`${n} `)));
  t.deepEqual(missing, []);
});
