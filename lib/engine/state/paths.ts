// The state dir's layout, and the defaults a call falls back to: the one place that knows where
// virtwire keeps what. Everything else asks here (the XML layer is given the paths it renders).
//
//   <stateDir>/
//     vms/<name>/vm.json      the VM's record (the engine's source of truth)
//     vms/<name>/disk.qcow2   overlay on the base image (disk boot)
//     vms/<name>/seed.iso     cloud-init NoCloud seed
//     vms/<name>/data-<d>.qcow2  its data disks
//     vms/<name>/serial.log   the guest's console, written by QEMU
//     security-groups/<name>.json  a security group (its tenant and rules)
//     dnsmasq/<tenant>/       one dnsmasq per tenant network (lib/host owns this part)
//     lock                    the state lock (records and host planes change under it)
//     command.lock            the CLI's command lock
//     known_hosts             remote hosts' SSH keys (SshTarget.hostKeyPolicy)
//     serial                  counts the changes of the records (saved plans check it)
//     capabilities.json       the host probe's cache for this boot (lib/host)
import { join } from 'node:path';
import { DEFAULT_STATE_DIR } from '../../host/index.js';
import type { DomainFiles } from '../../xml/index.js';

export { DEFAULT_STATE_DIR };
/** The libvirt connection for this machine. */
export const DEFAULT_URI = 'qemu:///system';

export interface VmPaths {
  dir: string;
  record: string;
  overlay: string;
  seedIso: string;
  serialLog: string;
  /** a data disk's qcow2 */
  dataDisk(name: string): string;
  /** the boot files read from its own disk when it started (a disk image booted directly) */
  boot: string;
}

export function vmPaths(stateDir: string, name: string): VmPaths {
  const dir = join(stateDir, 'vms', name);
  return {
    dir,
    record: join(dir, 'vm.json'),
    overlay: join(dir, 'disk.qcow2'),
    seedIso: join(dir, 'seed.iso'),
    serialLog: join(dir, 'serial.log'),
    dataDisk: (disk: string) => join(dir, `data-${disk}.qcow2`),
    boot: join(dir, 'boot'),
  };
}

/**
 * What a VM boots instead of the files its spec names (as its record keeps them, or as a create
 * chose them): its kernel, its initrd, and for a disk image booted directly the rest of its boot.
 */
export interface BootOverride {
  kernel?: string | undefined;
  initrd?: string | undefined;
  imageBoot?: { initrd?: string | undefined; cmdline: string } | undefined;
}

/** What the XML layer is given for a VM: its files on its host. */
export function domainFiles(
  stateDir: string,
  vm: { name: string; disks?: { name: string }[] },
  { kernel, initrd, imageBoot }: BootOverride = {},
): DomainFiles {
  const p = vmPaths(stateDir, vm.name);
  const dataDisks = Object.fromEntries((vm.disks ?? []).map((d) => [d.name, p.dataDisk(d.name)]));
  const direct = kernel && imageBoot ? { imageBoot: { initrd: imageBoot.initrd, cmdline: imageBoot.cmdline } } : {};
  return {
    overlay: p.overlay,
    seedIso: p.seedIso,
    serialLog: p.serialLog,
    dataDisks,
    ...(kernel ? { kernel } : {}),
    ...(initrd ? { initrd } : {}),
    ...direct,
  };
}

export function statePaths(stateDir: string) {
  return {
    vms: join(stateDir, 'vms'),
    lock: join(stateDir, 'lock'),
    commandLock: join(stateDir, 'command.lock'),
    knownHosts: join(stateDir, 'known_hosts'),
    serial: join(stateDir, 'serial'),
    securityGroups: join(stateDir, 'security-groups'),
    securityGroup: (name: string) => join(stateDir, 'security-groups', `${name}.json`),
  };
}
