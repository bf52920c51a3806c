// A real Debian 12 cloud image, built offline from Debian packages (no cloud image can be
// downloaded on these machines): what Debian's genericcloud image is — linux-image-amd64,
// systemd, cloud-init, openssh-server, cloud-guest-utils (growpart), ifupdown with
// isc-dhcp-client, sudo — on a partitioned disk with GRUB in its MBR, converted to a compressed
// qcow2. virtwire boots it exactly as a downloaded image: from the disk, through the firmware,
// cloud-init's NoCloud datasource reading the seed ISO. Cached by the hash of its inputs (the
// recipe and the candidate versions of the packages it names); rebuilt only when they change.
// Needs root, loop devices and Debian's apt (mmdebstrap installs the packages from the mirror
// the host's own apt uses).
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  chmodSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VirtwireError } from '../errors/index.js';
import { DEFAULT_GUEST_CACHE, run } from './guest-image.js';

export interface CloudImage {
  /** the qcow2 to give createVm as boot.image */
  image: string;
  /** the base image's virtual size, GiB (an overlay may be larger: growpart grows the root) */
  sizeGiB: number;
  /** bytes on disk */
  bytes: number;
  /** the packages it was built from, with their versions */
  packages: string[];
  /** the Debian suite */
  suite: string;
}

const SUITE = 'bookworm';
const PACKAGES = [
  'linux-image-amd64',
  'grub-pc',
  'systemd-sysv',
  'cloud-init',
  'openssh-server',
  'cloud-guest-utils',
  'ifupdown',
  'isc-dhcp-client',
  'sudo',
  'ca-certificates',
  // merges each NIC's DHCP-given DNS in NIC order: a second tenant's NIC does not take the first's
  'resolvconf',
  // update-locale, which cloud-init's locale module runs
  'locales',
  // systemd-logind needs it: logind turns the ACPI power button into a clean shutdown (stopVm)
  'dbus',
];
const DISK_GIB = 3;
// the host's apt sources: the guest image comes from the mirror the host itself uses
const SOURCES = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'];

// what makes it a cloud image rather than a copy of a chroot (also part of the cache key)
const CLOUD_CFG = `# virtwire's cloud image: NoCloud first (a seed ISO labelled cidata), no network probing;
# the hostname in /etc/hosts, as Debian's own cloud images have it
datasource_list: [ NoCloud, None ]
manage_etc_hosts: true
# glibc's built-in UTF-8 locale: nothing to generate at first boot
locale: C.UTF-8
`;
const GRUB_DEFAULT = `GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 consoleblank=0"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
`;

async function candidates(): Promise<string[]> {
  const out = await run(['apt-cache', 'policy', ...PACKAGES]);
  const versions: string[] = [];
  for (const block of out.split(/\n(?=\S)/)) {
    const name = /^(\S+):/.exec(block)?.[1];
    const version = /Candidate: (\S+)/.exec(block)?.[1];
    if (name && version && version !== '(none)') versions.push(`${name} ${version}`);
  }
  if (versions.length !== PACKAGES.length) {
    throw new VirtwireError(
      'PROCESS_FAILED',
      `apt has no candidate for some of ${PACKAGES.join(', ')} (run apt-get update)`,
    );
  }
  return versions.sort();
}

/** Builds (or finds in the cache) the Debian cloud image; the first build takes minutes. */
export async function buildCloudImage(
  options: { cacheDir?: string; log?: (line: string) => void } = {},
): Promise<CloudImage> {
  const cacheDir = options.cacheDir ?? join(DEFAULT_GUEST_CACHE, 'cloud');
  const log = options.log ?? (() => {});
  const packages = await candidates();
  const key = createHash('sha256')
    .update(JSON.stringify([SUITE, packages, CLOUD_CFG, GRUB_DEFAULT, DISK_GIB, RECIPE_VERSION]))
    .digest('hex')
    .slice(0, 12);
  const dir = join(cacheDir, key);
  const image = join(dir, 'debian-12-cloud.qcow2');
  const result = (): CloudImage => ({ image, sizeGiB: DISK_GIB, bytes: statSync(image).size, packages, suite: SUITE });
  if (existsSync(image)) return result();

  log(`building cloud image ${key} (Debian ${SUITE}: ${PACKAGES.join(', ')}); the first build takes a few minutes`);
  mkdirSync(cacheDir, { recursive: true, mode: 0o755 });
  const work = mkdtempSync(join(tmpdir(), 'vwcloud-'));
  const raw = join(work, 'disk.raw');
  const root = join(work, 'root');
  let loop: string | undefined;
  const mounts: string[] = [];
  try {
    await run(['truncate', '-s', `${DISK_GIB}G`, raw]);
    // one bootable partition from 1 MiB to the end: growpart can grow it in place
    await run(['sfdisk', '--quiet', raw], { input: 'label: dos\nstart=2048, type=83, bootable\n' });
    loop = (await run(['losetup', '--find', '--show', '--partscan', raw])).trim();
    // some kernels (this machine's) do not scan the table on attach: partx adds the partition
    const part = `${loop}p1`;
    if (!existsSync(part)) await run(['partx', '--add', loop]);
    await run(['mkfs.ext4', '-q', '-L', 'root', part]);
    const uuid = (await run(['blkid', '-s', 'UUID', '-o', 'value', part])).trim();
    mkdirSync(root);
    await run(['mount', part, root]);
    mounts.push(root);

    log('installing packages (mmdebstrap)');
    const sources = SOURCES.find((s) => existsSync(s));
    if (!sources) throw new VirtwireError('PROCESS_FAILED', `no apt sources on this host (${SOURCES.join(', ')})`);
    await run(['mmdebstrap', '--quiet', '--variant=minbase', `--include=${PACKAGES.join(',')}`, SUITE, root, sources], {
      step: 'build cloud image: mmdebstrap',
    });

    writeFileSync(join(root, 'etc/fstab'), `UUID=${uuid} / ext4 defaults,errors=remount-ro 0 1\n`);
    writeFileSync(join(root, 'etc/cloud/cloud.cfg.d/90_virtwire.cfg'), CLOUD_CFG);
    writeFileSync(join(root, 'etc/default/grub'), GRUB_DEFAULT);
    writeFileSync(join(root, 'etc/hostname'), 'localhost\n');
    // every instance gets its own identity: machine-id and SSH host keys are made at first boot
    writeFileSync(join(root, 'etc/machine-id'), '');
    await run(['find', join(root, 'etc/ssh'), '-name', 'ssh_host_*', '-delete']);

    log('installing GRUB');
    for (const fs of ['dev', 'proc', 'sys']) {
      await run(['mount', '--bind', `/${fs}`, join(root, fs)]);
      mounts.push(join(root, fs));
    }
    await run(['chroot', root, 'grub-install', '--target=i386-pc', '--recheck', loop], {
      step: 'build cloud image: grub-install',
    });
    await run(['chroot', root, 'update-grub'], { step: 'build cloud image: update-grub' });
    // without udev there is no /dev/disk/by-uuid, so grub-mkconfig names the build's loop device
    // as root: the image's kernel must find its root by UUID on whatever disk it boots from
    const cfg = join(root, 'boot/grub/grub.cfg');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replaceAll(`root=${part} `, `root=UUID=${uuid} `));
    if (!readFileSync(cfg, 'utf8').includes(`root=UUID=${uuid} `)) {
      throw new VirtwireError('PROCESS_FAILED', 'update-grub wrote no root= the cloud image could boot with');
    }
    await run(['chroot', root, 'apt-get', 'clean']);
    // freed blocks (apt's downloads) hold old data: discarded, they are holes the qcow2 skips
    await run(['fstrim', root]);
    for (const m of mounts.splice(0).reverse()) await run(['umount', m]);
    await run(['losetup', '--detach', loop]);
    loop = undefined;

    log('converting to a compressed qcow2');
    const staging = `${dir}.tmp-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true, mode: 0o755 });
    await run(['qemu-img', 'convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, join(staging, 'debian-12-cloud.qcow2')]);
    chmodSync(join(staging, 'debian-12-cloud.qcow2'), 0o644);
    writeFileSync(join(staging, 'packages.txt'), `${packages.join('\n')}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(staging, dir); // atomic: a concurrent reader sees all of it or nothing
    // older builds (other inputs) are stale: ~300 MiB each
    for (const old of readdirSync(cacheDir)) {
      if (old !== key && /^[0-9a-f]{12}$/.test(old)) rmSync(join(cacheDir, old), { recursive: true, force: true });
    }
  } finally {
    for (const m of mounts.reverse()) await run(['umount', '-l', m]).catch(() => undefined);
    if (loop) await run(['losetup', '--detach', loop]).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
  log(`cloud image ready: ${image}`);
  return result();
}

// bump when the recipe above changes in a way its inputs do not show
const RECIPE_VERSION = 4;
