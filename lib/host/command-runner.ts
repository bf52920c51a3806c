// Every host command virtwire runs goes through a CommandRunner: argv arrays (never a shell),
// optional stdin for batch modes (`ip -batch -`, `nft -f -`, `tc -batch -`), and an optional
// network namespace. Tests swap it for a recording runner.
import { execa } from 'execa';
import { HostCommandError } from '../errors/index.js';

export interface RunOptions {
  /** fed to the command's stdin (batch input) */
  input?: string;
  /** names the step in errors, e.g. "links: create bridge vwbacme-1a2b3c" */
  step?: string;
  /** resolve with a non-zero exit code instead of throwing */
  allowFailure?: boolean;
  /** stdout exactly as written (file contents); default: the final newline is stripped */
  keepFinalNewline?: boolean;
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

/** Runs commands for real with execa, inside `netns` when given (via `ip netns exec`). */
export class ExecaRunner implements CommandRunner {
  constructor(readonly netns?: string) {}

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const full = this.netns ? ['ip', 'netns', 'exec', this.netns, ...argv] : [...argv];
    const [file, ...args] = full;
    const result = await execa(file!, args, { input: options.input ?? '', reject: false, stripFinalNewline: !options.keepFinalNewline });
    if (result.failed && result.exitCode === undefined) {
      throw new HostCommandError({ argv: full, exitCode: undefined, stderr: String(result.stderr || result.message), step: options.step }, { cause: result });
    }
    const out = { stdout: String(result.stdout), stderr: String(result.stderr), exitCode: result.exitCode ?? 0 };
    if (out.exitCode !== 0 && !options.allowFailure) {
      throw new HostCommandError({ argv: full, exitCode: out.exitCode, stderr: out.stderr, step: options.step });
    }
    return out;
  }
}

// Batch input is one command per line, split on whitespace by ip/tc/bridge. Every token is a
// validated name, address or number; this refuses anything that could split or comment a line.
const UNSAFE_TOKEN = /[\s"'\\#;]/;

export function batchLine(tokens: readonly (string | number)[]): string {
  for (const t of tokens) {
    const s = String(t);
    if (s === '' || UNSAFE_TOKEN.test(s)) throw new Error(`refusing unsafe batch token ${JSON.stringify(s)}`);
  }
  return tokens.join(' ');
}
