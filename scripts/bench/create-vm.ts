// Benchmark for createVm (issue: createVm/destroyVm). In one run, on this host (TCG here):
// createVm -> DHCP lease of the test guest (virtwire boots the kernel's extracted vmlinux
// through its PVH note, kept in the host's kernel cache after its VM; the first create, which
// extracts it, is timed apart),
// against booting the same bzImage and initrd with plain `qemu-system-x86_64` (what
// virt-install and scripts do) on a tap that is already prepared (bridge, dnsmasq and static
// lease made beforehand and not timed), measured from spawn to the lease being written. The
// difference is virtwire's overhead: validation, the host plane, libvirt define/start.
// Needs root; leaves nothing behind.
import { execa } from 'execa';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVm, destroyVm, Libvirt } from '../../lib/index.js';
import { buildTestGuest, testGuestSpec, waitForConsole } from '../../lib/testing/index.js';
import { median, printTable } from './table.js';
import { plainLab } from './plain-qemu.js';

const RUNS = 5;

async function main(): Promise<void> {
  const image = await buildTestGuest();
  const dir = mkdtempSync(join(tmpdir(), 'vwbench-vm-'));
  chmodSync(dir, 0o755);
  const forwarding = (await execa('sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim();
  const ours: number[] = [];
  const slow: number[] = [];
  const plain: number[] = [];
  const steps: Record<string, number>[] = [];
  const uptimes = { ours: [] as number[], plain: [] as number[] };
  let firstCreate = 0;
  try {
    // virtwire: everything, from nothing (the tenant network included); the first create pays
    // for the kernel's extraction (measured apart), the runs find it in the host's cache, as a
    // create → destroy loop does (scripts/bench/create-loop.ts times that loop whole)
    const spec = testGuestSpec(image, 'vwbench', [{ network: { tenant: 'vwbench', cidr: '10.66.0.0/24' } }]);
    firstCreate = (await createVm(spec, { stateDir: join(dir, 'state'), waitFor: 'none' })).readyMs / 1000;
    await destroyVm('vwbench', { stateDir: join(dir, 'state') });
    for (let i = 0; i < RUNS; i++) {
      const marks: Record<string, number> = {};
      const vm = await createVm(spec, {
        stateDir: join(dir, 'state'),
        onProgress: (e) => e.status === 'done' && (marks[e.step] = e.elapsedMs),
      });
      ours.push(vm.readyMs / 1000);
      steps.push(marks);
      const line = await waitForConsole(vm, /VIRTWIRE-LEASE .*uptime=([\d.]+)/, 10_000);
      uptimes.ours.push(Number(line[1]));
      await destroyVm('vwbench', { stateDir: join(dir, 'state') });

      // the same without the fast kernel: the bzImage as given, decompressing itself
      const asGiven = { ...spec, boot: { ...spec.boot, fastKernel: false } };
      slow.push((await createVm(asGiven, { stateDir: join(dir, 'state') })).readyMs / 1000);
      await destroyVm('vwbench', { stateDir: join(dir, 'state') });

      // plain QEMU on a prepared tap: the same guest, the same dnsmasq, nothing else
      const lab = await plainLab(image, dir, 'vwbenchq', '10.67.0.0/24');
      try {
        const run = await lab.boot();
        plain.push(run.seconds);
        uptimes.plain.push(run.uptime);
      } finally {
        await lab.teardown();
      }
    }
  } finally {
    await destroyVm('vwbench', { stateDir: join(dir, 'state'), missingOk: true }).catch(() => {});
    await execa('sysctl', ['-q', '-w', `net.ipv4.ip_forward=${forwarding}`]);
    await Libvirt.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
  printTable(
    `createVm to DHCP lease, test guest under TCG (median of ${RUNS}; runs: virtwire ${ours.map((x) => x.toFixed(2)).join(', ')}; plain ${plain.map((x) => x.toFixed(2)).join(', ')})`,
    [
      {
        what: 'spec/spawn to lease',
        unit: 's',
        ours: median(ours),
        baseline: median(plain),
        baselineName: 'plain qemu-system-x86_64 on a prepared tap',
        lowerIsBetter: true,
      },
      {
        what: 'the same, boot.fastKernel: false',
        unit: 's',
        ours: median(slow),
        baseline: median(plain),
        baselineName: 'plain qemu-system-x86_64 on a prepared tap',
        lowerIsBetter: true,
      },
    ],
  );
  console.log(
    `virtwire/plain: ${(median(ours) / median(plain)).toFixed(2)} with the extracted vmlinux (PVH), ${(median(slow) / median(plain)).toFixed(2)} with the bzImage`,
  );
  console.log(
    `\na first create of a kernel extracts its vmlinux: ${firstCreate.toFixed(2)} s to a started guest (not in the runs above)`,
  );
  console.log(`virtwire's overhead over the guest's own boot: ${(median(ours) - median(plain)).toFixed(2)} s`);
  console.log(
    `guest's own uptime at its lease (median): ${median(uptimes.ours).toFixed(2)} s under virtwire, ${median(uptimes.plain).toFixed(2)} s under plain QEMU`,
  );
  const at = (k: string) => median(steps.map((m) => m[k] ?? 0));
  const phases = [
    ['validate', 'validate'],
    ['network (host plane)', 'network'],
    ['disks', 'disks'],
    ['define (libvirt)', 'define'],
    ['start (libvirt, QEMU up)', 'start'],
    ['guest boot to lease', 'lease'],
  ];
  let prev = 0;
  console.log("where virtwire's time goes (median ms since the call):");
  for (const [label, key] of phases) {
    console.log(`  ${label!.padEnd(26)} ${String(Math.round(at(key!) - prev)).padStart(6)} ms`);
    prev = at(key!);
  }
}

await main();
