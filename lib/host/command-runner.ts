// Every host command virtwire runs goes through a CommandRunner: argv arrays (never a shell),
// optional stdin for batch modes (`ip -batch -`, `nft -f -`, `tc -batch -`), and an optional
// network namespace. Tests swap it for a recording runner.
import { HostCommandError, VirtwireError } from '../errors/index.js';
import { runToEnd } from './spawn.js';

export interface RunOptions {
  /** fed to the command's stdin (batch input) */
  input?: string;
  /** names the step in errors, e.g. "links: create bridge vwbacme-1a2b3c" */
  step?: string;
  /** resolve with a non-zero exit code instead of throwing */
  allowFailure?: boolean;
  /** stdout exactly as written (file contents); default: the final newline is stripped */
  keepFinalNewline?: boolean;
  /** the working directory (local commands) */
  cwd?: string;
  /** write stdout to this file instead of returning it (local commands) */
  stdoutFile?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface CommandRunner {
  /** the network namespace commands run in (undefined: the runner's own) */
  readonly netns?: string | undefined;
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
}

/** Runs commands for real (spawn.ts), inside `netns` when given (via `ip netns exec`). */
export class LocalRunner implements CommandRunner {
  constructor(readonly netns?: string) {}

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const full = this.netns ? ['ip', 'netns', 'exec', this.netns, ...argv] : [...argv];
    return spawnChecked(full, full, options);
  }
}

/**
 * The one place a host command is spawned and judged (every runner ends here): argv without a
 * shell, `input` on stdin; a command that could not run, or exits non-zero without
 * `allowFailure`, is a HostCommandError naming `shown` (what the user would recognise) and, for
 * a batch, the input line the tool names. `unreachable(code)` marks exit codes that belong to a
 * transport (ssh's 255), never to the command.
 */
export async function spawnChecked(
  argv: readonly string[],
  shown: readonly string[],
  options: RunOptions,
  unreachable = (_code: number) => false,
): Promise<RunResult> {
  const r = await runToEnd(argv, {
    ...(options.input !== undefined ? { input: options.input } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.stdoutFile ? { stdoutFile: options.stdoutFile } : {}),
  });
  if (r.exitCode === undefined || unreachable(r.exitCode)) {
    throw new HostCommandError({
      argv: shown,
      exitCode: r.exitCode,
      stderr: [r.stderr.trim(), r.reason].filter(Boolean).join(' — '),
      step: options.step,
    });
  }
  const strip = (text: string) => (options.keepFinalNewline ? text : text.replace(/\r?\n$/, ''));
  const out = { stdout: strip(r.stdout), stderr: strip(r.stderr), exitCode: r.exitCode };
  if (out.exitCode !== 0 && !options.allowFailure) {
    const line = failedBatchLine(out.stderr, options.input);
    throw new HostCommandError({
      argv: shown,
      exitCode: out.exitCode,
      stderr: out.stderr,
      step: options.step,
      ...(line ? { line } : {}),
    });
  }
  return out;
}

/**
 * The batch input line a failing `ip`/`tc`/`bridge -batch -` ("Command failed -:5") or
 * `nft -f -` ("/dev/stdin:5:3-9: Error: …") names, with the device it acts on.
 */
export function failedBatchLine(
  stderr: string,
  input: string | undefined,
): { number: number; text: string; device?: string } | undefined {
  if (!input) return undefined;
  const m = /Command failed -:(\d+)/.exec(stderr) ?? /^\/dev\/stdin:(\d+):/m.exec(stderr);
  const number = m ? Number(m[1]) : NaN;
  const text = input.split('\n')[number - 1];
  if (text === undefined) return undefined;
  const tokens = text.trim().split(/\s+/);
  // `link add NAME … dev UPLINK` acts on NAME; otherwise `… dev NAME …` (`link set dev`, `tuntap add dev`, tc)
  const after = (word: string) => (tokens.includes(word) ? tokens[tokens.indexOf(word) + 1] : undefined);
  const named =
    tokens[0] === 'link' && ['add', 'del', 'set'].includes(tokens[1] ?? '') && tokens[2] !== 'dev'
      ? tokens[2]
      : undefined;
  const device = named ?? after('dev');
  return { number, text: text.trim(), ...(device ? { device } : {}) };
}

// Batch input is one command per line, split on whitespace by ip/tc/bridge. Every token is a
// validated name, address or number; this refuses anything that could split or comment a line.
const UNSAFE_TOKEN = /[\s"'\\#;]/;

/**
 * Runs `lines` (made with batchLine) as one `<tool> -batch -` process (`argv`: the tool and its
 * options before `-batch`); nothing when there are none.
 */
export async function runBatch(
  runner: CommandRunner,
  argv: string[],
  lines: readonly string[],
  options: Omit<RunOptions, 'input'> = {},
): Promise<void> {
  if (lines.length > 0) await runner.run([...argv, '-batch', '-'], { ...options, input: lines.join('\n') + '\n' });
}

export function batchLine(tokens: readonly (string | number)[]): string {
  for (const t of tokens) {
    const s = String(t);
    if (s === '' || UNSAFE_TOKEN.test(s))
      throw new VirtwireError('UNSAFE_VALUE', `refusing unsafe batch token ${JSON.stringify(s)}`);
  }
  return tokens.join(' ');
}
