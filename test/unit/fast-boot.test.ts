// Fast boots without a kernel or a host: a bzImage's payload and the PVH note are found in
// synthetic images, and concurrent host-plane requests coalesce into one apply per round.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { bzImagePayload, hasPvhNote } from '../../lib/engine/kernel/bzimage.js';
import { HostCommits } from '../../lib/engine/reconcile.js';
import { DirStateStore } from '../../lib/engine/state/dir-store.js';
import type { HostContext, HostResolver } from '../../lib/engine/hosts.js';
import type { ResolvedVm } from '../../types/resolved.js';
import type { HostState } from '../../types/host.js';

/** A 64-bit ELF with one PT_NOTE segment holding the notes given as [name, type]. */
function elf(notes: [string, number][]): Buffer {
  const body = Buffer.concat(
    notes.map(([name, type]) => {
      const n = Buffer.alloc(12 + ((name.length + 1 + 3) & ~3) + 4);
      n.writeUInt32LE(name.length + 1, 0);
      n.writeUInt32LE(4, 4);
      n.writeUInt32LE(type, 8);
      n.write(name, 12, 'latin1');
      return n;
    }),
  );
  const head = Buffer.alloc(64 + 56);
  head.writeUInt32BE(0x7f454c46, 0);
  head[4] = 2; // 64-bit
  head[5] = 1; // little-endian
  head.writeBigUInt64LE(64n, 0x20); // program headers right after the ELF header
  head.writeUInt16LE(56, 0x36);
  head.writeUInt16LE(1, 0x38);
  head.writeUInt32LE(4, 64); // PT_NOTE
  head.writeBigUInt64LE(BigInt(head.length), 64 + 8); // offset
  head.writeBigUInt64LE(BigInt(body.length), 64 + 32); // file size
  return Buffer.concat([head, body]);
}

/** A bzImage (boot protocol 2.15) around `payload`, with the size trailer the kernel's build adds. */
function bzImage(payload: Buffer, version = 0x20f): Buffer {
  const setupSectors = 3;
  const setup = Buffer.alloc((setupSectors + 1) * 512);
  setup[0x1f1] = setupSectors;
  setup.write('HdrS', 0x202, 'latin1');
  setup.writeUInt16LE(version, 0x206);
  const pad = Buffer.alloc(100); // the decompressor's code before the payload
  setup.writeUInt32LE(pad.length, 0x248);
  setup.writeUInt32LE(payload.length + 4, 0x24c);
  return Buffer.concat([setup, pad, payload, Buffer.alloc(4), Buffer.alloc(64)]);
}

describe('bzImage and PVH', () => {
  const pvh = elf([
    ['GNU', 3],
    ['Xen', 18],
  ]);

  test('the payload is found and recognised by its magic; the size trailer is cut', () => {
    const gz = gzipSync(pvh);
    const p = bzImagePayload(bzImage(gz))!;
    expect(p.format).toBe('gzip');
    expect(p.data.equals(gz)).toBe(true);
    const xz = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3]);
    expect(bzImagePayload(bzImage(xz))!.format).toBe('xz');
  });

  test('not a bzImage, or too old a boot protocol: nothing to extract', () => {
    expect(bzImagePayload(pvh)).toBeUndefined();
    expect(bzImagePayload(bzImage(gzipSync(pvh), 0x207))).toBeUndefined();
    expect(bzImagePayload(bzImage(Buffer.from('not compressed at all')))).toBeUndefined();
  });

  test('the PVH entry note is Xen type 18; other notes or names do not count', () => {
    expect(hasPvhNote(pvh)).toBe(true);
    expect(hasPvhNote(elf([['Xen', 17]]))).toBe(false);
    expect(hasPvhNote(elf([['Linux', 18]]))).toBe(false);
    expect(hasPvhNote(Buffer.from('MZ not an elf at all, long enough to be read as a header......'))).toBe(false);
  });
});

describe('group commit of host-plane applies', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'vw-gc-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('requests arriving while an apply runs share the next one; each waits for an apply after it', async () => {
    const state = new DirStateStore(dir);
    const applied: number[] = [];
    let release!: () => void;
    const first = new Promise<void>((r) => (release = r));
    const plane = {
      apply: async (s: HostState) => {
        applied.push(s.networks.length);
        if (applied.length === 1) await first;
        return { changes: [] };
      },
    };
    const host = { name: undefined, stateDir: dir, plane } as unknown as HostContext;
    const hosts = { all: () => [] } as unknown as HostResolver;
    const vm = (name: string) => ({ name, nics: [] }) as unknown as ResolvedVm;

    const commits = new HostCommits();
    const one = commits.commit(state, hosts, host, [vm('a')]);
    await new Promise((r) => setImmediate(r)); // the first apply has begun and waits
    const rest = Array.from({ length: 9 }, (_, i) => commits.commit(state, hosts, host, [vm(`b${i}`)]));
    let settled = 0;
    for (const p of rest) void p.then(() => settled++);
    await new Promise((r) => setImmediate(r));
    expect(applied).toHaveLength(1);
    expect(settled).toBe(0); // none may count the running apply as theirs
    release();
    await Promise.all([one, ...rest]);
    expect(applied).toHaveLength(2);
    // batch: false applies alone
    await commits.commit(state, hosts, host, [vm('c')], { batch: false });
    expect(applied).toHaveLength(3);
  });
});
