// Starting a host command without fork(). Node (libuv 1.46) starts every child with fork(), which
// copies the parent's page tables before exec throws them away: the larger the Node process, the
// slower each spawn (libuv keeps fork on Linux: libuv#1715, libuv#3520). On this project's
// machines page-table work is expensive (a PVM guest): an `ip` spawned from a 200 MB process took
// ~21 ms through child_process and ~6.4 ms through glibc's posix_spawnp, which clones with
// CLONE_VM|CLONE_VFORK and copies nothing; four at once 83 ms against 22 (scripts/bench/spawn.ts).
// So commands start with posix_spawnp(3) through koffi, with stdio on pipes read by Node's own
// streams; a child's exit is collected with waitpid once they end. Where glibc's
// posix_spawn is not there (another libc) or VIRTWIRE_SPAWN=fork, execa spawns as before.
import { openSync } from 'node:fs';
import { Socket } from 'node:net';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import koffi from 'koffi';
import { execa } from 'execa';

export interface SpawnOptions {
  /** written to stdin, then closed (nothing: stdin is an empty pipe) */
  input?: string;
  cwd?: string;
  /** stdout goes to this file (created or truncated) instead of being collected */
  stdoutFile?: string;
}

export interface Finished {
  stdout: string;
  stderr: string;
  /** undefined when the command could not run or was killed; `reason` says which */
  exitCode: number | undefined;
  reason?: string;
}

interface Libc {
  spawnp: (...a: unknown[]) => number;
  actionsInit: (fa: Buffer) => number;
  actionsDestroy: (fa: Buffer) => number;
  dup2: (fa: Buffer, fd: number, to: number) => number;
  chdir: (fa: Buffer, dir: string) => number;
  pipe2: (fds: number[], flags: number) => number;
  close: (fd: number) => number;
  waitpid: (pid: number, status: number[], options: number) => number;
  /** the spawn attributes every child gets, made once (posix_spawn only reads them) */
  attr: Buffer;
}

// glibc's values on x86_64 and arm64 (O_CLOEXEC differs on alpha, parisc and sparc)
const O_CLOEXEC = 0o2000000;
const WNOHANG = 1;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
// posix_spawn_file_actions_t is 80 bytes, posix_spawnattr_t 336, sigset_t 128 on glibc: room to spare
const OPAQUE = 512;

let libc: Libc | null | undefined;

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  if (process.env.VIRTWIRE_SPAWN === 'fork' || process.platform !== 'linux') return (libc = null);
  try {
    const lib = koffi.load('libc.so.6');
    const f = (proto: string) => lib.func(proto) as (...a: any[]) => number;
    libc = {
      spawnp: f(
        'int posix_spawnp(_Out_ int *pid, const char *file, void *fa, void *attr, const char **argv, const char **envp)',
      ),
      actionsInit: f('int posix_spawn_file_actions_init(void *fa)'),
      actionsDestroy: f('int posix_spawn_file_actions_destroy(void *fa)'),
      dup2: f('int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)'),
      chdir: f('int posix_spawn_file_actions_addchdir_np(void *fa, const char *path)'),
      pipe2: f('int pipe2(_Out_ int *fds, int flags)'),
      close: f('int close(int fd)'),
      waitpid: f('int waitpid(int pid, _Out_ int *status, int options)'),
      attr: childAttributes(f),
    };
  } catch {
    libc = null; // not glibc: execa's fork
  }
  return libc;
}

/**
 * As libuv does for its children: every signal at its default (Node ignores SIGPIPE, and an exec
 * keeps what is ignored) and none blocked. (glibc's sigfillset leaves out its two internal
 * signals, 32 and 33, which its posix_spawn then ignores in the child: no program on glibc can
 * use them.)
 */
function childAttributes(f: (proto: string) => (...a: any[]) => number): Buffer {
  const attr = Buffer.alloc(OPAQUE);
  const all = Buffer.alloc(OPAQUE);
  const none = Buffer.alloc(OPAQUE);
  const calls = [
    f('int posix_spawnattr_init(void *attr)')(attr),
    f('int sigfillset(void *set)')(all),
    f('int sigemptyset(void *set)')(none),
    f('int posix_spawnattr_setsigdefault(void *attr, const void *set)')(attr, all),
    f('int posix_spawnattr_setsigmask(void *attr, const void *set)')(attr, none),
    f('int posix_spawnattr_setflags(void *attr, short flags)')(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK),
  ];
  if (calls.some((rc) => rc !== 0)) throw new Error('posix_spawnattr set-up failed');
  return attr;
}

/** How commands are started in this process: 'posix_spawn', or 'fork' (execa). */
export function spawnMethod(): 'posix_spawn' | 'fork' {
  return loadLibc() ? 'posix_spawn' : 'fork';
}

/**
 * Runs argv (no shell) to its end: its output, and its exit code or why there is none. `method`
 * (tests, the bench) picks the way; by default posix_spawn where there is one.
 */
export function runToEnd(
  argv: readonly string[],
  options: SpawnOptions = {},
  method: 'posix_spawn' | 'fork' = spawnMethod(),
): Promise<Finished> {
  const c = method === 'posix_spawn' ? loadLibc() : null;
  if (method === 'posix_spawn' && !c) throw new Error('posix_spawn is not available in this process');
  return c ? spawnToEnd(c, argv, options) : forkToEnd(argv, options);
}

async function forkToEnd(argv: readonly string[], options: SpawnOptions): Promise<Finished> {
  const [file, ...args] = argv;
  const r = await execa(file!, args, {
    input: options.input ?? '',
    reject: false,
    stripFinalNewline: false,
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.stdoutFile ? { stdout: { file: options.stdoutFile } } : {}),
  });
  const exited = r.exitCode !== undefined;
  return {
    stdout: options.stdoutFile ? '' : String(r.stdout ?? ''), // execa also keeps what it wrote
    stderr: String(r.stderr ?? ''),
    exitCode: r.exitCode,
    ...(exited ? {} : { reason: r.signal ? `killed by ${r.signal}` : r.message }),
  };
}

/**
 * The child's wait status, asked for once its output has ended. A process's descriptors close as
 * it exits, microseconds before it can be collected, so the first ask or the next usually has it;
 * a child that closed its output early and runs on is asked again after a growing pause (to
 * 100 ms). Node tells nothing of children it did not start (and jest's sandboxed `process` no
 * signals at all), so this asks rather than waits for SIGCHLD.
 */
async function exitOf(c: Libc, pid: number): Promise<number | undefined> {
  for (let pause = 0; ; pause = Math.min(Math.max(2 * pause, 1), 100)) {
    const status = [0];
    const r = c.waitpid(pid, status, WNOHANG);
    if (r === pid) return status[0];
    if (r === -1) return undefined; // collected by someone else: the status is lost
    await new Promise((resolve) => (pause ? setTimeout(resolve, pause) : setImmediate(resolve)));
  }
}

/** A close-on-exec pipe, its two ends recorded in `opened`. */
function pipe(c: Libc, opened: number[]): [number, number] {
  const fds = [-1, -1];
  if (c.pipe2(fds, O_CLOEXEC) !== 0) throw new Error('pipe2 failed: out of file descriptors?');
  opened.push(fds[0]!, fds[1]!);
  return [fds[0]!, fds[1]!];
}

/** The text read from `fd` until it closes; a read that fails is noted in `failures` (the child is still collected). */
function collect(fd: number, failures: string[]): Promise<string> {
  return new Promise((resolve) => {
    const s = new Socket({ fd, readable: true, writable: false });
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('error', (e) => failures.push(`reading its output: ${e.message}`)); // 'close' follows
    s.on('close', () => resolve(out));
  });
}

function feed(fd: number, input: string): Promise<void> {
  return new Promise((resolve) => {
    const s = new Socket({ fd, readable: false, writable: true });
    s.on('error', () => {}); // a command that does not read its stdin: EPIPE, as with execa
    s.on('close', () => resolve());
    s.end(input);
  });
}

const signalName = (n: number) => Object.entries(constants.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;

interface Started {
  pid: number;
  stdin: number;
  stdout: number | undefined;
  stderr: number;
}

/**
 * Starts the child with its stdio on new pipes (stdout on `stdoutFile` when given) and closes the
 * child's ends here: the parent's ends, or why it could not run. No descriptor is left behind
 * when it fails.
 */
function start(c: Libc, argv: readonly string[], options: SpawnOptions): Started | Finished {
  const opened: number[] = [];
  const handedOn = new Set<number>();
  const fa = Buffer.alloc(OPAQUE);
  let made = false;
  try {
    const [inRead, inWrite] = pipe(c, opened);
    const [errRead, errWrite] = pipe(c, opened);
    let outRead: number | undefined;
    let outWrite: number;
    if (options.stdoutFile) opened.push((outWrite = openSync(options.stdoutFile, 'w')));
    else [outRead, outWrite] = pipe(c, opened);

    const must = (rc: number, what: string) => {
      if (rc !== 0) throw new Error(`${what} failed (error ${rc})`);
    };
    must(c.actionsInit(fa), 'posix_spawn_file_actions_init');
    made = true;
    must(c.dup2(fa, inRead, 0), 'posix_spawn_file_actions_adddup2');
    must(c.dup2(fa, outWrite, 1), 'posix_spawn_file_actions_adddup2');
    must(c.dup2(fa, errWrite, 2), 'posix_spawn_file_actions_adddup2');
    if (options.cwd) must(c.chdir(fa, options.cwd), 'posix_spawn_file_actions_addchdir_np');
    // the child's environment is process.env; the executable is looked up on this process's PATH
    const env = Object.entries(process.env).map(([k, v]) => `${k}=${v}`);
    const pid = [0];
    const rc = c.spawnp(pid, argv[0], fa, c.attr, [...argv, null], [...env, null]);
    if (rc !== 0) {
      return { stdout: '', stderr: '', exitCode: undefined, reason: `spawn ${argv[0]} ${getSystemErrorName(-rc)}` };
    }
    for (const fd of [inWrite, errRead, ...(outRead === undefined ? [] : [outRead])]) handedOn.add(fd);
    return { pid: pid[0]!, stdin: inWrite, stdout: outRead, stderr: errRead };
  } finally {
    if (made) c.actionsDestroy(fa);
    for (const fd of opened) if (!handedOn.has(fd)) c.close(fd);
  }
}

async function spawnToEnd(c: Libc, argv: readonly string[], options: SpawnOptions): Promise<Finished> {
  let s: Started | Finished;
  try {
    s = start(c, argv, options);
  } catch (e) {
    return { stdout: '', stderr: '', exitCode: undefined, reason: e instanceof Error ? e.message : String(e) };
  }
  if (!('pid' in s)) return s;
  const failures: string[] = [];
  const [stdout, stderr] = await Promise.all([
    s.stdout === undefined ? Promise.resolve('') : collect(s.stdout, failures),
    collect(s.stderr, failures),
    feed(s.stdin, options.input ?? ''),
  ]);
  const status = await exitOf(c, s.pid);
  if (failures.length > 0) return { stdout, stderr, exitCode: undefined, reason: failures.join('; ') };
  if (status === undefined) return { stdout, stderr, exitCode: undefined, reason: 'its exit status was lost' };
  const signal = status & 0x7f;
  if (signal !== 0) return { stdout, stderr, exitCode: undefined, reason: `killed by ${signalName(signal)}` };
  return { stdout, stderr, exitCode: (status >> 8) & 0xff };
}
