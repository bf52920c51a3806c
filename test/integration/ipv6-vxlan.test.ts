// A dual-stack tenant across two hosts (namespaces joined by a veth underlay of MTU 1400, the
// tenant's VXLAN segment over it): IPv6 crosses between the guests, yet each host stays its own
// guests' only router — its router advertisements (with the segment's MTU) and its answers for
// gateway6 never cross the uplink, as its DHCP and gateway ARP do not. In both firewall backends.
import { HostPlane } from '../../lib/host/index.js';
import type { FirewallKind } from '../../lib/host/firewall/index.js';
import { slaacOf, validateNetwork } from '../../lib/spec/index.js';
import type { HostState } from '../../types/host.js';
import { describeAsRoot } from '../helpers/root.js';
import { Lab } from '../helpers/lab.js';
import { Capture } from '../helpers/capture.js';
import { SEND, icmp6Frame } from '../helpers/frames.js';
import { waitFor } from '../helpers/wait.js';
import { globalIpv6 } from '../helpers/ipv6.js';

suite('nftables', 'vw6x');
suite('iptables', 'vw6y');

function suite(firewall: FirewallKind, prefix: string): void {
  const lab = new Lab(prefix);
  const UNDERLAY = { hosta: '192.168.79.1', hostb: '192.168.79.2' } as const;
  const UNDERLAY_MTU = 1400;
  const SEGMENT_MTU = UNDERLAY_MTU - 50;
  const mac = { g1: '52:54:00:52:00:11', g2: '52:54:00:52:00:12' } as const;
  const ip6 = {
    g1: slaacOf(mac.g1, 'fd00:52::'),
    g2: slaacOf(mac.g2, 'fd00:52::'),
  };
  const ns: Record<string, string> = {};
  const planes: Record<string, HostPlane> = {};

  function hostState(host: 'hosta' | 'hostb'): HostState {
    const g = host === 'hosta' ? 'g1' : 'g2';
    const network = validateNetwork({
      tenant: 'acme',
      cidr: '10.52.0.0/24',
      cidr6: 'fd00:52::/64',
      segment: {
        type: 'vxlan',
        vni: 300,
        uplink: 'under0',
        local: UNDERLAY[host],
        remotes: [host === 'hosta' ? UNDERLAY.hostb : UNDERLAY.hosta],
      },
    });
    const port = { ...lab.vethPort(g, mac[g], host === 'hosta' ? '10.52.0.11' : '10.52.0.12'), ip6: ip6[g] };
    return { networks: [{ network, ports: [port] }] };
  }
  const acme = hostState('hosta').networks[0]!.network;
  const globals = (g: 'g1' | 'g2') => globalIpv6(lab, ns[g]!);
  const bridgeOf = async (host: string) => {
    const [link] = JSON.parse((await lab.exec(host, ['ip', '-j', 'link', 'show', 'dev', acme.bridge])).stdout) as {
      address: string;
    }[];
    const [addr] = JSON.parse(
      (await lab.exec(host, ['ip', '-j', '-6', 'addr', 'show', 'dev', acme.bridge, 'scope', 'link'])).stdout,
    ) as { addr_info: { local?: string }[] }[];
    return { mac: link!.address, ll: addr!.addr_info.find((a) => a.local)!.local };
  };

  describeAsRoot(`a dual-stack tenant across two hosts (VXLAN, namespaces, ${firewall})`, () => {
    beforeAll(async () => {
      await lab.sweep();
      for (const n of ['hosta', 'hostb', 'g1', 'g2']) ns[n] = await lab.netns(n);
      await lab.underlay(ns.hosta!, ns.hostb!, 'under0', UNDERLAY_MTU, `${UNDERLAY.hosta}/24`, `${UNDERLAY.hostb}/24`);
      for (const h of ['hosta', 'hostb'] as const) {
        planes[h] = new HostPlane({ netns: ns[h]!, stateDir: `${lab.stateDir}/${h}`, firewall });
        await planes[h].apply(hostState(h));
      }
      await lab.configureGuest(ns.g1!, 'eth0', '10.52.0.11/24');
      await lab.configureGuest(ns.g2!, 'eth0', '10.52.0.12/24');
      for (const g of ['g1', 'g2'] as const)
        await waitFor(`${g}'s SLAAC address`, 20_000, async () => (await globals(g)).includes(ip6[g]));
    }, 120_000);

    afterAll(async () => {
      for (const p of Object.values(planes)) await p.teardown().catch(() => {});
      await lab.cleanup();
    });

    test("IPv6 crosses the segment; each guest has its own host as its only router, at the segment's MTU", async () => {
      const seen = await lab.serveHttp(ns.g2!, '::', 8080, 'g2 on host b');
      expect(await lab.fetch(ns.g1!, `http://[${ip6.g2}]:8080/`)).toBe('g2 on host b');
      expect(seen).toContain(ip6.g1);
      for (const [g, h] of [
        ['g1', 'hosta'],
        ['g2', 'hostb'],
      ] as const) {
        const { stdout } = await lab.exec(ns[g]!, ['ip', '-j', '-6', 'route', 'show', 'default']);
        const routes = JSON.parse(stdout) as { gateway?: string; nexthops?: { gateway: string }[] }[];
        const routers = routes.flatMap((r) => (r.nexthops ? r.nexthops.map((n) => n.gateway) : [r.gateway]));
        expect([g, routers]).toEqual([g, [(await bridgeOf(ns[h]!)).ll]]);
        const mtu = await lab.exec(ns[g]!, ['cat', '/proc/sys/net/ipv6/conf/eth0/mtu']);
        expect(mtu.stdout.trim()).toBe(String(SEGMENT_MTU));
      }
    });

    test("host b's router advertisements leave its bridge and never reach host a's guest", async () => {
      const b = await bridgeOf(ns.hostb!);
      const sent = await Capture.start(ns.hostb!, acme.bridge, 'out', 'icmp6');
      const got = await Capture.start(ns.hosta!, lab.vethPort('g1', mac.g1, '').name, 'out', 'icmp6');
      try {
        // g2 asks for a router from the unspecified address (as a NIC without one does): host b
        // answers to all nodes, a multicast its bridge floods to the VXLAN uplink too
        const rs = icmp6Frame(mac.g2, '33:33:00:00:00:02', '::', 'ff02::2', '8500000000000000');
        await lab.exec(ns.g2!, ['python3', SEND, 'frame', 'eth0', rs]);
        const ra = new RegExp(`${b.ll} > ff02::1: ICMP6, router advertisement`);
        await sent.saw("host b's advertisement leaving its bridge", ra, 1, 20_000);
        // the barrier: g2's own traffic to g1 arrives (across the same segment, after it)
        await waitFor('g2 to reach g1 again', 20_000, async () => {
          const r = await lab.exec(ns.g2!, ['ping', '-6', '-c', '1', '-W', '1', ip6.g1], { reject: false });
          return r.exitCode === 0;
        });
        await got.saw('the barrier at g1', new RegExp(`> ${ip6.g1}: ICMP6, echo request`));
        expect([sent.count(ra) > 0, got.count(ra)]).toEqual([true, 0]);
      } finally {
        await sent.stop();
        await got.stop();
      }
    });

    test('gateway6 resolves to the own host only: neighbour discovery of it does not cross', async () => {
      const a = await bridgeOf(ns.hosta!);
      const b = await bridgeOf(ns.hostb!);
      const got = await Capture.start(ns.hosta!, lab.vethPort('g1', mac.g1, '').name, 'out', 'icmp6');
      try {
        await lab.exec(ns.g1!, ['ip', '-6', 'neigh', 'flush', 'dev', 'eth0']);
        const r = await lab.exec(ns.g1!, ['ping', '-6', '-c', '1', '-W', '2', acme.ipv6!.gateway], { reject: false });
        expect(r.exitCode).toBe(0);
        await got.saw('the own host answering for gateway6', /neighbor advertisement, tgt is fd00:52::1/);
        const { stdout } = await lab.exec(ns.g1!, [
          'ip',
          '-j',
          '-6',
          'neigh',
          'show',
          acme.ipv6!.gateway,
          'dev',
          'eth0',
        ]);
        expect((JSON.parse(stdout) as { lladdr?: string }[])[0]?.lladdr).toBe(a.mac);
        // every advertisement for gateway6 that reached g1 came from its own host's bridge
        const answers = got.lines.filter((l) => /neighbor advertisement, tgt is fd00:52::1\b/.test(l));
        expect(answers.length).toBeGreaterThan(0);
        expect(answers.filter((l) => !l.includes(`${a.mac} >`) || l.includes(`${b.mac} >`))).toEqual([]);
      } finally {
        await got.stop();
      }
    });
  });
}
