// The benchmarks' baseline for a guest boot: the test guest's bzImage and initrd booted by plain
// `qemu-system-x86_64` (what virt-install and scripts do) on a tap that is already prepared —
// bridge, dnsmasq and static lease made beforehand, not timed — from spawn to the lease being
// written. The same devices as virtwire's domain, so only the way of starting differs.
//
// For where a loop's time goes, the lab also boots the guest as virtwire's fast path does (the
// extracted vmlinux and the uncompressed initrd from the kernel cache): by plain QEMU, and through
// libvirt alone (define, start, lease, destroy, undefine on the prepared tap, no host plane).
import { execa } from 'execa';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { HostPlane, Libvirt, renderDomainXml } from '../../lib/index.js';
import type { TestGuestImage } from '../../lib/testing/index.js';
import { waitForConsole } from '../../lib/testing/index.js';
import { validateNetwork, tapName, deriveMac } from '../../lib/spec/index.js';

/** the files a boot loads instead of the image's bzImage and gzip initrd */
export interface BootFiles {
  kernel: string;
  initrd: string;
}

export interface PlainLab {
  /** one boot: seconds from spawn to lease, and to the process gone after a SIGKILL; the guest's uptime at its lease */
  boot(files?: BootFiles): Promise<{ seconds: number; gone: number; uptime: number }>;
  /** one boot through libvirt alone: seconds from define to lease, and to the domain undefined */
  libvirtBoot(files: BootFiles): Promise<{ seconds: number; gone: number }>;
  teardown(): Promise<void>;
}

/** across labs: a new lab in the same dir must not read an earlier boot's console */
let serials = 0;

/** A prepared tap on tenant `tenant` (cidr `cidr`), in `dir`, for plain QEMU boots of `image`. */
export async function plainLab(image: TestGuestImage, dir: string, tenant: string, cidr: string): Promise<PlainLab> {
  const net = validateNetwork({ tenant, cidr });
  const tap = tapName(tenant, 0);
  const mac = deriveMac(tenant);
  const ip = cidr.replace(/\.0\/\d+$/, '.2');
  const plane = new HostPlane({ stateDir: join(dir, 'plain') });
  await plane.apply({ networks: [{ network: net, ports: [{ name: tap, kind: 'tap', mac, ip, hostname: tenant }] }] });
  let lastExpiry = -1;
  return {
    async boot(files = { kernel: image.kernel, initrd: image.initrd }) {
      const serial = join(dir, `plain-serial-${serials++}.log`); // never a log of a boot before
      const t0 = performance.now();
      const qemu = execa(
        'qemu-system-x86_64',
        [
          ...['-accel', 'tcg', '-machine', 'pc', '-cpu', 'qemu64', '-m', '192', '-nodefaults', '-display', 'none'],
          ...['-no-user-config', '-kernel', files.kernel, '-initrd', files.initrd],
          ...['-append', `${image.cmdline} vw.name=${tenant}`],
          ...['-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no`],
          ...['-device', `virtio-net-pci,netdev=n0,mac=${mac}`, '-serial', `file:${serial}`],
          ...['-device', 'virtio-balloon-pci', '-object', 'rng-random,id=rng0,filename=/dev/urandom'],
          ...['-device', 'virtio-rng-pci,rng=rng0'],
        ],
        { reject: false },
      );
      let seconds = 0;
      let uptime = 0;
      let killing = 0;
      try {
        // the lease of the boot before would be read as this one's: a newer one (dnsmasq rewrites the line)
        lastExpiry = (await plane.waitForLease(tenant, mac, { timeoutMs: 120_000, newerThan: lastExpiry })).expiry;
        seconds = (performance.now() - t0) / 1000;
        const line = await waitForConsole({ serialLog: serial }, /VIRTWIRE-LEASE .*uptime=([\d.]+)/, 10_000);
        uptime = Number(line[1]);
      } finally {
        // the console read above is not the baseline's work; killing QEMU is (its "destroy")
        const k0 = performance.now();
        qemu.kill('SIGKILL');
        await qemu;
        killing = (performance.now() - k0) / 1000;
      }
      return { seconds, uptime, gone: seconds + killing };
    },
    async libvirtBoot(files) {
      // the VM is named as the tenant, so its tap and MAC are the prepared ones (tapName, deriveMac)
      const spec = {
        name: tenant,
        memoryMiB: 192,
        boot: { ...files, cmdline: `${image.cmdline} vw.name=${tenant}`, fastKernel: false },
        nics: [{ network: { tenant, cidr }, mac }],
      };
      const stateDir = join(dir, 'libvirt-floor');
      mkdirSync(join(stateDir, 'vms', tenant), { recursive: true });
      const xml = renderDomainXml(spec, { stateDir });
      const t0 = performance.now();
      const lv = await Libvirt.open('qemu:///system');
      let seconds = 0;
      try {
        const dom = await lv.defineDomain(xml);
        try {
          await dom.start();
          lastExpiry = (await plane.waitForLease(tenant, mac, { timeoutMs: 120_000, newerThan: lastExpiry })).expiry;
          seconds = (performance.now() - t0) / 1000;
        } finally {
          await dom.destroy().catch(() => {});
          await dom.undefine();
          dom.free();
        }
      } finally {
        await lv.close();
      }
      return { seconds, gone: (performance.now() - t0) / 1000 };
    },
    teardown: () => plane.teardown().then(() => undefined),
  };
}
