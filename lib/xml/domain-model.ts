// ResolvedVm -> typed DomainXml model. Pure: everything host-specific (is kvm usable, where the
// VM's files are, which emulator) comes in through options, so the same input gives the same XML.
import type { ResolvedNic, ResolvedVm } from '../../types/resolved.js';
import type { DomainDisk, DomainInterface, DomainXml } from '../../types/domain-xml.js';
import { VirtwireError } from '../errors/virtwire-error.js';

/** Where the VM's files are on its host (the engine's state module decides). */
export interface DomainFiles {
  /** the qcow2 overlay (disk boot) */
  overlay: string;
  /** the cloud-init seed ISO */
  seedIso: string;
  /** the serial console's log, unless the spec names its own */
  serialLog: string;
  /** each data disk's qcow2, by the disk's name */
  dataDisks?: Record<string, string>;
  /** the kernel to boot instead of the spec's (direct kernel boot): its extracted vmlinux */
  kernel?: string;
  /** the initrd to load instead of the spec's or the image's: its archives uncompressed */
  initrd?: string;
  /**
   * a disk image booted directly (its own kernel is `kernel`): the initrd and arguments its boot
   * loader would have given; the disk is attached as for a firmware boot
   */
  imageBoot?: { initrd?: string | undefined; cmdline: string };
}

/** A NIC as libvirt sees it: an ethernet interface on the tap virtwire made (also for hot-plug). */
export function nicInterface(nic: ResolvedNic): DomainInterface {
  return { type: 'ethernet', mac: nic.mac, target: { dev: nic.tap, managed: 'no' }, model: 'virtio' };
}

/** A VM's virtio disks in the order the guest sees them: the root overlay first (disk boot), then data disks. */
export function diskTargets(vm: ResolvedVm): { name: string; dev: string }[] {
  const names = ['image' in vm.boot ? ['root'] : [], (vm.disks ?? []).map((d) => d.name)].flat();
  return names.map((name, i) => ({ name, dev: `vd${String.fromCharCode(97 + i)}` }));
}

export interface DomainRenderOptions {
  files: DomainFiles;
  /** whether KVM is usable on the target host (decides accel 'auto'); default false */
  kvmUsable?: boolean;
  /** default /usr/bin/qemu-system-x86_64 */
  emulator?: string;
  /** default 'pc' */
  machine?: string;
  /** extra metadata stored in the domain (virtwire namespace) */
  metadata?: Record<string, string>;
}

const DEFAULT_EMULATOR = '/usr/bin/qemu-system-x86_64';

/** Which accelerator a VM gets: kvm only when asked for, or when 'auto' and the host can. */
export function effectiveAccel(accel: ResolvedVm['accel'], kvmUsable: boolean): 'kvm' | 'tcg' {
  if (accel === 'auto') return kvmUsable ? 'kvm' : 'tcg';
  return accel;
}

export function domainModel(vm: ResolvedVm, options: DomainRenderOptions): DomainXml {
  const accel = effectiveAccel(vm.accel, options.kvmUsable ?? false);
  const paths = options.files;
  const serialLog = vm.serialLog ?? paths.serialLog;
  const disks: DomainDisk[] = [];
  const os: DomainXml['os'] = { type: { arch: 'x86_64', machine: options.machine ?? 'pc', value: 'hvm' } };
  if ('kernel' in vm.boot) {
    os.kernel = paths.kernel ?? vm.boot.kernel;
    const initrd = paths.initrd ?? vm.boot.initrd;
    if (initrd !== undefined) os.initrd = initrd;
    if (vm.boot.cmdline !== undefined) os.cmdline = vm.boot.cmdline;
  } else {
    if (paths.kernel && paths.imageBoot) {
      os.kernel = paths.kernel;
      const initrd = paths.initrd ?? paths.imageBoot.initrd;
      if (initrd !== undefined) os.initrd = initrd;
      os.cmdline = paths.imageBoot.cmdline;
    } else os.boot = ['hd'];
    disks.push({
      type: 'file',
      device: 'disk',
      driver: { name: 'qemu', type: 'qcow2' },
      source: { file: paths.overlay },
      target: { dev: 'vda', bus: 'virtio' },
    });
  }
  for (const { name, dev } of diskTargets(vm).filter((d) => d.name !== 'root' || !('image' in vm.boot))) {
    const file = paths.dataDisks?.[name];
    if (!file) throw new VirtwireError('INTERNAL', `no file for data disk ${name} of ${vm.name}`);
    disks.push({
      type: 'file',
      device: 'disk',
      driver: { name: 'qemu', type: 'qcow2' },
      source: { file },
      target: { dev, bus: 'virtio' },
    });
  }
  if (vm.cloudInit) {
    // q35 has no IDE controller; i440fx ('pc') has no built-in SATA. libvirt rejects the wrong one.
    const q35 = os.type.machine!.startsWith('q35') || os.type.machine!.includes('-q35-');
    disks.push({
      type: 'file',
      device: 'cdrom',
      driver: { name: 'qemu', type: 'raw' },
      source: { file: paths.seedIso },
      target: q35 ? { dev: 'sda', bus: 'sata' } : { dev: 'hdc', bus: 'ide' },
      readonly: true,
    });
  }
  const metadata = { 'managed-by': 'virtwire', ...options.metadata };
  return {
    type: accel === 'kvm' ? 'kvm' : 'qemu',
    name: vm.name,
    uuid: vm.uuid,
    metadata,
    memoryKiB: (vm.maxMemoryMiB ?? vm.memoryMiB) * 1024,
    currentMemoryKiB: vm.memoryMiB * 1024,
    vcpu: vm.vcpus,
    os,
    features: { acpi: true, apic: true },
    // host-passthrough is only meaningful with hardware virtualisation; under TCG a fixed,
    // portable model keeps the guest identical on every host.
    cpu:
      accel === 'kvm'
        ? { mode: 'host-passthrough', check: 'none', migratable: 'on' }
        : { mode: 'custom', match: 'exact', check: 'none', model: { value: 'qemu64', fallback: 'forbid' } },
    clock: { offset: 'utc' },
    onPoweroff: 'destroy',
    onReboot: 'restart',
    onCrash: 'destroy',
    devices: {
      emulator: options.emulator ?? DEFAULT_EMULATOR,
      disks,
      // no USB bus: nothing uses it, and SeaBIOS probing it slows every boot
      controllers: [{ type: 'usb', model: 'none' }],
      // type='ethernet' with managed='no': virtwire creates the tap itself (bridge, QoS and
      // anti-spoofing are in place before the guest runs); libvirt only opens it.
      interfaces: vm.nics.map(nicInterface),
      // a pty (openConsole reads and writes it) whose output is also logged to the serial log,
      // appended across boots (tests and waitFor read it)
      serials: [{ type: 'pty', log: { file: serialLog, append: 'on' }, target: { port: 0 } }],
      consoles: [{ type: 'pty', target: { type: 'serial', port: 0 } }],
      memballoon: { model: 'virtio' },
      rngs: [{ model: 'virtio', backend: { model: 'random', value: '/dev/urandom' } }],
    },
  };
}
