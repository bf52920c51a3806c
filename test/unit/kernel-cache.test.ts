// The extracted-kernel cache: what eviction picks (least recently used, never a kernel a record
// names or one used within the grace period), and the hash memo (an unchanged kernel is not read
// again; a changed one is). Files in a temporary directory; no process, no root.
import { mkdtempSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  kernelHash,
  listKernels,
  pruneKernels,
  toEvict,
  type CachedKernel,
} from '../../lib/engine/kernel/kernel-cache.js';

const MiB = 2 ** 20;
const at = (minutesAgo: number) => new Date(Date.now() - minutesAgo * 60_000);
const k = (name: string, mib: number, minutesAgo: number): CachedKernel => ({
  path: `/c/${name}`,
  kind: 'kernel',
  hash: name,
  bytes: mib * MiB,
  lastUsed: at(minutesAgo),
});

describe('kernel cache eviction', () => {
  const lru = [k('a', 60, 300), k('b', 60, 200), k('c', 60, 100), k('d', 60, 1)];

  test('least recently used first, only as many as the bound needs', () => {
    expect(toEvict(lru, 130 * MiB, new Set(), Date.now()).map((x) => x.hash)).toEqual(['a', 'b']);
    expect(toEvict(lru, 1024 * MiB, new Set(), Date.now())).toEqual([]);
  });

  test('never a kernel a record names, nor one used within the grace period', () => {
    // b is booted by a VM; d was chosen a minute ago (a create may not have recorded it yet)
    expect(toEvict(lru, 0, new Set(['/c/b']), Date.now()).map((x) => x.hash)).toEqual(['a', 'c']);
    expect(toEvict(lru, 0, new Set(['/c/b']), Date.now(), 0).map((x) => x.hash)).toEqual(['a', 'c', 'd']);
  });

  test('on disk: pruned files go, the rest stay, listed least recently used first (kernels and initrds)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vwkc-'));
    try {
      mkdirSync(join(dir, 'kernels'));
      const file = (hash: string, minutesAgo: number, ext = 'vmlinux') => {
        const path = join(dir, 'kernels', `${hash}.${ext}`);
        writeFileSync(path, Buffer.alloc(MiB));
        utimesSync(path, at(minutesAgo), at(minutesAgo));
        return path;
      };
      const old = file('0'.repeat(20), 60, 'cpio');
      const used = file('1'.repeat(20), 30);
      file('2'.repeat(20), 0);
      writeFileSync(join(dir, 'kernels', `${'3'.repeat(20)}.none`), ''); // markers: ignored
      writeFileSync(join(dir, 'kernels', `${'4'.repeat(20)}.asis`), 'it is not compressed');
      expect(listKernels(dir).map((x) => [x.hash, x.kind])).toEqual([
        ['0'.repeat(20), 'initrd'],
        ['1'.repeat(20), 'kernel'],
        ['2'.repeat(20), 'kernel'],
      ]);
      expect(pruneKernels(dir, 0, [used]).map((x) => x.path)).toEqual([old]);
      expect(listKernels(dir).map((x) => x.hash)).toEqual(['1', '2'].map((c) => c.repeat(20)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('kernel hash memo', () => {
  test('an unchanged kernel is hashed from the memo (not read); a rewritten one is read again', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vwkm-'));
    try {
      mkdirSync(join(dir, 'kernels'));
      const kernel = join(dir, 'vmlinuz');
      writeFileSync(kernel, 'one');
      const first = kernelHash(dir, kernel);
      expect(first.image?.toString()).toBe('one'); // read
      const again = kernelHash(dir, kernel);
      expect(again).toEqual({ hash: first.hash }); // not read
      writeFileSync(kernel, 'two!');
      const changed = kernelHash(dir, kernel);
      expect(changed.image?.toString()).toBe('two!');
      expect(changed.hash).not.toBe(first.hash);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
