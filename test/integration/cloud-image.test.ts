// Disk boot with cloud-init, without a cloud image (none can be downloaded here): a blank qcow2
// stands in for the base image. Checked for real: the overlay's backing file, the NoCloud seed
// ISO's label and files (read back with xorriso), and that libvirt defines and starts the domain
// with both disks attached; with no kernel of its own to boot directly, through the firmware.
import { execa } from 'execa';
import { mkdtempSync, chmodSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVm, destroyVm, seedFiles } from '../../lib/engine/index.js';
import { Libvirt } from '../../lib/libvirt/index.js';
import { parseDomainXml } from '../../lib/xml/index.js';
import { vmPaths } from '../../lib/engine/index.js';
import { validateVm } from '../../lib/spec/index.js';
import type { VmSpec } from '../../types/spec.js';
import { describeAsRoot } from '../helpers/root.js';

const dir = mkdtempSync(join(tmpdir(), 'vwci-'));
chmodSync(dir, 0o755);
const stateDir = join(dir, 'state');
const base = join(dir, 'base.qcow2');
const spec: VmSpec = {
  name: 'vwcloud',
  boot: { image: base, sizeGiB: 2 },
  cloudInit: {
    userData: '#cloud-config\nusers:\n  - name: ops\n    ssh_authorized_keys: [ssh-ed25519 AAAA test]\n',
    metaData: { 'availability-zone': 'lab-1' },
    networkConfig: 'version: 2\nethernets:\n  id0:\n    match: {macaddress: "52:54:00:77:00:01"}\n    dhcp4: true\n',
  },
  nics: [{ network: { tenant: 'vwcloud', cidr: '10.65.0.0/24' }, mac: '52:54:00:77:00:01' }],
};

describeAsRoot('cloud images: qcow2 overlay and NoCloud seed ISO', () => {
  let forwarding: string;
  beforeAll(async () => {
    forwarding = (await execa('sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim();
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', base, '1G']);
  });
  afterAll(async () => {
    await destroyVm('vwcloud', { stateDir, missingOk: true });
    await execa('sysctl', ['-q', '-w', `net.ipv4.ip_forward=${forwarding}`]);
    await Libvirt.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  test('createVm makes the overlay and the seed, and libvirt runs the domain with both', async () => {
    // the base image is the test's own, beside the state dir: the operator allows reading there
    const vm = await createVm(spec, { stateDir, waitForIp: false, paths: { read: [dir] } });
    const paths = vmPaths(stateDir, 'vwcloud');
    // a blank disk has no kernel of its own to boot directly: the firmware boots it, and says why
    expect(vm.boot).toEqual({
      kind: 'firmware',
      reason:
        'its own kernel was not booted directly: no ext2/3/4 partition of it holds a GRUB config (/boot/grub/grub.cfg)',
    });

    // -U: the running QEMU holds the image's lock
    const info = JSON.parse((await execa('qemu-img', ['info', '-U', '--output=json', paths.overlay])).stdout);
    expect(info).toMatchObject({
      format: 'qcow2',
      'backing-filename': base,
      'backing-filename-format': 'qcow2',
      'virtual-size': 2 * 1024 ** 3,
    });

    const pvd = await execa('xorriso', ['-indev', paths.seedIso, '-pvd_info']);
    expect(pvd.stdout).toMatch(/Volume Id\s*:\s*cidata/);
    const out = join(dir, 'seed-out');
    await execa('xorriso', ['-osirrox', 'on', '-indev', paths.seedIso, '-extract', '/', out]);
    const expected = seedFiles(validateVm(spec));
    expect(readdirSync(out).sort()).toEqual(['meta-data', 'network-config', 'user-data']);
    for (const [name, text] of Object.entries(expected)) expect(readFileSync(join(out, name), 'utf8')).toBe(text);
    expect(expected['meta-data']).toBe(
      `instance-id: ${validateVm(spec).uuid}\nlocal-hostname: vwcloud\navailability-zone: lab-1\n`,
    );

    const lv = await Libvirt.open('qemu:///system');
    try {
      const dom = (await lv.lookupDomain('vwcloud'))!;
      expect((await dom.state()).state).toBe('running');
      const model = parseDomainXml(await dom.xml());
      dom.free();
      expect(model.devices.disks.map((d) => [d.device, d.source?.file, d.readonly ?? false])).toEqual([
        ['disk', paths.overlay, false],
        ['cdrom', paths.seedIso, true],
      ]);
    } finally {
      await lv.close();
    }
    expect(vm.nics[0]!.mac).toBe('52:54:00:77:00:01');
    expect(await destroyVm('vwcloud', { stateDir })).toBe(true);
    expect(readdirSync(join(stateDir, 'vms'))).toEqual([]);
  });
});
