// A VM's whole life from TypeScript, with the test guest (Debian kernel + busybox, TCG), nothing
// mocked: list, stop, start on the same IP, reboot (a second boot on the console), QoS changed
// live and measured, a NIC hot-plugged on a second tenant (its lease; the isolation still right)
// and unplugged, the serial console read and written, a data disk the guest sees, lifecycle
// events. The cloud guest's half (snapshots, a graceful ACPI stop) is in cloud-guest.test.ts.
import { execa } from 'execa';
import { mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createVm,
  destroyVm,
  listVms,
  getVm,
  stopVm,
  startVm,
  rebootVm,
  updateVm,
  attachNic,
  detachNic,
  openConsole,
  onVmEvent,
  plan,
  parseSpecText,
  Libvirt,
} from '../../lib/index.js';
import {
  buildTestGuest,
  waitForConsole,
  consoleText,
  testGuestSpec,
  type TestGuestImage,
} from '../../lib/testing/index.js';
import type { CreatedVm, VmEvent } from '../../types/vm.js';
import type { Subscription } from '../../lib/libvirt/index.js';
import { describeAsRoot } from '../helpers/root.js';
import { Collector } from '../helpers/wait.js';

const stateDir = mkdtempSync(join(tmpdir(), 'vwlc-'));
chmodSync(stateDir, 0o755);
const opts = { stateDir };
const A = { tenant: 'vwlca', cidr: '10.81.0.0/24' };
const B = { tenant: 'vwlcb', cidr: '10.82.0.0/24' };
const boots = (vm: CreatedVm) => consoleText(vm).split('VIRTWIRE-BOOT').length - 1;

let image: TestGuestImage;
let vm: CreatedVm;
let peer: CreatedVm;
let events: Collector<VmEvent>;
let sub: Subscription;

/** Downloads the guest's 4 MiB /big from the host: what it sends, Mbit/s. */
async function sendRate(ip: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`http://${ip}/big`, { signal: AbortSignal.timeout(60_000) });
  const bytes = (await res.arrayBuffer()).byteLength;
  return (bytes * 8) / ((performance.now() - t0) / 1000) / 1e6;
}

describeAsRoot('the lifecycle API with a real guest', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
    events = new Collector<VmEvent>();
    // the guest pings B's peer (reachable once a NIC on B is attached); the peer pings the guest's A address (never)
    peer = await createVm(
      testGuestSpec(image, 'vwlc-b', [{ network: B, ip: '10.82.0.20' }], ['ping:10.81.0.10']),
      opts,
    );
    sub = await onVmEvent((e) => e.name === 'vwlc-a' && events.push(e), opts);
    const spec = testGuestSpec(
      image,
      'vwlc-a',
      [{ network: A, ip: '10.81.0.10', qos: { egressKbps: 8000 } }],
      ['ping:10.82.0.20'],
    );
    vm = await createVm({ ...spec, disks: [{ name: 'data', sizeGiB: 2 }] }, opts);
  }, 300_000);
  afterAll(async () => {
    await sub?.off();
    await destroyVm('vwlc-a', { ...opts, missingOk: true }).catch(() => {});
    await destroyVm('vwlc-b', { ...opts, missingOk: true }).catch(() => {});
    rmSync(stateDir, { recursive: true, force: true });
  });

  test("listVms and getVm: the record with libvirt's live state, its NICs and disks", async () => {
    const list = await listVms(opts);
    expect(list.map((v) => [v.name, v.state])).toEqual([
      ['vwlc-a', 'running'],
      ['vwlc-b', 'running'],
    ]);
    const a = (await getVm('vwlc-a', opts))!;
    expect(a).toMatchObject({
      uuid: vm.uuid,
      accel: 'tcg',
      nics: [{ tenant: 'vwlca', ip: '10.81.0.10', mac: vm.nics[0]!.mac }],
    });
    expect(a.disks).toEqual([
      { name: 'data', path: join(stateDir, 'vms', 'vwlc-a', 'data-data.qcow2'), sizeGiB: 2, target: 'vda' },
    ]);
    expect(await getVm('nope', opts)).toBeNull();
    await events.next('started', (e) => e.type === 'started');
  });

  test('the data disk is a block device of its size in the guest (vda: this guest boots a kernel, no root disk)', async () => {
    await waitForConsole(vm, new RegExp(`VIRTWIRE-BLOCK vda bytes=${2 * 1024 ** 3}`), 30_000);
  });

  test('the serial console round-trips a line', async () => {
    const stream = await openConsole('vwlc-a', opts);
    let seen = '';
    stream.on('data', (d: Buffer) => (seen += d.toString()));
    stream.write('hello-virtwire\n');
    await new Promise<void>((resolve, reject) => {
      const check = () => seen.includes('VIRTWIRE-ECHO hello-virtwire') && resolve();
      stream.on('data', check);
      stream.on('error', reject);
      setTimeout(
        () => reject(new Error(`no echo within 30 s; console said: ${JSON.stringify(seen.slice(-300))}`)),
        30_000,
      );
    });
    stream.end();
    await new Promise((r) => stream.once('close', r));
    // what went over the console is in the serial log too
    expect(consoleText(vm)).toContain('VIRTWIRE-ECHO hello-virtwire');
  });

  test('QoS changed live: measured before and after, same domain (no restart)', async () => {
    await waitForConsole(vm, /VIRTWIRE-READY/, 60_000); // its httpd listens (a lease comes first)
    const before = await sendRate(vm.nics[0]!.ip);
    const lv = await Libvirt.open('qemu:///system');
    const id = (await lv.listDomains()).find((d) => d.name === 'vwlc-a')!.id;
    const r = await updateVm(
      {
        ...testGuestSpec(
          image,
          'vwlc-a',
          [{ network: A, ip: '10.81.0.10', qos: { egressKbps: 16000 } }],
          ['ping:10.82.0.20'],
        ),
        disks: [{ name: 'data', sizeGiB: 2 }],
      },
      opts,
    );
    expect(r).toEqual({ changes: ['nics[0].qos.egressKbps'], live: true });
    const after = await sendRate(vm.nics[0]!.ip);
    console.log(`QoS live: guest sends ${before.toFixed(2)} Mbit/s at 8000 kbit/s, ${after.toFixed(2)} at 16000`);
    expect(before).toBeGreaterThan(8 * 0.85 * 0.95);
    expect(before).toBeLessThan(8 * 1.15);
    expect(after).toBeGreaterThan(16 * 0.85 * 0.95);
    expect(after).toBeLessThan(16 * 1.15);
    expect((await lv.listDomains()).find((d) => d.name === 'vwlc-a')!.id).toBe(id);
    await lv.close();
    expect(boots(vm)).toBe(1);
    // the record followed: a spec file asking for what the VMs are now plans no change
    const vms = [
      {
        ...testGuestSpec(image, 'vwlc-a', [], ['ping:10.82.0.20']),
        disks: [{ name: 'data', sizeGiB: 2 }],
        nics: [{ network: 'vwlca', ip: '10.81.0.10', qos: { egressKbps: 16000 } }],
      },
      { ...testGuestSpec(image, 'vwlc-b', [], ['ping:10.81.0.10']), nics: [{ network: 'vwlcb', ip: '10.82.0.20' }] },
    ];
    const p = await plan(parseSpecText(JSON.stringify({ networks: [A, B], vms })), opts);
    expect(p.changes).toEqual([]);
  });

  test('a change that needs a restart is refused naming its fields, nothing changed', async () => {
    const spec = {
      ...testGuestSpec(
        image,
        'vwlc-a',
        [{ network: A, ip: '10.81.0.10', qos: { egressKbps: 16000 } }],
        ['ping:10.82.0.20'],
      ),
      disks: [{ name: 'data', sizeGiB: 2 }],
      vcpus: 2,
    };
    await expect(updateVm(spec, opts)).rejects.toMatchObject({ code: 'SPEC_INVALID', problems: [{ path: 'vcpus' }] });
    expect((await getVm('vwlc-a', opts))!.vcpus).toBe(1);
  });

  test('attachNic on a second tenant: a lease there, the isolation still right; detachNic: the tap is gone', async () => {
    await waitForConsole(vm, /round=\d+ ping 10\.82\.0\.20 fail/, 30_000);
    expect(consoleText(vm)).not.toMatch(/ping 10\.82\.0\.20 ok/); // another tenant's guest: not yet
    const nic = await attachNic('vwlc-a', { network: B }, opts);
    expect(nic).toMatchObject({ tenant: 'vwlcb', ip: '10.82.0.2' });
    await waitForConsole(vm, /VIRTWIRE-NIC added eth1/, 60_000);
    await waitForConsole(vm, /VIRTWIRE-LEASE ip=10\.82\.0\.2 .*iface=eth1/, 60_000);
    // the guest reaches B's peer over its new NIC (never before: B is another tenant); B's peer
    // still cannot reach the guest's A address
    await waitForConsole(vm, /round=\d+ ping 10\.82\.0\.20 ok/, 30_000);
    await waitForConsole(peer, /round=\d+ ping 10\.81\.0\.10 fail/, 30_000);
    expect(consoleText(peer)).not.toMatch(/ping 10\.81\.0\.10 ok/);

    await detachNic('vwlc-a', nic.mac, opts);
    await waitForConsole(vm, /VIRTWIRE-NIC gone eth1/, 60_000);
    expect((await execa('ip', ['link', 'show', nic.tap], { reject: false })).exitCode).not.toBe(0);
    expect((await getVm('vwlc-a', opts))!.nics.map((n) => n.tenant)).toEqual(['vwlca']);
  }, 240_000);

  test('stop (the guest ignores ACPI: powered off after the deadline), start on the same IP: a second boot', async () => {
    expect(await stopVm('vwlc-a', { ...opts, timeoutMs: 3_000 })).toEqual({ graceful: false });
    expect((await getVm('vwlc-a', opts))!.state).toBe('shutoff');
    await events.next('stopped', (e) => e.type === 'stopped');
    const started = await startVm('vwlc-a', opts);
    expect(started).toMatchObject({ state: 'running', nics: [{ ip: '10.81.0.10' }] });
    await waitForConsole(vm, /VIRTWIRE-BOOT[\s\S]*VIRTWIRE-BOOT[\s\S]*VIRTWIRE-LEASE ip=10\.81\.0\.10/, 60_000);
    expect(boots(vm)).toBe(2);
  }, 180_000);

  test('reboot: a reset after the deadline, a third boot on the console, the same IP, a rebooted event', async () => {
    expect(await rebootVm('vwlc-a', { ...opts, timeoutMs: 3_000 })).toEqual({ graceful: false });
    await waitForConsole(vm, /(VIRTWIRE-BOOT[\s\S]*){3}VIRTWIRE-LEASE ip=10\.81\.0\.10/, 90_000);
    await events.next('rebooted', (e) => e.type === 'rebooted');
  }, 180_000);

  test('destroy takes the VM, its disks and its files', async () => {
    expect(await destroyVm('vwlc-a', opts)).toBe(true);
    expect((await listVms(opts)).map((v) => v.name)).toEqual(['vwlc-b']);
    expect((await execa('ls', [join(stateDir, 'vms')])).stdout.split('\n')).toEqual(['vwlc-b']);
  });
});
