// An initrd's archives uncompressed for a direct boot: how its parts are found (uncompressed
// archives, then a compressed one, zero padding between), when the result is whole, and the
// choice per VM (unpacked where it fits twice into half the VM's memory, as given with a reason
// otherwise). gzip only (Node's zlib): no process is started — the runner refuses. Files in a
// temporary directory; no root.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { initrdLayout, isWholeCpio } from '../../lib/engine/kernel/initrd-layout.js';
import { initrdFor } from '../../lib/engine/kernel/initrd.js';
import type { CommandRunner } from '../../lib/host/index.js';

/** A newc archive of `files` (name → content), ending with its trailer, as the kernel reads it. */
function newc(files: Record<string, string | Buffer>): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const entry = (name: string, data: Buffer, mode: number) => {
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length + 1, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}${name}\0`);
    parts.push(header, pad(header.length), data, pad(data.length));
  };
  for (const [name, content] of Object.entries(files)) entry(name, Buffer.from(content), 0o100644);
  entry('TRAILER!!!', Buffer.alloc(0), 0);
  return Buffer.concat(parts);
}

const early = newc({ 'kernel/x86/microcode/AuthenticAMD.bin': 'microcode' });
const main = newc({ init: '#!/bin/sh\nexec /sbin/init\n', 'etc/motd': 'x'.repeat(5000) });

describe('initrd layout', () => {
  test('one compressed archive', () => {
    const gz = gzipSync(main);
    expect(initrdLayout(gz)).toEqual({ archives: [], compressed: { format: 'gzip', data: gz } });
  });

  test('an uncompressed early archive, zero padding, then the compressed one', () => {
    const gz = gzipSync(main);
    const layout = initrdLayout(Buffer.concat([early, Buffer.alloc(512 - (early.length % 512)), gz]));
    expect(layout?.archives).toEqual([early]);
    expect(layout?.compressed).toEqual({ format: 'gzip', data: gz });
  });

  test('uncompressed archives only', () => {
    expect(initrdLayout(Buffer.concat([early, Buffer.alloc(8), main]))).toEqual({ archives: [early, main] });
  });

  test('a cut archive, an unknown compression, nothing at all: not an initrd we read', () => {
    expect(initrdLayout(main.subarray(0, main.length - 200))).toBeUndefined();
    expect(initrdLayout(Buffer.concat([early, Buffer.from('PK\x03\x04 a zip')]))).toBeUndefined();
    expect(initrdLayout(Buffer.alloc(64))).toBeUndefined();
  });

  test('whole archives: each to its trailer, padding between; a cut one or other bytes are not', () => {
    expect(isWholeCpio(Buffer.concat([main, Buffer.alloc(16), early]))).toBe(true);
    expect(isWholeCpio(main.subarray(0, main.length - 100))).toBe(false);
    expect(isWholeCpio(Buffer.concat([main, Buffer.from('junk')]))).toBe(false);
    expect(isWholeCpio(Buffer.from('not an archive'))).toBe(false);
  });
});

describe('initrd unpacked for a VM', () => {
  let dir: string;
  const runner: CommandRunner = {
    run: () => Promise.reject(new Error('gzip is unpacked in-process: no command')),
  } as unknown as CommandRunner;
  const cache = { inUse: () => [] };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vwird-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const initrd = (bytes: Buffer) => {
    const path = join(dir, `initrd-${bytes.length}.img`);
    writeFileSync(path, bytes);
    return path;
  };

  test('an early archive and a gzip one: the same archives, uncompressed, made once into the cache', async () => {
    const file = initrd(Buffer.concat([early, gzipSync(main), Buffer.alloc(100)]));
    const first = await initrdFor(runner, dir, file, 256, cache);
    expect(first.note).toEqual({ kind: 'unpacked' });
    expect(first.initrd).toMatch(new RegExp(`^${join(dir, 'kernels')}/[0-9a-f]{20}\\.cpio$`));
    expect(readFileSync(first.initrd!)).toEqual(Buffer.concat([early, main]));
    const { ino } = statSync(first.initrd!);
    const again = await initrdFor(runner, dir, file, 256, cache);
    expect(again.initrd).toBe(first.initrd);
    expect(statSync(again.initrd!).ino).toBe(ino); // not made again
  });

  test('too large for the VM: unpacked it must fit twice into half its memory', async () => {
    const big = newc({ blob: Buffer.alloc(5 * 2 ** 20, 7) }); // 5 MiB, compresses to almost nothing
    const file = initrd(gzipSync(big));
    expect(await initrdFor(runner, dir, file, 16, cache)).toEqual({
      note: {
        kind: 'as given',
        reason: "uncompressed it is 5.0 MiB, held twice while the kernel unpacks it: more than half of the VM's 16 MiB",
      },
    });
    expect((await initrdFor(runner, dir, file, 32, cache)).note).toEqual({ kind: 'unpacked' });
  });

  test('nothing to gain, or something we cannot account for: as given, and why (remembered)', async () => {
    const plain = initrd(main);
    expect(await initrdFor(runner, dir, plain, 256, cache)).toEqual({
      note: { kind: 'as given', reason: 'it is not compressed' },
    });
    // data after the gzip stream the kernel would read too: not dropped unseen
    const trailing = initrd(Buffer.concat([gzipSync(main), Buffer.from('070701 more')]));
    expect((await initrdFor(runner, dir, trailing, 256, cache)).note).toEqual({
      kind: 'as given',
      reason: 'its gzip archive could not be unpacked here (damaged, data after it, or no gzip tool)',
    });
    const notCpio = initrd(gzipSync(Buffer.from('hello, not an archive')));
    expect((await initrdFor(runner, dir, notCpio, 256, cache)).note).toEqual({
      kind: 'as given',
      reason: 'its gzip part is not whole cpio archives',
    });
    // the reason is kept beside the cache: the file is not unpacked again
    expect(readdirReasons(dir)).toEqual(
      expect.arrayContaining(['it is not compressed', 'its gzip part is not whole cpio archives']),
    );
    expect(existsSync(join(dir, 'kernels'))).toBe(true);
  });
});

function readdirReasons(dir: string): string[] {
  return readdirSync(join(dir, 'kernels'))
    .filter((f) => f.endsWith('.asis'))
    .map((f) => readFileSync(join(dir, 'kernels', f), 'utf8'));
}
