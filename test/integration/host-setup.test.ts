// A fresh Debian host without udev: /dev/kvm stays root:root 0600, and libvirt — probing QEMU as
// root but validating its capability cache as the QEMU user — calls its cache outdated and
// re-probes QEMU on every API call (~30-50 s per define). scripts/setup-host.sh leaves the device
// as udev would; this test puts the device back in the udev-less state, runs setup, and proves
// libvirt then keeps its cache: two defines leave the capability cache files untouched.
import { execa } from 'execa';
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Libvirt } from '../../lib/libvirt/index.js';
import { describeAsRoot } from '../helpers/root.js';
import { buildXml } from '../../lib/xml/index.js';

const SETUP = new URL('../../scripts/setup-host.sh', import.meta.url).pathname;
const CACHE = '/var/cache/libvirt/qemu/capabilities';
const KVM = '/dev/kvm';

const mode = () => {
  const s = statSync(KVM);
  return { mode: (s.mode & 0o777).toString(8), gid: s.gid };
};
const cacheTimes = () => Object.fromEntries(readdirSync(CACHE).map((f) => [f, statSync(join(CACHE, f)).mtimeMs]));
const domainXml = (name: string) =>
  buildXml({
    domain: {
      $: { type: 'qemu' },
      name: [name],
      memory: [{ _: '65536', $: { unit: 'KiB' } }],
      os: [{ type: [{ _: 'hvm', $: { arch: 'x86_64', machine: 'pc' } }] }],
    },
  });

// Hosts come with /dev/kvm (the PVM kind, root:root 0600 without udev) or with no node at all
// (a kernel whose KVM is built in but not registered). The device's mode is recreated here; its
// absence cannot be (the node belongs to the kernel), so each kind runs the test that is its own.
const hasKvm = existsSync(KVM);

describeAsRoot(
  'setup-host on a host without udev: /dev/kvm as udev leaves it, libvirt keeps its capability cache',
  () => {
    afterAll(async () => {
      // whatever happened above, the device ends as setup leaves it (what the rest of the suite needs)
      if (!hasKvm) return;
      await execa('chgrp', ['kvm', KVM]);
      await execa('chmod', ['0660', KVM]);
    });

    (hasKvm ? test.skip : test)(
      `setup on a host with no /dev/kvm makes none and changes nothing on a second run${hasKvm ? ' [skipped: this host has /dev/kvm; runs on hosts without the node]' : ''}`,
      async () => {
        await execa('bash', [SETUP]);
        expect(existsSync(KVM)).toBe(false);
        expect((await execa('bash', [SETUP])).stdout).toBe('');
      },
    );

    (hasKvm ? test : test.skip)(
      hasKvm
        ? 'setup changes a root:root 0600 /dev/kvm to root:kvm 0660, with libvirt-qemu in kvm; a second run changes nothing'
        : 'setup fixes a root:root 0600 /dev/kvm [skipped: this host has no /dev/kvm node to set; runs on PVM hosts]',
      async () => {
        await execa('chown', ['root:root', KVM]);
        await execa('chmod', ['0600', KVM]);
        const first = await execa('bash', [SETUP]);
        expect(first.stdout).toContain('setup-host: /dev/kvm set to root:kvm 0660 (as udev would)');
        const kvmGid = Number((await execa('getent', ['group', 'kvm'])).stdout.split(':')[2]);
        expect(mode()).toEqual({ mode: '660', gid: kvmGid });
        expect((await execa('id', ['-nG', 'libvirt-qemu'])).stdout.split(' ')).toContain('kvm');
        const second = await execa('bash', [SETUP]);
        expect(second.stdout).toBe('');
      },
    );

    test('two defines after setup leave the capability cache untouched (no re-probe of QEMU)', async () => {
      const lv = await Libvirt.open('qemu:///system');
      try {
        // the first call after setup may validate the cache once; from then on it must hold
        const warm = await lv.defineDomain(domainXml('vwsetup-warm'));
        await warm.undefine();
        warm.free();
        const before = cacheTimes();
        expect(Object.keys(before).length).toBeGreaterThan(0);
        for (const name of ['vwsetup-a', 'vwsetup-b']) {
          const d = await lv.defineDomain(domainXml(name));
          await d.undefine();
          d.free();
        }
        expect(cacheTimes()).toEqual(before);
      } finally {
        await lv.close();
      }
    });
  },
);
