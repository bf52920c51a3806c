// The path most users take, with a real distribution guest: the Debian 12 cloud image
// (lib/testing/cloud-image.ts: packages from the mirror the host uses, GRUB on a partitioned disk)
// booted directly from its own kernel, initrd and arguments (read from its GRUB config: the same
// guest — its kernel, its root from its disk, its arguments — checked inside it), cloud-init's
// NoCloud datasource reading virtwire's seed — a user with a generated key, a hostname, a written
// file, a runcmd, a root disk to grow, a second NIC on a second tenant. Then SSH in over the
// tenant network and check what cloud-init did, DNS for the tenant's VMs and the outside, and
// apt-get update through the tenant's NAT. Then the lifecycle API on the same guest (it acts on
// ACPI and has a qcow2 root): a data disk it sees as vdb, a snapshot before a change and a revert
// that restores the files of the snapshot's time, a graceful stop and a start on the same
// address, and — booted from the image's own kernel — a change to its GRUB config inside the
// guest taking effect on that start. (One guest for both: each cloud boot is a minute here.)
import { execa } from 'execa';
import { connect } from 'node:net';
import { lookup } from 'node:dns/promises';
import { mkdtempSync, chmodSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCloudImage, buildTestGuest, GuestLab, testGuestSpec, type CloudImage } from '../../lib/testing/index.js';
import {
  deleteSnapshot,
  getVm,
  listSnapshots,
  readState,
  revertVm,
  snapshotVm,
  startVm,
  stopVm,
} from '../../lib/index.js';
import { LocalRunner, sshAnswer, waitUntil } from '../../lib/host/index.js';
import type { CreatedVm, ProgressEvent } from '../../types/vm.js';
import { slaacOf } from '../../lib/spec/index.js';
import { describeAsRoot } from '../helpers/root.js';
import { waitFor } from '../helpers/wait.js';
import { keepIpv6Forwarding } from '../helpers/ipv6.js';

const dir = mkdtempSync(join(tmpdir(), 'vwcloud-'));
chmodSync(dir, 0o755);
const stateDir = join(dir, 'state');
const guests = new GuestLab({ stateDir });
const T1 = { tenant: 'vwcloudt', cidr: '10.77.0.0/24' };
const T2 = { tenant: 'vwcloudu', cidr: '10.78.0.0/24', nat: false };
// a dual-stack tenant: the third NIC's IPv6 address is pinned (DHCPv6) beside its SLAAC one
const T3 = { tenant: 'vwcloudv', cidr: '10.79.0.0/24', cidr6: 'fd00:79::/64' };
const PINNED6 = 'fd00:79::50';
const SIZE_GIB = 6;
const NAME = 'vwcloud-deb';

let image: CloudImage;
let vm: CreatedVm;
let peer: CreatedVm;
let restoreForwarding: () => Promise<void> = async () => {};
const steps: ProgressEvent[] = [];

/** A command in the guest over SSH, as the user cloud-init made (to its first NIC's address, or `to`). */
const sshTo = (to: string, command: string, timeoutMs = 60_000) =>
  execa(
    'ssh',
    [
      '-i',
      join(dir, 'key'),
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=accept-new',
      '-o',
      `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
      '-o',
      'ConnectTimeout=10',
      `vw@${to}`,
      command,
    ],
    {
      reject: false,
      timeout: timeoutMs,
    },
  );

const ssh = (command: string, timeoutMs = 60_000) => sshTo(vm.nics[0]!.ip, command, timeoutMs);
const ssh6 = (ip6: string, command: string) => sshTo(ip6, command);

/** The host's own Debian mirror (what the cloud image's apt uses too) and whether the host reaches it. */
async function hostMirror(): Promise<{ name: string; reachable: boolean; why?: string }> {
  const sources = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'].find((f) => existsSync(f))!;
  // the first URI apt uses (a comment may name another, e.g. snapshot.debian.org)
  const name = /^(?:URIs:|deb)\s+(?:\[[^\]]*\]\s+)?https?:\/\/([^/\s]+)/m.exec(readFileSync(sources, 'utf8'))![1]!;
  try {
    const { address } = await lookup(name, { family: 4 });
    await new Promise<void>((resolve, reject) => {
      const socket = connect({ host: address, port: 80, timeout: 10_000 }, () => {
        socket.end();
        resolve();
      });
      socket.on('timeout', () => reject(new Error('connect timed out')));
      socket.on('error', reject);
    });
    return { name, reachable: true };
  } catch (e) {
    return { name, reachable: false, why: (e as Error).message };
  }
}

describeAsRoot(
  'a real Debian cloud guest: cloud-init, SSH, DNS, NAT to the outside, more NICs; the lifecycle API',
  () => {
    beforeAll(async () => {
      restoreForwarding = await keepIpv6Forwarding(); // the third NIC's network has IPv6
      image = await buildCloudImage();
      const test = await buildTestGuest();
      await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'vw@virtwire-test', '-f', join(dir, 'key')]);
      const pub = readFileSync(join(dir, 'key.pub'), 'utf8').trim();
      peer = await guests.create(testGuestSpec(test, 'vwcloud-peer', [{ network: T1 }]));
      vm = await guests.create(
        {
          name: NAME,
          vcpus: 2,
          memoryMiB: 1024,
          boot: { image: image.image, sizeGiB: SIZE_GIB },
          disks: [{ name: 'data', sizeGiB: 3 }],
          cloudInit: {
            hostname: 'cloudy',
            users: [{ name: 'vw', sshAuthorizedKeys: [pub], sudo: true }],
            writeFiles: [{ path: '/etc/virtwire-test', content: 'written by cloud-init\n', permissions: '0644' }],
            runcmd: [['sh', '-c', 'echo runcmd-ok > /var/tmp/runcmd.out']],
          },
          nics: [{ network: T1 }, { network: T2 }, { network: T3, ip6: PINNED6 }],
        },
        { waitFor: 'cloud-init', timeoutMs: 900_000, onProgress: (e) => steps.push(e) },
      );
    }, 1_000_000);
    afterAll(async () => {
      await guests.destroyAll().catch(() => {});
      await restoreForwarding();
      rmSync(dir, { recursive: true, force: true });
    });

    test('createVm waited for the lease and then for cloud-init to finish', () => {
      expect(steps.filter((s) => s.status === 'done').map((s) => s.step)).toEqual([
        'validate',
        'network',
        'disks',
        'define',
        'start',
        'lease',
        'cloud-init',
      ]);
      // the cloud image boots its own kernel directly, on the fast path, its initrd uncompressed
      // (125 MiB: fits twice into half of 1 GiB), and the result says so
      expect(vm.boot).toEqual({ kind: 'pvh', initrd: { kind: 'unpacked' } });
      expect(steps.find((s) => s.step === 'define' && s.status === 'done')!.detail).toBe('boot: pvh, initrd unpacked');
      console.log(
        `cloud guest: lease at ${(steps.find((s) => s.step === 'lease' && s.status === 'done')!.elapsedMs / 1000).toFixed(1)} s, cloud-init done at ${(vm.readyMs / 1000).toFixed(1)} s`,
      );
    });

    test('SSH over the tenant network as the user cloud-init made; what cloud-init did is there', async () => {
      const r = await ssh(
        'hostname; cat /etc/virtwire-test; cat /var/tmp/runcmd.out; cloud-init status; sudo -n true && echo sudo-ok',
      );
      expect(r.stderr.replace(/Warning: Permanently added .*\n?/, '')).toBe('');
      expect(r.stdout.split('\n')).toEqual(['cloudy', 'written by cloud-init', 'runcmd-ok', 'status: done', 'sudo-ok']);
    });

    test("the same guest GRUB would boot: the image's kernel, its root from the disk, GRUB's arguments", async () => {
      const r = await ssh('uname -r; findmnt -n -o SOURCE /; cat /proc/cmdline; ls /boot');
      const [release, root, cmdline, ...boot] = r.stdout.split('\n');
      expect(boot).toContain(`vmlinuz-${release}`);
      expect(root).toBe('/dev/vda1');
      expect(cmdline).toMatch(/^root=UUID=\S+ ro console=tty0 console=ttyS0,115200n8 consoleblank=0$/);
    });

    test(`the root file system grew to the ${SIZE_GIB} GiB disk (growpart)`, async () => {
      const r = await ssh('df -B1 --output=size / | tail -1');
      const bytes = Number(r.stdout.trim());
      expect(bytes).toBeGreaterThan((SIZE_GIB - 0.5) * 1024 ** 3);
      expect(bytes).toBeLessThanOrEqual(SIZE_GIB * 1024 ** 3);
      expect(image.sizeGiB).toBeLessThan(SIZE_GIB); // it did grow
    });

    test('the second NIC came up on the second tenant from the generated network-config', async () => {
      const r = await ssh('ip -4 -o addr show eth1');
      expect(r.stdout).toContain(`inet ${vm.nics[1]!.ip}/24`);
    });

    test('the dual-stack NIC: its pinned IPv6 address from DHCPv6 and its SLAAC one; SSH over IPv6 to [ip6]', async () => {
      expect(vm.nics[2]!.ip6).toBe(PINNED6);
      // DHCPv6 and SLAAC may finish after cloud-init: wait on the addresses, with a deadline
      const slaac = slaacOf(vm.nics[2]!.mac, 'fd00:79::');
      const shown = await waitFor('the pinned and the SLAAC address on eth2', 60_000, async () => {
        const out = (await ssh('ip -6 -o addr show dev eth2 scope global')).stdout;
        return out.includes(`${PINNED6}/`) && out.includes(`${slaac}/`) && out;
      });
      expect(shown).toContain(`inet6 ${PINNED6}/`);
      expect(shown).toContain(`inet6 ${slaac}/`);
      // the host reaches the guest over IPv6 (its bridge holds gateway6), as the user cloud-init made
      const r = await ssh6(PINNED6, 'hostname');
      expect([r.exitCode, r.stdout]).toEqual([0, 'cloudy']);
    });

    test("DNS: another VM of the tenant by name (bare and in the tenant's domain), and an outside name", async () => {
      const mirror = await hostMirror();
      const r = await ssh(
        `getent hosts vwcloud-peer; getent hosts vwcloud-peer.${T1.tenant}.virtwire; getent ahostsv4 ${mirror.name} | head -1`,
      );
      const lines = r.stdout.split('\n');
      expect(lines[0]).toMatch(new RegExp(`^${peer.nics[0]!.ip.replace(/\./g, '\\.')}\\s+vwcloud-peer`));
      expect(lines[1]).toMatch(
        new RegExp(`^${peer.nics[0]!.ip.replace(/\./g, '\\.')}\\s+vwcloud-peer\\.${T1.tenant}\\.virtwire`),
      );
      if (mirror.reachable) expect(lines[2]).toMatch(/^\d+\.\d+\.\d+\.\d+\s/);
    });

    test("apt-get update succeeds through the tenant's NAT (when the host itself reaches its mirror)", async () => {
      const mirror = await hostMirror();
      if (!mirror.reachable) {
        console.warn(`apt-get update NOT run: this host cannot reach its own mirror ${mirror.name} (${mirror.why})`);
        return;
      }
      const r = await ssh('sudo -n apt-get update -q', 300_000);
      expect([r.exitCode, r.stdout]).toEqual([
        0,
        expect.stringMatching(new RegExp(`(Hit|Get):\\d+ http://${mirror.name.replace(/\./g, '\\.')}`)),
      ]);
      expect(r.stdout).toMatch(/Reading package lists/);
    }, 320_000);

    // the lifecycle API: last, as its revert and restart change the guest
    test('the data disk is vdb in the guest, of its size; DiskInfo says the same', async () => {
      const r = await ssh('lsblk -b -d -n -o NAME,SIZE /dev/vdb');
      expect(r.stdout.trim().split(/\s+/)).toEqual(['vdb', String(3 * 1024 ** 3)]);
      expect((await getVm(NAME, { stateDir }))!.disks.map((d) => [d.name, d.target, d.sizeGiB])).toEqual([
        ['root', 'vda', SIZE_GIB], // its root grown to boot.sizeGiB
        ['data', 'vdb', 3],
      ]);
    });

    test("a snapshot, a change, a revert: the files of the snapshot's time are back", async () => {
      expect((await ssh('echo before | sudo tee /var/tmp/marker >/dev/null && sync')).exitCode).toBe(0);
      const snap = await snapshotVm(NAME, { name: 'pre-upgrade', description: 'before the change' }, { stateDir });
      expect(snap).toMatchObject({ name: 'pre-upgrade', description: 'before the change', state: 'running' });
      expect(
        (await ssh('echo after | sudo tee /var/tmp/marker >/dev/null && sudo touch /var/tmp/new && sync')).exitCode,
      ).toBe(0);
      await revertVm(NAME, 'pre-upgrade', { stateDir });
      const r = await ssh('cat /var/tmp/marker; test -e /var/tmp/new && echo new-exists || echo no-new');
      expect(r.stdout.split('\n')).toEqual(['before', 'no-new']);
      expect((await listSnapshots(NAME, { stateDir })).map((s) => s.name)).toEqual(['pre-upgrade']);
      await deleteSnapshot(NAME, 'pre-upgrade', { stateDir });
      expect(await listSnapshots(NAME, { stateDir })).toEqual([]);
    }, 300_000);

    // one stop and start for both (each costs a shutdown and a boot of the cloud guest: ~45 s here)
    test('stop: the guest shuts itself down on ACPI; start: the same address, SSH again, booting the change made to its GRUB config inside the guest', async () => {
      // booted directly from the image's own kernel: a change to its boot inside the guest must
      // take effect on the next start. What update-grub writes after a kernel update: here, the
      // same kernel with one more argument on the first entry's `linux` line (GNU sed's 0,/re/
      // edits the first match only; grub.cfg is 0600)
      expect(vm.boot).toEqual({ kind: 'pvh', initrd: { kind: 'unpacked' } });
      const edit = "sudo sed -i '0,/consoleblank=0/s//consoleblank=0 virtwire.updated=1/' /boot/grub/grub.cfg && sync";
      expect((await ssh(edit)).exitCode).toBe(0);
      expect((await ssh('sudo grep -c virtwire.updated=1 /boot/grub/grub.cfg')).stdout).toBe('1');
      expect((await ssh('cat /proc/cmdline')).stdout).not.toContain('virtwire.updated=1');

      expect(await stopVm(NAME, { stateDir, timeoutMs: 180_000 })).toEqual({ graceful: true });
      expect((await getVm(NAME, { stateDir }))!.state).toBe('shutoff');
      expect((await startVm(NAME, { stateDir })).nics[0]!.ip).toBe(vm.nics[0]!.ip);
      // sshd comes up after the lease: wait for it to answer, then log in
      await waitUntil(async () => (await sshAnswer(new LocalRunner(), vm.nics[0]!.ip)) !== undefined, {
        timeoutMs: 180_000,
        intervalMs: 500,
        what: 'SSH after the start',
      });
      expect((await ssh('cat /var/tmp/marker')).stdout).toBe('before');

      expect((await ssh('cat /proc/cmdline')).stdout).toContain('virtwire.updated=1');
      // the VM's own copy of its boot files from now on (its initrd loaded uncompressed: the same
      // archives, so the same cache file as the image's); the domain names them
      const xml = (await execa('virsh', ['-c', 'qemu:///system', 'dumpxml', NAME])).stdout;
      const own = join(stateDir, 'vms', NAME, 'boot');
      expect(xml).toContain(`<kernel>${join(stateDir, 'kernels')}/`);
      expect(xml).toMatch(new RegExp(`<initrd>${join(stateDir, 'kernels')}/[0-9a-f]{20}\\.cpio</initrd>`));
      expect((await readState({ stateDir })).find((r) => r.vm.name === NAME)!.imageBoot!.initrd).toBe(
        join(own, 'initrd.img'),
      );
      expect(xml).toMatch(/<cmdline>[^<]*virtwire\.updated=1<\/cmdline>/);
    }, 600_000);
  },
);
