// Benchmark: the Debian cloud guest (lib/testing/cloud-image.ts) under TCG on this host, in one
// run — virtwire's createVm (spec in, overlay, seed ISO, host plane, libvirt) against plain
// `qemu-system-x86_64` booting the same image with the same seed on a tap that is already
// prepared (bridge, dnsmasq and static lease made beforehand and not timed). Each side is timed
// from its start to the guest's DHCP lease, to its SSH server answering (ssh-keyscan) and to
// cloud-init's "finished" line on the serial console. Needs root; leaves nothing behind.
import { execa } from 'execa';
import { mkdtempSync, mkdirSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVm, destroyVm, HostPlane, Libvirt, seedFiles, validateVm, type VmSpec } from '../../lib/index.js';
import { buildCloudImage, waitForConsole } from '../../lib/testing/index.js';
import { ExecaRunner, sshAnswer, waitUntil } from '../../lib/host/index.js';
import { tapName } from '../../lib/spec/index.js';
import { printTable } from './table.js';

const RUNS = 3;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const runner = new ExecaRunner();
const CLOUD_DONE = /Cloud-init v\. \S+ finished at/;

/** From `t0`: until the SSH server at `ip` answers, then until cloud-init's line in `serialLog`. */
async function milestones(t0: number, ip: string, serialLog: string): Promise<{ ssh: number; cloudInit: number }> {
  await waitUntil(async () => (await sshAnswer(runner, ip)) !== undefined, {
    timeoutMs: 600_000,
    intervalMs: 250,
    what: `SSH on ${ip}`,
  });
  const ssh = (performance.now() - t0) / 1000;
  await waitForConsole({ serialLog }, CLOUD_DONE, 600_000);
  return { ssh, cloudInit: (performance.now() - t0) / 1000 };
}

async function main(): Promise<void> {
  const image = await buildCloudImage();
  const dir = mkdtempSync(join(tmpdir(), 'vwbench-cloud-'));
  chmodSync(dir, 0o755);
  const forwarding = (await execa('sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim();
  const ours = { lease: [] as number[], ssh: [] as number[], cloudInit: [] as number[] };
  const plain = { lease: [] as number[], ssh: [] as number[], cloudInit: [] as number[] };
  const spec: VmSpec = {
    name: 'vwbcloud',
    vcpus: 2,
    memoryMiB: 1024,
    boot: { image: image.image },
    cloudInit: { hostname: 'bench' },
    nics: [{ network: { tenant: 'vwbcloud', cidr: '10.68.0.0/24' } }],
  };
  try {
    for (let i = 0; i < RUNS; i++) {
      // virtwire: everything from the spec, the tenant network included
      const t0 = performance.now();
      const vm = await createVm(spec, { stateDir: join(dir, 'state'), timeoutMs: 600_000 });
      ours.lease.push(vm.readyMs / 1000);
      const m = await milestones(t0, vm.nics[0]!.ip, vm.serialLog);
      ours.ssh.push(m.ssh);
      ours.cloudInit.push(m.cloudInit);
      await destroyVm(spec.name, { stateDir: join(dir, 'state') });

      // plain QEMU: the same image, overlay and seed, on a tap prepared beforehand
      const resolved = validateVm({
        ...spec,
        name: 'vwbcloudq',
        nics: [{ network: { tenant: 'vwbcloudq', cidr: '10.69.0.0/24' } }],
      });
      const nic = resolved.nics[0]!;
      const plane = new HostPlane({ stateDir: join(dir, 'plain') });
      const tap = tapName('vwbcloudq', 0);
      await plane.apply({
        networks: [
          {
            network: nic.network,
            ports: [{ name: tap, kind: 'tap', mac: nic.mac, ip: '10.69.0.2', hostname: 'vwbcloudq' }],
          },
        ],
      });
      const overlay = join(dir, 'plain-disk.qcow2');
      await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', image.image, overlay]);
      const seedDir = join(dir, 'seed');
      rmSync(seedDir, { recursive: true, force: true });
      mkdirSync(seedDir, { recursive: true });
      const seed = seedFiles(resolved);
      for (const [f, text] of Object.entries(seed)) writeFileSync(join(seedDir, f), text);
      await execa('xorriso', [
        '-as',
        'genisoimage',
        '-quiet',
        '-output',
        join(dir, 'seed.iso'),
        '-volid',
        'cidata',
        '-joliet',
        '-rock',
        ...Object.keys(seed).map((f) => join(seedDir, f)),
      ]);
      const serialLog = join(dir, `plain-serial-${i}.log`);
      const t1 = performance.now();
      const qemu = execa(
        'qemu-system-x86_64',
        [
          '-accel',
          'tcg',
          '-machine',
          'pc',
          '-cpu',
          'qemu64',
          '-smp',
          '2',
          '-m',
          '1024',
          '-nodefaults',
          '-display',
          'none',
          '-no-user-config',
          '-drive',
          `file=${overlay},if=virtio,format=qcow2`,
          '-drive',
          `file=${join(dir, 'seed.iso')},media=cdrom,if=ide,format=raw`,
          '-netdev',
          `tap,id=n0,ifname=${tap},script=no,downscript=no`,
          '-device',
          `virtio-net-pci,netdev=n0,mac=${nic.mac}`,
          '-serial',
          `file:${serialLog}`,
          // the devices virtwire's domain has too, so only the way of starting differs
          '-device',
          'virtio-balloon-pci',
          '-object',
          'rng-random,id=rng0,filename=/dev/urandom',
          '-device',
          'virtio-rng-pci,rng=rng0',
        ],
        { reject: false },
      );
      try {
        await plane.waitForLease('vwbcloudq', nic.mac, { timeoutMs: 600_000 });
        plain.lease.push((performance.now() - t1) / 1000);
        const p = await milestones(t1, '10.69.0.2', serialLog);
        plain.ssh.push(p.ssh);
        plain.cloudInit.push(p.cloudInit);
      } finally {
        qemu.kill('SIGKILL');
        await qemu;
        await plane.teardown();
      }
    }
  } finally {
    await destroyVm(spec.name, { stateDir: join(dir, 'state'), missingOk: true }).catch(() => {});
    await execa('sysctl', ['-q', '-w', `net.ipv4.ip_forward=${forwarding}`]);
    await Libvirt.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
  const row = (what: string, k: keyof typeof ours) => ({
    what,
    unit: 's',
    ours: median(ours[k]),
    baseline: median(plain[k]),
    baselineName: 'plain qemu-system-x86_64, same image and seed, prepared tap',
    lowerIsBetter: true,
  });
  printTable(
    `Debian cloud guest under TCG (median of ${RUNS}; cloud-init done: virtwire ${ours.cloudInit.map((x) => x.toFixed(1)).join(', ')}; plain ${plain.cloudInit.map((x) => x.toFixed(1)).join(', ')})`,
    [
      row('spec/spawn to DHCP lease', 'lease'),
      row('spec/spawn to SSH answering', 'ssh'),
      row('spec/spawn to cloud-init done', 'cloudInit'),
    ],
  );
}

await main();
