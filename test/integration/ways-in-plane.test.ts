// Ways in from outside a tenant on a real kernel (namespaces), once per firewall backend: port
// forwards (to a plain tenant's guest, and to a namespaced tenant's through its namespace) on the
// host's uplink address only, and floating IPs (a plain tenant's, taken on the uplink; a
// namespaced tenant's, routed to its namespace with the host answering ARP for it), from an
// "outside" namespace beyond the host's uplink, from the host itself and from the tenant's own
// guests (hairpin); a floating IP moved to another guest taking its flows along; security groups
// deciding what comes in; another tenant reaching none of it (each attempt captured leaving,
// never arriving); a host port in use refused; drift repaired; teardown leaving the uplink as it was.
import { HostPlane } from '../../lib/host/index.js';
import { validateNetwork } from '../../lib/spec/index.js';
import { SpecError } from '../../lib/errors/index.js';
import type { FirewallKind } from '../../lib/host/firewall/index.js';
import type { HostPort, HostState } from '../../types/host.js';
import { describeAsRoot } from '../helpers/root.js';
import { Lab } from '../helpers/lab.js';
import { Capture, esc, probe } from '../helpers/capture.js';
import { SEND } from '../helpers/frames.js';
import { OUTSIDE } from '../helpers/ranges.js';
import { waitFor } from '../helpers/wait.js';

suite('nftables', 'vwfw');
suite('iptables', 'vwfx');

function suite(firewall: FirewallKind, prefix: string): void {
  const lab = new Lab(prefix);
  const ns: Record<string, string> = {};
  let host: string;
  let plane: HostPlane;
  const FLOATING = OUTSIDE.spare;
  /** the namespaced tenant's */
  const FLOATING_NS = OUTSIDE.spare.replace(/\d+$/, '98');
  /** a host address off the uplink (a management network's): forwards are not on it */
  const SIDE = { host: '10.99.0.1', peer: '10.99.0.2' };
  const tenants = { acme: `${prefix}acme`, globex: `${prefix}glob`, initech: `${prefix}init` };
  const acme = validateNetwork({ tenant: tenants.acme, cidr: '10.87.0.0/24' });
  const globex = {
    ...validateNetwork({ tenant: tenants.globex, cidr: '10.87.0.0/24' }),
    namespace: { transit: '100.64.0.12/30' },
  };
  const initech = validateNetwork({ tenant: tenants.initech, cidr: '10.88.0.0/24' });
  const port = (guest: string, n: number, ip: string, extra: Partial<HostPort> = {}): HostPort => ({
    ...lab.vethPort(guest, `52:54:00:87:00:${String(n).padStart(2, '0')}`, ip),
    ...extra,
  });
  /** a guest's port on the host */
  const tap = (guest: string) => lab.vethPort(guest, '', '').name;
  const IP = {
    w1: '10.87.0.11',
    f1: '10.87.0.12',
    w2: '10.87.0.13',
    g1: '10.87.0.11',
    g2: '10.87.0.14',
    i1: '10.88.0.11',
  };
  const state: HostState = {
    networks: [
      {
        network: acme,
        ports: [
          port('w1', 11, IP.w1, {
            forwards: [
              { hostPort: 8080, port: 80, protocol: 'tcp' },
              { hostPort: 2200, port: 22, protocol: 'tcp' },
            ],
            securityGroups: ['web'],
          }),
          port('f1', 12, IP.f1, { floatingIp: FLOATING }),
          port('w2', 13, IP.w2),
        ],
        // port 80 open to the world, 22 only from a range the outside is not in
        securityGroups: [
          {
            name: 'web',
            rules: [
              { direction: 'ingress', protocol: 'tcp', ports: [[80, 80]], peer: { any: true } },
              { direction: 'ingress', protocol: 'tcp', ports: [[22, 22]], peer: { cidr: '203.0.113.0/24' } },
            ],
          },
        ],
      },
      {
        network: globex,
        ports: [
          port('g1', 21, IP.g1, { forwards: [{ hostPort: 8081, port: 80, protocol: 'tcp' }], floatingIp: FLOATING_NS }),
          port('g2', 22, IP.g2),
        ],
      },
      { network: initech, ports: [port('i1', 31, IP.i1)] },
    ],
  };
  const clients: Record<string, Set<string>> = {};
  const hostUrl = (p: number, address = OUTSIDE.host) => `http://${address}:${p}/`;
  const addressesOfUplink = async () =>
    (
      JSON.parse((await lab.exec(host, ['ip', '-j', '-4', 'addr', 'show', 'dev', 'up0'])).stdout) as {
        addr_info: { local: string; prefixlen: number }[];
      }[]
    )[0]!.addr_info.map((a) => `${a.local}/${a.prefixlen}`);

  describeAsRoot(`ways in from outside a tenant (namespaces), ${firewall} firewall`, () => {
    beforeAll(async () => {
      await lab.sweep();
      host = await lab.netns('host');
      for (const g of ['w1', 'f1', 'w2', 'g1', 'g2', 'i1', 'out', 'side']) ns[g] = await lab.netns(g);
      plane = new HostPlane({ netns: host, stateDir: lab.stateDir, firewall });
      await lab.exec(host, ['ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.out!]);
      await lab.configureGuest(host, 'up0', `${OUTSIDE.host}/24`);
      await lab.configureGuest(ns.out!, 'eth0', `${OUTSIDE.outside}/24`);
      // the uplink is the default route's device: forwards without an address take its address
      await lab.exec(host, ['ip', 'route', 'add', 'default', 'via', OUTSIDE.outside, 'dev', 'up0']);
      await lab.exec(host, ['ip', 'link', 'add', 'side0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.side!]);
      await lab.configureGuest(host, 'side0', `${SIDE.host}/24`);
      await lab.configureGuest(ns.side!, 'eth0', `${SIDE.peer}/24`);
      await plane.apply(state);
      const gw = (ip: string) => ip.replace(/\.\d+$/, '.1');
      for (const g of ['w1', 'f1', 'w2', 'g1', 'g2', 'i1'] as const)
        await lab.configureGuest(ns[g]!, 'eth0', `${IP[g]}/24`, gw(IP[g]));
      for (const g of ['w1', 'f1', 'g1'] as const) clients[g] = await lab.serveHttp(ns[g]!, '0.0.0.0', 80, g);
      clients.out = await lab.serveHttp(ns.out!, OUTSIDE.outside, 8080, 'out');
    }, 60_000);
    afterAll(async () => {
      await plane?.teardown().catch(() => {});
      await lab.cleanup();
    });

    test("the outside reaches a forward on the host address, and a namespaced tenant's through its namespace", async () => {
      expect(await lab.fetch(ns.out!, hostUrl(8080))).toBe('w1');
      expect(clients.w1).toContain(OUTSIDE.outside); // the client's own address: nothing translated it
      expect(await lab.fetch(ns.out!, hostUrl(8081))).toBe('g1');
      expect(clients.g1).toContain(OUTSIDE.outside);
    });

    test("the host itself and the tenant's own guests reach the forward (hairpin, answered through the host)", async () => {
      expect(await lab.fetch(host, hostUrl(8080))).toBe('w1');
      expect(await lab.fetch(ns.w2!, hostUrl(8080))).toBe('w1');
      // w1 saw the hairpin through the host (its gateway), not w2 directly: replies come back the same way
      expect(clients.w1).toContain(acme.gateway);
      expect(clients.w1).not.toContain(IP.w2);
      // a namespaced tenant's guest too, through the host and back into its namespace
      expect(await lab.fetch(ns.g1!, hostUrl(8081))).toBe('g1');
    });

    test('a floating IP: the host answers ARP for it on the uplink, the outside reaches the guest, the guest leaves from it', async () => {
      expect(await addressesOfUplink()).toContain(`${FLOATING}/32`);
      expect(await lab.fetch(ns.out!, `http://${FLOATING}/`)).toBe('f1');
      expect(await lab.fetch(ns.f1!, `http://${OUTSIDE.outside}:8080/`)).toBe('out');
      expect(clients.out).toContain(FLOATING);
      // its neighbour without one still leaves from the host's address
      expect(await lab.fetch(ns.w2!, `http://${OUTSIDE.outside}:8080/`)).toBe('out');
      expect([...clients.out!].sort()).toEqual([FLOATING, OUTSIDE.host].sort());
    });

    test("a forward takes the uplink's address only: another host address (a management network's) reaches nothing", async () => {
      const syn = 'tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0';
      const r = await probe({
        from: { netns: host, dev: 'side0', filter: `${syn} and dst port 8080` },
        to: { netns: host, dev: tap('w1'), filter: syn },
        attempt: () => lab.fetch(ns.side!, hostUrl(8080, SIDE.host), 2),
        sent: new RegExp(`${esc(SIDE.peer)}\\.\\d+ > ${esc(SIDE.host)}\\.8080:`),
        barrier: async () => expect(await lab.fetch(ns.out!, hostUrl(8080))).toBe('w1'),
        arrived: new RegExp(`${esc(OUTSIDE.outside)}\\.\\d+ > ${esc(IP.w1)}\\.80:`),
        delivered: new RegExp(`^(?!.*${esc(OUTSIDE.outside)}\\.\\d+ >).*Flags \\[S\\]`),
      });
      expect([r.result, r.delivered]).toEqual([undefined, 0]);
    });

    test("a namespaced tenant's floating IP: routed to its namespace, answered on the uplink; the outside, the host and the tenant's guests reach the guest, which leaves from it", async () => {
      expect((await lab.exec(host, ['ip', '-4', 'neigh', 'show', 'proxy'])).stdout).toContain(`${FLOATING_NS} dev up0`);
      // the host never holds it: it routes it
      expect(await addressesOfUplink()).not.toContain(`${FLOATING_NS}/32`);
      expect(await lab.fetch(ns.out!, `http://${FLOATING_NS}/`)).toBe('g1');
      expect(clients.g1).toContain(OUTSIDE.outside);
      const upMac = JSON.parse((await lab.exec(host, ['ip', '-j', 'link', 'show', 'up0'])).stdout)[0].address as string;
      expect((await lab.exec(ns.out!, ['ip', 'neigh', 'show', FLOATING_NS])).stdout).toContain(`lladdr ${upMac}`);
      expect(await lab.fetch(host, `http://${FLOATING_NS}/`)).toBe('g1');
      // hairpin inside the namespace: a guest of the same tenant
      expect(await lab.fetch(ns.g2!, `http://${FLOATING_NS}/`)).toBe('g1');
      expect(await lab.fetch(ns.g1!, `http://${OUTSIDE.outside}:8080/`)).toBe('out');
      expect(clients.out).toContain(FLOATING_NS);
    });

    test('a floating IP moved to another guest takes its flows along (conntrack would keep them on the old one)', async () => {
      const moved: HostState = {
        networks: state.networks.map((n, i) =>
          i === 0
            ? {
                ...n,
                ports: n.ports.map((p) =>
                  p.name === tap('f1')
                    ? { ...p, floatingIp: undefined }
                    : p.name === tap('w2')
                      ? { ...p, floatingIp: FLOATING }
                      : p,
                ),
              }
            : n,
        ),
      };
      const udp = 'udp and dst port 9000';
      const atF1 = await Capture.start(host, tap('f1'), 'out', udp);
      const atW2 = await Capture.start(host, tap('w2'), 'out', udp);
      // one flow: the same source port each time
      const send = () => lab.exec(ns.out!, ['python3', SEND, 'udp', FLOATING, '9000', '40000', '78']);
      try {
        await send();
        await atF1.saw('the flow reaching f1');
        await plane.apply(moved);
        await send();
        await atW2.saw("the same flow's next datagram reaching w2");
        expect([atF1.count(), atW2.count()]).toEqual([1, 1]);
      } finally {
        await atF1.stop();
        await atW2.stop();
        await plane.apply(state);
      }
    });

    test("security groups decide forwarded traffic: port 22's forward is closed to the outside (sent, never delivered)", async () => {
      const syn = 'tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0';
      const r = await probe({
        from: { netns: host, dev: 'up0', filter: `${syn} and dst port 2200` },
        to: { netns: host, dev: tap('w1'), filter: `(${syn}) or icmp` },
        attempt: () => lab.fetch(ns.out!, hostUrl(2200), 2),
        sent: new RegExp(`${esc(OUTSIDE.outside)}\\.\\d+ > ${esc(OUTSIDE.host)}\\.2200:`),
        barrier: async () => expect(await lab.fetch(ns.out!, hostUrl(8080))).toBe('w1'),
        arrived: new RegExp(`${esc(OUTSIDE.outside)}\\.\\d+ > ${esc(IP.w1)}\\.80:`),
        delivered: new RegExp(`> ${esc(IP.w1)}\\.22:`),
      });
      expect([r.result, r.delivered]).toEqual([undefined, 0]);
    });

    test("another tenant's guest reaches none of it: not on the host's address, its own gateway or the floating IP", async () => {
      const way = { w1: hostUrl(8080), f1: `http://${FLOATING}/`, g1: `http://${FLOATING_NS}/` };
      for (const [url, target, dport] of [
        [hostUrl(8080), 'w1', 80],
        [hostUrl(8080, initech.gateway), 'w1', 80],
        [way.f1, 'f1', 80],
        [way.g1, 'g1', 80],
      ] as const) {
        const r = await probe({
          from: { netns: host, dev: tap('i1'), filter: 'tcp' },
          to: { netns: host, dev: tap(target), filter: 'tcp' },
          attempt: () => lab.fetch(ns.i1!, url, 2),
          sent: new RegExp(`${esc(IP.i1)}\\.\\d+ > \\S+: Flags \\[S\\]`),
          barrier: async () => expect(await lab.fetch(ns.out!, way[target])).toBe(target),
          arrived: new RegExp(`${esc(OUTSIDE.outside)}\\.\\d+ > \\S+\\.${dport}:`),
          // any SYN at the target but the outside's: a translated attempt would arrive with
          // another source (its tenant's masquerade), and must still count
          delivered: new RegExp(`^(?!.*${esc(OUTSIDE.outside)}\\.\\d+ >).*Flags \\[S\\]`),
        });
        expect([url, r.result, r.delivered]).toEqual([url, undefined, 0]);
      }
    });

    test('a host port a process listens on is refused, naming the forward; nothing changes', async () => {
      const busy = lab.spawn(host, ['busybox', 'nc', '-l', '-p', '9999']);
      await waitFor('the host process to listen on 9999', 10_000, async () =>
        (await lab.exec(host, ['ss', '-H', '-ltn'])).stdout.includes(':9999 '),
      );
      const taken: HostState = {
        networks: state.networks.map((n, i) =>
          i === 0
            ? {
                ...n,
                ports: n.ports.map((p, j) =>
                  j === 2 ? { ...p, forwards: [{ hostPort: 9999, port: 80, protocol: 'tcp' as const }] } : p,
                ),
              }
            : n,
        ),
      };
      const err = await plane.apply(taken).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SpecError);
      expect((err as SpecError).problems).toEqual([
        {
          path: 'networks[0].ports[2].forwards[0]',
          message: expect.stringMatching(/tcp port 9999 is in use on the host \(a process listens on \*:9999\)/),
        },
      ]);
      busy.kill('SIGKILL');
      expect((await plane.plan(state)).changes).toEqual([]);
    });

    test('a deleted DNAT rule and a lost floating address are drift; apply puts them back', async () => {
      if (firewall === 'nftables') await lab.exec(host, ['nft', 'flush', 'chain', 'inet', 'virtwire', 'prerouting']);
      else {
        const chain = /^:(VWD-\S+)/m.exec((await lab.exec(host, ['iptables-save', '-t', 'nat'])).stdout)![1]!;
        await lab.exec(host, ['iptables', '-t', 'nat', '-F', chain]);
      }
      await lab.exec(host, ['ip', 'addr', 'del', `${FLOATING}/32`, 'dev', 'up0']);
      await lab.exec(host, ['ip', 'neigh', 'del', 'proxy', FLOATING_NS, 'dev', 'up0']);
      expect(await lab.fetch(ns.out!, hostUrl(8080), 2)).toBeUndefined();
      const kinds = (await plane.plan(state)).changes.map((c) => c.kind).sort();
      expect(kinds).toEqual(['address', 'address', 'firewall']);
      await plane.apply(state);
      expect((await plane.plan(state)).changes).toEqual([]);
      expect(await lab.fetch(ns.out!, hostUrl(8080))).toBe('w1');
      expect(await lab.fetch(ns.out!, `http://${FLOATING}/`)).toBe('f1');
      expect((await lab.exec(host, ['ip', '-4', 'neigh', 'show', 'proxy'])).stdout).toContain(`${FLOATING_NS} dev up0`);
    });

    test('teardown gives the floating address back and leaves the uplink as it was', async () => {
      await plane.teardown();
      expect(await addressesOfUplink()).toEqual([`${OUTSIDE.host}/24`]);
      expect((await lab.exec(host, ['ip', '-4', 'neigh', 'show', 'proxy'])).stdout).toBe('');
      expect((await lab.exec(host, ['ip', 'route', 'show', FLOATING_NS])).stdout).toBe('');
      expect(await lab.fetch(ns.out!, hostUrl(8080), 2)).toBeUndefined();
    });
  });
}
