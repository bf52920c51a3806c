// Benchmark for the state backends (issue: state in PostgreSQL). 10 processes × 10 creates at
// once into one tenant, each create doing the state's share of createVm exactly as create.ts does
// it in its `network` step — take the state lock, read the records, allocate (address, MAC, tap,
// VNI), write the record — against one PostgreSQL database (the private cluster of
// scripts/postgres.sh, over loopback TCP) and, as the baseline in the same run, against a state
// directory on this machine. The rest of a create (libvirt, disks, the host plane) is left out:
// it is the same work whichever state is used, and would only hide the difference measured here.
// Prints allocations per second over the whole run and the lock's wait (median, p95).
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { printTable } from './table.js';

const PROCS = 10;
const EACH = 10;
const DIST = new URL('../../lib/', import.meta.url).href;
const SCRIPT = new URL('../../../scripts/postgres.sh', import.meta.url).pathname;

// one process: EACH creates, each timed from asking for the lock to holding it
const worker = `
import { openState } from '${DIST}engine/state/open.js';
import { allocate } from '${DIST}engine/allocate.js';
import { validateVm } from '${DIST}spec/index.js';
const [stateDir, url] = process.argv.slice(1);
const store = openState(stateDir, url || undefined);
await store.load();
const waits = [];
for (let i = 0; i < ${EACH}; i++) {
  const asked = performance.now();
  await store.withLock(async () => {
    waits.push(performance.now() - asked);
    const vm = validateVm({ name: 'b' + process.pid + '-' + i, memoryMiB: 64, boot: { kernel: '/nonexistent' },
      nics: [{ network: { tenant: 'bench', cidr: '10.200.0.0/16', segment: { type: 'vxlan', uplink: 'lo' } } }] });
    await store.put({ vm: allocate(vm, store.records()), accel: 'tcg', createdAt: new Date().toISOString() });
  }, { timeoutMs: 600000 });
}
await store.close();
process.stdout.write(JSON.stringify(waits));
`;

async function run(stateDir: string, url: string): Promise<{ perSecond: number; waits: number[] }> {
  const t0 = performance.now();
  const outs = await Promise.all(
    Array.from({ length: PROCS }, () => execa('node', ['--input-type=module', '-e', worker, stateDir, url])),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { perSecond: (PROCS * EACH) / seconds, waits: outs.flatMap((o) => JSON.parse(o.stdout) as number[]) };
}

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

async function main(): Promise<void> {
  const admin = (await execa('bash', [SCRIPT])).stdout.trim().split('\n').at(-1)!;
  const db = `vwbench_${process.pid}`;
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  await c.query(`create database ${c.escapeIdentifier(db)}`);
  const url = new URL(admin);
  url.pathname = `/${db}`;
  const dir = mkdtempSync(join(tmpdir(), 'vwbench-state-'));
  try {
    const ours = await run(join(dir, 'files'), url.toString());
    const base = await run(join(dir, 'dir'), '');
    printTable(`State backends: ${PROCS} processes × ${EACH} creates at once, one tenant (lock + allocate + record)`, [
      {
        what: 'allocations per second',
        unit: '/s',
        ours: ours.perSecond,
        baseline: base.perSecond,
        baselineName: 'state directory (flock)',
      },
      {
        what: 'lock wait, median',
        unit: 'ms',
        ours: pct(ours.waits, 0.5),
        baseline: pct(base.waits, 0.5),
        baselineName: 'state directory (flock)',
        lowerIsBetter: true,
      },
      {
        what: 'lock wait, p95',
        unit: 'ms',
        ours: pct(ours.waits, 0.95),
        baseline: pct(base.waits, 0.95),
        baselineName: 'state directory (flock)',
        lowerIsBetter: true,
      },
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await c.query(`drop database if exists ${c.escapeIdentifier(db)} with (force)`);
    await c.end();
  }
}

await main();
