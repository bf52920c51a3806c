// The fast direct-kernel boot: a bzImage whose payload is a vmlinux with a PVH note is booted as
// that vmlinux. Under TCG the guest otherwise spends ~3 s decompressing itself (measured: 5.0 s
// to init from the bzImage, 2.1 s from the vmlinux). Extracted once per kernel content, kept in
// <state-dir>/kernels/<hash>.vmlinux, removed with the last VM that boots it.
//
// Decompression: gzip with Node's zlib; xz, zstd and lz4 with their Debian tools (xz-utils, zstd,
// lz4) — both npm xz decoders tried (@napi-rs/lzma, xz-decompress) refuse the x86 BCJ filter the
// kernel's xz stream uses. lzma, bzip2 and lzo payloads boot as given.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { CommandRunner } from '../../host/index.js';
import type { ResolvedVm } from '../../../types/resolved.js';
import { bzImagePayload, hasPvhNote, type PayloadFormat } from './bzimage.js';

const TOOLS: Partial<Record<PayloadFormat, (file: string) => string[]>> = {
  xz: (f) => ['xz', '-dc', '--single-stream', '--', f],
  zstd: (f) => ['zstd', '-dcq', '--', f],
  lz4: (f) => ['lz4', '-dcq', f],
};

const kernelCacheDir = (stateDir: string) => join(stateDir, 'kernels');

/**
 * The kernel a VM boots instead of its spec's, if any: its extracted vmlinux, for direct kernel
 * boots under TCG on this machine unless `boot.fastKernel` is false. (Not under KVM: there the
 * guest decompresses itself natively fast, and it was not measurable here; not on remote hosts.)
 */
export function kernelFor(
  host: { remote: boolean; runner: CommandRunner; stateDir: string },
  vm: ResolvedVm,
  accel: 'kvm' | 'tcg',
): Promise<string | undefined> {
  if (!('kernel' in vm.boot) || vm.boot.fastKernel === false || accel !== 'tcg' || host.remote)
    return Promise.resolve(undefined);
  // a kernel this process cannot read (or a host plane of stand-ins) boots as given
  if (!existsSync(vm.boot.kernel)) return Promise.resolve(undefined);
  return fastKernel(host.runner, host.stateDir, vm.boot.kernel);
}

/**
 * The vmlinux to boot instead of `kernel`, extracted on first use; undefined when the kernel is
 * not a bzImage with a PVH-capable payload in a format we decompress (it then boots as given).
 * A kernel found unsuitable is remembered (an empty `<hash>.none`) so it is read, not unpacked,
 * next time.
 */
async function fastKernel(runner: CommandRunner, stateDir: string, kernel: string): Promise<string | undefined> {
  const image = readFileSync(kernel);
  const key = createHash('sha256').update(image).digest('hex').slice(0, 20);
  const dir = kernelCacheDir(stateDir);
  const target = join(dir, `${key}.vmlinux`);
  const none = join(dir, `${key}.none`);
  if (existsSync(target)) return target;
  if (existsSync(none)) return undefined;
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const elf = await decompress(runner, dir, image);
  if (!elf || !hasPvhNote(elf)) {
    writeFileSync(none, '');
    return undefined;
  }
  // written whole under a name of its own, then renamed: a concurrent create sees all or nothing
  const tmp = join(dir, `.${key}.${process.pid}.${randomBytes(4).toString('hex')}`);
  writeFileSync(tmp, elf, { mode: 0o644 });
  chmodSync(tmp, 0o644); // QEMU's user reads it (the umask may have taken bits)
  renameSync(tmp, target);
  return target;
}

async function decompress(runner: CommandRunner, dir: string, image: Buffer): Promise<Buffer | undefined> {
  const payload = bzImagePayload(image);
  if (!payload) return undefined;
  if (payload.format === 'gzip') return gunzipSync(payload.data);
  const tool = TOOLS[payload.format];
  if (!tool) return undefined;
  const base = join(dir, `.payload.${process.pid}.${randomBytes(4).toString('hex')}`);
  try {
    writeFileSync(base, payload.data, { mode: 0o600 });
    // a missing tool or a damaged stream: the kernel boots as given
    const r = await runner
      .run(tool(base), { stdoutFile: `${base}.out`, allowFailure: true, step: `kernel: ${payload.format} -d` })
      .catch(() => undefined);
    return r?.exitCode === 0 ? readFileSync(`${base}.out`) : undefined;
  } finally {
    rmSync(base, { force: true });
    rmSync(`${base}.out`, { force: true });
  }
}

/** Removes an extracted kernel no VM boots any more (`inUse`: the kernels the state's records name). */
export function releaseKernel(path: string | undefined, inUse: Iterable<string | undefined>): void {
  if (!path || [...inUse].includes(path)) return;
  rmSync(path, { force: true });
}
