// An initrd as the guest's kernel unpacks it fastest: its archives uncompressed. Under TCG the
// guest inflates a compressed initramfs slowly — Debian's cloud image: 35 MiB of gzip took
// 2.1–2.5 s of its boot before /init, the same archives uncompressed (125 MiB) 0.5–0.7 s — while
// the host decompresses it natively in under a second, once (kept in the kernel cache as
// `<hash>.cpio`). The guest's root file system is the same: the kernel unpacks a run of
// archives, compressed or not, into one rootfs. The cost is memory while it does: the kernel
// holds the initrd and what it unpacked at once, so an initrd is unpacked for a VM only when it
// fits twice into half the VM's memory.
import { appendFileSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { CommandRunner } from '../../host/index.js';
import type { BootInitrd } from '../../../types/vm.js';
import { initrdLayout, isWholeCpio } from './initrd-layout.js';
import { cacheFile, kernelHash, type KernelCacheUse } from './kernel-cache.js';
import { unpacks, unpackTo } from './unpack.js';

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/**
 * The initrd a VM with `memoryMiB` boots instead of `initrd`: its archives uncompressed, from the
 * cache; or, where it boots the initrd as given, why.
 */
export async function initrdFor(
  runner: CommandRunner,
  stateDir: string,
  initrd: string,
  memoryMiB: number,
  cache: KernelCacheUse,
): Promise<{ initrd?: string; note: BootInitrd }> {
  const made = await unpackedInitrd(runner, stateDir, initrd, cache);
  if ('reason' in made) return { note: { kind: 'as given', reason: made.reason } };
  const bytes = statSync(made.path).size;
  if (bytes * 4 > memoryMiB * 2 ** 20)
    return {
      note: {
        kind: 'as given',
        reason: `uncompressed it is ${mib(bytes)}, held twice while the kernel unpacks it: more than half of the VM's ${memoryMiB} MiB`,
      },
    };
  return { initrd: made.path, note: { kind: 'unpacked' } };
}

/** `initrd`'s archives uncompressed, made on first use; or why there is nothing to gain. */
function unpackedInitrd(
  runner: CommandRunner,
  stateDir: string,
  initrd: string,
  cache: KernelCacheUse,
): Promise<{ path: string } | { reason: string }> {
  const { hash, image } = kernelHash(stateDir, initrd);
  return cacheFile(stateDir, `${hash}.cpio`, `${hash}.asis`, cache, async (tmp, dir) => {
    const layout = initrdLayout(image ?? readFileSync(initrd));
    if (!layout) return 'it is not cpio archives in a compression we know';
    if (!layout.compressed) return 'it is not compressed';
    const { format, data } = layout.compressed;
    if (!unpacks(format, 'zeros')) return `it is compressed with ${format}, which virtwire does not unpack`;
    const part = `${tmp}.part`;
    try {
      if (!(await unpackTo(runner, dir, format, data, part, 'zeros', 'initrd')))
        return `its ${format} archive could not be unpacked here (damaged, data after it, or no ${format} tool)`;
      const unpacked = readFileSync(part);
      if (!isWholeCpio(unpacked)) return `its ${format} part is not whole cpio archives`;
      writeFileSync(tmp, Buffer.concat(layout.archives));
      appendFileSync(tmp, unpacked);
      return undefined;
    } finally {
      rmSync(part, { force: true });
    }
  });
}
