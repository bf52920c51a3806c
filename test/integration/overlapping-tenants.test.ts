// Two tenants with the same subnet on one host, with real guests (createVm on qemu:///system,
// the test guest under TCG): vwoa arrives first and keeps its gateway on the host; vwob, with the
// same 10.66.0.0/24 and the same pinned addresses, gets a namespace of its own. An "outside"
// namespace beyond a veth the test makes stands for the internet.
import { DirStateStore } from '../../lib/engine/state/dir-store.js';
import { namespaceNames } from '../../lib/spec/index.js';
import {
  buildTestGuest,
  waitForConsole,
  consoleText,
  testGuestSpec,
  type TestGuestImage,
} from '../../lib/testing/index.js';
import type { CreatedVm } from '../../types/vm.js';
import { describeAsRoot } from '../helpers/root.js';
import { hostSnapshot, type HostSnapshot } from '../helpers/host-snapshot.js';
import { GuestWorld } from '../helpers/guest-world.js';
import { OUTSIDE } from '../helpers/ranges.js';
import { Capture } from '../helpers/capture.js';

const world = new GuestWorld('vwol');
const { stateDir, guests, outside } = world;
const cidr = '10.66.0.0/24';
const a = { tenant: 'vwoa', cidr };
const b = { tenant: 'vwob', cidr };

let image: TestGuestImage;
let before: HostSnapshot;

/** The probe lines of `vm` from the round its own peer first answered on, and one full round after. */
async function probesOf(vm: CreatedVm, peer: string): Promise<string[]> {
  const from = Number(
    (await waitForConsole(vm, new RegExp(`round=(\\d+) whoami 10\\.66\\.0\\.\\d+ ${peer}\\b`), 90_000))[1],
  );
  await waitForConsole(vm, new RegExp(`round=\\d+ http ${OUTSIDE.outside.replace(/\./g, '\\.')}:8080 ok`), 60_000);
  await waitForConsole(vm, new RegExp(`round=${from + 2} `), 60_000);
  return consoleText(vm)
    .split('\n')
    .slice(0, -1) // complete lines: the last may still be arriving
    .filter((l) => /VIRTWIRE-PROBE round=(\d+)/.test(l) && Number(/round=(\d+)/.exec(l)![1]) >= from);
}

describeAsRoot('two tenants with the same subnet and addresses, real guests (qemu:///system, TCG)', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
    await world.start();
    before = await hostSnapshot(stateDir); // the test's own outside link and namespace included
  });
  afterAll(async () => {
    await world.stop();
  });

  describe('two guests each, pinned to the same addresses', () => {
    let vms: Record<string, CreatedVm>;
    beforeAll(async () => {
      // each guest asks who answers on its peer's address and on the other's own, and goes outside
      const probes = (tenant: 'a' | 'b') => [
        'whoami:10.66.0.12',
        'whoami:10.66.0.11',
        `dns:vwo${tenant}2`,
        'ping:100.64.0.2',
        `http:${OUTSIDE.outside}:8080`,
      ];
      // vwoa first (vwoa2): it is the plain tenant; vwob arrives second and gets the namespace. The
      // prober vwoa1 comes last: before vwob's transit exists, 100.64.0.2 is nobody's, and its
      // pings there would leave the machine by its default route
      const [a2] = await guests.createAll([testGuestSpec(image, 'vwoa2', [{ network: a, ip: '10.66.0.12' }])]);
      const second = await guests.createAll([
        testGuestSpec(image, 'vwob1', [{ network: b, ip: '10.66.0.11' }], probes('b')),
        testGuestSpec(image, 'vwob2', [{ network: b, ip: '10.66.0.12' }]),
      ]);
      const [a1] = await guests.createAll([
        testGuestSpec(image, 'vwoa1', [{ network: a, ip: '10.66.0.11' }], probes('a')),
      ]);
      vms = Object.fromEntries([a1!, a2!, ...second].map((v) => [v.name, v]));
    });

    test('the second tenant got a namespace; every guest leases its pinned address', async () => {
      const spaces = new Map(
        new DirStateStore(stateDir).records().map((r) => [r.vm.name, r.vm.nics[0]!.network.namespace]),
      );
      expect(spaces.get('vwoa1')).toBeUndefined();
      expect(spaces.get('vwob1')).toEqual({ transit: expect.stringMatching(/^100\.64\.\d+\.\d+\/30$/) });
      expect((await hostSnapshot(stateDir)).netns).toContain(namespaceNames('vwob').netns);
      for (const [name, ip] of [
        ['vwoa1', '10.66.0.11'],
        ['vwoa2', '10.66.0.12'],
        ['vwob1', '10.66.0.11'],
        ['vwob2', '10.66.0.12'],
      ] as const) {
        expect(vms[name]!.nics[0]!.ip).toBe(ip);
        await waitForConsole(vms[name]!, new RegExp(`VIRTWIRE-LEASE ip=${ip.replace(/\./g, '\\.')} `), 30_000);
      }
    });

    test("from inside: the same address is always the own tenant's guest; outside through NAT", async () => {
      // vwoa1's pings to vwob's transit address are captured leaving its tap, and never arrive in
      // vwob's namespace, where the replies to vwob1's own outside traffic do (the barrier)
      const left = await Capture.start('', vms.vwoa1!.nics[0]!.tap, 'in', 'icmp and dst host 100.64.0.2');
      const transit = await Capture.start(namespaceNames('vwob').netns, 'vw-transit', 'in', 'icmp or tcp');
      try {
        for (const [name, peer] of [
          ['vwoa1', 'vwoa2'],
          ['vwob1', 'vwob2'],
        ] as const) {
          const lines = await probesOf(vms[name]!, peer);
          const about = (probe: string) => lines.filter((l) => l.includes(` ${probe} `));
          // the peer's address answers with the own tenant's peer, every round, never the other's
          expect(about('whoami 10.66.0.12').length).toBeGreaterThanOrEqual(2);
          const not = (probe: string, end: string) => about(probe).filter((l) => !l.trimEnd().endsWith(end));
          expect(not('whoami 10.66.0.12', ` ${peer}`)).toEqual([]);
          // its own address is itself
          expect(not('whoami 10.66.0.11', ` ${name}`)).toEqual([]);
          // DNS: its own tenant's names only (vwoa1 asks for vwoa2, vwob1 for vwob2: both resolve)
          expect(not('dns', ' ok')).toEqual([]);
          // the namespaced tenant's transit address is reached by nobody
          expect(about('ping 100.64.0.2').length).toBeGreaterThanOrEqual(1);
          expect(not('ping 100.64.0.2', ' fail')).toEqual([]);
          expect(not(`http ${OUTSIDE.outside}:8080`, ' ok')).toEqual([]);
        }
        await left.saw("vwoa1's pings to 100.64.0.2 leaving its tap", /ICMP echo request/);
        // a fresh answer, after every ping above was sent and reported unanswered
        const answer = /\.8080 > 100\.64\.\d+\.2\.\d+:/;
        await transit.saw("the outside's answer to vwob1 arriving in its namespace", answer, transit.count(answer) + 1);
        expect(transit.lines.filter((l) => /ICMP echo request/.test(l))).toEqual([]);
      } finally {
        await left.stop();
        await transit.stop();
      }
      // the outside server saw the host's address (NAT, twice for vwob), never a guest's or a transit's
      expect([...outside.clients]).toEqual([OUTSIDE.host]);
    });
  });

  test('a third tenant with the same subnet gets its own namespace and transit; destroy leaves the host as it was', async () => {
    const [c] = await guests.createAll([
      testGuestSpec(image, 'vwoc1', [{ network: { tenant: 'vwoc', cidr }, ip: '10.66.0.11' }]),
    ]);
    await waitForConsole(c!, /VIRTWIRE-LEASE ip=10\.66\.0\.11 /, 60_000);
    expect((await hostSnapshot(stateDir)).netns).toEqual(
      expect.arrayContaining([namespaceNames('vwob').netns, namespaceNames('vwoc').netns]),
    );
    await guests.destroyAll();
    expect(await hostSnapshot(stateDir)).toEqual(before);
  });
});
