// A VM's files: the qcow2 overlay on its base image (the base is never written) and the
// cloud-init NoCloud seed ISO (volume label "cidata": user-data, meta-data, network-config).
// They live on the VM's host: made with that host's runner and files (SSH for a remote host).
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { ResolvedVm } from '../../types/resolved.js';
import { SpecError } from '../errors/index.js';
import type { CommandRunner, HostFiles } from '../host/index.js';
import { vmPaths } from './state/paths.js';

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
  const { dir, overlay } = vmPaths(stateDir, vm.name);
  await files.mkdir(dir);
  const size = sizeGiB ? [`${sizeGiB}G`] : [];
  await runner.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', info.format, '-b', image, overlay, ...size], {
    step: 'disks: create overlay',
  });
  return overlay;
}

/** The three NoCloud files for a VM (meta-data always names its instance and host). */
export function seedFiles(vm: ResolvedVm): Record<string, string> {
  const ci = vm.cloudInit ?? {};
  const files: Record<string, string> = {
    'user-data': ci.userData ?? '#cloud-config\n{}\n',
    'meta-data': stringify({ 'instance-id': vm.uuid, 'local-hostname': vm.name, ...(ci.metaData ?? {}) }),
  };
  if (ci.networkConfig !== undefined) files['network-config'] = ci.networkConfig;
  return files;
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
  await files.mkdir(src);
  const seed = seedFiles(vm);
  for (const [name, text] of Object.entries(seed)) await files.write(join(src, name), text);
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
  await files.remove(src);
  return seedIso;
}
