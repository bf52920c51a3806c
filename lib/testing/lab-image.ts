// virtwire's "lab host": a small Linux host under QEMU whose kernel (Debian's) has what this
// machine's lacks — 802.1Q — so VLAN uplinks can be proven with real tagged frames. Its
// initramfs holds busybox, the real iproute2 (ip, bridge, tc), nft, dnsmasq and dropbear with the shared
// libraries they link against (all from this host's Debian packages), and the kernel's
// networking modules with a modules.dep made by depmod, so the kernel loads what it needs.
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  writeFileSync,
  chmodSync,
  readdirSync,
  symlinkSync,
} from 'node:fs';
import { join, dirname } from 'node:path';
import { buildCached, kernelPackage, run, DEFAULT_GUEST_CACHE } from './guest-image.js';
import { readTemplate } from '../host/template.js';

export interface LabHostImage {
  kernel: string;
  initrd: string;
  kernelPackage: string;
  cmdline: string;
}

// dash: commands arriving over SSH must find the real tools on PATH; busybox's sh runs its own
// applets (ip, tc…) whatever PATH says
const TOOLS = [
  '/usr/bin/ip',
  '/usr/sbin/bridge',
  '/usr/sbin/tc',
  '/usr/sbin/nft',
  '/usr/sbin/dropbear',
  '/usr/bin/dash',
  '/usr/sbin/dnsmasq',
];
// what a virtwire host uses (bridge, 802.1Q, VXLAN, netfilter, tc, veth/tun/ifb) and their
// dependencies; not the wireless, bluetooth or NIC drivers (drivers/net/*/ is 77 MB)
const MODULE_DIRS = [
  'net/netfilter',
  'net/bridge',
  'net/ipv4',
  'net/ipv6',
  'net/8021q',
  'net/core',
  'net/802',
  'net/llc',
  'net/sched',
  'net/packet',
  'net/unix',
  'drivers/net/vxlan',
  'drivers/virtio',
  'lib',
  'crypto',
  'arch/x86/crypto',
];
const MODULE_FILES_IN = ['drivers/net']; // only the *.ko directly there: veth, tun, vxlan, ifb, virtio_net…
const LOADER = '/lib64/ld-linux-x86-64.so.2';

/** The shared libraries a binary needs, resolved by ldd. */
async function libsOf(binary: string): Promise<string[]> {
  const out = await run(['ldd', binary]);
  return [...out.matchAll(/=> (\/\S+)/g)].map((m) => m[1]!);
}

export async function buildLabHostImage(
  options: { cacheDir?: string; log?: (line: string) => void } = {},
): Promise<LabHostImage> {
  const cacheDir = options.cacheDir ?? join(DEFAULT_GUEST_CACHE, 'lab');
  const pkg = await kernelPackage();
  const versions = await run([
    'dpkg-query',
    '-W',
    '-f=${Package} ${Version}\\n',
    'busybox-static',
    'iproute2',
    'nftables',
    'dropbear-bin',
    'dnsmasq-base',
    'libc6',
  ]);
  const init = readTemplate('lab-init.sh');
  const key = createHash('sha256')
    .update(JSON.stringify([pkg, versions, init, TOOLS, MODULE_DIRS]))
    .digest('hex')
    .slice(0, 12);
  const dir = join(cacheDir, key);
  const image: LabHostImage = {
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    kernelPackage: `${pkg.name} ${pkg.version}`,
    cmdline: 'console=ttyS0 quiet panic=-1',
  };
  if (existsSync(image.kernel) && existsSync(image.initrd)) return image;
  options.log?.(`building lab host image ${key}`);
  await buildCached(dir, pkg, 'lab host image', async ({ fs, root, release, modules }) => {
    writeFileSync(join(fs, 'init'), init, { mode: 0o755 });
    mkdirSync(join(fs, 'etc'), { recursive: true });
    // dnsmasq drops to nobody after start-up
    writeFileSync(
      join(fs, 'etc/passwd'),
      'root:x:0:0:root:/root:/usr/sbin/dash\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
    );
    writeFileSync(join(fs, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    writeFileSync(join(fs, 'etc/shells'), '/usr/sbin/dash\n/bin/sh\n');
    for (const d of ['usr/sbin', 'usr/bin', 'sbin']) mkdirSync(join(fs, d), { recursive: true });
    const libs = new Set<string>([LOADER]);
    for (const tool of TOOLS) {
      const base = tool.slice(tool.lastIndexOf('/') + 1);
      copyFileSync(tool, join(fs, 'usr/sbin', base));
      chmodSync(join(fs, 'usr/sbin', base), 0o755);
      // wherever a PATH looks first (an SSH session's differs from init's), the real tool, not
      // busybox's applet of the same name (busybox --install does not replace existing files)
      for (const d of ['usr/bin', 'sbin']) symlinkSync(`/usr/sbin/${base}`, join(fs, d, base));
      for (const lib of await libsOf(tool)) libs.add(lib);
    }
    for (const lib of libs) {
      mkdirSync(join(fs, dirname(lib)), { recursive: true });
      copyFileSync(lib, join(fs, lib));
    }
    // merged /usr: the loader is looked up at /lib64, libraries at /lib/x86_64-linux-gnu
    const moduleRoot = join(fs, 'lib/modules', release);
    for (const d of MODULE_DIRS) {
      if (existsSync(join(modules, d))) cpSync(join(modules, d), join(moduleRoot, 'kernel', d), { recursive: true });
    }
    for (const d of MODULE_FILES_IN) {
      mkdirSync(join(moduleRoot, 'kernel', d), { recursive: true });
      for (const f of readdirSync(join(modules, d)).filter((f) => f.endsWith('.ko')))
        copyFileSync(join(modules, d, f), join(moduleRoot, 'kernel', d, f));
    }
    for (const f of ['modules.order', 'modules.builtin', 'modules.builtin.modinfo']) {
      if (existsSync(join(root, 'lib/modules', release, f)))
        copyFileSync(join(root, 'lib/modules', release, f), join(moduleRoot, f));
    }
    await run(['depmod', '-b', fs, release]);
    return `${image.kernelPackage}\n${versions}`;
  });
  options.log?.(`lab host image ready in ${dir}`);
  return image;
}
