// The command line, parsed by commander (chosen because it is the most used and best kept Node
// parser with per-command options, generated --help and "did you mean" suggestions): every
// command's own options, Terraform's single-dash long flags (`-auto-approve`, `-out=FILE`,
// `-refresh=false`) accepted as aliases, and an unknown flag — or one of another command — a
// one-line error naming it and the closest valid one.
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_STATE_DIR, DEFAULT_URI, type CommandLockOptions } from '../../lib/index.js';
import { Ui } from './ui.js';

export interface Ctx {
  ui: Ui;
  stateDir: string;
  /** where the state is: the state dir, or a PostgreSQL URL (--state) with the files in the state dir */
  where: { stateDir: string; state?: string };
  uri: string;
  verbose: boolean;
  /** the command line, for lock holders' notes */
  line: string;
  /** how to take the state's command lock: -lock-timeout waits for it */
  lock: (shared?: boolean) => CommandLockOptions;
}

/** Options every command takes (given before or after the command's name). */
export function globalOptions(program: Command): Command {
  return program
    .option('--state-dir <dir>', 'state and VM files', DEFAULT_STATE_DIR)
    .addOption(
      new Option(
        '--state <url>',
        'keep the state in PostgreSQL (postgresql://user@host/db); VM files stay in --state-dir',
      ).env('VIRTWIRE_STATE'),
    )
    .option('--uri <uri>', "libvirt URI for this machine (a spec file's hosts: name their own)", DEFAULT_URI)
    .option('-q, --quiet', 'only errors and results')
    .option('-v, --verbose', 'more detail, and the causes of errors')
    .option('--no-color', 'no colour (also: NO_COLOR in the environment)');
}

/** -lock-timeout, for the commands that take the state's lock. */
export const lockTimeout = (cmd: Command): Command =>
  cmd.option('--lock-timeout <duration>', 'wait this long for the state lock (e.g. 30s, 5m)', parseDuration);

export function ctxOf(cmd: Command): Ctx {
  const o = cmd.optsWithGlobals<{
    stateDir: string;
    state?: string;
    uri: string;
    quiet?: boolean;
    verbose?: boolean;
    color?: boolean;
    json?: boolean;
    lockTimeout?: number;
  }>();
  const ui = new Ui({
    ...(o.quiet ? { quiet: true } : {}),
    color: o.color !== false,
    ...(o.json ? { json: true } : {}),
  });
  return {
    ui,
    stateDir: o.stateDir,
    where: { stateDir: o.stateDir, ...(o.state ? { state: o.state } : {}) },
    uri: o.uri,
    verbose: o.verbose === true,
    line: ['virtwire', ...process.argv.slice(2)].join(' '),
    lock: (shared = false) => ({
      ...(shared ? { shared } : {}),
      ...(o.lockTimeout ? { timeoutMs: o.lockTimeout } : {}),
      // Terraform's "Acquiring state lock": one line when -lock-timeout makes us wait
      onWait: (h) =>
        ui.warn(
          `the state is locked${h ? ` by process ${h.pid} running "${h.command}"` : ''}; waiting up to ${o.lockTimeout! / 1000}s`,
        ),
    }),
  };
}

/** A spec file's `state:` says where the state is, unless --state or VIRTWIRE_STATE already did. */
export function adoptSpecState(ctx: Ctx, spec: { state?: string } | undefined): void {
  if (spec?.state && ctx.where.state === undefined) ctx.where.state = spec.state;
}

/** A Terraform duration: 30s, 5m, 1h30m, 500ms (Go's format). */
function parseDuration(text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text)
    throw new InvalidArgumentError(`"${text}" is not a duration (e.g. 30s, 5m, 1h30m)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as keyof typeof unit], 0);
}

export const parseBool = (text: string): boolean => {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new InvalidArgumentError(`"${text}" is not true or false`);
};

export const parseCount = (text: string): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`"${text}" is not a whole number of at least 1`);
  return n;
};

export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** A command's long option names, its parents' (global) ones included. */
function longOptions(cmd: Command): Set<string> {
  const names = new Set<string>();
  for (let c: Command | null = cmd; c; c = c.parent)
    for (const o of c.options as Option[]) if (o.long) names.add(o.long);
  return names;
}

/** Every command below `root` with its path ("plan", "state rm"). */
function allCommands(root: Command): [string, Command][] {
  const out: [string, Command][] = [];
  const walk = (cmd: Command, path: string[]) => {
    for (const sub of cmd.commands) {
      out.push([[...path, sub.name()].join(' '), sub]);
      walk(sub, [...path, sub.name()]);
    }
  };
  walk(root, []);
  return out;
}

const pathOf = (cmd: Command): string[] => (cmd.parent ? [...pathOf(cmd.parent), cmd.name()] : []);

/** The command an argv names (`state rm` for `state rm web`). */
function commandOf(program: Command, args: string[]): Command {
  let cmd = program;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith('-')) {
      // an option's value (`--state-dir /x`) is not a command name: skip it
      const name = a.replace(/^-+/, '');
      let takesValue = false;
      for (let c: Command | null = cmd; c; c = c.parent)
        for (const o of c.options as Option[])
          if ((o.long === `--${name}` || o.short === `-${name}`) && (o.required || o.optional)) takesValue = true;
      if (takesValue) i++;
      continue;
    }
    const sub = cmd.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) break;
    cmd = sub;
  }
  return cmd;
}

/**
 * Terraform spells long flags with one dash: `-auto-approve`, `-out=plan.bin`, `-refresh=false`.
 * Each such token that names a long option of its command becomes the double-dash form; short
 * flags (-f, -q) and anything else are left for commander to judge.
 */
export function terraformFlags(program: Command, args: string[]): string[] {
  const known = longOptions(commandOf(program, args));
  let afterDashes = false;
  return args.map((a) => {
    if (a === '--') afterDashes = true;
    const m = /^-([a-z][a-z-]+)(=.*)?$/.exec(a);
    if (afterDashes || !m || !known.has(`--${m[1]}`)) return a;
    return `--${m[1]}${m[2] ?? ''}`;
  });
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  }
  return d[a.length]![b.length]!;
}

/** The one line an unknown or misplaced flag of `cmd` gets: the flag, the command, the closest valid one. */
export function unknownFlag(cmd: Command, flag: string): string {
  let root = cmd;
  while (root.parent) root = root.parent;
  const path = pathOf(cmd);
  const mine = [...longOptions(cmd)];
  const bare = flag.replace(/=.*$/, '').replace(/^-+/, '');
  const near = closest(bare, mine, (o) => o.replace(/^--/, ''));
  const elsewhere = allCommands(root)
    .filter(([, c]) => c !== cmd && c.options.some((o) => o.long === `--${bare}`))
    .map(([p]) => p);
  const where = ['virtwire', ...path].join(' ');
  const hint = elsewhere.length
    ? ` (it is an option of ${elsewhere.map((c) => `virtwire ${c}`).join(', ')})`
    : near
      ? ` (did you mean ${near}?)`
      : ` (see ${where} --help)`;
  return `unknown flag ${flag} for ${where}${hint}`;
}

/** The one line an unknown command under `cmd` gets, with the closest command. */
export function unknownCommand(cmd: Command, name: string): string {
  const near = closest(
    name,
    cmd.commands.map((c) => c.name()),
    (c) => c,
  );
  const where = ['virtwire', ...pathOf(cmd)].join(' ');
  return `unknown command '${name}' for ${where}${near ? ` (did you mean ${near}?)` : ` (see ${where} --help)`}`;
}

/** The candidate nearest `word` by edit distance, if near enough to be what was meant. */
function closest(word: string, candidates: string[], key: (c: string) => string): string | undefined {
  const best = candidates.map((c) => [c, distance(key(c), word)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= Math.max(2, word.length / 3) ? best[0] : undefined;
}
