// The Terraform workflow through the built binary, with real guests: -target, saved plans (and
// stale ones refused), apply -json, output, state rm / mv, refresh, the lock (shared for plan,
// -lock-timeout, force-unlock), Ctrl-C during an apply, a failure on a terminal, importing a
// disk-booted domain, and the CI wrapper in examples/.
import { execa, type ResultPromise } from 'execa';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCloudImage, buildTestGuest, type TestGuestImage } from '../../lib/testing/index.js';
import { FileLock } from '../../lib/host/index.js';
import { buildXml } from '../../lib/xml/index.js';
import { bridgeName } from '../../lib/spec/index.js';
import { describeAsRoot } from '../helpers/root.js';
import { hostSnapshot, type HostSnapshot } from '../helpers/host-snapshot.js';
import { waitFor } from '../helpers/wait.js';
import { guestYaml } from '../helpers/spec-yaml.js';

const dir = mkdtempSync(join(tmpdir(), 'vwcw-'));
chmodSync(dir, 0o755);
const stateDir = join(dir, 'state');
const file = join(dir, 'spec.yaml');
const BIN = new URL('../../dist/scripts/virtwire.js', import.meta.url).pathname;
const ROOT = new URL('../..', import.meta.url).pathname;
const cli = (...args: string[]) =>
  execa('node', [BIN, '--state-dir', stateDir, ...args], { reject: false, timeout: 240_000 });
const virsh = (...args: string[]) => execa('virsh', ['-c', 'qemu:///system', ...args], { reject: false });
const lines = (text: string) => text.split('\n').filter(Boolean);

let image: TestGuestImage;
let before: HostSnapshot;

const guest = (name: string, tenant: string, extra = '') => guestYaml(image, name, tenant, extra, 160);
function writeSpec(...vms: string[]): void {
  const networks = ['  - { tenant: vwcwa, cidr: 10.83.0.0/24 }', '  - { tenant: vwcwb, cidr: 10.84.0.0/24 }'];
  // the operator's file allows VMs to read from the test's own directory (a disk made there)
  writeFileSync(file, ['networks:', ...networks, `paths: { read: [${dir}] }`, 'vms:', ...vms, ''].join('\n'));
}
const A = () => guest('vwcw-a', 'vwcwa');
const B = (qos = 5000) => guest('vwcw-b', 'vwcwb', `qos: { egressKbps: ${qos} }`);

async function stateNames(): Promise<string[]> {
  return lines((await cli('state', 'list')).stdout);
}

describeAsRoot('the CLI workflow (real binary, real guests)', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
    writeFileSync(join(dir, 'bogus'), 'not a kernel'); // QEMU refuses it: a failure after the host changed
    before = await hostSnapshot(stateDir);
  });
  afterAll(async () => {
    writeSpec();
    await cli('destroy', '-f', file, '--auto-approve');
    await virsh('undefine', 'vwcwext');
    rmSync(dir, { recursive: true, force: true });
  });

  test('-target plans and applies one VM and its network, with a warning', async () => {
    writeSpec(A(), B());
    const plan = await cli('plan', '-f', file, '-target=vwcw-a');
    expect(plan.exitCode).toBe(0);
    expect(plan.stdout).toContain('+ vm vwcw-a (vwcwa 10.83.0.2) — create');
    expect(plan.stdout).toContain('+ network vwcwa — create');
    expect(plan.stdout).not.toContain('vwcwb');
    expect(plan.stdout).toContain('Plan: 2 to add');
    expect(plan.stderr).toContain('Warning: Resource targeting is in effect');
    const bad = await cli('plan', '-f', file, '-target', 'nosuch');
    expect(bad.stderr).toMatch(/target\[0\]: nosuch is neither a VM, a tenant network nor a security group/);
    expect((await cli('apply', '-f', file, '-target', 'vwcw-a', '-auto-approve')).exitCode).toBe(0);
    expect(await stateNames()).toEqual(['vm.vwcw-a']);
  });

  test('a saved plan is applied exactly, without asking; a stale one is refused', async () => {
    const p1 = join(dir, 'p1.json');
    const p2 = join(dir, 'p2.json');
    expect((await cli('plan', '-f', file, '-out', p1)).stdout).toContain(`virtwire apply ${p1}`);
    expect((await cli('plan', '-f', file, `-out=${p2}`)).exitCode).toBe(0);
    expect(statSync(p1).mode & 0o777).toBe(0o600); // it may hold the spec's secrets
    const shown = await cli('show', p1);
    expect(shown.stdout).toContain('+ vm vwcw-b (vwcwb 10.84.0.2) — create');
    expect(JSON.parse((await cli('show', '-json', p1)).stdout)).toMatchObject({
      format_version: '1.0',
      resource_changes: [
        { address: 'vm.vwcw-b', change: { actions: ['create'] } },
        { address: 'network.vwcwb', change: { actions: ['create'] } },
      ],
    });
    // the spec file changes after planning: the saved plan still does what it said
    writeSpec(A(), B(), guest('vwcw-z', 'vwcwa'));
    const applied = await cli('apply', p1); // stdin is not a terminal: a saved plan needs no approval
    expect([applied.exitCode, applied.stderr]).toEqual([0, '']);
    expect(applied.stdout).toContain('Apply complete! 2 added');
    expect(await stateNames()).toEqual(['vm.vwcw-a', 'vm.vwcw-b']);
    const stale = await cli('apply', p2);
    expect(stale.exitCode).toBe(1);
    expect(stale.stderr).toMatch(/^Error: Saved plan is stale: the state changed since it was made/);
    // the hosts move on without the state changing: a domain stops behind virtwire's back
    writeSpec(A(), B(7000));
    const p3 = join(dir, 'p3.json');
    expect((await cli('plan', '-f', file, '-out', p3)).exitCode).toBe(0);
    await virsh('destroy', 'vwcw-a');
    const moved = await cli('apply', p3);
    expect(moved.exitCode).toBe(1);
    expect(moved.stderr).toMatch(/Saved plan is stale: the hosts no longer match/);
    expect(await cli('apply', p3, '-f', file)).toMatchObject({ exitCode: 1 });
    expect((await cli('apply', '-f', file, '-auto-approve')).exitCode).toBe(0);
    expect((await cli('plan', '-f', file, '-detailed-exitcode')).exitCode).toBe(0);
  });

  test('apply -json: one object per line, the last one the outcome (success or failure)', async () => {
    writeSpec(A(), B(9000));
    const r = await cli('apply', '-f', file, '-auto-approve', '-json');
    expect(r.exitCode).toBe(0);
    const events = lines(r.stdout).map((l) => JSON.parse(l) as { type: string; '@level': string; hook?: object });
    expect(events.map((e) => e.type)).toEqual([
      'version',
      'planned_change',
      'change_summary',
      'apply_start',
      'apply_complete',
      'outputs',
      'change_summary',
    ]);
    expect(events.at(-1)).toMatchObject({ type: 'change_summary', operation: 'apply', changes: { update: 1 } });
    // a failure half-way: the last object says so
    writeFileSync(
      file,
      readFileSync(file, 'utf8') + guest('vwcw-f', 'vwcwa').replace(image.kernel, join(dir, 'bogus')) + '\n',
    );
    const failed = await cli('apply', '-f', file, '-auto-approve', '-json');
    expect(failed.exitCode).toBe(1);
    const last = JSON.parse(lines(failed.stdout).at(-1)!) as { type: string; '@level': string };
    expect(last).toMatchObject({ type: 'diagnostic', '@level': 'error' });
    expect(lines(failed.stdout).map((l) => (JSON.parse(l) as { type: string }).type)).toContain('apply_errored');
    expect(await stateNames()).toEqual(['vm.vwcw-a', 'vm.vwcw-b']); // rolled back
  });

  test('output: what a wrapper script needs', async () => {
    writeSpec(A(), B(9000));
    const out = JSON.parse((await cli('output', '-json')).stdout) as {
      format_version: string;
      vms: Record<string, { ip: string; nics: { mac: string; tap: string; tenant: string }[] }>;
    };
    expect(out.format_version).toBe('1.0');
    expect(Object.keys(out.vms)).toEqual(['vwcw-a', 'vwcw-b']);
    expect(out.vms['vwcw-a']).toMatchObject({ ip: '10.83.0.2', nics: [{ tenant: 'vwcwa', ip: '10.83.0.2' }] });
    const mac = out.vms['vwcw-b']!.nics[0]!.mac;
    expect((await virsh('domiflist', 'vwcw-b')).stdout).toContain(mac);
    expect((await cli('output', 'vwcw-b')).stdout).toBe('10.84.0.2');
    expect((await cli('output', 'nosuch')).stderr).toMatch(/no VM named nosuch in the state/);
  });

  test("console: the guest's serial console on a terminal; Ctrl-] leaves", async () => {
    const session = execa('script', ['-qefc', `node ${BIN} --state-dir ${stateDir} console vwcw-a`, '/dev/null'], {
      reject: false,
      timeout: 60_000,
    });
    let out = '';
    session.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the console to connect', 30_000, () => out.includes("Connected to vwcw-a's console"));
    session.stdin!.write('hello-cli\r');
    await waitFor('the guest to echo the line', 30_000, () => out.includes('VIRTWIRE-ECHO hello-cli'));
    session.stdin!.write('\x1d');
    expect((await session).exitCode).toBe(0);
  });

  test('state rm forgets without touching the host; the next plan finds the domain and replaces it', async () => {
    const rm = await cli('state', 'rm', 'vm.vwcw-b');
    expect(rm.stdout).toContain('Removed vm.vwcw-b from the state');
    expect(await stateNames()).toEqual(['vm.vwcw-a']);
    expect((await virsh('domstate', 'vwcw-b')).stdout.trim()).toBe('running');
    const plan = await cli('plan', '-f', file, '-detailed-exitcode');
    expect(plan.exitCode).toBe(2);
    expect(plan.stdout).toContain('-/+ vm vwcw-b — forces replacement (exists in libvirt but not in the state');
    expect((await cli('apply', '-f', file, '-auto-approve')).exitCode).toBe(0);
    expect((await cli('plan', '-f', file, '-detailed-exitcode')).exitCode).toBe(0);
    expect((await virsh('list', '--name')).stdout.split('\n').filter((n) => n.startsWith('vwcw-'))).toHaveLength(2);
  });

  test('state mv renames a shut-off VM; refresh drops a VM whose domain is gone; neither touches the rest', async () => {
    await virsh('destroy', 'vwcw-b');
    const mv = await cli('state', 'mv', 'vwcw-b', 'vwcw-c');
    expect([mv.exitCode, mv.stdout.trim()]).toEqual([0, 'Moved vm.vwcw-b to vm.vwcw-c']);
    expect((await virsh('domstate', 'vwcw-c')).stdout.trim()).toBe('shut off');
    expect((await cli('output', 'vwcw-c')).stdout).toBe('10.84.0.2'); // same addresses
    // the spec renames it too (the guest keeps its own command line): nothing to replace, only to start
    writeSpec(A(), B(9000).replace('name: vwcw-b', 'name: vwcw-c'));
    const plan = await cli('plan', '-f', file);
    expect(plan.stdout).toContain('~ vm vwcw-c — repair: domain is shutoff, not running');
    expect(plan.stdout).toContain('Plan: 0 to add, 0 to change, 0 to replace, 0 to destroy, 1 to repair.');
    expect((await cli('apply', '-f', file, '-auto-approve')).exitCode).toBe(0);
    expect((await cli('plan', '-f', file, '-detailed-exitcode')).exitCode).toBe(0);

    await virsh('destroy', 'vwcw-c');
    await virsh('undefine', 'vwcw-c');
    const refreshed = await cli('refresh');
    expect(refreshed.stdout).toContain('vm.vwcw-c: its domain is gone; removed from the state');
    expect(await stateNames()).toEqual(['vm.vwcw-a']);
    expect((await virsh('domstate', 'vwcw-a')).stdout.trim()).toBe('running');
    writeSpec(A(), guest('vwcw-c', 'vwcwb', 'qos: { egressKbps: 9000 }'));
    const again = await cli('apply', '-f', file, '-auto-approve');
    expect([again.exitCode, again.stderr]).toEqual([0, '']);
    expect((await cli('plan', '-f', file, '-detailed-exitcode')).exitCode).toBe(0);
  });

  test('the lock: plans share it, apply excludes; -lock-timeout waits; force-unlock explains', async () => {
    const lockFile = join(stateDir, 'command.lock');
    const reader = FileLock.tryAcquire(lockFile, 'virtwire plan (test)', { shared: true })!;
    try {
      expect((await cli('plan', '-f', file)).exitCode).toBe(0);
      const apply = await cli('apply', '-f', file, '-auto-approve');
      expect(apply.stderr).toContain('is locked by');
    } finally {
      reader.release();
    }
    let writer: FileLock | undefined = FileLock.tryAcquire(lockFile, 'virtwire apply (test)')!;
    try {
      expect((await cli('plan', '-f', file)).stderr).toContain(`locked by process ${process.pid}`);
      const unlock = await cli('force-unlock', String(process.pid));
      expect(unlock.exitCode).toBe(1);
      expect(unlock.stderr).toMatch(/held by live process \d+ .*cannot be broken/);
      // a plan that waits: the lock is released once it says it is waiting
      const waiting = cli('plan', '-f', file, '-lock-timeout=120s', '-detailed-exitcode');
      let err = '';
      waiting.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      await waitFor('the plan to wait for the lock', 60_000, () => err.includes('waiting up to 120s'));
      writer.release();
      writer = undefined;
      expect((await waiting).exitCode).toBe(0);
    } finally {
      writer?.release();
    }
    expect((await cli('force-unlock', '12345')).stdout).toMatch(/is not locked/);
  });

  test('Ctrl-C during apply: the running create rolls back, nothing else begins, the host is as before', async () => {
    const ready = await hostSnapshot(stateDir);
    writeSpec(
      A(),
      guest('vwcw-c', 'vwcwb', 'qos: { egressKbps: 9000 }'),
      guest('vwcw-d', 'vwcwa'),
      guest('vwcw-e', 'vwcwa'),
    );
    const child: ResultPromise = execa(
      'node',
      [BIN, '--state-dir', stateDir, 'apply', '-f', file, '-auto-approve', '-parallelism=1'],
      {
        reject: false,
      },
    );
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the first create to start its guest', 120_000, () => /vm vwcw-d: create … (start|lease)/.test(out));
    child.kill('SIGINT');
    const r = await child;
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('stopping: changes under way finish or roll back');
    expect(out).toMatch(/vm vwcw-d: create failed/);
    expect(out).toContain('vm vwcw-e: create skipped');
    expect(await hostSnapshot(stateDir)).toEqual(ready);
    expect(await stateNames()).toEqual(['vm.vwcw-a', 'vm.vwcw-c']);
  });

  test('a failure mid-apply on a terminal: the live list stops, exit 1; colour only without NO_COLOR', async () => {
    writeSpec(
      A(),
      guest('vwcw-c', 'vwcwb', 'qos: { egressKbps: 9000 }'),
      guest('vwcw-f', 'vwcwa').replace(image.kernel, join(dir, 'bogus')),
    );
    const onTty = (env: Record<string, string>) =>
      execa('script', ['-qefc', `node ${BIN} --state-dir ${stateDir} apply -f ${file} -auto-approve`, '/dev/null'], {
        reject: false,
        timeout: 120_000,
        env: { ...env, TERM: 'xterm' },
      });
    const coloured = await onTty({ NO_COLOR: '' });
    expect(coloured.exitCode).toBe(1);
    expect(coloured.stdout).toContain('\x1b[1A\x1b[2K'); // drawn in place
    expect(coloured.stdout).toContain('\x1b[31m✗\x1b[0m vm vwcw-f');
    expect(coloured.stdout).toMatch(/Error: step "start" failed \(rolled back\)/);
    const plain = await onTty({ NO_COLOR: '1' });
    expect(plain.exitCode).toBe(1);
    expect(plain.stdout).toContain('✗ vm vwcw-f');
    expect(plain.stdout).not.toMatch(/\x1b\[3\dm/);
    expect(await stateNames()).toEqual(['vm.vwcw-a', 'vm.vwcw-c']);
  });

  test('import adopts a disk-booted domain: its disk under an overlay, its data there at boot, what is dropped named', async () => {
    writeSpec(A(), guest('vwcw-c', 'vwcwb', 'qos: { egressKbps: 9000 }'));
    const cloud = await buildCloudImage();
    const disk = join(dir, 'own-disk.raw');
    const marker = `VW-DISK-DATA-${process.pid}`;
    await diskWithMarker(cloud.image, disk, marker);
    const written = statSync(disk).mtimeMs;
    const xml = buildXml({
      domain: {
        $: { type: 'qemu' },
        name: 'vwcwext',
        memory: { $: { unit: 'KiB' }, _: 512 * 1024 },
        vcpu: 1,
        os: { type: { $: { arch: 'x86_64', machine: 'pc' }, _: 'hvm' }, boot: { $: { dev: 'hd' } } },
        devices: {
          disk: {
            $: { type: 'file', device: 'disk' },
            driver: { $: { name: 'qemu', type: 'raw' } },
            source: { $: { file: disk } },
            target: { $: { dev: 'vda', bus: 'virtio' } },
          },
          interface: {
            $: { type: 'bridge' },
            source: { $: { bridge: bridgeName('vwcwa') } },
            model: { $: { type: 'virtio' } },
          },
          graphics: { $: { type: 'vnc', port: '-1' } },
          serial: { $: { type: 'pty' } },
        },
      },
    });
    writeFileSync(join(dir, 'vwcwext.xml'), xml);
    expect((await virsh('define', join(dir, 'vwcwext.xml'))).exitCode).toBe(0);
    const r = await cli('import', 'vwcwext', '--as', 'vwcw-disk');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^imported vwcwext as vwcw-disk: vwcwa 10\.83\.0\.\d+ \(vwt/m);
    // libvirt gave the VNC display a video card: both are named
    expect(lines(r.stderr)).toEqual([
      'Warning: not kept (virtwire does not model it): graphics vnc',
      expect.stringMatching(/^Warning: not kept \(virtwire does not model it\): video \w+$/),
    ]);
    const overlay = join(stateDir, 'vms', 'vwcw-disk', 'disk.qcow2');
    const info = JSON.parse((await execa('qemu-img', ['info', '-U', '--output=json', overlay])).stdout) as Record<
      string,
      string
    >;
    expect([info.format, info['backing-filename'], info['backing-filename-format']]).toEqual(['qcow2', disk, 'raw']);

    writeSpec(
      A(),
      guest('vwcw-c', 'vwcwb', 'qos: { egressKbps: 9000 }'),
      '  - name: vwcw-disk',
      '    memoryMiB: 512',
      `    boot: { image: ${disk} }`,
      '    nics: [{ network: vwcwa }]',
    );
    expect((await cli('plan', '-f', file)).stdout).toContain('~ vm vwcw-disk — repair: domain is shutoff, not running');
    expect((await cli('apply', '-f', file, '-auto-approve')).exitCode).toBe(0);
    const serial = join(stateDir, 'vms', 'vwcw-disk', 'serial.log');
    await waitFor(
      `${marker} from the adopted disk on the serial console`,
      300_000,
      () => existsSync(serial) && readFileSync(serial, 'utf8').includes(marker),
      500,
    );
    expect(statSync(disk).mtimeMs).toBe(written); // the guest writes its overlay, never its old disk
    expect((await cli('plan', '-f', file, '-detailed-exitcode')).exitCode).toBe(0);
    writeSpec(A(), guest('vwcw-c', 'vwcwb', 'qos: { egressKbps: 9000 }'));
    expect((await cli('apply', '-f', file, '-auto-approve')).exitCode).toBe(0);
    expect(existsSync(disk)).toBe(true); // virtwire removes what it made, not the disk it adopted
    expect(existsSync(overlay)).toBe(false);
    // on a fresh host the first test to use the cloud image builds it (~4 minutes)
  }, 600_000);

  test('examples/ci.sh: validate, plan -out, show, apply the file, output, destroy', async () => {
    const ciState = join(dir, 'ci-state');
    const ciSpec = join(dir, 'ci.yaml');
    writeFileSync(
      ciSpec,
      ['networks:', '  - { tenant: vwcwx, cidr: 10.85.0.0/24 }', 'vms:', guest('vwcw-x', 'vwcwx'), ''].join('\n'),
    );
    expect((await cli('fmt', ciSpec)).exitCode).toBe(0); // else the script notes it on stderr
    const r = await execa(join(ROOT, 'examples/ci.sh'), [ciSpec, ciState], {
      reject: false,
      timeout: 240_000,
      env: { VIRTWIRE: `node ${BIN}` },
    });
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toContain('  create vm.vwcw-x');
    expect(r.stdout).toMatch(/== apply\n {2}vm\.vwcw-x: create complete after [\d.]+s\n {2}Apply complete! 2 added/);
    expect(r.stdout).toMatch(/== output\n {2}vwcw-x 10\.85\.0\.2 52:54:00:/);
    expect(r.stdout).toContain('== destroy\n  done');
  });

  test('destroy leaves the host as it was', async () => {
    writeSpec();
    expect((await cli('destroy', '-f', file, '-auto-approve')).exitCode).toBe(0);
    await virsh('undefine', 'vwcwext');
    expect(await hostSnapshot(stateDir)).toEqual(before);
  });
});

/** A raw copy of the cloud image whose /etc/rc.local prints `marker` on the serial console. */
async function diskWithMarker(image: string, raw: string, marker: string): Promise<void> {
  await execa('qemu-img', ['convert', '-O', 'raw', image, raw]);
  // the root filesystem is the only partition, from sector 2048
  const loop = (await execa('losetup', ['--find', '--show', '--offset', String(2048 * 512), raw])).stdout.trim();
  const mnt = mkdtempSync(join(dir, 'mnt-'));
  try {
    await execa('mount', [loop, mnt]);
    try {
      // a unit of the disk's own, run as early as systemd starts anything (not after the network,
      // as rc.local is): the disk's data, seen at boot, without waiting for the rest of it
      const unit = join(mnt, 'etc/systemd/system/vw-marker.service');
      writeFileSync(
        unit,
        [
          '[Unit]',
          'DefaultDependencies=no',
          '[Service]',
          'Type=oneshot',
          `ExecStart=/bin/sh -c 'echo ${marker} > /dev/ttyS0'`,
          '[Install]',
          'WantedBy=sysinit.target',
          '',
        ].join('\n'),
      );
      mkdirSync(join(mnt, 'etc/systemd/system/sysinit.target.wants'), { recursive: true });
      symlinkSync(
        '/etc/systemd/system/vw-marker.service',
        join(mnt, 'etc/systemd/system/sysinit.target.wants/vw-marker.service'),
      );
    } finally {
      await execa('umount', [mnt]);
    }
  } finally {
    await execa('losetup', ['-d', loop]);
    rmSync(mnt, { recursive: true, force: true });
  }
}
