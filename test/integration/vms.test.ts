// Real guests end to end: createVm on qemu:///system with the test guest (Debian kernel +
// busybox, TCG), on NAT tenant networks built in the host's own namespace. An "outside"
// namespace beyond a veth the test makes stands for the internet. Uses virtwire/testing's own
// helpers (GuestLab, waitForConsole, buildTestGuest): their first proof.
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import { createVm, destroyVm } from '../../lib/engine/index.js';
import {
  buildTestGuest,
  waitForConsole,
  consoleText,
  testGuestSpec,
  type TestGuestImage,
} from '../../lib/testing/index.js';
import { ApplyError, SpecError, isVirtwireError } from '../../lib/errors/index.js';
import type { CreatedVm } from '../../types/vm.js';
import { describeAsRoot } from '../helpers/root.js';
import { Capture } from '../helpers/capture.js';
import { hostSnapshot, type HostSnapshot } from '../helpers/host-snapshot.js';
import { GuestWorld } from '../helpers/guest-world.js';
import { OUTSIDE } from '../helpers/ranges.js';

const world = new GuestWorld('vwvm');
const { stateDir, guests, outside } = world;
const acme = { tenant: 'vwacme', cidr: '10.61.0.0/24' };
const globex = { tenant: 'vwglobex', cidr: '10.62.0.0/24' };

let image: TestGuestImage;
let before: HostSnapshot;

/** GET from the host (its own namespace) with a deadline; bytes and seconds. */
async function download(url: string): Promise<{ body: Buffer; seconds: number }> {
  const t0 = performance.now();
  const res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  const body = Buffer.from(await res.arrayBuffer());
  return { body, seconds: (performance.now() - t0) / 1000 };
}

describeAsRoot('createVm / destroyVm with real guests (qemu:///system, TCG)', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
    await world.start();
    before = await hostSnapshot(stateDir); // the test's own outside link included
  });
  afterAll(async () => {
    await world.stop();
  });

  test('a boot file that does not exist: SpecError, nothing made', async () => {
    const spec = testGuestSpec(image, 'vwbad', [{ network: { tenant: 'vwhooli', cidr: '10.64.0.0/24' } }]);
    const err = await createVm({ ...spec, boot: { image: '/nonexistent/disk.qcow2' } }, { stateDir }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SpecError);
    expect((err as SpecError).problems).toEqual([
      { path: 'boot.image', message: '/nonexistent/disk.qcow2 does not exist' },
    ]);
    expect(await hostSnapshot(stateDir)).toEqual(before);
  });

  test("a spec's paths that root's daemons would read or write for it: SpecError naming each, nothing made", async () => {
    const spec = testGuestSpec(image, 'vwbad', [{ network: { tenant: 'vwhooli', cidr: '10.64.0.0/24' } }]);
    const tried = {
      ...spec,
      boot: { kernel: '/etc/shadow', initrd: '/dev/null' },
      serialLog: '/root/.ssh/authorized_keys',
    };
    const err = await createVm(tried, { stateDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    expect((err as SpecError).problems.map((p) => [p.path, p.message.split(' ').slice(1, 4).join(' ')])).toEqual([
      ['boot.kernel', 'is outside the'],
      ['boot.initrd', 'is not a'],
      ['serialLog', 'is outside the'],
    ]);
    expect(
      existsSync('/root/.ssh/authorized_keys') ? readFileSync('/root/.ssh/authorized_keys', 'utf8') : '',
    ).not.toContain('VIRTWIRE');
    expect(await hostSnapshot(stateDir)).toEqual(before);
  });

  test.each(['network', 'disks', 'define', 'start', 'lease'] as const)(
    'a failure at step "%s" rolls back everything the call made',
    async (step) => {
      const spec = testGuestSpec(image, 'vwfail', [
        { network: { tenant: 'vwhooli', cidr: '10.64.0.0/24' }, qos: { egressKbps: 5000 } },
      ]);
      const err = await createVm(spec, {
        stateDir,
        onProgress: (e) => {
          if (e.step === step && e.status === 'start') throw new Error(`injected failure at ${step}`);
        },
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ApplyError);
      expect((err as ApplyError).step).toBe(step);
      expect((err as ApplyError).rolledBack).toBe(true);
      expect(await hostSnapshot(stateDir)).toEqual(before);
    },
  );

  test('6 concurrent createVm calls all succeed with distinct addresses', async () => {
    const net = { tenant: 'vwconc', cidr: '10.63.0.0/24' };
    const vms = await guests.createAll(
      Array.from({ length: 6 }, (_, i) => testGuestSpec(image, `vwconc${i}`, [{ network: net }])),
    );
    const ips = vms.map((v) => v.nics[0]!.ip);
    expect(new Set(ips).size).toBe(6);
    expect(new Set(vms.map((v) => v.nics[0]!.mac)).size).toBe(6);
    expect(new Set(vms.map((v) => v.nics[0]!.tap)).size).toBe(6);
    for (const vm of vms)
      await waitForConsole(vm, new RegExp(`VIRTWIRE-LEASE ip=${vm.nics[0]!.ip.replace(/\./g, '\\.')} `), 30_000);
    await guests.destroyAll();
  });

  describe('two tenants, two guests each', () => {
    let vms: Record<string, CreatedVm>;
    beforeAll(async () => {
      const specs = [
        testGuestSpec(
          image,
          'vwa1',
          [{ network: acme, ip: '10.61.0.11' }],
          ['ping:10.61.0.12', 'ping:10.62.0.11', 'http:10.62.0.11', `http:${OUTSIDE.outside}:8080`],
        ),
        testGuestSpec(image, 'vwa2', [{ network: acme, ip: '10.61.0.12', qos: { egressKbps: 8000 } }]),
        testGuestSpec(
          image,
          'vwg1',
          [{ network: globex, ip: '10.62.0.11' }],
          ['ping:10.62.0.12', 'ping:10.61.0.11', 'http:10.61.0.12', `http:${OUTSIDE.outside}:8080`],
        ),
        testGuestSpec(image, 'vwg2', [{ network: globex, ip: '10.62.0.12' }]),
      ];
      vms = Object.fromEntries((await guests.createAll(specs)).map((v) => [v.name, v]));
    });

    test('every guest gets its pinned IP by DHCP, under TCG here', async () => {
      for (const [name, ip] of [
        ['vwa1', '10.61.0.11'],
        ['vwa2', '10.61.0.12'],
        ['vwg1', '10.62.0.11'],
        ['vwg2', '10.62.0.12'],
      ] as const) {
        expect(vms[name]!.nics[0]!.ip).toBe(ip);
        await waitForConsole(vms[name]!, new RegExp(`VIRTWIRE-LEASE ip=${ip.replace(/\./g, '\\.')} `), 30_000);
      }
      expect(vms.vwa1!.accel).toBe('tcg');
    });

    test('from inside: a guest reaches its tenant and the outside, never the other tenant', async () => {
      // each one's attempts are captured leaving its tap and never at the other's tap, where the
      // host's own ping afterwards arrives
      const pairs = [
        ['vwa1', 'vwg1', '10.61.0.11', '10.62.0.11'],
        ['vwg1', 'vwa1', '10.62.0.11', '10.61.0.11'],
      ] as const;
      const captures = await Promise.all(
        pairs.map(async ([from, to, src, dst]) => ({
          src,
          dst,
          left: await Capture.start('', vms[from]!.nics[0]!.tap, 'in', `dst host ${dst} and (icmp or tcp port 80)`),
          arrived: await Capture.start('', vms[to]!.nics[0]!.tap, 'out', `icmp or tcp port 80`),
        })),
      );
      try {
        for (const [name, own, other] of [
          ['vwa1', '10.61.0.12', '10.62.0.11'],
          ['vwg1', '10.62.0.12', '10.61.0.11'],
        ] as const) {
          const vm = vms[name]!;
          const okRound = Number(
            (await waitForConsole(vm, new RegExp(`round=(\\d+) ping ${own.replace(/\./g, '\\.')} ok`), 60_000))[1],
          );
          await waitForConsole(
            vm,
            new RegExp(`round=\\d+ http ${OUTSIDE.outside.replace(/\./g, '\\.')}:8080 ok`),
            60_000,
          );
          // every round from the one where the tenant was reachable, and one complete round after it
          await waitForConsole(vm, new RegExp(`round=${okRound + 2} `), 60_000);
          const lines = consoleText(vm)
            .split('\n')
            .slice(0, -1) // complete lines: the last may still be arriving
            .filter((l) => /VIRTWIRE-PROBE round=(\d+)/.test(l) && Number(/round=(\d+)/.exec(l)![1]) >= okRound);
          const about = (target: string) => lines.filter((l) => l.includes(` ${target} `));
          expect(about(other).length).toBeGreaterThanOrEqual(2);
          expect(about(other).every((l) => l.trimEnd().endsWith('fail'))).toBe(true);
          expect(lines.filter((l) => l.includes('http 10.6')).every((l) => l.trimEnd().endsWith('fail'))).toBe(true);
        }
        // the outside server saw the host's address (NAT), never a guest's
        expect([...outside.clients]).toEqual([OUTSIDE.host]);
        for (const { src, dst, left, arrived } of captures) {
          const attempt = new RegExp(`${src.replaceAll('.', '\\.')}(\\.\\d+)? > ${dst.replaceAll('.', '\\.')}[.:]`);
          expect(left.count(attempt)).toBeGreaterThanOrEqual(2);
          expect((await execa('busybox', ['ping', '-c', '1', '-W', '5', dst], { reject: false })).exitCode).toBe(0);
          await arrived.saw(
            "the host's ping at the target",
            new RegExp(`> ${dst.replaceAll('.', '\\.')}: ICMP echo request`),
          );
          // and nothing else to dst but the host's one ping: an attempt that got through would
          // arrive translated (the other tenant's masquerade: from its gateway), not from src
          const toDst = new RegExp(`> ${dst.replaceAll('.', '\\.')}(\\.80: Flags \\[S\\]|: ICMP echo request)`);
          expect(arrived.lines.filter((l) => attempt.test(l) || toDst.test(l))).toHaveLength(1);
        }
      } finally {
        for (const c of captures) {
          await c.left.stop();
          await c.arrived.stop();
        }
      }
    });

    test('from the host: each guest answers on its pinned address with its own name', async () => {
      for (const [name, ip] of [
        ['vwa1', '10.61.0.11'],
        ['vwg2', '10.62.0.12'],
      ] as const) {
        expect((await download(`http://${ip}/`)).body.toString()).toBe(`${name} ${ip}\n`);
      }
    });

    test('QoS on a guest NIC limits what it sends', async () => {
      const limited = await download('http://10.61.0.12/big');
      const open = await download('http://10.61.0.11/big');
      const mbit = (d: { body: Buffer; seconds: number }) => (d.body.length * 8) / d.seconds / 1e6;
      console.log(
        `guest sends: ${mbit(limited).toFixed(1)} Mbit/s with egressKbps 8000, ${mbit(open).toFixed(1)} Mbit/s without`,
      );
      expect(limited.body.length).toBe(4 * 1024 * 1024);
      expect(mbit(limited)).toBeLessThan(8 * 1.1);
      expect(mbit(limited)).toBeGreaterThan(8 * 0.5);
      expect(mbit(open)).toBeGreaterThan(2 * mbit(limited));
    });
  });

  test('destroyVm leaves the host as it was before the first createVm; a missing VM is a clear error', async () => {
    await guests.destroyAll();
    expect(await hostSnapshot(stateDir)).toEqual(before);
    const err = await destroyVm('vwa1', { stateDir }).catch((e: unknown) => e);
    expect(isVirtwireError(err, 'NOT_FOUND')).toBe(true);
    expect(await destroyVm('vwa1', { stateDir, missingOk: true })).toBe(false);
    expect(await hostSnapshot(stateDir)).toEqual(before);
  });
});
