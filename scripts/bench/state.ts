// Benchmark for the state backends (issue: state in PostgreSQL). 10 processes × 10 whole createVm
// calls at once into one tenant (scripts/bench/state-worker.ts: libvirt's test:///default driver
// and a simulated host, as the plan bench does, so the host's own work is left out on both sides)
// against one PostgreSQL database (the private cluster of scripts/postgres.sh, over loopback TCP)
// and, as the baseline in the same run, against a state directory on this machine. Prints creates
// (allocations) per second over the whole run and the wait for the state lock (median, p95).
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openState } from '../../lib/engine/state/open.js';
import { printTable } from './table.js';

const PROCS = 10;
const EACH = 10;
const SCRIPT = new URL('../../../scripts/postgres.sh', import.meta.url).pathname;

const WORKER = new URL('./state-worker.js', import.meta.url).pathname;

async function run(
  stateDir: string,
  url: string,
): Promise<{ perSecond: number; waits: number[]; holds: number[]; turns: number }> {
  const t0 = performance.now();
  const outs = await Promise.all(
    Array.from({ length: PROCS }, () => execa('node', [WORKER, stateDir, url, String(EACH)])),
  );
  const seconds = (performance.now() - t0) / 1000;
  // what was measured is only worth its number if every create got an address of its own
  const store = openState(stateDir, url || undefined);
  await store.load();
  const ips = new Set(store.records().flatMap((r) => r.vm.nics.map((n) => n.ip)));
  const vnis = new Set(
    store.records().flatMap((r) => r.vm.nics.map((n) => (n.network.segment as { vni?: number } | undefined)?.vni)),
  );
  await store.close();
  if (store.records().length !== PROCS * EACH || ips.size !== PROCS * EACH || vnis.size !== 1)
    throw new Error(`${store.where}: ${store.records().length} records, ${ips.size} addresses, ${vnis.size} VNIs`);
  const turns = outs.map((o) => JSON.parse(o.stdout) as { waits: number[]; holds: number[] });
  return {
    perSecond: (PROCS * EACH) / seconds,
    waits: turns.flatMap((t) => t.waits),
    holds: turns.flatMap((t) => t.holds),
    turns: turns.reduce((n, t) => n + t.waits.length, 0) / (PROCS * EACH),
  };
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
    printTable(
      `State backends: ${PROCS} processes × ${EACH} whole createVm calls at once, one tenant (test:///default + simulated host)`,
      [
        {
          what: 'creates (allocations) per second',
          unit: '/s',
          ours: ours.perSecond,
          baseline: base.perSecond,
          baselineName: 'state directory (flock)',
        },
        {
          what: 'lock + fresh records, median',
          unit: 'ms',
          ours: pct(ours.waits, 0.5),
          baseline: pct(base.waits, 0.5),
          baselineName: 'state directory (flock)',
          lowerIsBetter: true,
        },
        {
          what: 'lock + fresh records, p95',
          unit: 'ms',
          ours: pct(ours.waits, 0.95),
          baseline: pct(base.waits, 0.95),
          baselineName: 'state directory (flock)',
          lowerIsBetter: true,
        },
        {
          what: 'whole lock turn, median',
          unit: 'ms',
          ours: pct(ours.holds, 0.5),
          baseline: pct(base.holds, 0.5),
          baselineName: 'state directory (flock)',
          lowerIsBetter: true,
        },
      ],
    );
    console.log(`state lock turns per create: ${ours.turns} (PostgreSQL), ${base.turns} (directory)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await c.query(`drop database if exists ${c.escapeIdentifier(db)} with (force)`);
    await c.end();
  }
}

await main();
