// ResolvedVm -> typed DomainXml model. Pure: everything host-specific (is kvm usable, where the
// VM's files are, which emulator) comes in through options, so the same input gives the same XML.
import type { ResolvedVm } from '../../types/resolved.js';
import type { DomainDisk, DomainXml } from '../../types/domain-xml.js';

/** Where the VM's files are on its host (the engine's state module decides). */
export interface DomainFiles {
  /** the qcow2 overlay (disk boot) */
  overlay: string;
  /** the cloud-init seed ISO */
  seedIso: string;
  /** the serial console's log, unless the spec names its own */
  serialLog: string;
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
    os.kernel = vm.boot.kernel;
    if (vm.boot.initrd !== undefined) os.initrd = vm.boot.initrd;
    if (vm.boot.cmdline !== undefined) os.cmdline = vm.boot.cmdline;
  } else {
    os.boot = ['hd'];
    disks.push({
      type: 'file',
      device: 'disk',
      driver: { name: 'qemu', type: 'qcow2' },
      source: { file: paths.overlay },
      target: { dev: 'vda', bus: 'virtio' },
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
    memoryKiB: vm.memoryMiB * 1024,
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
      interfaces: vm.nics.map((nic) => ({
        type: 'ethernet' as const,
        mac: nic.mac,
        target: { dev: nic.tap, managed: 'no' as const },
        model: 'virtio',
      })),
      serials: [{ type: 'file', sourcePath: serialLog, target: { port: 0 } }],
      consoles: [{ type: 'file', sourcePath: serialLog, target: { type: 'serial', port: 0 } }],
      memballoon: { model: 'virtio' },
      rngs: [{ model: 'virtio', backend: { model: 'random', value: '/dev/urandom' } }],
    },
  };
}
