// A guest that has read the README, on a real kernel (namespaces), once per firewall backend. Each
// attack is first captured leaving the attacker (on its port, as the host receives it), then a
// legitimate packet sent after it along the same path is awaited at the target (a barrier: had
// the attack got through, it would have arrived first), and only then is the attack asserted
// absent there. The lab:
//
//   atk (acme .11) ─┐                                   ┌─ out (the "outside", 169.254.169.254 too)
//   vic (acme .12) ─┴ acme bridge ─ host ─ up0 ─────────┘
//   oth (globex .21) ─ globex bridge ─ VXLAN vni 300 ─ ul0 ─ sw (a switch) ─┬─ peer (its VXLAN peer)
//                                                                           └─ rogue (not a peer)
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HostPlane } from '../../lib/host/index.js';
import { validateNetwork } from '../../lib/spec/index.js';
import type { FirewallKind } from '../../lib/host/firewall/index.js';
import type { HostPort, HostState } from '../../types/host.js';
import { describeAsRoot } from '../helpers/root.js';
import { Lab } from '../helpers/lab.js';
import { Capture } from '../helpers/capture.js';
import { SEND, arpRequest, dhcpRequest, hex, naming, vxlan } from '../helpers/frames.js';
import { OUTSIDE } from '../helpers/ranges.js';
import { FLOW_LIMITS } from '../../lib/host/firewall/policy.js';

const UNDERLAY = { host: '192.168.78.1', peer: '192.168.78.2', rogue: '192.168.78.3' } as const;
const METADATA = '169.254.169.254';
const VNI = 300;

suite('nftables', 'vwhg');
suite('iptables', 'vwhh');

function suite(firewall: FirewallKind, prefix: string): void {
  const lab = new Lab(prefix);
  const ns: Record<string, string> = {};
  let host: string;
  let plane: HostPlane;
  const mac = { atk: '52:54:00:71:00:11', vic: '52:54:00:71:00:12', oth: '52:54:00:72:00:21' };
  const port = (guest: 'atk' | 'vic' | 'oth', ip: string): HostPort => lab.vethPort(guest, mac[guest], ip);
  const acme = validateNetwork({ tenant: 'acme', cidr: '10.71.0.0/24' });
  const globex = validateNetwork({
    tenant: 'globex',
    cidr: '10.72.0.0/24',
    segment: { type: 'vxlan', vni: VNI, uplink: 'ul0', local: UNDERLAY.host, remotes: [UNDERLAY.peer] },
  });
  const state: HostState = {
    networks: [
      { network: acme, ports: [port('atk', '10.71.0.11'), port('vic', '10.71.0.12')] },
      { network: globex, ports: [port('oth', '10.72.0.21')] },
    ],
  };
  /** What a host device has received or sent, in packets. */
  const packets = async (dev: string, way: 'rx' | 'tx') =>
    (
      JSON.parse((await lab.exec(host, ['ip', '-j', '-s', 'link', 'show', 'dev', dev])).stdout) as {
        stats64: Record<'rx' | 'tx', { packets: number }>;
      }[]
    )[0]!.stats64[way].packets;
  const send = (from: string, args: string[]) => lab.exec(ns[from]!, ['python3', SEND, ...args]);
  const tap = (guest: 'atk' | 'vic' | 'oth') => port(guest, '').name;
  // attack -> [sent, delivered], printed after the run (the README's table comes from it)
  const tally = new Map<string, [number, number]>();
  const notDelivered = (attack: string, sent: number, delivered: number) => {
    tally.set(attack, [sent, delivered]);
    expect([attack, sent > 0, delivered]).toEqual([attack, true, 0]);
  };

  describeAsRoot(`a guest that knows the design (namespaces), ${firewall} firewall`, () => {
    beforeAll(async () => {
      await lab.sweep();
      host = await lab.netns('host');
      for (const n of ['atk', 'vic', 'oth', 'out', 'sw', 'peer', 'rogue']) ns[n] = await lab.netns(n);
      plane = new HostPlane({ netns: host, stateDir: lab.stateDir, firewall });
      // the outside, beyond the host's uplink: a server, and a "metadata service" at 169.254.169.254
      await lab.exec(host, ['ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.out!]);
      await lab.configureGuest(host, 'up0', `${OUTSIDE.host}/24`);
      await lab.configureGuest(ns.out!, 'eth0', `${OUTSIDE.outside}/24`);
      await lab.exec(ns.out!, ['ip', 'addr', 'add', `${METADATA}/32`, 'dev', 'eth0']);
      await lab.exec(host, ['ip', 'route', 'add', `${METADATA}/32`, 'via', OUTSIDE.outside]);
      // the underlay: host, peer and rogue on one switch
      await lab.exec(ns.sw!, ['ip', 'link', 'add', 'sw', 'type', 'bridge']);
      await lab.exec(ns.sw!, ['ip', 'link', 'set', 'sw', 'up']);
      for (const [n, addr] of [
        [host, UNDERLAY.host],
        [ns.peer!, UNDERLAY.peer],
        [ns.rogue!, UNDERLAY.rogue],
      ] as const) {
        const p = `p-${addr.split('.')[3]}`;
        await lab.exec(ns.sw!, ['ip', 'link', 'add', p, 'type', 'veth', 'peer', 'name', 'ul0', 'netns', n]);
        await lab.exec(ns.sw!, ['ip', 'link', 'set', p, 'master', 'sw', 'up']);
        await lab.configureGuest(n, 'ul0', `${addr}/24`);
      }
      // peer and rogue each have globex's VNI pointed at the host, with an address in its subnet
      for (const [n, local, addr] of [
        [ns.peer!, UNDERLAY.peer, '10.72.0.50/24'],
        [ns.rogue!, UNDERLAY.rogue, '10.72.0.60/24'],
      ] as const) {
        await lab.exec(n, [
          'ip',
          'link',
          'add',
          'vx0',
          'type',
          'vxlan',
          'id',
          String(VNI),
          'dstport',
          '4789',
          'local',
          local,
          'remote',
          UNDERLAY.host,
          'dev',
          'ul0',
        ]);
        await lab.configureGuest(n, 'vx0', addr);
      }
      await plane.apply(state);
      await lab.configureGuest(ns.atk!, 'eth0', '10.71.0.11/24', '10.71.0.1');
      await lab.configureGuest(ns.vic!, 'eth0', '10.71.0.12/24', '10.71.0.1');
      await lab.configureGuest(ns.oth!, 'eth0', '10.72.0.21/24', '10.72.0.1');
      // every path the attacks take works for legitimate traffic
      for (const [from, to] of [
        ['atk', '10.71.0.12'],
        ['atk', OUTSIDE.outside],
        ['peer', '10.72.0.21'],
      ] as const)
        expect(await lab.reaches(ns[from]!, to)).toBe(true);
    }, 120_000);

    afterAll(async () => {
      console.log(
        [`attacks (${firewall}): sent / delivered`, ...[...tally].map(([a, [n, d]]) => `  ${a}: ${n} / ${d}`)].join(
          '\n',
        ),
      );
      await plane?.teardown().catch(() => {});
      await lab.cleanup();
    });

    test('a DHCP reply from another source port than 67 leaves the attacker, never reaches its neighbour', async () => {
      const sent = await Capture.start(host, tap('atk'), 'in', 'udp dst port 68');
      const got = await Capture.start(host, tap('vic'), 'out', 'udp or icmp');
      try {
        await send('atk', ['udp', '10.71.0.12', '68', '1067', '02010600' + '00'.repeat(236)]);
        await sent.saw('the forged DHCP reply leaving the attacker');
        expect(await lab.ping(ns.atk!, '10.71.0.12')).toBe(true); // the barrier
        await got.saw('the barrier ping at the victim', /ICMP echo request/);
        const forged = /\.1067 > 10\.71\.0\.12\.68/;
        notDelivered('DHCP reply from udp 1067 to a neighbour', sent.count(forged), got.count(forged));
      } finally {
        await sent.stop();
        await got.stop();
      }
    });

    test("DHCP messages naming a neighbour's MAC or a made-up one leave the attacker, dnsmasq never sees them", async () => {
      const madeUp = '02:de:ad:00:00:01';
      const sent = (m: string) => Capture.start(host, tap('atk'), 'in', `udp dst port 67 and ${naming(m)}`);
      const answered = (m: string) => Capture.start(host, acme.bridge, 'out', `udp src port 67 and ${naming(m)}`);
      const caps = {
        sentVic: await sent(mac.vic),
        sentMadeUp: await sent(madeUp),
        vic: await answered(mac.vic),
        madeUp: await answered(madeUp),
        own: await answered(mac.atk),
      };
      try {
        // a request for the neighbour's address in its name (dnsmasq would ACK, and a release or
        // decline in its name would end its lease), and one for a free address under a MAC of no port
        await send('atk', ['udp', '255.255.255.255', '67', '68', dhcpRequest(mac.vic, '10.71.0.12')]);
        await send('atk', ['udp', '255.255.255.255', '67', '68', dhcpRequest(madeUp, '10.71.0.200')]);
        await caps.sentVic.saw("the request naming the neighbour's MAC leaving the attacker");
        await caps.sentMadeUp.saw('the request naming a made-up MAC leaving the attacker');
        // the barrier: the attacker's own request, answered after anything sent before it
        await send('atk', ['udp', '255.255.255.255', '67', '68', dhcpRequest(mac.atk, '10.71.0.11')]);
        await caps.own.saw("dnsmasq's answer to the attacker's own request");
        notDelivered("DHCP naming a neighbour's MAC (chaddr)", caps.sentVic.count(), caps.vic.count());
        notDelivered('DHCP naming a made-up MAC (pool drain)', caps.sentMadeUp.count(), caps.madeUp.count());
        const leases = await readFile(join(lab.stateDir, 'dnsmasq', 'acme', 'leases'), 'utf8');
        expect(leases).toContain(mac.atk);
        expect(leases).not.toContain(madeUp);
      } finally {
        for (const c of Object.values(caps)) await c.stop();
      }
    });

    test("a link-local frame from a neighbour's MAC teaches the bridge nothing: the neighbour's traffic stays its own", async () => {
      const sent = await Capture.start(host, tap('atk'), 'in', 'ether dst 01:80:c2:00:00:0e');
      const stolen = await Capture.start(host, tap('atk'), 'out', 'icmp');
      const own = await Capture.start(host, tap('vic'), 'out', 'icmp');
      try {
        // LLDP's address: not forwarded, passed to the bridge's input hook, learned from (by default)
        const lldp = `0180c200000e${hex(mac.vic)}88cc` + '00'.repeat(46);
        for (let i = 0; i < 3; i++) await send('atk', ['frame', 'eth0', lldp]);
        await sent.saw('the link-local frames leaving the attacker', /./, 3);
        const fdb = (await lab.exec(host, ['bridge', '-j', 'fdb', 'show', 'br', acme.bridge])).stdout;
        const entries = (JSON.parse(fdb) as { mac: string; ifname: string }[]).filter((e) => e.mac === mac.vic);
        expect(entries.map((e) => e.ifname)).toEqual([tap('vic')]);
        // the host's traffic to the victim goes to the victim's port, none to the attacker's
        expect(await lab.ping(host, '10.71.0.12')).toBe(true);
        await own.saw('the ping at the victim', /ICMP echo request/);
        notDelivered(
          "neighbour's traffic after link-local frames from its MAC",
          sent.count(),
          stolen.count(/ICMP echo request/),
        );
      } finally {
        await sent.stop();
        await stolen.stop();
        await own.stop();
      }
    });

    test("VXLAN from a guest — to its gateway, to the host's VXLAN peer — and the metadata address: sent, dropped", async () => {
      const sent = await Capture.start(host, tap('atk'), 'in', 'udp dst port 4789 or tcp dst port 80');
      const inner = await Capture.start(host, tap('oth'), 'out', 'arp or icmp');
      const peer = await Capture.start(ns.peer!, 'ul0', 'in', 'udp src port 40404 or udp dst port 4789');
      const out = await Capture.start(ns.out!, 'eth0', 'in', `tcp dst port 80 or icmp`);
      try {
        // an ARP request from a MAC of no guest, into globex's VNI: through the host's own VXLAN port,
        // and through another host's (masqueraded out)
        const payload = vxlan(VNI, arpRequest('02:66:66:66:66:66', '10.72.0.66', '10.72.0.21'));
        await send('atk', ['udp', '10.71.0.1', '4789', '40404', payload]);
        await send('atk', ['udp', UNDERLAY.peer, '4789', '40404', payload]);
        await lab.exec(ns.atk!, ['busybox', 'nc', '-w', '1', METADATA, '80'], { reject: false });
        await sent.saw('both VXLAN packets and the metadata SYN leaving the attacker', /./, 3);
        // barriers: the peer's own VXLAN traffic reaches globex's guest; the attacker's ping the outside
        expect(await lab.ping(ns.peer!, '10.72.0.21')).toBe(true);
        await inner.saw("the peer's ping at globex's guest", /ICMP echo request/);
        await peer.saw('VXLAN from the host at the peer', /192\.168\.78\.1\.\d+ > 192\.168\.78\.2\.4789/);
        expect(await lab.ping(ns.atk!, OUTSIDE.outside)).toBe(true);
        await out.saw('the ping outside', /ICMP echo request/);
        notDelivered(
          "VXLAN to its gateway, into another tenant's VNI",
          sent.count(/> 10\.71\.0\.1\.4789:/),
          inner.count(/02:66:66:66:66:66/),
        );
        notDelivered(
          "VXLAN to the host's peer, masqueraded",
          sent.count(/> 192\.168\.78\.2\.4789:/),
          peer.count(/\.40404 > /),
        );
        notDelivered(
          'TCP to 169.254.169.254:80',
          sent.count(/> 169\.254\.169\.254\.80:/),
          out.count(/> 169\.254\.169\.254\.80:/),
        );
      } finally {
        for (const c of [sent, inner, peer, out]) await c.stop();
      }
    });

    test("VXLAN with globex's VNI from an underlay address that is not a peer is dropped; the peer's is not", async () => {
      const sent = await Capture.start(host, 'ul0', 'in', 'udp dst port 4789');
      const got = await Capture.start(host, tap('oth'), 'out', 'icmp or arp');
      try {
        await lab.ping(ns.rogue!, '10.72.0.21');
        await sent.saw("the rogue's VXLAN packets reaching the host", /192\.168\.78\.3\.\d+ > 192\.168\.78\.1\.4789/);
        expect(await lab.ping(ns.peer!, '10.72.0.21')).toBe(true); // the barrier
        await got.saw("the peer's ping at globex's guest", /10\.72\.0\.50 > 10\.72\.0\.21/);
        notDelivered(
          "VXLAN with a tenant's VNI from a non-peer underlay address",
          sent.count(/192\.168\.78\.3\.\d+ > 192\.168\.78\.1\.4789/),
          got.count(/10\.72\.0\.60/),
        );
      } finally {
        await sent.stop();
        await got.stop();
      }
    });

    test("another tenant's gateway and the uplink's address get no ARP answer; the own gateway does", async () => {
      const sent = await Capture.start(host, tap('atk'), 'in', 'arp');
      const replies = await Capture.start(host, tap('atk'), 'out', 'arp');
      try {
        for (const target of ['10.72.0.1', OUTSIDE.host])
          await send('atk', ['frame', 'eth0', arpRequest(mac.atk, '10.71.0.11', target)]);
        await sent.saw('the ARP requests leaving the attacker', /Request who-has/, 2);
        await send('atk', ['frame', 'eth0', arpRequest(mac.atk, '10.71.0.11', '10.71.0.1')]);
        await replies.saw('the own gateway answering', /Reply 10\.71\.0\.1 is-at/);
        notDelivered(
          "ARP for another tenant's gateway answered",
          sent.count(/who-has 10\.72\.0\.1 /),
          replies.count(/Reply 10\.72\.0\.1 is-at/),
        );
        const up = OUTSIDE.host.replaceAll('.', '\\.');
        notDelivered(
          "ARP for the uplink's address answered",
          sent.count(new RegExp(`who-has ${up} `)),
          replies.count(new RegExp(`Reply ${up} is-at`)),
        );
      } finally {
        await sent.stop();
        await replies.stop();
      }
    });

    test('the bridges take no part in IPv6: no link-local address a guest could reach the host on', async () => {
      for (const br of [acme.bridge, globex.bridge]) {
        const { stdout } = await lab.exec(host, ['ip', '-j', '-6', 'addr', 'show', 'dev', br]);
        expect((JSON.parse(stdout) as { addr_info: unknown[] }[]).flatMap((l) => l.addr_info)).toEqual([]);
        const { stdout: v } = await lab.exec(host, ['sysctl', '-n', `net.ipv6.conf.${br}.disable_ipv6`]);
        expect(v.trim()).toBe('1');
      }
      expect((await plane.plan(state)).changes).toEqual([]);
    });

    test("a flood of new flows takes the guest's own share of connection tracking: its neighbour's flows still start", async () => {
      const rx = () => packets(tap('atk'), 'rx');
      const before = await rx();
      const started = Date.now();
      await send('atk', ['udpflood', OUTSIDE.outside, '20000']);
      const seconds = Math.ceil((Date.now() - started) / 1000);
      // sent: the host received every datagram on the attacker's port
      expect((await rx()) - before).toBeGreaterThanOrEqual(20000);
      const tracked = (await lab.exec(host, ['conntrack', '-L', '-s', '10.71.0.11'])).stdout
        .split('\n')
        .filter((l) => l.includes('dport=1')).length;
      expect(tracked).toBeGreaterThan(0);
      expect(tracked).toBeLessThanOrEqual(FLOW_LIMITS.burst + FLOW_LIMITS.newPerSecond * (seconds + 1));
      tally.set(`new UDP flows (tracked of sent, ${seconds} s)`, [(await rx()) - before, tracked]);
      // the neighbour's new flows are tracked, NAT'd and answered
      expect(await lab.reaches(ns.vic!, OUTSIDE.outside)).toBe(true);
    });

    test("a port's packet-rate cap (lowered by its QoS to show it) drops what its guest sends over it", async () => {
      const rate = 2000;
      const capped: HostState = {
        networks: state.networks.map((n) => ({
          ...n,
          ports: n.ports.map((p) => (p.name === tap('atk') ? { ...p, qos: { packetsPerSecond: rate } } : p)),
        })),
      };
      await plane.apply(capped);
      try {
        const [rx0, tx0] = [await packets(tap('atk'), 'rx'), await packets(tap('vic'), 'tx')];
        const started = Date.now();
        await send('atk', ['udprepeat', '10.71.0.12', '9', '20000']);
        const seconds = Math.ceil((Date.now() - started) / 1000);
        const sent = (await packets(tap('atk'), 'rx')) - rx0;
        const delivered = (await packets(tap('vic'), 'tx')) - tx0;
        tally.set(`UDP datagrams at a port capped to ${rate}/s (delivered of sent, ${seconds} s)`, [sent, delivered]);
        expect(sent).toBeGreaterThanOrEqual(20000);
        // some get through (the cap is not a block), at most the rate's worth and its burst
        expect(delivered).toBeGreaterThan(0);
        expect(delivered).toBeLessThanOrEqual(rate * (seconds + 1) + rate / 10);
      } finally {
        await plane.apply(state);
      }
      expect((await plane.plan(state)).changes).toEqual([]);
    });

    test("a port that learns again, a lost static entry, a bridge's ARP or IPv6 settings undone: drift, repaired", async () => {
      await lab.exec(host, ['ip', 'link', 'set', 'dev', tap('atk'), 'type', 'bridge_slave', 'learning', 'on']);
      await lab.exec(host, ['bridge', 'fdb', 'del', mac.vic, 'dev', tap('vic'), 'master']);
      await lab.exec(host, ['sysctl', '-q', '-w', `net.ipv4.conf.${acme.bridge}.arp_ignore=0`]);
      await lab.exec(host, ['sysctl', '-q', '-w', `net.ipv6.conf.${globex.bridge}.disable_ipv6=0`]);
      const changes = (await plane.plan(state)).changes.map((c) => [
        c.kind === 'link' ? c.device : c.kind,
        c.kind === 'link' ? c.settings : [],
      ]);
      expect(changes).toEqual(
        expect.arrayContaining([
          [acme.bridge, ['sysctl']],
          [globex.bridge, ['sysctl']],
          [tap('atk'), ['learning']],
          [tap('vic'), ['fdb']],
        ]),
      );
      expect(changes).toHaveLength(4);
      await plane.apply(state);
      expect((await plane.plan(state)).changes).toEqual([]);
    });
  });
}
