// A VM's files: the qcow2 overlay on its base image (the base is never written) and the
// cloud-init NoCloud seed ISO (volume label "cidata": user-data, meta-data, network-config).
// They live on the VM's host: made with that host's runner and files (SSH for a remote host).
//
// Who may read them: the VM's directory is root-owned, mode 0710, in the group QEMU runs as
// (qemu.conf's, libvirt-qemu on Debian), so QEMU may reach its files and no other user may; the
// files themselves are 0600 root, and libvirt's DAC driver (dynamic_ownership) hands them to the
// QEMU user while the domain runs and gives them back when it stops. The state dir above is 0711
// (its dnsmasq files must stay readable by dnsmasq's own user, which is not QEMU's).
import { join } from 'node:path';
import type { ResolvedVm } from '../../types/resolved.js';
import { SpecError } from '../errors/index.js';
import { qemuGroup, type CommandRunner, type HostFiles } from '../host/index.js';
import { statePaths, vmPaths } from './state/paths.js';
import { seedFiles } from './seed.js';

/** The VM's directory on its host, as described above (also for a directory that exists). */
export async function prepareVmDir(files: HostFiles, stateDir: string, name: string): Promise<void> {
  await files.mkdir(stateDir, { mode: 0o711 });
  await files.mkdir(statePaths(stateDir).vms, { mode: 0o711 });
  await files.mkdir(vmPaths(stateDir, name).dir, { mode: 0o710, group: await qemuGroup(files) });
}

export async function createOverlay(
  runner: CommandRunner,
  files: HostFiles,
  vm: ResolvedVm,
  stateDir: string,
): Promise<string | undefined> {
  if (!('image' in vm.boot)) return undefined;
  const { image, sizeGiB } = vm.boot;
  if (!(await files.exists(image)))
    throw new SpecError([{ path: 'boot.image', message: `${image} does not exist` }], `VM spec for ${vm.name}`);
  const info = JSON.parse(
    (await runner.run(['qemu-img', 'info', '--output=json', image], { step: 'disks: inspect base image' })).stdout,
  ) as { format: string };
  const { overlay } = vmPaths(stateDir, vm.name);
  const size = sizeGiB ? [`${sizeGiB}G`] : [];
  await runner.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', info.format, '-b', image, overlay, ...size], {
    step: 'disks: create overlay',
  });
  await files.chmod(overlay, 0o600);
  return overlay;
}

export async function createSeedIso(
  runner: CommandRunner,
  files: HostFiles,
  vm: ResolvedVm,
  stateDir: string,
): Promise<string | undefined> {
  if (!vm.cloudInit) return undefined;
  const { dir, seedIso } = vmPaths(stateDir, vm.name);
  const src = join(dir, 'seed');
  await files.mkdir(src, { mode: 0o700 });
  const seed = seedFiles(vm);
  for (const [name, text] of Object.entries(seed)) await files.write(join(src, name), text, { mode: 0o600 });
  await runner.run(
    [
      'xorriso',
      '-as',
      'genisoimage',
      '-quiet',
      '-output',
      seedIso,
      '-volid',
      'cidata',
      '-joliet',
      '-rock',
      ...Object.keys(seed).map((f) => join(src, f)),
    ],
    { step: 'disks: create seed ISO' },
  );
  await files.chmod(seedIso, 0o600);
  await files.remove(src);
  return seedIso;
}

/** The VM's data disks: empty qcow2 files of their size, 0600 (DAC hands them to QEMU). */
export async function createDataDisks(
  runner: CommandRunner,
  files: HostFiles,
  vm: ResolvedVm,
  stateDir: string,
): Promise<void> {
  const paths = vmPaths(stateDir, vm.name);
  for (const disk of vm.disks ?? []) {
    const file = paths.dataDisk(disk.name);
    await runner.run(['qemu-img', 'create', '-q', '-f', 'qcow2', file, `${disk.sizeGiB}G`], {
      step: `disks: create data disk ${disk.name}`,
    });
    await files.chmod(file, 0o600);
  }
}
