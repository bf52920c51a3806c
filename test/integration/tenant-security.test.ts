// A hostile tenant, with real guests: the attacker runs a rogue DHCP server, claims its gateway's
// address in ARP, sends from a spoofed IP and a spoofed MAC, and probes the host's ports — on its
// own gateway, on another tenant's gateway, on an uplink address. Each attack is seen to leave
// the guest (captured on its tap) and never to reach its target (the victim's tap, the host's
// listener), while the victim's DHCP from the tenant's dnsmasq and normal traffic still work.
import { execa, type ResultPromise } from 'execa';
import { createServer, type Server } from 'node:net';
import { mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bridgeName, tapName } from '../../lib/spec/index.js';
import { buildTestGuest, GuestLab, waitForConsole, consoleText, testGuestSpec } from '../../lib/testing/index.js';
import type { CreatedVm } from '../../types/vm.js';
import { describeAsRoot } from '../helpers/root.js';
import { Lab } from '../helpers/lab.js';
import { waitFor } from '../helpers/wait.js';
import { OUTSIDE } from '../helpers/ranges.js';

const stateDir = mkdtempSync(join(tmpdir(), 'vwsec-'));
chmodSync(stateDir, 0o755);
const lab = new Lab('vwsec');
const guests = new GuestLab({ stateDir, timeoutMs: 150_000 });
const UP = 'vwsecup0';
const UPLINK_ADDR = OUTSIDE.host;
const CLOSED = 18080;
const OPEN = 18081; // the tenant's hostServices
const T = { tenant: 'vwsect', cidr: '10.74.0.0/24', hostServices: [{ port: OPEN, protocol: 'tcp' as const }] };
const U = { tenant: 'vwsecu', cidr: '10.75.0.0/24' };
const GW = '10.74.0.1';
const ATTACKER = '10.74.0.11';
const VICTIM = '10.74.0.12';
const SPOOF_IP = '10.74.0.99';
const SPOOF_MAC = '52:54:00:66:66:66';

interface Frame {
  dev: string;
  /** In/B/M/P: sent by the device's guest; Out: delivered to it */
  dir: string;
  mac: string;
  text: string;
}

const frames: Frame[] = [];
const connections: { port: number; from: string }[] = [];
const servers: Server[] = [];
let capture: ResultPromise | undefined;
let attacker: CreatedVm;
let victim: CreatedVm;

function listen(port: number): Promise<void> {
  const server = createServer((socket) => {
    connections.push({ port, from: (socket.remoteAddress ?? '').replace('::ffff:', '') });
    socket.end();
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(port, '0.0.0.0', resolve));
}

describeAsRoot('a hostile tenant (real guests): DHCP server, gateway claim, spoofing, host ports', () => {
  beforeAll(async () => {
    const image = await buildTestGuest();
    await lab.sweep();
    await execa('ip', ['link', 'del', UP], { reject: false });
    const out = await lab.netns('out');
    await execa('ip', ['link', 'add', UP, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', out]);
    await execa('ip', ['addr', 'add', `${UPLINK_ADDR}/24`, 'dev', UP]);
    await execa('ip', ['link', 'set', UP, 'up']);
    await listen(CLOSED);
    await listen(OPEN);
    capture = execa(
      'tcpdump',
      [
        '-i',
        'any',
        '-n',
        '-e',
        '-l',
        '-U',
        `arp or udp port 67 or udp port 68 or host ${SPOOF_IP} or tcp port ${CLOSED} or tcp port ${OPEN} or icmp`,
      ],
      { reject: false, buffer: false },
    );
    capture.stdout!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        const m = /^\S+ (\S+)\s+(In|Out|B|M|P)\s+ifindex \d+ ([0-9a-f:]{17}) (.*)$/.exec(line);
        if (m) frames.push({ dev: m[1]!, dir: m[2]!, mac: m[3]!, text: m[4]! });
      }
    });
    let said = '';
    capture.stderr!.on('data', (d: Buffer) => (said += d.toString()));
    await waitFor('tcpdump to listen', 10_000, () => said.includes('listening'));

    const probes = [
      `tcp:${GW}:${CLOSED}`,
      `tcp:10.75.0.1:${CLOSED}`,
      `tcp:${UPLINK_ADDR}:${CLOSED}`,
      `tcp:${GW}:${OPEN}`,
      'dns:vwsec-vic',
      `ping:${GW}`,
    ];
    attacker = await guests.create(
      testGuestSpec(image, 'vwsec-atk', [{ network: T, ip: ATTACKER }], probes, {
        attacks: ['dhcpd', 'arpgw', 'spoofip', 'spoofmac'],
        victim: VICTIM,
      }),
    );
    await waitForConsole(attacker, /VIRTWIRE-ATTACK dhcpd started/, 60_000);
    await waitForConsole(attacker, /VIRTWIRE-ATTACK round=1 spoofmac/, 60_000);
    await guests.create(testGuestSpec(image, 'vwsec-u', [{ network: U }]));
    // the victim boots while the rogue DHCP server runs: its DISCOVER reaches the attacker
    victim = await guests.create(
      testGuestSpec(image, 'vwsec-vic', [{ network: T, ip: VICTIM }], [`ping:${ATTACKER}`, `ping:${GW}`]),
    );
    await waitForConsole(victim, new RegExp(`round=\\d+ ping ${ATTACKER.replace(/\./g, '\\.')} ok`), 60_000);
    // two more rounds of every attack while the victim is up
    const now = Number([...consoleText(attacker).matchAll(/VIRTWIRE-ATTACK round=(\d+)/g)].pop()![1]);
    await waitForConsole(attacker, new RegExp(`VIRTWIRE-PROBE round=${now + 2} ping`), 90_000);
  }, 400_000);

  afterAll(async () => {
    capture?.kill('SIGTERM');
    await capture;
    for (const s of servers) s.close();
    await guests.destroyAll().catch(() => {});
    await execa('ip', ['link', 'del', UP], { reject: false });
    await lab.cleanup();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const atkTap = () => tapName('vwsec-atk', 0);
  const vicTap = () => tapName('vwsec-vic', 0);
  const left = (f: (x: Frame) => boolean) => frames.filter((x) => x.dev === atkTap() && x.dir !== 'Out' && f(x));
  const reached = (f: (x: Frame) => boolean) => frames.filter((x) => x.dev === vicTap() && x.dir === 'Out' && f(x));
  const atkMac = () => attacker.nics[0]!.mac;

  test("the victim leases its pinned address and its own gateway from the tenant's dnsmasq, not the rogue server", () => {
    expect(consoleText(victim)).toMatch(new RegExp(`VIRTWIRE-LEASE ip=${VICTIM} mask=24 router=${GW} `));
    expect(consoleText(victim)).not.toMatch(/router=10\.74\.0\.66/);
  });

  test('rogue DHCP: offers leave the attacker, none reaches the victim (whose DHCP reply comes from the gateway)', () => {
    const rogue = (x: Frame) =>
      / 10\.74\.0\.11\.67 > /.test(x.text) || (x.mac === atkMac() && /BOOTP\/DHCP, Reply/.test(x.text));
    expect(left(rogue).length).toBeGreaterThan(0);
    expect(reached(rogue)).toEqual([]);
    // the capture does see DHCP replies reach the victim: dnsmasq's, from the gateway
    expect(reached((x) => / 10\.74\.0\.1\.67 > /.test(x.text)).length).toBeGreaterThan(0);
  });

  test("gateway claim: ARP with the gateway's address leaves the attacker, never reaches the victim", () => {
    const claim = (x: Frame) =>
      x.mac === atkMac() && (/tell 10\.74\.0\.1,/.test(x.text) || /Reply 10\.74\.0\.1 is-at/.test(x.text));
    expect(left(claim).length).toBeGreaterThan(0);
    expect(reached(claim)).toEqual([]);
  });

  test('spoofed IP and MAC leave the attacker, never reach the victim; its real traffic does', () => {
    expect(left((x) => x.text.includes(`${SPOOF_IP} > ${VICTIM}`)).length).toBeGreaterThan(0);
    expect(left((x) => x.mac === SPOOF_MAC).length).toBeGreaterThan(0);
    expect(reached((x) => x.text.includes(SPOOF_IP) || x.mac === SPOOF_MAC)).toEqual([]);
    expect(reached((x) => x.text.includes(`${ATTACKER} > ${VICTIM}: ICMP echo reply`)).length).toBeGreaterThan(0);
  });

  test("host ports: closed on its gateway, on another tenant's gateway and on the uplink address; hostServices and DNS open", () => {
    const text = consoleText(attacker);
    const last = (probe: string) =>
      [
        ...text.matchAll(new RegExp(`VIRTWIRE-PROBE round=\\d+ ${probe.replace(/\./g, '\\.')} (ok|fail)`, 'g')),
      ].pop()?.[1];
    expect(last(`tcp ${GW}:${CLOSED}`)).toBe('fail');
    expect(last(`tcp 10.75.0.1:${CLOSED}`)).toBe('fail');
    expect(last(`tcp ${UPLINK_ADDR}:${CLOSED}`)).toBe('fail');
    expect(last(`tcp ${GW}:${OPEN}`)).toBe('ok');
    expect(last('dns vwsec-vic')).toBe('ok');
    expect(last(`ping ${GW}`)).toBe('ok');
    // the probes left the guest (SYNs on its tap) and the host's listener saw none of them
    for (const dst of [`${GW}.${CLOSED}`, `10.75.0.1.${CLOSED}`, `${UPLINK_ADDR}.${CLOSED}`]) {
      expect([dst, left((x) => x.text.includes(`> ${dst}: Flags [S]`)).length > 0]).toEqual([dst, true]);
    }
    expect(connections.filter((c) => c.port === CLOSED)).toEqual([]);
    expect(connections.filter((c) => c.port === OPEN).map((c) => c.from)).toContain(ATTACKER);
  });

  test('the bridges are the ones virtwire made for the two tenants', async () => {
    const { stdout } = await execa('ip', ['-j', 'link', 'show', 'master', bridgeName(T.tenant)]);
    expect((JSON.parse(stdout) as { ifname: string }[]).map((l) => l.ifname).sort()).toEqual(
      [atkTap(), vicTap()].sort(),
    );
  });
});
