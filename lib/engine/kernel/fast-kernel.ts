// The fast direct-kernel boot: a bzImage whose payload is a vmlinux with a PVH note is booted as
// that vmlinux. Under TCG the guest otherwise spends ~3 s decompressing itself (measured: 5.0 s
// to init from the bzImage, 2.1 s from the vmlinux). Extracted once per kernel content into the
// host's kernel cache (kernel-cache.ts: <state-dir>/kernels/<hash>.vmlinux, kept after its last
// VM, bounded, least recently used evicted first).
//
// Decompression: gzip with Node's zlib; xz, zstd and lz4 with their Debian tools (xz-utils, zstd,
// lz4) — both npm xz decoders tried (@napi-rs/lzma, xz-decompress) refuse the x86 BCJ filter the
// kernel's xz stream uses. lzma, bzip2 and lzo payloads boot as given.
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { CommandRunner } from '../../host/index.js';
import type { ResolvedVm } from '../../../types/resolved.js';
import type { BootPath } from '../../../types/vm.js';
import { bzImagePayload, readsPvhNote, type PayloadFormat } from './bzimage.js';
import { imageBootOf, type BootFiles, type ImageBootRecord } from './image-boot.js';
import { KERNEL_CACHE_MIB, kernelCacheDir, kernelHash, pruneKernels, touch } from './kernel-cache.js';

const TOOLS: Partial<Record<PayloadFormat, (file: string) => string[]>> = {
  xz: (f) => ['xz', '-dc', '--single-stream', '--', f],
  zstd: (f) => ['zstd', '-dcq', '--', f],
  lz4: (f) => ['lz4', '-dcq', f],
};

/** What the cache may hold, and what it must keep: the kernels the state's records name. */
export interface KernelCacheUse {
  maxMiB?: number;
  inUse: () => Iterable<string | undefined>;
}

/**
 * How a VM boots — the kernel it boots instead of its spec's, if any: its extracted vmlinux, for
 * direct kernel boots under TCG on this machine unless `boot.fastKernel` is false — and, where
 * that fast path is not taken, why. (Not under KVM: there the guest decompresses itself natively
 * fast, and it was not measurable here; not on remote hosts: the cache is this machine's.)
 */
export async function kernelFor(
  host: KernelHost,
  vm: ResolvedVm,
  accel: 'kvm' | 'tcg',
  cache: KernelCacheUse,
): Promise<{ kernel?: string; imageBoot?: ImageBootRecord; boot: BootPath }> {
  const as = (reason: string): { boot: BootPath } => ({ boot: { kind: 'kernel', reason } });
  if (!('kernel' in vm.boot)) return imageKernelFor(host, vm.boot, accel, cache);
  if (vm.boot.fastKernel === false) return as('boot.fastKernel is false');
  if (accel !== 'tcg') return as('under KVM a kernel decompresses itself natively (the fast path is for TCG)');
  if (host.remote) return as(`the kernel cache is this machine's, the VM is on host ${host.name ?? '(remote)'}`);
  // a kernel this process cannot read (or a host plane of stand-ins) boots as given
  if (!existsSync(vm.boot.kernel)) return as(`${vm.boot.kernel} is not readable here`);
  const kernel = await fastKernel(host.runner, host.stateDir, vm.boot.kernel, cache);
  if (!kernel) return as('no PVH note in its payload, or a payload compressed with lzma, bzip2 or lzo');
  return { kernel, boot: { kind: 'pvh' } };
}

/** Where a VM's kernel is looked for: its host, as the engine reaches it. */
type KernelHost = { remote: boolean; runner: CommandRunner; stateDir: string; name?: string | undefined };

/**
 * How a disk image boots: directly from its own kernel, initrd and arguments (image-boot.ts) —
 * on the fast path where that kernel has a PVH note — under TCG on this machine unless
 * `boot.fastKernel` is false; else through the firmware and its boot loader, and why.
 */
async function imageKernelFor(
  host: KernelHost,
  boot: { image: string; fastKernel?: boolean },
  accel: 'kvm' | 'tcg',
  cache: KernelCacheUse,
): Promise<{ kernel?: string; imageBoot?: ImageBootRecord; boot: BootPath }> {
  const firmware = (reason: string) => ({ boot: { kind: 'firmware' as const, reason } });
  if (boot.fastKernel === false) return firmware('boot.fastKernel is false');
  if (accel !== 'tcg')
    return firmware('under KVM the firmware and boot loader take little time (the direct boot is for TCG)');
  if (host.remote)
    return firmware(`its boot files are read on this machine, the VM is on host ${host.name ?? '(remote)'}`);
  if (!existsSync(boot.image)) return firmware(`${boot.image} is not readable here`);
  const read = await imageBootOf(host.runner, host.stateDir, boot.image);
  if ('reason' in read) return firmware(`its own kernel was not booted directly: ${read.reason}`);
  return directBoot(host, read.boot, cache);
}

/** A disk image's boot files (read from it) as a VM boots them: its kernel on the fast path where it can be. */
export async function directBoot(
  host: KernelHost,
  files: BootFiles,
  cache: KernelCacheUse,
): Promise<{ kernel: string; imageBoot: ImageBootRecord; boot: BootPath }> {
  const imageBoot = {
    ...(files.initrd ? { initrd: files.initrd } : {}),
    cmdline: files.cmdline,
    digest: files.digest,
  };
  const vmlinux = await fastKernel(host.runner, host.stateDir, files.kernel, cache);
  if (vmlinux) return { kernel: vmlinux, imageBoot, boot: { kind: 'pvh' } };
  return {
    kernel: files.kernel,
    imageBoot,
    boot: { kind: 'kernel', reason: "the image's kernel has no PVH note (or a payload we do not unpack)" },
  };
}

/**
 * The vmlinux to boot instead of `kernel`, extracted on first use; undefined when the kernel is
 * not a bzImage with a PVH-capable payload in a format we decompress (it then boots as given).
 * A kernel found unsuitable is remembered (an empty `<hash>.none`) so it is read, not unpacked,
 * next time.
 */
async function fastKernel(
  runner: CommandRunner,
  stateDir: string,
  kernel: string,
  cache: KernelCacheUse,
): Promise<string | undefined> {
  const { hash: key, image } = kernelHash(stateDir, kernel);
  const dir = kernelCacheDir(stateDir);
  const target = join(dir, `${key}.vmlinux`);
  if (existsSync(target)) {
    try {
      touch(target);
      return target;
    } catch {
      // evicted since: extracted again below
    }
  }
  if (existsSync(join(dir, `${key}.none`))) return undefined;
  // concurrent creates of one kernel in this process share one extraction (20 at once took
  // 2.5 GiB of memory and 20 decompressors otherwise)
  let pending = extracting.get(target);
  if (!pending) {
    pending = extract(runner, dir, key, image ?? readFileSync(kernel))
      .then((done) => {
        // the new one was just used: it stays; older ones go down to the bound
        if (done) pruneKernels(stateDir, (cache.maxMiB ?? KERNEL_CACHE_MIB) * 2 ** 20, cache.inUse());
        return done;
      })
      .finally(() => extracting.delete(target));
    extracting.set(target, pending);
  }
  return pending;
}

const extracting = new Map<string, Promise<string | undefined>>();

async function extract(runner: CommandRunner, dir: string, key: string, image: Buffer): Promise<string | undefined> {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  // unpacked under a name of its own, then renamed: another process sees all or nothing
  const tmp = join(dir, `.${key}.${process.pid}.${randomBytes(4).toString('hex')}`);
  try {
    if (!(await decompress(runner, dir, image, tmp)) || !fileHasPvhNote(tmp)) {
      writeFileSync(join(dir, `${key}.none`), '');
      return undefined;
    }
    chmodSync(tmp, 0o644); // QEMU's user reads it (the umask may have taken bits)
    const target = join(dir, `${key}.vmlinux`);
    renameSync(tmp, target);
    return target;
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Writes the decompressed payload to `out`; false when there is none we can unpack. */
async function decompress(runner: CommandRunner, dir: string, image: Buffer, out: string): Promise<boolean> {
  const payload = bzImagePayload(image);
  if (!payload) return false;
  if (payload.format === 'gzip') {
    writeFileSync(out, gunzipSync(payload.data));
    return true;
  }
  const tool = TOOLS[payload.format];
  if (!tool) return false;
  const input = join(dir, `.payload.${process.pid}.${randomBytes(4).toString('hex')}`);
  try {
    writeFileSync(input, payload.data, { mode: 0o600 });
    // a missing tool or a damaged stream: the kernel boots as given
    const r = await runner
      .run(tool(input), { stdoutFile: out, allowFailure: true, step: `kernel: ${payload.format} -d` })
      .catch(() => undefined);
    return r?.exitCode === 0;
  } finally {
    rmSync(input, { force: true });
  }
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
