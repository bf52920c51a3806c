// Benchmark: the Debian cloud guest (lib/testing/cloud-image.ts) under TCG on this host, in one
// run — virtwire's createVm (spec in, overlay, seed ISO, host plane, libvirt) against plain
// `qemu-system-x86_64` booting the same image with the same seed on a tap that is already
// prepared (bridge, dnsmasq and static lease made beforehand and not timed). Each side is timed
// from its start to the guest's DHCP lease, to SSH accepting a login (the key cloud-init installs)
// and to cloud-init's "finished" line on the serial console. virtwire's state starts empty, so its
// first run includes reading the image's own kernel, initrd and GRUB entry (cached after).
// Needs root; leaves nothing behind.
import { execa } from 'execa';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVm, destroyVm, HostPlane, Libvirt, seedFiles, validateVm, type VmSpec } from '../../lib/index.js';
import { buildCloudImage, waitForConsole } from '../../lib/testing/index.js';
import { LocalRunner, sshAnswer, waitUntil } from '../../lib/host/index.js';
import { tapName } from '../../lib/spec/index.js';
import { median, printTable } from './table.js';

const RUNS = 3;
const runner = new LocalRunner();
const CLOUD_DONE = /Cloud-init v\. \S+ finished at/;

/** Logs in as `vw` with `key` and runs `true`; true when that worked. */
async function login(key: string, ip: string): Promise<boolean> {
  if ((await sshAnswer(runner, ip)) === undefined) return false;
  const r = await execa(
    'ssh',
    [
      '-i',
      key,
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'LogLevel=ERROR',
      '-o',
      'ConnectTimeout=5',
      `vw@${ip}`,
      'true',
    ],
    { reject: false, timeout: 30_000 },
  );
  return r.exitCode === 0;
}

/** From `t0`: until SSH at `ip` accepts a login, then until cloud-init's line in `serialLog`. */
async function milestones(
  t0: number,
  key: string,
  ip: string,
  serialLog: string,
): Promise<{ ssh: number; cloudInit: number }> {
  await waitUntil(() => login(key, ip), { timeoutMs: 600_000, intervalMs: 250, what: `an SSH login on ${ip}` });
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
  const key = join(dir, 'key');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  let boot = '';
  const spec: VmSpec = {
    name: 'vwbcloud',
    vcpus: 2,
    memoryMiB: 1024,
    boot: { image: image.image },
    cloudInit: {
      hostname: 'bench',
      users: [{ name: 'vw', sshAuthorizedKeys: [readFileSync(`${key}.pub`, 'utf8').trim()] }],
    },
    nics: [{ network: { tenant: 'vwbcloud', cidr: '10.68.0.0/24' } }],
  };
  try {
    for (let i = 0; i < RUNS; i++) {
      // virtwire: everything from the spec, the tenant network included
      const t0 = performance.now();
      const vm = await createVm(spec, { stateDir: join(dir, 'state'), timeoutMs: 600_000 });
      ours.lease.push(vm.readyMs / 1000);
      boot = vm.boot.kind === 'firmware' ? `firmware (${vm.boot.reason})` : vm.boot.kind;
      const m = await milestones(t0, key, vm.nics[0]!.ip, vm.serialLog);
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
        const p = await milestones(t1, key, '10.69.0.2', serialLog);
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
  const runs = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
  printTable(
    `Debian cloud guest under TCG, virtwire boot: ${boot} (median of ${RUNS}, virtwire's first run reads the image's boot files; ` +
      `login: virtwire ${runs(ours.ssh)}, plain ${runs(plain.ssh)}; cloud-init done: virtwire ${runs(ours.cloudInit)}, plain ${runs(plain.cloudInit)})`,
    [
      row('spec/spawn to DHCP lease', 'lease'),
      row('spec/spawn to SSH accepting a login', 'ssh'),
      row('spec/spawn to cloud-init done', 'cloudInit'),
    ],
  );
}

await main();
