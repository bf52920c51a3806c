// Ways in from outside a tenant with real guests (createVm on qemu:///system, the test guest
// under TCG): an "outside" namespace beyond a veth the test makes fetches one guest's HTTP
// through a port forward on the test's own uplink address, and another's through its floating
// IP, which is also the address that guest is seen from; another tenant's guest reaches neither
// (each attempt captured leaving its tap, never at the targets'); the floating IP moves to
// another VM live (updateVm). The namespace-level details (both backends, hairpin, security
// groups, drift, a port in use) are in ways-in-plane.test.ts.
import { execa } from 'execa';
import { updateVm } from '../../lib/index.js';
import {
  buildTestGuest,
  waitForConsole,
  consoleText,
  testGuestSpec,
  type TestGuestImage,
} from '../../lib/testing/index.js';
import type { CreatedVm } from '../../types/vm.js';
import type { VmSpec } from '../../types/spec.js';
import { describeAsRoot } from '../helpers/root.js';
import { GuestWorld } from '../helpers/guest-world.js';
import { OUTSIDE } from '../helpers/ranges.js';
import { Capture, esc } from '../helpers/capture.js';

const world = new GuestWorld('vwwi');
const { stateDir, lab, guests, outside } = world;
const A = { tenant: 'vwwia', cidr: '10.89.0.0/24' };
const B = { tenant: 'vwwib', cidr: '10.90.0.0/24' };
const IP = { web: '10.89.0.11', fip: '10.89.0.12', other: '10.90.0.11' };
const FLOATING = OUTSIDE.spare;
const PORT = 18080;

let image: TestGuestImage;
const vms: Record<string, CreatedVm> = {};
let fipSpec: VmSpec;
let webSpec: VmSpec;
const OUT = 'vwwi-out';

/** The last probe round a guest has completed (0: none yet). */
const lastRound = (vm: CreatedVm) =>
  Math.max(0, ...[...consoleText(vm).matchAll(/VIRTWIRE-PROBE round=(\d+)/g)].map((m) => Number(m[1])));

describeAsRoot('ways in from outside a tenant, real guests (qemu:///system, TCG)', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
    await world.start();
    fipSpec = testGuestSpec(
      image,
      'vwwi-fip',
      [{ network: A, ip: IP.fip, floatingIp: FLOATING }],
      [`http:${OUTSIDE.outside}:8080`],
    );
    // the forward listens on the test's own uplink address only: nothing else of this machine's
    webSpec = testGuestSpec(image, 'vwwi-web', [
      { network: A, ip: IP.web, forwards: [{ hostPort: PORT, port: 80, address: OUTSIDE.host }] },
    ]);
    const [web, fip, other] = await guests.createAll([
      webSpec,
      fipSpec,
      testGuestSpec(
        image,
        'vwwi-other',
        [{ network: B, ip: IP.other }],
        [`http:${OUTSIDE.host}:${PORT}`, `http:${FLOATING}:80`],
      ),
    ]);
    Object.assign(vms, { web, fip, other });
    for (const vm of [web!, fip!]) await waitForConsole(vm, /VIRTWIRE-READY/, 60_000);
  });
  afterAll(async () => {
    await world.stop();
  });

  test("the outside fetches a guest's HTTP through a forward, and another's through its floating IP", async () => {
    expect(await lab.fetch(OUT, `http://${OUTSIDE.host}:${PORT}/`)).toMatch(/^vwwi-web /);
    expect(await lab.fetch(OUT, `http://${FLOATING}/`)).toMatch(/^vwwi-fip /);
    // the created VM says where it is reached
    expect(vms.web!.nics[0]).toMatchObject({ forwards: [{ hostPort: PORT, port: 80, address: OUTSIDE.host }] });
  });

  test("the floating IP is the guest's address outside: the outside sees it, not the host's", async () => {
    await waitForConsole(vms.fip!, new RegExp(`round=\\d+ http ${esc(OUTSIDE.outside)}:8080 ok`), 60_000);
    expect(outside.clients).toContain(FLOATING);
  });

  test("another tenant's guest reaches neither: its attempts leave its tap and never arrive", async () => {
    const syn = 'tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0';
    const left = await Capture.start('', vms.other!.nics[0]!.tap, 'in', syn);
    const atWeb = await Capture.start('', vms.web!.nics[0]!.tap, 'out', syn);
    const atFip = await Capture.start('', vms.fip!.nics[0]!.tap, 'out', syn);
    try {
      const from = lastRound(vms.other!) + 2;
      await waitForConsole(vms.other!, new RegExp(`round=${from} http ${esc(FLOATING)}:80 (ok|fail)`), 60_000);
      const verdicts = [...consoleText(vms.other!).matchAll(/round=(\d+) http (\S+) (ok|fail)/g)]
        .filter((m) => Number(m[1]) >= from - 1)
        .map((m) => m[3]);
      expect(verdicts.length).toBeGreaterThanOrEqual(2);
      expect(verdicts.every((v) => v === 'fail')).toBe(true);
      await left.saw('the attempt on the forward leaving its tap', new RegExp(`> ${esc(OUTSIDE.host)}\\.${PORT}:`));
      await left.saw('the attempt on the floating IP leaving its tap', new RegExp(`> ${esc(FLOATING)}\\.80:`));
      // the barriers: the outside's fetches, after the attempts, arrive at both
      expect(await lab.fetch(OUT, `http://${OUTSIDE.host}:${PORT}/`)).toMatch(/^vwwi-web /);
      expect(await lab.fetch(OUT, `http://${FLOATING}/`)).toMatch(/^vwwi-fip /);
      await atWeb.saw("the outside's SYN at web", new RegExp(`${esc(OUTSIDE.outside)}\\.\\d+ >`));
      await atFip.saw("the outside's SYN at fip", new RegExp(`${esc(OUTSIDE.outside)}\\.\\d+ >`));
      // any SYN but the outside's: a translated attempt would arrive from another source
      const notOutside = new RegExp(`^(?!.*${esc(OUTSIDE.outside)}\\.\\d+ >)`);
      for (const c of [atWeb, atFip]) expect(c.lines.filter((l) => notOutside.test(l))).toEqual([]);
    } finally {
      for (const c of [left, atWeb, atFip]) await c.stop();
    }
  });

  test('the floating IP moves to another VM live (updateVm): the outside reaches the new one', async () => {
    const withFloating = { ...webSpec, nics: [{ ...webSpec.nics[0]!, floatingIp: FLOATING }] };
    const moved = await updateVm(withFloating, { stateDir }).catch((e: unknown) => e);
    // one NIC per address: the old holder still has it
    expect(String(moved)).toMatch(/is already the floating IP of VM vwwi-fip nics\[0\]/);
    await updateVm({ ...fipSpec, nics: [{ network: A, ip: IP.fip }] }, { stateDir });
    expect(await updateVm(withFloating, { stateDir })).toEqual({
      changes: ['nics[0].floatingIp'],
      live: true,
    });
    expect(await lab.fetch(OUT, `http://${FLOATING}/`)).toMatch(/^vwwi-web /);
    const { stdout } = await execa('ip', ['-j', '-4', 'addr', 'show', 'dev', outside.uplink]);
    expect(stdout).toContain(FLOATING);
  });
});
