// How virtwire starts host commands (lib/host/spawn.ts): posix_spawnp through koffi, and execa's
// fork where that is not available. Both ways run the same cases and must agree; the cases are
// the ones a hand-made spawner gets wrong — a descriptor left open (the output never ends), the
// parent's ignored SIGPIPE passed on, an exit taken from the pipes' end instead of the process,
// children of concurrent calls mixed up. Real processes, no root needed.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runToEnd, spawnMethod } from '../../lib/host/spawn.js';
import { LocalRunner } from '../../lib/host/command-runner.js';
import { isVirtwireError } from '../../lib/errors/index.js';

/** This process's descriptors past stdio without close-on-exec: none of them opened by virtwire. */
function inheritedFromOutside(): string[] {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
      return Number(fd) > 2 && (parseInt(flags, 8) & 0o2000000) === 0;
    } catch {
      return false; // gone meanwhile
    }
  });
}

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'vwspawn-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('on this glibc host commands are started with posix_spawn', () => {
  // a binding that failed to load would fall back to fork silently and every case below pass
  expect(spawnMethod()).toBe('posix_spawn');
});

describe.each(['posix_spawn', 'fork'] as const)('started with %s', (method) => {
  const run = (argv: string[], options = {}) => runToEnd(argv, options, method);

  test('stdin in, stdout and stderr out, the exit code', async () => {
    expect(await run(['sh', '-c', 'cat; echo oops >&2; exit 3'], { input: 'a\nb\n' })).toEqual({
      stdout: 'a\nb\n',
      stderr: 'oops\n',
      exitCode: 3,
    });
  });

  test('several megabytes through stdin and back', async () => {
    const big = 'virtwire\n'.repeat(600_000);
    const r = await run(['cat'], { input: big });
    expect(r.exitCode).toBe(0);
    expect(r.stdout.length).toBe(big.length);
  });

  test('a command that does not read its stdin still ends', async () => {
    expect((await run(['true'], { input: 'x'.repeat(4_000_000) })).exitCode).toBe(0);
  });

  test('the working directory, and stdout into a file', async () => {
    const file = join(dir, `${method}.out`);
    const r = await run(['pwd'], { cwd: dir, stdoutFile: file });
    expect(r).toMatchObject({ stdout: '', exitCode: 0 });
    expect(readFileSync(file, 'utf8')).toBe(`${dir}\n`);
  });

  test('the child holds its three stdio descriptors and nothing else of ours', async () => {
    // what this process was itself given without close-on-exec (a harness's pipe) every child
    // inherits; past those and its stdio, `ls` holds only the directory it reads
    const inherited = inheritedFromOutside();
    const r = await run(['ls', '/proc/self/fd']);
    const extra = r.stdout
      .trim()
      .split('\n')
      .filter((fd) => Number(fd) > 2 && !inherited.includes(fd));
    expect(extra).toHaveLength(1);
  });

  test('no signal ignored or blocked in the child (Node ignores SIGPIPE)', async () => {
    const r = await run(['grep', '-E', '^Sig(Ign|Blk):', '/proc/self/status']);
    const mask = (name: string) => BigInt('0x' + new RegExp(`${name}:\\s*([0-9a-f]+)`).exec(r.stdout)![1]);
    const standard = (1n << 31n) - 1n; // signals 1-31 (glibc keeps its internal 32 and 33 to itself)
    expect(mask('SigIgn') & standard).toBe(0n);
    expect(mask('SigBlk')).toBe(0n);
  });

  test("the exit code is the process's, also when it closes its output long before it ends", async () => {
    // the pipes end at once; the code exists only once the process has
    expect(await run(['sh', '-c', 'exec >&- 2>&-; sleep 0.3; exit 5'])).toMatchObject({ exitCode: 5 });
  });

  test('a command that is not there, and one killed by a signal', async () => {
    expect(await run(['vwspawn-no-such-command'])).toMatchObject({
      exitCode: undefined,
      reason: expect.stringContaining('ENOENT'),
    });
    expect(await run(['sh', '-c', 'kill -KILL $$'])).toMatchObject({
      exitCode: undefined,
      reason: 'killed by SIGKILL',
    });
  });

  test('fifty at once, each with its own output and exit code', async () => {
    const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => run(['sh', '-c', `echo ${i}; exit ${i % 7}`])));
    rs.forEach((r, i) => expect(r).toEqual({ stdout: `${i}\n`, stderr: '', exitCode: i % 7 }));
  });
});

test("the runner's errors name the command and why it could not run", async () => {
  const runner = new LocalRunner();
  const err = await runner.run(['vwspawn-no-such-command', '--flag'], { step: 'probe' }).catch((e: unknown) => e);
  expect(isVirtwireError(err) && err.code).toBe('HOST_COMMAND');
  expect(String((err as Error).message)).toMatch(/^probe: vwspawn-no-such-command --flag could not run: .*ENOENT/);
  expect(await runner.run(['printf', 'a\\n\\n'])).toEqual({ stdout: 'a\n', stderr: '', exitCode: 0 });
});
