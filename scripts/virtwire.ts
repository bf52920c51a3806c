#!/usr/bin/env node
// The virtwire CLI, Terraform-style, over virtwire's public API (lib/index.ts). This file declares
// the commands and their options and maps every outcome to an exit code:
//   0 ok · 1 error · 2 changes present (plan -detailed-exitcode) · 3 not formatted (fmt -check)
//   130 a second Ctrl-C
// An error is one line (a spec's problems one line each); its stack and cause only with --verbose.
import { Command, CommanderError, Option } from 'commander';
import { isVirtwireError, Libvirt, SpecError } from '../lib/index.js';
import {
  collect,
  ctxOf,
  globalOptions,
  lockTimeout,
  parseBool,
  parseCount,
  terraformFlags,
  unknownFlag,
  unknownCommand,
} from './cli/program.js';
import { applyCommand, destroyCommand, planCommand, type ApplyFlags } from './cli/run-plan.js';
import {
  consoleCommand,
  forceUnlockCommand,
  importCommand,
  outputCommand,
  refreshCommand,
  showCommand,
  stateList,
  stateMv,
  stateRm,
  stateShow,
  stateMigrate,
} from './cli/run-state.js';
import { cacheList, cachePrune } from './cli/run-cache.js';
import { fmtCommand, validateCommand } from './cli/run-files.js';
import { graphCommand, type GraphFlags } from './cli/run-graph.js';
import { version } from './cli/formats.js';

/** Commander's command, with an unknown flag reported as one line naming the closest valid one. */
class VwCommand extends Command {
  override createCommand(name?: string): VwCommand {
    return new VwCommand(name);
  }

  unknownOption(flag: string): never {
    throw new CommanderError(1, 'commander.unknownOption', unknownFlag(this, flag));
  }

  unknownCommand(): never {
    throw new CommanderError(1, 'commander.unknownCommand', unknownCommand(this, String(this.args[0])));
  }
}

/** The exit code of the command that ran (commander's parse returns the program, not the action's result). */
let exitCode = 0;
const exits =
  <A extends unknown[]>(fn: (...args: A) => number | Promise<number>) =>
  async (...args: A): Promise<void> => {
    exitCode = await fn(...args);
  };

const file = () => new Option('-f, --file <file>', 'the spec file (YAML or JSON)');
const json = (what: string) => new Option('--json', what);
const targeting = (cmd: Command) =>
  cmd
    .option('--target <name>', 'only this VM or tenant network and what it needs (repeatable)', collect)
    .option('--replace <name>', 'replace this VM even if unchanged (repeatable)', collect)
    .addOption(
      new Option('--refresh <bool>', 'false: plan from the state alone, without asking the hosts').argParser(parseBool),
    );

function build(): Command {
  const program = new VwCommand('virtwire')
    .description("Tenant networks and VMs on this host (or on a spec file's hosts:), Terraform-style")
    .version(version(), '--version', 'print the version')
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .showHelpAfterError(false)
    .addHelpText(
      'after',
      `
Terraform's single-dash spellings work too: -auto-approve, -out=plan.json, -refresh=false, -target=web.
Exit codes: 0 ok, 1 error, 2 changes present (plan -detailed-exitcode), 3 not formatted (fmt -check).`,
    );
  globalOptions(program);

  lockTimeout(
    targeting(
      program
        .command('plan')
        .description('show what apply would change; -out saves it for apply')
        .addOption(file())
        .addOption(json('the plan as JSON (format_version 1.0, secrets redacted)'))
        .option('--detailed-exitcode', 'exit 2 when there are changes')
        .option('--out <planfile>', 'save the plan for `virtwire apply PLANFILE`'),
    ),
  ).action(exits((flags, cmd: Command) => planCommand(ctxOf(cmd), flags)));

  lockTimeout(
    targeting(
      program
        .command('apply')
        .description('make the hosts match the spec file (or do exactly a saved plan)')
        .argument('[planfile]', 'a plan saved by plan -out: applied without asking, refused when stale')
        .addOption(file())
        .option('--auto-approve', 'do not ask for confirmation')
        .option('--dry-run', 'print the host commands and libvirt calls, change nothing')
        .addOption(json('one JSON object per event, the last one the outcome (needs -auto-approve or a plan file)'))
        .option('--parallelism <n>', 'at most this many VM creates at once (default 10)', parseCount),
    ),
  ).action(
    exits((planFile: string | undefined, flags: ApplyFlags, cmd: Command) => applyCommand(ctxOf(cmd), flags, planFile)),
  );

  lockTimeout(
    program
      .command('destroy')
      .description("remove every VM of the state and virtwire's networks, rules and files")
      .addOption(file())
      .option('--auto-approve', 'do not ask for confirmation')
      .addOption(json('one JSON object per event')),
  ).action(exits((flags: ApplyFlags, cmd: Command) => destroyCommand(ctxOf(cmd), flags)));

  program
    .command('validate')
    .description('check a spec file alone: no host, no state, no libvirt')
    .addOption(file())
    .addOption(json('diagnostics as JSON'))
    .action(exits((flags, cmd: Command) => validateCommand(ctxOf(cmd), flags)));

  program
    .command('fmt')
    .description('rewrite spec files in canonical YAML')
    .argument('<files...>', 'the spec files')
    .option('--check', 'change nothing; exit 3 when a file is not formatted')
    .option('--diff', 'print the changes as a unified diff')
    .addOption(new Option('--write <bool>', 'false: do not write the files').argParser(parseBool))
    .action(exits((files: string[], flags, cmd: Command) => fmtCommand(ctxOf(cmd), files, flags)));

  program
    .command('graph')
    .description('draw the network: hosts, tenant bridges, uplinks, NAT, VMs, security-group rules')
    .addOption(file())
    .addOption(
      new Option('--format <format>', 'dot (Graphviz text), svg (rendered by dot) or mermaid')
        .choices(['dot', 'svg', 'mermaid'])
        .default('dot'),
    )
    .option('--live', 'what the state records and the hosts hold now (asks every host), drift marked')
    .option('-o, --out <file>', 'write it to this file (default: standard output)')
    .action(exits((flags: GraphFlags, cmd: Command) => graphCommand(ctxOf(cmd), flags)));

  program
    .command('show')
    .description("the state's VMs with libvirt's live state, or a saved plan")
    .argument('[planfile]', 'a plan saved by plan -out')
    .addOption(json('as JSON (format_version 1.0)'))
    .action(exits((planFile: string | undefined, flags, cmd: Command) => showCommand(ctxOf(cmd), planFile, flags)));

  program
    .command('output')
    .description("the VMs' addresses: every VM, or one VM's first IP")
    .argument('[name]', 'one VM')
    .addOption(json('as JSON'))
    .action(exits((name: string | undefined, flags, cmd: Command) => outputCommand(ctxOf(cmd), name, flags)));

  const state = program.command('state').description('read and edit the state (never the hosts)');
  state
    .command('list')
    .description('every VM in the state')
    .action(exits((_flags, cmd: Command) => stateList(ctxOf(cmd))));
  state
    .command('show')
    .description("one VM's record (secrets redacted)")
    .argument('<name>', 'the VM (name or vm.name)')
    .action(exits((name: string, _flags, cmd: Command) => stateShow(ctxOf(cmd), name)));
  lockTimeout(
    state
      .command('rm')
      .description('forget VMs: their domains, disks and taps stay on the host')
      .argument('<names...>', 'the VMs'),
  ).action(exits((names: string[], _flags, cmd: Command) => stateRm(ctxOf(cmd), names)));
  lockTimeout(
    state
      .command('mv')
      .description('rename a shut-off VM: record, domain, files and DNS name')
      .argument('<from>')
      .argument('<to>'),
  ).action(exits((from: string, to: string, _flags, cmd: Command) => stateMv(ctxOf(cmd), from, to)));
  lockTimeout(
    state
      .command('migrate')
      .description(
        'move the state (records, groups, allocations) to PostgreSQL or back to the state dir; no host changes',
      )
      .requiredOption('--to <url|dir>', 'a PostgreSQL URL, or the state dir (to leave PostgreSQL)'),
  ).action(exits((flags: { to: string }, cmd: Command) => stateMigrate(ctxOf(cmd), flags.to)));

  lockTimeout(
    program
      .command('refresh')
      .description('drop the records of VMs whose domain is gone; change nothing on a host')
      .addOption(json('the result as JSON')),
  ).action(exits((flags, cmd: Command) => refreshCommand(ctxOf(cmd), flags)));

  const cache = program
    .command('cache')
    .description("this host's cache of extracted kernels and uncompressed initrds (fast boot)");
  cache
    .command('list')
    .description('each cached kernel or initrd: size, last use, the VMs that boot it')
    .addOption(json('as JSON (format_version 1.0)'))
    .action(exits((flags, cmd: Command) => cacheList(ctxOf(cmd), flags)));
  cache
    .command('prune')
    .description('evict kernels and initrds no VM boots, least recently used first')
    .option('--max-mib <n>', 'keep up to this much (default 0: evict every one no VM boots)')
    .option('--include-recent', 'also those used in the last ten minutes (no create is running)')
    .addOption(json('what was evicted, as JSON'))
    .action(exits((flags, cmd: Command) => cachePrune(ctxOf(cmd), flags)));

  program
    .command('force-unlock')
    .description("release the state's lock (a dir's is flock(2), never stale; a database's: its session is ended)")
    .argument('<lock-id>', 'the ID the LOCKED error names')
    .action(exits((id: string, _flags, cmd: Command) => forceUnlockCommand(ctxOf(cmd), id)));

  lockTimeout(
    program
      .command('import')
      .description('adopt a shut-off libvirt domain whose NICs are on tenant bridges')
      .argument('<domain>')
      .option('--as <name>', 'the VM name to give it'),
  ).action(
    exits((domain: string, flags: { as?: string }, cmd: Command) => importCommand(ctxOf(cmd), domain, flags.as)),
  );

  program
    .command('console')
    .description("a VM's serial console (Ctrl-] leaves)")
    .argument('<name>')
    .action(exits((name: string, _flags, cmd: Command) => consoleCommand(ctxOf(cmd), name)));

  return program;
}

/** One line on stderr for any failure; the cause chain and stack only with --verbose. */
function report(e: unknown, verbose: boolean): number {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help')
      return e.exitCode;
    console.error(`Error: ${e.message.replace(/^error: /, '')}`);
    return 1;
  }
  const message = e instanceof Error ? e.message : String(e);
  console.error(`Error: ${message}`);
  if (verbose) {
    if (e instanceof Error && e.stack) console.error(e.stack);
    for (let c = (e as { cause?: unknown }).cause; c; c = (c as { cause?: unknown }).cause)
      console.error('Caused by:', c);
  } else if (isVirtwireError(e) && !(e instanceof SpecError) && e.cause) {
    console.error('(run with --verbose for the cause)');
  }
  return 1;
}

const program = build();
const args = terraformFlags(program, process.argv.slice(2));
const verbose = args.includes('-v') || args.includes('--verbose');
try {
  if (args.length === 0) {
    console.error(program.helpInformation());
    process.exitCode = 1;
  } else {
    await program.parseAsync(args, { from: 'user' });
    process.exitCode = exitCode;
  }
} catch (e) {
  process.exitCode = report(e, verbose);
} finally {
  await Libvirt.shutdown();
}
