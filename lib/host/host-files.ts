// The files and processes of the host the plane works on. On this machine (in any network
// namespace: the filesystem and the pids are the same) they are node's fs and process.kill; on
// a remote host every operation is a command through that host's CommandRunner, argv only.
// Modes are explicit: secrets (a VM's records, seeds, disks) are written 0600 and never pass
// through a world-readable moment.
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  statSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { VirtwireError } from '../errors/index.js';
import type { CommandRunner } from './command-runner.js';

export interface DirOptions {
  /** the directory's mode (default 0755); parents made on the way keep 0755 */
  mode?: number;
  /** its group, by name (e.g. the group QEMU runs as, so it may traverse but nobody else) */
  group?: string;
}

export interface HostFiles {
  /** the file's text, or undefined when it does not exist */
  read(path: string): Promise<string | undefined>;
  exists(path: string): Promise<boolean>;
  /** where `path` really is (every symlink followed) and what it is there; undefined when nothing is */
  resolve(path: string): Promise<{ real: string; kind: 'file' | 'directory' | 'other' } | undefined>;
  /** replaces the file atomically (a temp file renamed over it) with `mode` (default 0644) */
  write(path: string, text: string, options?: { mode?: number }): Promise<void>;
  /** creates the directory (and its parents) and sets its mode and group, also when it exists */
  mkdir(path: string, options?: DirOptions): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  /** moves a file or directory (within one file system) */
  rename(from: string, to: string): Promise<void>;
  /** removes a file or a directory tree; nothing there is not an error */
  remove(path: string): Promise<void>;
  /** names in a directory (none when it does not exist) */
  list(dir: string): Promise<string[]>;
  /** the process's command line when it runs (a zombie does not), else undefined */
  process(pid: number): Promise<string[] | undefined>;
  signal(pid: number, signal: 'HUP' | 'TERM'): Promise<void>;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !existsSync(`/proc/${pid}/status`) || !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

const readLocal = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : undefined);

/** A group's id from /etc/group (this machine). */
function groupId(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  const line = (readLocal('/etc/group') ?? '').split('\n').find((l) => l.split(':')[0] === name);
  const gid = Number(line?.split(':')[2]);
  if (!line || !Number.isInteger(gid))
    throw new VirtwireError('NOT_FOUND', `group ${name} does not exist on this host`);
  return gid;
}

export class LocalFiles implements HostFiles {
  async read(path: string) {
    return readLocal(path);
  }
  async exists(path: string) {
    return existsSync(path);
  }
  async resolve(path: string) {
    try {
      const real = realpathSync(path);
      const st = statSync(real);
      return {
        real,
        kind: st.isFile() ? ('file' as const) : st.isDirectory() ? ('directory' as const) : ('other' as const),
      };
    } catch {
      return undefined;
    }
  }
  async write(path: string, text: string, options: { mode?: number } = {}) {
    const mode = options.mode ?? 0o644;
    rmSync(`${path}.tmp`, { force: true }); // a leftover keeps its old mode: writeFileSync would not change it
    writeFileSync(`${path}.tmp`, text, { mode });
    chmodSync(`${path}.tmp`, mode); // the umask may have narrowed it
    renameSync(`${path}.tmp`, path);
  }
  async mkdir(path: string, options: DirOptions = {}) {
    mkdirSync(path, { recursive: true, mode: 0o755 });
    if (options.group !== undefined) chownSync(path, 0, groupId(options.group));
    chmodSync(path, options.mode ?? 0o755);
  }
  async chmod(path: string, mode: number) {
    chmodSync(path, mode);
  }
  async rename(from: string, to: string) {
    renameSync(from, to);
  }
  async remove(path: string) {
    rmSync(path, { recursive: true, force: true });
  }
  async list(dir: string) {
    return existsSync(dir) ? readdirSync(dir) : [];
  }
  async process(pid: number) {
    if (!pidAlive(pid)) return undefined;
    return (readLocal(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean);
  }
  async signal(pid: number, signal: 'HUP' | 'TERM') {
    process.kill(pid, `SIG${signal}`);
  }
}

/** Paths reach these commands as single argv elements after `--`: never options, never split. */
export class RunnerFiles implements HostFiles {
  constructor(private readonly runner: CommandRunner) {}

  private ok(argv: string[]) {
    return this.runner.run(argv, { allowFailure: true, keepFinalNewline: true });
  }
  async read(path: string) {
    const r = await this.ok(['cat', '--', path]);
    return r.exitCode === 0 ? r.stdout : undefined;
  }
  async exists(path: string) {
    return (await this.ok(['test', '-e', path])).exitCode === 0;
  }
  async resolve(path: string) {
    const r = await this.ok(['realpath', '-e', '--', path]);
    if (r.exitCode !== 0) return undefined;
    const real = r.stdout.trim();
    const type = (await this.ok(['stat', '-c', '%F', '--', real])).stdout.trim();
    const kind = type.startsWith('regular')
      ? ('file' as const)
      : type === 'directory'
        ? ('directory' as const)
        : ('other' as const);
    return { real, kind };
  }
  async write(path: string, text: string, options: { mode?: number } = {}) {
    const step = `write ${path}`;
    const mode = (options.mode ?? 0o644).toString(8);
    // created empty with its mode first, then filled: the content is never more readable than
    // that (touch/chmod/dd: a busybox host has them too)
    await this.runner.run(['rm', '-f', '--', `${path}.tmp`], { step });
    await this.runner.run(['touch', '--', `${path}.tmp`], { step });
    await this.runner.run(['chmod', mode, '--', `${path}.tmp`], { step });
    await this.runner.run(['dd', `of=${path}.tmp`, 'conv=notrunc', 'status=none'], { input: text, step });
    await this.runner.run(['mv', '-f', '--', `${path}.tmp`, path], { step });
  }
  async mkdir(path: string, options: DirOptions = {}) {
    const step = `mkdir ${path}`;
    await this.runner.run(['mkdir', '-p', '--', path], { step });
    if (options.group !== undefined) await this.runner.run(['chgrp', '--', options.group, path], { step });
    await this.runner.run(['chmod', (options.mode ?? 0o755).toString(8), '--', path], { step });
  }
  async chmod(path: string, mode: number) {
    await this.runner.run(['chmod', mode.toString(8), '--', path], { step: `chmod ${path}` });
  }
  async rename(from: string, to: string) {
    await this.runner.run(['mv', '-T', '--', from, to], { step: `rename ${from}` });
  }
  async remove(path: string) {
    await this.runner.run(['rm', '-rf', '--', path], { step: `remove ${path}` });
  }
  async list(dir: string) {
    const r = await this.ok(['ls', '-1A', '--', dir]);
    return r.exitCode === 0 ? r.stdout.split('\n').filter(Boolean) : [];
  }
  async process(pid: number) {
    const status = await this.ok(['cat', '--', `/proc/${pid}/status`]);
    if (status.exitCode !== 0 || /^State:\s+Z/m.test(status.stdout)) return undefined;
    const cmdline = await this.ok(['cat', '--', `/proc/${pid}/cmdline`]);
    return cmdline.exitCode === 0 ? cmdline.stdout.split('\0').filter(Boolean) : undefined;
  }
  async signal(pid: number, signal: 'HUP' | 'TERM') {
    await this.runner.run(['kill', '-s', signal, String(pid)], { step: `signal ${pid}` });
  }
}
