// A disk image's own kernel, initrd and kernel arguments, read from its GRUB configuration so
// the image can boot directly (and, its kernel having a PVH note, on the fast path) instead of
// through SeaBIOS and GRUB: under TCG the firmware, GRUB reading a 36 MiB initrd through BIOS
// disk calls and the kernel decompressing itself are most of a cloud image's boot.
//
// Read-only, without a kernel module (no nbd here): qemu-storage-daemon exports the image (any
// format, backing chain included) as a raw file over FUSE, sfdisk lists its partitions and
// debugfs reads the ext2/3/4 file system at the partition's offset. What GRUB would boot: the
// first `menuentry` of /boot/grub/grub.cfg (or /grub/grub.cfg on a separate /boot), its `linux`
// path and arguments and its `initrd`, when the config's default is that entry. Cached by the
// image's content (kernel-cache.ts's memo: an unchanged image is not hashed again) in
// <stateDir>/kernels/<hash>.boot/.
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandRunner } from '../../host/index.js';
import { waitUntil } from '../../host/index.js';
import { kernelCacheDir, kernelHash } from './kernel-cache.js';
import { isVirtwireError } from '../../errors/index.js';

/** What GRUB would boot from an image: files extracted to the host, and the kernel's arguments. */
export interface BootFiles {
  kernel: string;
  initrd?: string;
  cmdline: string;
  /** bootDigest of the three, taken once when the files were read (a create does not re-read 40 MiB) */
  digest: string;
}

/** How a VM booted from an image directly is defined: its kernel is the record's `kernel`. */
export interface ImageBootRecord {
  initrd?: string;
  cmdline: string;
  /** bootDigest of the image's kernel, initrd and arguments it was defined with */
  digest: string;
}

/** Either the image's boot files, or why they could not be read (it then boots through its firmware). */
export type ImageBootResult = { boot: BootFiles } | { reason: string };

const RECORD = 'boot.json';
// why an image could not be booted directly is kept with the reader that found it: a newer
// reader reads the image again (boot files found are kept as they are: domains name them)
const READER = 2;

/**
 * The boot files of `image` (a disk image on this machine), extracted on first use and kept
 * with the kernel cache; a reason instead where the image cannot be booted directly. An image
 * found unsuitable is remembered with its reason.
 */
export async function imageBootOf(runner: CommandRunner, stateDir: string, image: string): Promise<ImageBootResult> {
  const { hash } = kernelHash(stateDir, image);
  const dir = join(kernelCacheDir(stateDir), `${hash}.boot`);
  const known = readRecord(dir);
  if (known) return known;
  let pending = reading.get(dir);
  if (!pending) {
    pending = extract(runner, stateDir, image, dir)
      // this host cannot read it (no FUSE, say): said, not remembered — another host may
      .catch((e: unknown) => ({
        reason: `its disk could not be read here (${isVirtwireError(e) ? e.code : 'error'}: ${(e as Error).message.split('\n')[0]})`,
      }))
      .finally(() => reading.delete(dir));
    reading.set(dir, pending);
  }
  return pending;
}

// concurrent creates from one image in this process share one read
const reading = new Map<string, Promise<ImageBootResult>>();

function readRecord(dir: string): ImageBootResult | undefined {
  try {
    const r = JSON.parse(readFileSync(join(dir, RECORD), 'utf8')) as
      { reason: string; reader?: number } | { cmdline: string; initrd: boolean; digest?: string };
    if ('reason' in r) return r.reader === READER ? { reason: r.reason } : undefined;
    const kernel = join(dir, 'vmlinuz');
    const initrd = join(dir, 'initrd.img');
    if (!existsSync(kernel) || (r.initrd && !existsSync(initrd))) return undefined;
    const files = { kernel, cmdline: r.cmdline, ...(r.initrd ? { initrd } : {}) };
    // a record from before the digest was kept: taken now
    return { boot: { ...files, digest: r.digest ?? bootDigest(files) } };
  } catch {
    return undefined;
  }
}

async function extract(runner: CommandRunner, stateDir: string, image: string, dir: string): Promise<ImageBootResult> {
  const cache = kernelCacheDir(stateDir);
  mkdirSync(cache, { recursive: true, mode: 0o755 });
  // read into a directory of its own, then renamed: another process sees all or nothing
  const tmp = join(cache, `.boot.${process.pid}.${randomBytes(4).toString('hex')}`);
  try {
    const result = await readImageBoot(runner, image, tmp);
    writeFileSync(
      join(tmp, RECORD),
      JSON.stringify(
        'reason' in result
          ? { reason: result.reason, reader: READER }
          : { cmdline: result.boot.cmdline, initrd: !!result.boot.initrd, digest: result.boot.digest },
      ),
    );
    // an older reader's reason is replaced (it holds nothing else)
    if (existsSync(join(dir, RECORD)) && !existsSync(join(dir, 'vmlinuz')))
      rmSync(dir, { recursive: true, force: true });
    try {
      renameSync(tmp, dir);
    } catch {
      // another process read it first: its copy is the same
    }
    return readRecord(dir) ?? result;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * What GRUB would boot from `image`, read now (no cache), its files written into `into` (made
 * here): for a VM's own disk, whose kernel an update inside the guest may have replaced.
 */
export async function readImageBoot(runner: CommandRunner, image: string, into: string): Promise<ImageBootResult> {
  mkdirSync(into, { recursive: true, mode: 0o755 });
  return withRawExport(runner, image, into, (disk) => readBootFiles(runner, disk, into));
}

/** A digest of what a boot runs (kernel, initrd, arguments): the same guest boots when it is the same. */
function bootDigest(b: Omit<BootFiles, 'digest'>): string {
  const h = createHash('sha256').update(readFileSync(b.kernel));
  if (b.initrd) h.update(readFileSync(b.initrd));
  return h.update(`\0${b.cmdline}`).digest('hex').slice(0, 20);
}

/**
 * Runs `fn` with `image` exported read-only as a raw file (qemu-storage-daemon, FUSE), and stops
 * the export after it, waiting until the mount is gone.
 */
async function withRawExport<T>(
  runner: CommandRunner,
  image: string,
  tmp: string,
  fn: (disk: string) => Promise<T>,
): Promise<T> {
  const step = 'image boot: export';
  const info = await runner.run(['qemu-img', 'info', '--output=json', '-U', image], { step });
  const format = (JSON.parse(info.stdout) as { format: string }).format;
  const disk = join(tmp, 'disk');
  const pidfile = join(tmp, 'qsd.pid');
  writeFileSync(disk, '');
  // JSON options: a file name with a comma in it needs no escaping
  const blockdev = { driver: format, 'node-name': 'img', 'read-only': true, file: { driver: 'file', filename: image } };
  const exp = { type: 'fuse', id: 'raw', 'node-name': 'img', mountpoint: disk, writable: false };
  await runner.run(
    [
      'qemu-storage-daemon',
      '--blockdev',
      JSON.stringify(blockdev),
      '--export',
      JSON.stringify(exp),
      '--pidfile',
      pidfile,
      '--daemonize',
    ],
    { step },
  );
  try {
    return await fn(disk);
  } finally {
    const pid = readFileSync(pidfile, 'utf8').trim();
    rmSync(pidfile, { force: true });
    await runner.run(['kill', pid], { step: 'image boot: stop export', allowFailure: true });
    await waitUntil(async () => !readFileSync('/proc/self/mounts', 'utf8').includes(` ${disk} `), {
      timeoutMs: 10_000,
      intervalMs: 20,
      what: `the export of ${image} to end`,
    });
    rmSync(disk, { force: true });
  }
}

interface Partition {
  start: number;
  size: number;
}

/** The disk's partitions (sfdisk), or the whole disk when it has no partition table. */
async function partitionsOf(runner: CommandRunner, disk: string): Promise<{ offset: number }[]> {
  const r = await runner.run(['sfdisk', '-J', disk], { step: 'image boot: partitions', allowFailure: true });
  if (r.exitCode !== 0 || !r.stdout.trim()) return [{ offset: 0 }];
  const table = (JSON.parse(r.stdout) as { partitiontable: { sectorsize?: number; partitions?: Partition[] } })
    .partitiontable;
  return (table.partitions ?? []).map((p) => ({ offset: p.start * (table.sectorsize ?? 512) }));
}

/** What GRUB's config boots by default: its first entry's kernel, arguments and initrd; or why not. */
export function parseGrubConfig(
  text: string,
  /** GRUB's environment block (grubenv), where a one-time entry (grub-reboot) waits */
  env = '',
): { kernel: string; args: string; initrd?: string } | { reason: string } {
  // Debian's config sets default="${next_entry}" when grubenv holds a one-time entry, else "0"
  const next = /^next_entry=(.*)$/m.exec(env)?.[1]?.trim();
  if (next) return { reason: `its GRUB environment boots entry "${next}" once (grub-reboot)` };
  for (const [, dflt] of text.matchAll(/^\s*set default="?([^"\s]*)"?\s*$/gm))
    if (dflt !== '0' && dflt !== '${next_entry}')
      return { reason: `its GRUB config boots entry "${dflt}" by default, not the first` };
  const start = text.search(/^\s*menuentry\s/m);
  if (start < 0) return { reason: 'its GRUB config has no menuentry' };
  const end = text.indexOf('\n}', start);
  const entry = text.slice(start, end < 0 ? undefined : end);
  const linux = /^\s*linux(?:16|efi)?\s+(\S+)(.*)$/m.exec(entry);
  if (!linux) return { reason: "its GRUB config's first entry has no linux line" };
  const initrds = /^\s*initrd(?:16|efi)?\s+(.+)$/m.exec(entry)?.[1]?.trim().split(/\s+/) ?? [];
  if (initrds.length > 1) return { reason: `its GRUB entry loads ${initrds.length} initrds (microcode first?)` };
  // GRUB variables (e.g. Ubuntu's $vt_handoff) are GRUB's own: not for the kernel
  const args = linux[2]!.replace(/\$\S+/g, '').trim().replace(/\s+/g, ' ');
  return { kernel: linux[1]!, args, ...(initrds[0] ? { initrd: initrds[0] } : {}) };
}

const SAFE_PATH = /^\/[A-Za-z0-9._+/-]*$/;

/** debugfs's argument for the file system at `offset` bytes into `disk` (e2fsprogs' io options). */
const at = (disk: string, offset: number) => (offset ? `${disk}?offset=${offset}` : disk);

/** Reads a file of the ext2/3/4 file system at `offset`; undefined where there is none. */
async function catFile(runner: CommandRunner, disk: string, offset: number, path: string) {
  const r = await runner.run(['debugfs', '-R', `cat ${path}`, at(disk, offset)], {
    step: 'image boot: read',
    allowFailure: true,
  });
  return r.exitCode === 0 && r.stdout ? r.stdout : undefined;
}

// A VM's own disk is the guest's to write: a "kernel" or "initrd" of many GiB would fill the
// host's state dir when copied at its next start. Real ones are tens of MiB.
const MAX_BOOT_FILE = 512 * 2 ** 20;

/** The size debugfs's `stat` gives for a file ("... Size: 4655"); undefined when it names none. */
export function statSize(stat: string): number | undefined {
  const m = /\bSize: (\d+)/.exec(stat);
  return m ? Number(m[1]) : undefined;
}

/** Copies a file out of the file system at `offset`; false where there is none or it is too large to be a boot file. */
async function dump(runner: CommandRunner, disk: string, offset: number, path: string, out: string): Promise<boolean> {
  const stat = await runner.run(['debugfs', '-R', `stat ${path}`, at(disk, offset)], {
    step: 'image boot: size',
    allowFailure: true,
  });
  const size = statSize(stat.stdout);
  if (size === undefined || size > MAX_BOOT_FILE) return false;
  await runner.run(['debugfs', '-R', `dump ${path} ${out}`, at(disk, offset)], {
    step: 'image boot: extract',
    allowFailure: true,
  });
  if (!existsSync(out) || statSync(out).size === 0) return false;
  chmodSync(out, 0o644); // QEMU's user reads it
  return true;
}

async function readBootFiles(runner: CommandRunner, disk: string, tmp: string): Promise<ImageBootResult> {
  let why = 'no ext2/3/4 partition of it holds a GRUB config (/boot/grub/grub.cfg)';
  for (const { offset } of await partitionsOf(runner, disk))
    for (const cfg of ['/boot/grub/grub.cfg', '/grub/grub.cfg']) {
      const text = await catFile(runner, disk, offset, cfg);
      if (!text) continue;
      const env = await catFile(runner, disk, offset, cfg.replace(/grub\.cfg$/, 'grubenv'));
      const entry = parseGrubConfig(text, env);
      if ('reason' in entry) return entry;
      // the image is not ours: what it names reaches debugfs's request line and the kernel's
      // command line only when plainly a path, and plainly arguments
      const odd = [entry.kernel, entry.initrd ?? '/'].find((f) => !SAFE_PATH.test(f));
      if (odd !== undefined) return { reason: `its GRUB config names ${JSON.stringify(odd)}, not a plain path` };
      if (/[\u0000-\u001f\u007f]/.test(entry.args)) return { reason: 'its kernel arguments hold control characters' };
      const kernel = join(tmp, 'vmlinuz');
      if (!(await dump(runner, disk, offset, entry.kernel, kernel))) {
        why = `${entry.kernel}, which its GRUB config boots, is not on the partition that holds ${cfg} (or is over 512 MiB)`;
        continue;
      }
      const initrd = join(tmp, 'initrd.img');
      if (entry.initrd && !(await dump(runner, disk, offset, entry.initrd, initrd)))
        return { reason: `${entry.initrd}, which its GRUB config loads, could not be read (or is over 512 MiB)` };
      const files = { kernel, cmdline: entry.args, ...(entry.initrd ? { initrd } : {}) };
      return { boot: { ...files, digest: bootDigest(files) } };
    }
  return { reason: why };
}
