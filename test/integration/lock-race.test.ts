// The state lock under a race: many processes start at once on a lock file a dead process left
// behind. flock(2) has no stale lock to take over — the kernel dropped it when its holder died —
// so exactly one process holds it at any time; a take-over that two processes could both win
// would show as two holders inside at once.
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const STORE = new URL('../../dist/lib/engine/state/dir-store.js', import.meta.url).href;
const RACERS = 12;

// each racer: take the lock, write "in", hold it a moment, write "out", release
const racer = `
import { appendFileSync } from 'node:fs';
import { DirStateStore } from ${JSON.stringify(STORE)};
const [dir, log] = process.argv.slice(1);
await new DirStateStore(dir).withLock(async () => {
  appendFileSync(log, 'in ' + process.pid + '\\n');
  await new Promise((r) => setTimeout(r, 20));
  appendFileSync(log, 'out ' + process.pid + '\\n');
}, { timeoutMs: 60_000 });
`;

describe('the state lock, raced by many processes on a stale lock file', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'vwrace-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test(`${RACERS} processes: each gets it once, never two at a time`, async () => {
    const log = join(dir, 'log');
    writeFileSync(log, '');
    // what a holder killed with SIGKILL leaves: a lock file naming a process that is gone
    writeFileSync(
      join(dir, 'lock'),
      JSON.stringify({ pid: 999_999_999, command: 'virtwire apply', since: '2026-01-01T00:00:00Z' }),
    );
    const runs = Array.from({ length: RACERS }, () => execa('node', ['--input-type=module', '-e', racer, dir, log]));
    await Promise.all(runs);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2 * RACERS);
    // strictly in/out pairs of the same process
    for (let i = 0; i < lines.length; i += 2) {
      const [enter, leave] = [lines[i]!.split(' '), lines[i + 1]!.split(' ')];
      expect([enter[0], leave[0], leave[1]]).toEqual(['in', 'out', enter[1]]);
    }
    expect(new Set(lines.map((l) => l.split(' ')[1])).size).toBe(RACERS);
  }, 120_000);
});
