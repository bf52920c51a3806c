// The files and processes of the host the plane works on. On this machine (in any network
// namespace: the filesystem and the pids are the same) they are node's fs and process.kill; on
// a remote host every operation is a command through that host's CommandRunner, argv only.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { CommandRunner } from './command-runner.js';

export interface HostFiles {
  /** the file's text, or undefined when it does not exist */
  read(path: string): Promise<string | undefined>;
  exists(path: string): Promise<boolean>;
  /** replaces the file atomically (a temp file renamed over it): readers never see half of it */
  write(path: string, text: string): Promise<void>;
  mkdir(path: string): Promise<void>;
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

export class LocalFiles implements HostFiles {
  async read(path: string) {
    return readLocal(path);
  }
  async exists(path: string) {
    return existsSync(path);
  }
  async write(path: string, text: string) {
    writeFileSync(`${path}.tmp`, text);
    renameSync(`${path}.tmp`, path);
  }
  async mkdir(path: string) {
    mkdirSync(path, { recursive: true, mode: 0o755 });
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
  async write(path: string, text: string) {
    await this.runner.run(['dd', `of=${path}.tmp`, 'status=none'], { input: text, step: `write ${path}` });
    await this.runner.run(['mv', '-f', '--', `${path}.tmp`, path], { step: `write ${path}` });
  }
  async mkdir(path: string) {
    await this.runner.run(['mkdir', '-p', '-m', '755', '--', path], { step: `mkdir ${path}` });
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
