// Benchmark for concurrent creates (issue: faster than plain QEMU). N createVm calls at once for
// the test guest on one tenant network, with group commit (the default) and without it
// (`batchHostPlane: false`: each create applies its host alone, under the state lock, as before),
// in one run: the time until all N have their leases, and the host-plane step's time summed over
// the calls (each call's 'network' step, its waiting for the lock included). Then createVms of
// the same N in one call. Args: N (default 20), memory MiB (default 192), 'start' to stop
// waiting at the start (no lease: for N too large to boot on this machine in reasonable time).
// Needs root; leaves nothing behind.
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVm, createVms, destroyVm, Libvirt } from '../../lib/index.js';
import { buildTestGuest, testGuestSpec } from '../../lib/testing/index.js';
import type { VmSpec } from '../../types/spec.js';
import type { CreateVmOptions, ProgressEvent } from '../../types/vm.js';
import { printTable } from './table.js';

const N = Number(process.argv[2] ?? 20);
const MEMORY = Number(process.argv[3] ?? 192);
const WAIT = process.argv[4] === 'start' ? ('none' as const) : ('lease' as const);

interface Outcome {
  wall: number;
  plane: number;
}

/** Host-plane time of one call: its network step, start to done. */
function stepTimer(): { onProgress: (e: ProgressEvent) => void; total: () => number } {
  let total = 0;
  const began = new Map<string, number>();
  return {
    onProgress: (e) => {
      if (e.step !== 'network') return;
      if (e.status === 'start') began.set('n', e.elapsedMs);
      else if (e.status === 'done') total += e.elapsedMs - (began.get('n') ?? e.elapsedMs);
    },
    total: () => total,
  };
}

async function round(specs: VmSpec[], stateDir: string, batch: boolean): Promise<Outcome> {
  const timers = specs.map(() => stepTimer());
  const t0 = performance.now();
  const options = (i: number): CreateVmOptions => ({
    stateDir,
    waitFor: WAIT,
    timeoutMs: 900_000,
    batchHostPlane: batch,
    onProgress: timers[i]!.onProgress,
  });
  const results = await Promise.allSettled(specs.map((s, i) => createVm(s, options(i))));
  const wall = (performance.now() - t0) / 1000;
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  await destroyAll(specs, stateDir);
  if (failed) throw failed.reason;
  return { wall, plane: timers.reduce((n, t) => n + t.total(), 0) / 1000 };
}

/** Destroys them all (concurrently); a failure is said, and that VM destroyed once more alone. */
async function destroyAll(specs: VmSpec[], stateDir: string): Promise<void> {
  const results = await Promise.allSettled(specs.map((s) => destroyVm(s.name, { stateDir, missingOk: true })));
  for (const [i, r] of results.entries()) {
    if (r.status === 'fulfilled') continue;
    console.error(`destroy ${specs[i]!.name} failed (${String(r.reason)}); again alone`);
    await destroyVm(specs[i]!.name, { stateDir, missingOk: true });
  }
}

async function main(): Promise<void> {
  const image = await buildTestGuest();
  const dir = mkdtempSync(join(tmpdir(), 'vwbench-many-'));
  chmodSync(dir, 0o755);
  const stateDir = join(dir, 'state');
  const specs = Array.from({ length: N }, (_, i) => ({
    ...testGuestSpec(image, `vwmany${i}`, [{ network: { tenant: 'vwmany', cidr: '10.68.0.0/22' } }]),
    memoryMiB: MEMORY,
  }));
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 100);
  try {
    const alone = await round(specs, stateDir, false);
    const grouped = await round(specs, stateDir, true);
    const t0 = performance.now();
    await createVms(specs, { stateDir, waitFor: WAIT, timeoutMs: 900_000 });
    const many = (performance.now() - t0) / 1000;
    await destroyAll(specs, stateDir);
    const until = WAIT === 'lease' ? 'all leased' : 'all started';
    printTable(`${N} concurrent createVm of the test guest (${MEMORY} MiB, TCG), node ${process.version}`, [
      {
        what: `host-plane time summed over the calls`,
        unit: 's',
        ours: grouped.plane,
        baseline: alone.plane,
        baselineName: 'each create applies its host alone',
        lowerIsBetter: true,
      },
      {
        what: `wall time until ${until}`,
        unit: 's',
        ours: grouped.wall,
        baseline: alone.wall,
        baselineName: 'each create applies its host alone',
        lowerIsBetter: true,
      },
      {
        what: `createVms(${N} specs) until ${until}`,
        unit: 's',
        ours: many,
        baseline: alone.wall,
        baselineName: 'each create applies its host alone',
        lowerIsBetter: true,
      },
    ]);
    console.log(
      `\npeak RSS of this process: ${Math.round(peak / 2 ** 20)} MiB (${Math.round(rss0 / 2 ** 20)} MiB at start)`,
    );
  } finally {
    clearInterval(sampler);
    await destroyAll(specs, stateDir);
    await Libvirt.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
