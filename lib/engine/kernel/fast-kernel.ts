// The fast direct-kernel boot: a bzImage whose payload is a vmlinux with a PVH note is booted as
// that vmlinux. Under TCG the guest otherwise spends ~3 s decompressing itself (measured: 5.0 s
// to init from the bzImage, 2.1 s from the vmlinux). Extracted once per kernel content into the
// host's kernel cache (kernel-cache.ts: <state-dir>/kernels/<hash>.vmlinux, kept after its last
// VM, bounded, least recently used evicted first); its initrd likewise with its archives
// uncompressed (initrd.ts). Decompression in unpack.ts (gzip, xz, zstd, lz4); lzma, bzip2 and
// lzo payloads boot as given.
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import type { CommandRunner } from '../../host/index.js';
import type { ResolvedVm } from '../../../types/resolved.js';
import type { BootInitrd, BootPath } from '../../../types/vm.js';
import { bzImagePayload, readsPvhNote } from './bzimage.js';
import { unpackTo } from './unpack.js';
import { initrdFor } from './initrd.js';
import { imageBootOf, type BootFiles, type ImageBootRecord } from './image-boot.js';
import { cacheFile, kernelHash, type KernelCacheUse } from './kernel-cache.js';

/** What a VM boots instead of what its spec names, and how it boots. */
export interface BootChoice {
  /** its extracted vmlinux, or a disk image's own kernel */
  kernel?: string;
  /** its initrd's archives uncompressed (initrd.ts) */
  initrd?: string;
  /** a disk image booted directly: the rest of what its GRUB config boots */
  imageBoot?: ImageBootRecord;
  boot: BootPath;
}

/**
 * How a VM boots — the kernel and initrd it boots instead of its spec's, if any: its extracted
 * vmlinux and its initrd uncompressed, for direct kernel boots under TCG on this machine unless
 * `boot.fastKernel` is false — and, where that fast path is not taken, why. (Not under KVM:
 * there the guest decompresses both natively fast, and it was not measurable here; not on remote
 * hosts: the cache is this machine's.)
 */
export async function kernelFor(
  host: KernelHost,
  vm: ResolvedVm,
  accel: 'kvm' | 'tcg',
  cache: KernelCacheUse,
): Promise<BootChoice> {
  const as = (reason: string): { boot: BootPath } => ({ boot: { kind: 'kernel', reason } });
  if (!('kernel' in vm.boot)) return imageKernelFor(host, vm, vm.boot, accel, cache);
  if (vm.boot.fastKernel === false) return as('boot.fastKernel is false');
  if (accel !== 'tcg') return as('under KVM a kernel decompresses itself natively (the fast path is for TCG)');
  if (host.remote) return as(`the kernel cache is this machine's, the VM is on host ${host.name ?? '(remote)'}`);
  // a kernel this process cannot read (or a host plane of stand-ins) boots as given
  if (!existsSync(vm.boot.kernel)) return as(`${vm.boot.kernel} is not readable here`);
  const { vmlinux, ...rest } = await fastFiles(host, vm.boot.kernel, vm.boot.initrd, vm.memoryMiB, cache, {
    noPvh: 'no PVH note in its payload, or a payload compressed with lzma, bzip2 or lzo',
  });
  return { ...(vmlinux ? { kernel: vmlinux } : {}), ...rest };
}

/** The files of a boot choice a VM's record keeps (those it has). */
export const recordedBoot = ({ kernel, initrd, imageBoot }: BootChoice) => ({
  ...(kernel ? { kernel } : {}),
  ...(initrd ? { initrd } : {}),
  ...(imageBoot ? { imageBoot } : {}),
});

/** How a VM boots, for onProgress: `boot: pvh, initrd unpacked`, each with its reason where it has one. */
export function bootDetail(boot: BootPath): string {
  const why = (r?: string) => (r ? ` (${r})` : '');
  const initrd = boot.initrd ? `, initrd ${boot.initrd.kind}${why(boot.initrd.reason)}` : '';
  return `boot: ${boot.kind}${why(boot.reason)}${initrd}`;
}

/** Where a VM's kernel is looked for: its host, as the engine reaches it. */
type KernelHost = { remote: boolean; runner: CommandRunner; stateDir: string; name?: string | undefined };

/** The initrd a VM boots instead of `initrd` (none: nothing to say). */
async function initrdOf(
  host: KernelHost,
  initrd: string | undefined,
  memoryMiB: number,
  cache: KernelCacheUse,
): Promise<{ initrd?: string; note?: BootInitrd }> {
  if (initrd === undefined) return {};
  if (!existsSync(initrd)) return { note: { kind: 'as given', reason: `${initrd} is not readable here` } };
  return initrdFor(host.runner, host.stateDir, initrd, memoryMiB, cache);
}

/**
 * `kernel` and `initrd` on the fast path — its extracted vmlinux, its initrd uncompressed — and
 * how a VM with `memoryMiB` boots with them (`noPvh`: why not 'pvh', where it is not).
 */
async function fastFiles(
  host: KernelHost,
  kernel: string,
  initrd: string | undefined,
  memoryMiB: number,
  cache: KernelCacheUse,
  { noPvh }: { noPvh: string },
): Promise<{ vmlinux?: string; initrd?: string; boot: BootPath }> {
  const vmlinux = await fastKernel(host.runner, host.stateDir, kernel, cache);
  const unpacked = await initrdOf(host, initrd, memoryMiB, cache);
  const boot: BootPath = vmlinux ? { kind: 'pvh' } : { kind: 'kernel', reason: noPvh };
  return {
    ...(vmlinux ? { vmlinux } : {}),
    ...(unpacked.initrd ? { initrd: unpacked.initrd } : {}),
    boot: unpacked.note ? { ...boot, initrd: unpacked.note } : boot,
  };
}

/**
 * How a disk image boots: directly from its own kernel, initrd and arguments (image-boot.ts) —
 * on the fast path where that kernel has a PVH note — under TCG on this machine unless
 * `boot.fastKernel` is false; else through the firmware and its boot loader, and why.
 */
async function imageKernelFor(
  host: KernelHost,
  vm: ResolvedVm,
  boot: { image: string; fastKernel?: boolean },
  accel: 'kvm' | 'tcg',
  cache: KernelCacheUse,
): Promise<BootChoice> {
  const firmware = (reason: string) => ({ boot: { kind: 'firmware' as const, reason } });
  if (boot.fastKernel === false) return firmware('boot.fastKernel is false');
  if (accel !== 'tcg')
    return firmware('under KVM the firmware and boot loader take little time (the direct boot is for TCG)');
  if (host.remote)
    return firmware(`its boot files are read on this machine, the VM is on host ${host.name ?? '(remote)'}`);
  if (!existsSync(boot.image)) return firmware(`${boot.image} is not readable here`);
  const read = await imageBootOf(host.runner, host.stateDir, boot.image);
  if ('reason' in read) return firmware(`its own kernel was not booted directly: ${read.reason}`);
  return directBoot(host, read.boot, vm.memoryMiB, cache);
}

/**
 * A disk image's boot files (read from it) as a VM with `memoryMiB` boots them: its kernel on the
 * fast path where it can be, its initrd uncompressed where that fits.
 */
export async function directBoot(
  host: KernelHost,
  files: BootFiles,
  memoryMiB: number,
  cache: KernelCacheUse,
): Promise<BootChoice & { kernel: string; imageBoot: ImageBootRecord }> {
  const imageBoot = {
    ...(files.initrd ? { initrd: files.initrd } : {}),
    cmdline: files.cmdline,
    digest: files.digest,
  };
  const { vmlinux, ...rest } = await fastFiles(host, files.kernel, files.initrd, memoryMiB, cache, {
    noPvh: "the image's kernel has no PVH note (or a payload we do not unpack)",
  });
  return { kernel: vmlinux ?? files.kernel, imageBoot, ...rest };
}

/**
 * The vmlinux to boot instead of `kernel`, extracted on first use; undefined when the kernel is
 * not a bzImage with a PVH-capable payload in a format we decompress (it then boots as given).
 * A kernel found unsuitable is remembered (`<hash>.none`) so it is read, not unpacked, next time.
 */
async function fastKernel(
  runner: CommandRunner,
  stateDir: string,
  kernel: string,
  cache: KernelCacheUse,
): Promise<string | undefined> {
  const { hash: key, image } = kernelHash(stateDir, kernel);
  const made = await cacheFile(stateDir, `${key}.vmlinux`, `${key}.none`, cache, async (tmp, dir) =>
    (await decompress(runner, dir, image ?? readFileSync(kernel), tmp)) && fileHasPvhNote(tmp)
      ? undefined
      : 'no PVH note, or a payload we do not unpack',
  );
  return 'path' in made ? made.path : undefined;
}

/** Writes the decompressed payload to `out`; false when there is none we can unpack. */
async function decompress(runner: CommandRunner, dir: string, image: Buffer, out: string): Promise<boolean> {
  const payload = bzImagePayload(image);
  // a missing tool or a damaged stream: the kernel boots as given
  return !!payload && (await unpackTo(runner, dir, payload.format, payload.data, out, 'ignore', 'kernel'));
}

/** Whether the ELF file at `path` has a PVH note, reading only what the check needs. */
function fileHasPvhNote(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    return readsPvhNote((offset, length) => {
      const buf = Buffer.alloc(Math.min(length, 16 * 2 ** 20)); // notes are small; a bogus size is not read
      return buf.subarray(0, readSync(fd, buf, 0, buf.length, offset));
    });
  } finally {
    closeSync(fd);
  }
}
