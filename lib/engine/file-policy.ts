// The files a VM spec names are opened by root-run daemons: QEMU reads the boot files, virtlogd
// (root) appends the guest's console to the serial log. A spec that named /dev/sda as its image
// or /root/.ssh/authorized_keys as its log would read the host's disk or write into root's keys.
// So, on the VM's host before anything is made: a boot file must be a regular file (every symlink
// followed) under the directories a VM may read; a serial log must be in the VM's own directory
// (or one the operator allows), not through a symlink, and not anything but a regular file.
import { posix } from 'node:path';
import type { PathPolicy } from '../../types/vm.js';
import type { ResolvedVm } from '../../types/resolved.js';
import { SpecError } from '../errors/index.js';
import type { HostFiles } from '../host/index.js';
import { DEFAULT_STATE_DIR, vmPaths } from './state/paths.js';

/** Where boot images and kernels live on a Debian host (libvirt's pool, the host's own kernels). */
const SYSTEM_READ = ['/var/lib/libvirt/images', '/boot'];

const under = (root: string, p: string) => p === root || p.startsWith(root.endsWith('/') ? root : `${root}/`);

/** The roots as given and where they really are (a root may itself be a symlink). */
async function realRoots(files: HostFiles, roots: string[]): Promise<string[]> {
  const real = await Promise.all(roots.map(async (r) => (await files.resolve(r))?.real));
  return [...new Set([...roots, ...real.filter((r): r is string => r !== undefined)])];
}

/** Every problem of the VM's files on its host, as a SpecError naming the fields; none: fine. */
export async function checkVmFiles(
  vm: ResolvedVm,
  files: HostFiles,
  stateDir: string,
  policy: PathPolicy = {},
): Promise<void> {
  const problems: { path: string; message: string }[] = [];
  const where = vm.host ? ` on host ${vm.host}` : '';
  const boot =
    'image' in vm.boot
      ? { 'boot.image': vm.boot.image }
      : { 'boot.kernel': vm.boot.kernel, ...(vm.boot.initrd ? { 'boot.initrd': vm.boot.initrd } : {}) };
  const readable = [stateDir, DEFAULT_STATE_DIR, ...SYSTEM_READ, ...(policy.read ?? [])];
  const readRoots = await realRoots(files, readable);
  for (const [path, file] of Object.entries(boot)) {
    const found = await files.resolve(file);
    if (!found) problems.push({ path, message: `${file} does not exist${where}` });
    else if (found.kind !== 'file')
      problems.push({ path, message: `${file} is not a regular file${where} (a device or directory)` });
    else if (!readRoots.some((r) => under(r, found.real)))
      problems.push({
        path,
        message: `${file}${found.real === file ? '' : ` (${found.real})`} is outside the directories a VM may read${where} (${readable.join(', ')}; the operator's paths.read adds more)`,
      });
  }
  if (vm.serialLog !== undefined) {
    const log = posix.normalize(vm.serialLog);
    const writable = [vmPaths(stateDir, vm.name).dir, ...(policy.write ?? [])];
    const writeRoots = await realRoots(files, writable);
    const dir = await files.resolve(posix.dirname(log));
    const existing = await files.resolve(log);
    const why = !writable.some((r) => under(r, log))
      ? `is outside the VM's directory${where} (${writable.join(', ')}; the operator's paths.write adds more)`
      : dir && !writeRoots.some((r) => under(r, dir.real))
        ? `is in ${dir.real} through a symbolic link`
        : existing &&
            (existing.kind !== 'file' || existing.real !== (dir ? posix.join(dir.real, posix.basename(log)) : log))
          ? 'exists and is not a regular file of its own (a symbolic link, a device)'
          : undefined;
    if (why) problems.push({ path: 'serialLog', message: `${vm.serialLog} ${why}` });
  }
  if (problems.length > 0) throw new SpecError(problems, `VM spec for ${vm.name}`);
}
