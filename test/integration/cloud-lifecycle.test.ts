// The lifecycle API on the Debian cloud guest (it acts on ACPI and has a qcow2 root): a data disk
// the guest sees as vdb, a snapshot before a change and a revert that restores the files of the
// snapshot's time, a graceful stop and a start on the same address; booted directly from the
// image's own kernel, a change to its GRUB config inside the guest taking effect on the next start.
import { execa } from 'execa';
import { mkdtempSync, chmodSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createVm,
  destroyVm,
  snapshotVm,
  revertVm,
  listSnapshots,
  deleteSnapshot,
  stopVm,
  startVm,
  getVm,
  readState,
} from '../../lib/index.js';
import { buildCloudImage } from '../../lib/testing/index.js';
import { ExecaRunner, sshAnswer, waitUntil } from '../../lib/host/index.js';
import type { CreatedVm } from '../../types/vm.js';
import { describeAsRoot } from '../helpers/root.js';

const dir = mkdtempSync(join(tmpdir(), 'vwclc-'));
chmodSync(dir, 0o755);
const opts = { stateDir: join(dir, 'state') };
let vm: CreatedVm;

const ssh = (command: string) =>
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
      `vw@${vm.nics[0]!.ip}`,
      command,
    ],
    { reject: false, timeout: 120_000 },
  );

describeAsRoot('the lifecycle API on the Debian cloud guest: data disk, snapshot and revert, graceful stop', () => {
  beforeAll(async () => {
    const { image } = await buildCloudImage();
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
    vm = await createVm(
      {
        name: 'vwclc',
        vcpus: 2,
        memoryMiB: 768,
        boot: { image },
        disks: [{ name: 'data', sizeGiB: 3 }],
        cloudInit: {
          users: [{ name: 'vw', sshAuthorizedKeys: [readFileSync(join(dir, 'key.pub'), 'utf8').trim()], sudo: true }],
        },
        nics: [{ network: { tenant: 'vwclc', cidr: '10.83.0.0/24' } }],
      },
      { ...opts, waitFor: 'cloud-init', timeoutMs: 900_000 },
    );
  }, 1_000_000);
  afterAll(async () => {
    await destroyVm('vwclc', { ...opts, missingOk: true }).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  test('the data disk is vdb in the guest, of its size; DiskInfo says the same', async () => {
    const r = await ssh('lsblk -b -d -n -o NAME,SIZE /dev/vdb');
    expect(r.stdout.trim().split(/\s+/)).toEqual(['vdb', String(3 * 1024 ** 3)]);
    expect((await getVm('vwclc', opts))!.disks.map((d) => [d.name, d.target, d.sizeGiB])).toEqual([
      ['root', 'vda', undefined],
      ['data', 'vdb', 3],
    ]);
  });

  test("a snapshot, a change, a revert: the files of the snapshot's time are back", async () => {
    expect((await ssh('echo before | sudo tee /var/tmp/marker >/dev/null && sync')).exitCode).toBe(0);
    const snap = await snapshotVm('vwclc', { name: 'pre-upgrade', description: 'before the change' }, opts);
    expect(snap).toMatchObject({ name: 'pre-upgrade', description: 'before the change', state: 'running' });
    expect(
      (await ssh('echo after | sudo tee /var/tmp/marker >/dev/null && sudo touch /var/tmp/new && sync')).exitCode,
    ).toBe(0);
    await revertVm('vwclc', 'pre-upgrade', opts);
    const r = await ssh('cat /var/tmp/marker; test -e /var/tmp/new && echo new-exists || echo no-new');
    expect(r.stdout.split('\n')).toEqual(['before', 'no-new']);
    expect((await listSnapshots('vwclc', opts)).map((s) => s.name)).toEqual(['pre-upgrade']);
    await deleteSnapshot('vwclc', 'pre-upgrade', opts);
    expect(await listSnapshots('vwclc', opts)).toEqual([]);
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

    expect(await stopVm('vwclc', { ...opts, timeoutMs: 180_000 })).toEqual({ graceful: true });
    expect((await getVm('vwclc', opts))!.state).toBe('shutoff');
    expect((await startVm('vwclc', opts)).nics[0]!.ip).toBe(vm.nics[0]!.ip);
    // sshd comes up after the lease: wait for it to answer, then log in
    await waitUntil(async () => (await sshAnswer(new ExecaRunner(), vm.nics[0]!.ip)) !== undefined, {
      timeoutMs: 180_000,
      intervalMs: 500,
      what: 'SSH after the start',
    });
    expect((await ssh('cat /var/tmp/marker')).stdout).toBe('before');

    expect((await ssh('cat /proc/cmdline')).stdout).toContain('virtwire.updated=1');
    // the VM's own copy of its boot files from now on (its initrd loaded uncompressed: the same
    // archives, so the same cache file as the image's); the domain names them
    const xml = (await execa('virsh', ['-c', 'qemu:///system', 'dumpxml', 'vwclc'])).stdout;
    const own = join(opts.stateDir, 'vms', 'vwclc', 'boot');
    expect(xml).toContain(`<kernel>${join(opts.stateDir, 'kernels')}/`);
    expect(xml).toMatch(new RegExp(`<initrd>${join(opts.stateDir, 'kernels')}/[0-9a-f]{20}\\.cpio</initrd>`));
    expect((await readState(opts)).find((r) => r.vm.name === 'vwclc')!.imageBoot!.initrd).toBe(join(own, 'initrd.img'));
    expect(xml).toMatch(/<cmdline>[^<]*virtwire\.updated=1<\/cmdline>/);
  }, 600_000);
});
