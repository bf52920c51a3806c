// virtwire's tiny real test guest, from Debian packages only: the Debian kernel (fetched with
// `apt-get download`), its virtio-net modules, and a busybox-static initramfs whose init takes a
// DHCP lease, serves HTTP and runs probes (templates/guest-init.sh). Built once and cached under
// a key of its inputs (kernel package version, busybox version, init scripts): rebuilt only when
// one of them changes.
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
  chmodSync,
  lstatSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, dirname } from 'node:path';
import { createGzip } from 'node:zlib';
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { VirtwireError } from '../errors/index.js';
import { LocalRunner } from '../host/index.js';
import { readTemplate } from '../host/template.js';

export interface TestGuestImage {
  kernel: string;
  initrd: string;
  /** the Debian kernel package it came from, e.g. linux-image-6.1.0-56-amd64 6.1.192-2 */
  kernelPackage: string;
  /** kernel command line the init understands, to extend with vw.name= / vw.probes= */
  cmdline: string;
}

/** Loaded in this order (each depends on the ones before); 8021q for lab hosts with VLANs. */
export const GUEST_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'virtio_blk',
  'failover',
  'net_failover',
  'virtio_net',
  'llc',
  'stp',
  'garp',
  'mrp',
  '8021q',
];

const local = new LocalRunner();

/** A build command on this machine (lib/host's one command wrapper): its stdout, or a HostCommandError. */
export async function run(
  argv: string[],
  options: { cwd?: string; input?: string; stdoutFile?: string; step?: string } = {},
): Promise<string> {
  return (await local.run(argv, { step: 'build test guest', ...options })).stdout;
}

/** The versioned kernel package behind linux-image-amd64, and its candidate version. */
export async function kernelPackage(): Promise<{ name: string; version: string }> {
  let deps = await run(['apt-cache', 'depends', 'linux-image-amd64']).catch(() => '');
  if (!/Depends: linux-image-/.test(deps)) {
    await run(['apt-get', 'update', '-qq']);
    deps = await run(['apt-cache', 'depends', 'linux-image-amd64']);
  }
  const name = /Depends: (linux-image-[0-9][^\s]*-amd64)/.exec(deps)?.[1];
  if (!name)
    throw new VirtwireError(
      'PROCESS_FAILED',
      'no linux-image-*-amd64 package found (apt-cache depends linux-image-amd64)',
    );
  const policy = await run(['apt-cache', 'policy', name]);
  const version = /Candidate: (\S+)/.exec(policy)?.[1] ?? 'unknown';
  return { name, version };
}

export const DEFAULT_GUEST_CACHE = '/var/lib/virtwire/guest';

/** Builds (or finds in the cache) the test guest; needs root and Debian's apt. */
export async function buildTestGuest(
  options: { cacheDir?: string; log?: (line: string) => void } = {},
): Promise<TestGuestImage> {
  const cacheDir = options.cacheDir ?? DEFAULT_GUEST_CACHE;
  const log = options.log ?? (() => {});
  const pkg = await kernelPackage();
  const busybox = (await run(['dpkg-query', '-W', '-f=${Version}', 'busybox-static'])).trim();
  const init = readTemplate('guest-init.sh');
  const hook = readTemplate('guest-udhcpc.sh');
  const icmp6 = readTemplate('guest-icmp6.c');
  const gcc = (await run(['gcc', '-dumpfullversion'])).trim();
  const key = createHash('sha256')
    .update(JSON.stringify([pkg, busybox, init, hook, icmp6, gcc, GUEST_MODULES]))
    .digest('hex')
    .slice(0, 12);
  const dir = join(cacheDir, key);
  const image: TestGuestImage = {
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    kernelPackage: `${pkg.name} ${pkg.version}`,
    cmdline: 'console=ttyS0 quiet panic=-1',
  };
  if (existsSync(image.kernel) && existsSync(image.initrd)) return image;

  log(`building test guest ${key}: ${image.kernelPackage}, busybox ${busybox}`);
  await buildCached(dir, pkg, 'test guest', async ({ fs, modules }) => {
    writeFileSync(join(fs, 'init'), init, { mode: 0o755 });
    writeFileSync(join(fs, 'bin/udhcpc-script'), hook, { mode: 0o755 });
    // the hostile guest's ICMPv6 sender (rogue router and neighbour advertisements), static
    const source = join(fs, 'tmp/icmp6send.c');
    writeFileSync(source, icmp6);
    await run(['gcc', '-static', '-Os', '-s', '-o', join(fs, 'bin/icmp6send'), source]);
    rmSync(source);
    mkdirSync(join(fs, 'www'));
    const found = findModules(modules);
    for (const m of GUEST_MODULES) {
      const path = found.get(m);
      if (!path) throw new VirtwireError('PROCESS_FAILED', `module ${m}.ko not in ${pkg.name}`);
      copyFileSync(path, join(fs, 'lib/modules', `${m}.ko`));
    }
    writeFileSync(join(fs, 'lib/modules/order'), GUEST_MODULES.join('\n') + '\n');
    return `${image.kernelPackage}\nbusybox-static ${busybox}\ngcc ${gcc} (icmp6send)\n`;
  });
  log(`test guest ready in ${dir}`);
  return image;
}

export interface ImageTree {
  /** the initramfs being built: busybox in bin/, empty dev proc sys tmp lib/modules */
  fs: string;
  /** the kernel package's extracted tree and release */
  root: string;
  release: string;
  /** <root>/lib/modules/<release>/kernel */
  modules: string;
}

/**
 * Downloads and unpacks the kernel package, lets `populate` fill an initramfs tree, then
 * writes vmlinuz + initrd.img (gzip'd newc cpio) into `dir` atomically.
 */
export async function buildCached(
  dir: string,
  pkg: { name: string; version: string },
  what: string,
  populate: (tree: ImageTree) => Promise<string>,
): Promise<void> {
  mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
  const work = mkdtempSync(join(tmpdir(), 'vwimage-'));
  try {
    // apt-get download writes into the current directory; _apt cannot enter a root-only tmpdir
    chmodSync(work, 0o755);
    await run(['apt-get', 'download', '-q', `${pkg.name}=${pkg.version}`], { cwd: work });
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new VirtwireError('PROCESS_FAILED', `apt-get download ${pkg.name} produced no .deb`);
    const root = join(work, 'pkg');
    await run(['dpkg-deb', '-x', join(work, deb), root]);
    const release = readdirSync(join(root, 'lib/modules'))[0]!;
    const fs = join(work, 'initramfs');
    for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp', 'lib/modules']) mkdirSync(join(fs, d), { recursive: true });
    copyFileSync('/bin/busybox', join(fs, 'bin/busybox'));
    chmodSync(join(fs, 'bin/busybox'), 0o755);
    const source = await populate({ fs, root, release, modules: join(root, 'lib/modules', release, 'kernel') });

    const files = walk(fs).map((p) => relative(fs, p) || '.');
    const archive = join(work, 'initramfs.cpio');
    await run(['cpio', '-o', '-H', 'newc', '--quiet'], {
      cwd: fs,
      input: files.join('\n') + '\n',
      stdoutFile: archive,
      step: `build ${what}`,
    });

    const staging = `${dir}.tmp-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true, mode: 0o755 });
    copyFileSync(join(root, 'boot', `vmlinuz-${release}`), join(staging, 'vmlinuz'));
    await pipeline(createReadStream(archive), createGzip(), createWriteStream(join(staging, 'initrd.img')));
    writeFileSync(join(staging, 'source.txt'), source);
    rmSync(dir, { recursive: true, force: true });
    renameSync(staging, dir); // atomic: a concurrent reader sees all of it or nothing
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function walk(dir: string): string[] {
  const out = [dir];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (lstatSync(p).isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

function findModules(dir: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const p of walk(dir)) if (p.endsWith('.ko')) found.set(p.slice(p.lastIndexOf('/') + 1, -3), p);
  return found;
}
