// Benchmark (issue: fast where tests live): what an integration test that creates a guest, checks
// it and destroys it, ten times over, waits for. virtwire: createVm (spec → DHCP lease) then
// destroyVm, from a fresh state dir — the first iteration extracts the kernel into the host's
// cache, the next nine find it there. Baseline: plain `qemu-system-x86_64` booting the same
// bzImage and initrd on a prepared tap, spawn → lease → kill, ten times (plain-qemu.ts). In one
// run, first iteration included, each virtwire iteration followed by one of the baseline and of
// the two boots that show where the time goes. Needs root; leaves nothing behind.
import { execa } from 'execa';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVm, destroyVm, Libvirt, listKernelCache } from '../../lib/index.js';
import { buildTestGuest, testGuestSpec } from '../../lib/testing/index.js';
import { median, printTable } from './table.js';
import { plainLab } from './plain-qemu.js';

const LOOPS = 10;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

async function main(): Promise<void> {
  const image = await buildTestGuest();
  const dir = mkdtempSync(join(tmpdir(), 'vwbench-loop-'));
  chmodSync(dir, 0o755);
  const stateDir = join(dir, 'state');
  const forwarding = (await execa('sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim();
  const ours: number[] = [];
  const leases: number[] = [];
  const networkSteps: number[] = []; // ms: the state's records and the host plane, under the lock
  const plain: number[] = [];
  const plainFast: number[] = [];
  const viaLibvirt: number[] = [];
  try {
    const spec = testGuestSpec(image, 'vwloop', [{ network: { tenant: 'vwloop', cidr: '10.91.0.0/24' } }]);
    let fast: { kernel: string; initrd: string } | undefined;
    // interleaved, so a slow spell of the machine falls on all four alike; the first virtwire
    // iteration extracts the kernel that the fast plain and libvirt-alone runs then boot. The
    // lab's tap is made and removed around its runs (not timed): virtwire's host plane owns
    // every vw* device on the host and would remove the lab's as not its own.
    for (let i = 0; i < LOOPS; i++) {
      const t0 = performance.now();
      let networkFrom = 0;
      const vm = await createVm(spec, {
        stateDir,
        onProgress: (e) => {
          if (e.step !== 'network') return;
          if (e.status === 'start') networkFrom = e.elapsedMs;
          else if (e.status === 'done') networkSteps.push(e.elapsedMs - networkFrom);
        },
      });
      leases.push(vm.readyMs / 1000);
      await destroyVm('vwloop', { stateDir });
      ours.push((performance.now() - t0) / 1000);
      if (!fast) {
        const cached = await listKernelCache(stateDir);
        fast = {
          kernel: cached.find((e) => e.kind === 'kernel')!.path,
          initrd: cached.find((e) => e.kind === 'initrd')!.path,
        };
      }
      const lab = await plainLab(image, dir, 'vwloopq', '10.92.0.0/24');
      try {
        plain.push((await lab.boot()).gone);
        plainFast.push((await lab.boot(fast)).gone);
        viaLibvirt.push((await lab.libvirtBoot(fast)).gone);
      } finally {
        await lab.teardown();
      }
    }
    const cache = await listKernelCache(stateDir);
    printTable(
      `create → lease → destroy, ${LOOPS} times, test guest under TCG (first iteration included; virtwire: ${ours.map((x) => x.toFixed(2)).join(', ')}; plain: ${plain.map((x) => x.toFixed(2)).join(', ')})`,
      [
        {
          what: `${LOOPS} iterations`,
          unit: 's',
          ours: sum(ours),
          baseline: sum(plain),
          baselineName: 'plain qemu-system-x86_64 on a prepared tap, spawn → lease → kill',
          lowerIsBetter: true,
        },
        {
          what: 'one iteration, median',
          unit: 's',
          ours: median(ours),
          baseline: median(plain),
          baselineName: 'the same',
          lowerIsBetter: true,
        },
        {
          what: 'the first iteration (kernel extracted)',
          unit: 's',
          ours: ours[0]!,
          baseline: plain[0]!,
          baselineName: 'the same',
          lowerIsBetter: true,
        },
      ],
    );
    console.log(`virtwire/plain over the loop: ${(sum(ours) / sum(plain)).toFixed(2)}`);
    console.log(
      `spec → lease alone (median): ${median(leases).toFixed(2)} s; destroy: ${(median(ours) - median(leases)).toFixed(2)} s;` +
        ` create's network step (records and host plane): ${median(networkSteps).toFixed(0)} ms`,
    );
    const m = { ours: median(ours), plain: median(plain), fast: median(plainFast), libvirt: median(viaLibvirt) };
    console.log(
      [
        `where an iteration's time goes (medians, s): the guest booted as virtwire boots it (the cache's vmlinux and`,
        `uncompressed initrd), by plain QEMU ${m.fast.toFixed(2)} (${(m.fast / m.plain).toFixed(2)} of plain);`,
        `the same through libvirt alone on the prepared tap (define, start, lease, destroy, undefine) ${m.libvirt.toFixed(2)}`,
        `(${(m.libvirt / m.plain).toFixed(2)}); virtwire ${m.ours.toFixed(2)} (${(m.ours / m.plain).toFixed(2)}) — libvirt adds`,
        `${(m.libvirt - m.fast).toFixed(2)}, virtwire's own work (host plane, state, checks) ${(m.ours - m.libvirt).toFixed(2)}`,
        `(runs: fast ${plainFast.map((x) => x.toFixed(2)).join(', ')}; libvirt ${viaLibvirt.map((x) => x.toFixed(2)).join(', ')})`,
      ].join('\n'),
    );
    const count = (kind: string) => cache.filter((e) => e.kind === kind).length;
    console.log(
      `kernel cache after the loop: ${count('kernel')} kernel(s), ${count('initrd')} initrd(s), made once, kept after their VM`,
    );
  } finally {
    await destroyVm('vwloop', { stateDir, missingOk: true }).catch(() => {});
    await execa('sysctl', ['-q', '-w', `net.ipv4.ip_forward=${forwarding}`]);
    await Libvirt.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
