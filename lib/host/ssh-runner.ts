// A CommandRunner for a remote host: the system `ssh` with a control socket (one TCP/SSH
// connection reused by every command), batch input on stdin. ssh hands the remote side one
// command string for its shell, so every argv element is quoted for a POSIX shell here — the
// remote shell only ever splits the words back; nothing is interpolated.
import { lstatSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { VirtwireError } from '../errors/index.js';
import { spawnChecked, type CommandRunner, type RunOptions, type RunResult } from './command-runner.js';
import type { SshTarget } from '../../types/host.js';

export type { SshTarget };

/** 'it'\''s' — single quotes, with embedded ones closed, escaped and reopened. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The default control directory: per user, under the OS temp dir. */
const defaultControlDir = () => join(tmpdir(), `virtwire-ssh-${process.getuid?.() ?? 0}`);

/**
 * A control socket gives whoever can reach it the SSH session to the host: its directory must be
 * the caller's own, mode 0700, and not a symlink — checked before every command (a directory
 * another user made or loosened in the shared temp dir is refused, never used).
 */
export function checkControlDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.() ?? 0;
  const problem = st.isSymbolicLink()
    ? 'is a symbolic link'
    : !st.isDirectory()
      ? 'is not a directory'
      : st.uid !== uid
        ? `is owned by uid ${st.uid}, not ${uid}`
        : (st.mode & 0o077) !== 0
          ? `has mode ${(st.mode & 0o777).toString(8)}, not 700`
          : undefined;
  if (problem) throw new VirtwireError('UNSAFE_VALUE', `SSH control directory ${dir} ${problem}: refusing to use it`);
}

/**
 * A known_hosts file is where host keys are checked: one that is a device (`/dev/null`), a
 * symlink (to one) or anything but a regular file would let any key through, silently. It may
 * not exist yet (accept-new writes it).
 */
export function checkKnownHostsFile(file: string): void {
  let st;
  try {
    st = lstatSync(file);
  } catch {
    return;
  }
  const problem = st.isSymbolicLink() ? 'is a symbolic link' : !st.isFile() ? 'is not a regular file' : undefined;
  if (problem)
    throw new VirtwireError('UNSAFE_VALUE', `known_hosts ${file} ${problem}: host keys would not be checked`);
}

export class SshRunner implements CommandRunner {
  private readonly options: string[];
  private readonly controlDir: string;

  constructor(
    private readonly target: SshTarget,
    readonly netns?: string,
  ) {
    this.controlDir = target.controlDir ?? defaultControlDir();
    checkControlDir(this.controlDir);
    if (target.knownHostsFile) checkKnownHostsFile(target.knownHostsFile);
    const known = target.knownHostsFile ? ['-o', `UserKnownHostsFile=${target.knownHostsFile}`] : [];
    this.options = [
      '-T',
      '-o',
      'BatchMode=yes',
      '-o',
      'LogLevel=ERROR',
      '-o',
      'ControlMaster=auto',
      '-o',
      `ControlPath=${join(this.controlDir, '%C')}`,
      '-o',
      'ControlPersist=60',
      '-o',
      `StrictHostKeyChecking=${target.hostKeyPolicy === 'accept-new' ? 'accept-new' : 'yes'}`,
      ...known,
      ...(target.identityFile ? ['-i', target.identityFile] : []),
      ...(target.port ? ['-p', String(target.port)] : []),
    ];
  }

  /** The same host, commands run inside one of its network namespaces. */
  inNetns(netns: string): SshRunner {
    return new SshRunner(this.target, netns);
  }

  /** Ends the shared connection (ControlPersist would keep it ~60 s after the last command). */
  async close(): Promise<void> {
    await spawnChecked(
      ['ssh', ...this.options, '-O', 'exit', this.target.destination],
      ['ssh', '-O', 'exit', this.target.destination],
      { allowFailure: true },
      () => false,
    );
  }

  private queue: Promise<unknown> = Promise.resolve();

  /**
   * One command at a time per host: sessions multiplexed concurrently over one control
   * connection to a small dropbear have failed now and then with ssh's own exit code 255.
   */
  run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const next = this.queue.then(() => this.runNow(argv, options));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async runNow(argv: readonly string[], options: RunOptions): Promise<RunResult> {
    checkControlDir(this.controlDir);
    const remote = this.netns ? ['ip', 'netns', 'exec', this.netns, ...argv] : [...argv];
    const full = ['ssh', ...this.options, this.target.destination, '--', remote.map(shellQuote).join(' ')];
    // ssh's own failures (unreachable, refused key) exit 255
    return spawnChecked(full, [this.target.destination, ...remote], options, (code) => code === 255);
  }
}
