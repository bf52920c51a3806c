// A VM's files: the qcow2 overlay on its base image (the base is never written) and the
// cloud-init NoCloud seed ISO (volume label "cidata": user-data, meta-data, network-config).
import { mkdirSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { ResolvedVm } from '../../types/resolved.js';
import { SpecError } from '../errors/index.js';
import type { CommandRunner } from '../host/index.js';
import { vmPaths } from '../xml/index.js';

export async function createOverlay(runner: CommandRunner, vm: ResolvedVm, stateDir: string): Promise<string | undefined> {
  if (!('image' in vm.boot)) return undefined;
  const { image, sizeGiB } = vm.boot;
  if (!existsSync(image)) throw new SpecError([{ path: 'boot.image', message: `${image} does not exist` }], `VM spec for ${vm.name}`);
  const info = JSON.parse((await runner.run(['qemu-img', 'info', '--output=json', image], { step: 'disks: inspect base image' })).stdout) as { format: string };
  const { dir, overlay } = vmPaths(stateDir, vm.name);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const size = sizeGiB ? [`${sizeGiB}G`] : [];
  await runner.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', info.format, '-b', image, overlay, ...size], { step: 'disks: create overlay' });
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

export async function createSeedIso(runner: CommandRunner, vm: ResolvedVm, stateDir: string): Promise<string | undefined> {
  if (!vm.cloudInit) return undefined;
  const { dir, seedIso } = vmPaths(stateDir, vm.name);
  const src = join(dir, 'seed');
  mkdirSync(src, { recursive: true, mode: 0o755 });
  const files = seedFiles(vm);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(src, name), text);
  await runner.run(['xorriso', '-as', 'genisoimage', '-quiet', '-output', seedIso, '-volid', 'cidata', '-joliet', '-rock', ...Object.keys(files).map((f) => join(src, f))], { step: 'disks: create seed ISO' });
  rmSync(src, { recursive: true, force: true });
  return seedIso;
}
