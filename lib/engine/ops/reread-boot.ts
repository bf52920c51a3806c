// A disk image booted directly (kernel/image-boot.ts) boots the kernel its domain names, not the
// one on its disk: an update inside the guest (a new kernel, initrd or arguments in its GRUB
// config) would never take effect. So before each startVm, while the guest is off, its own disk
// is read again (~1 s): what changed is defined anew — on the fast path where it can be, through
// the firmware where it no longer can. A reboot the guest starts itself keeps what it booted
// with (QEMU's reset reloads the same kernel); its next startVm picks up the new one.
import { existsSync, renameSync, rmSync } from 'node:fs';
import type { Hypervisor } from '../../libvirt/index.js';
import { renderResolvedDomainXml } from '../../xml/index.js';
import { directBoot, recordedBoot } from '../kernel/fast-kernel.js';
import { readImageBoot } from '../kernel/image-boot.js';
import { bootedFiles } from '../kernel/kernel-cache.js';
import { domainFiles, vmPaths } from '../state/paths.js';
import type { VmRecord } from '../state/store.js';
import type { Located } from './locate.js';

/** Reads the stopped VM's disk again and redefines its domain if what it boots changed; whether it did. */
export async function rereadBoot(at: Located, hv: Hypervisor): Promise<boolean> {
  const rec = at.record;
  if (!rec.imageBoot || at.host.remote) return false;
  const paths = vmPaths(at.host.stateDir, rec.vm.name);
  const fresh = `${paths.boot}.new`;
  rmSync(fresh, { recursive: true, force: true });
  try {
    const read = await readImageBoot(at.host.runner, paths.overlay, fresh);
    // the same boot, from files still there (a cache removed by hand: copied again)
    const there = [rec.kernel, rec.initrd, rec.imageBoot.initrd].every((f) => f === undefined || existsSync(f));
    if (!('reason' in read) && there && read.boot.digest === rec.imageBoot.digest) return false;
    const { kernel: _k, initrd: _r, imageBoot: _i, ...rest } = rec;
    let next: VmRecord = rest;
    if (!('reason' in read)) {
      // the VM's own copy from now on (the image's, in the shared cache, is another guest's too)
      rmSync(paths.boot, { recursive: true, force: true });
      renameSync(fresh, paths.boot);
      const moved = {
        kernel: `${paths.boot}/vmlinuz`,
        cmdline: read.boot.cmdline,
        digest: read.boot.digest,
        ...(read.boot.initrd ? { initrd: `${paths.boot}/initrd.img` } : {}),
      };
      const d = await directBoot(at.host, moved, rec.vm.memoryMiB, { inUse: () => bootedFiles(at.state.records()) });
      next = { ...rest, ...recordedBoot(d) };
    }
    await at.state.withLock(async () => await at.state.put(next));
    const xml = renderResolvedDomainXml(next.vm, {
      kvmUsable: next.accel === 'kvm',
      files: domainFiles(at.host.stateDir, next.vm, next),
    });
    // same UUID: libvirt replaces the definition
    (await hv.defineDomain(xml)).free();
    return true;
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
}
