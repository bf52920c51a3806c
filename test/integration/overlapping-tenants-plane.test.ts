// Tenants with the same subnet on one host, on a real kernel inside namespaces this file makes:
// acme keeps its gateway on the host (a plain tenant); globex and initech, with the same
// 10.40.0.0/24 and the same guest addresses, get network namespaces of their own (as the engine
// gives them when they arrive second). Guest "VMs" are namespaces behind veth ports; an "outside"
// namespace stands beyond the host's uplink. Once per firewall backend.
import { HostPlane, pidAlive } from '../../lib/host/index.js';
import { validateNetwork, namespaceNames } from '../../lib/spec/index.js';
import type { HostPort, HostState } from '../../types/host.js';
import type { FirewallKind } from '../../lib/host/firewall/index.js';
import { execa } from 'execa';
import { describeAsRoot } from '../helpers/root.js';
import { Lab } from '../helpers/lab.js';
import { waitFor } from '../helpers/wait.js';
import { OUTSIDE } from '../helpers/ranges.js';
import { Capture } from '../helpers/capture.js';
import { SEND, dhcpRequest, naming } from '../helpers/frames.js';

suite('nftables', 'vwov');
suite('iptables', 'vwow');

function suite(firewall: FirewallKind, prefix: string): void {
  const lab = new Lab(prefix);
  let host: string;
  let plane: HostPlane;
  const ns: Record<string, string> = {};
  const cidr = '10.40.0.0/24';
  // tenant names carry the prefix: namespaces are global, two suites must not share one
  const tenants = { acme: `${prefix}acme`, globex: `${prefix}globex`, initech: `${prefix}initech` };
  const acme = validateNetwork({ tenant: tenants.acme, cidr });
  // globex forwards names outside the tenant to a resolver in the outside namespace
  const globex = {
    ...validateNetwork({ tenant: tenants.globex, cidr, dns: { upstream: [OUTSIDE.outside] } }),
    namespace: { transit: '100.64.0.0/30' },
  };
  const initech = { ...validateNetwork({ tenant: tenants.initech, cidr }), namespace: { transit: '100.64.0.4/30' } };
  const spaceOf = (tenant: string) => namespaceNames(tenant).netns;
  const port = (guest: string, mac: number, ip: string): HostPort =>
    lab.vethPort(guest, `52:54:00:40:00:${String(mac).padStart(2, '0')}`, ip);
  const state: HostState = {
    networks: [
      { network: acme, ports: [port('a1', 11, '10.40.0.11'), port('a2', 12, '10.40.0.12')] },
      // b1's port is limited to 8 Mbit/s of what it sends
      {
        network: globex,
        ports: [{ ...port('b1', 21, '10.40.0.11'), qos: { egressKbps: 8000 } }, port('b2', 22, '10.40.0.12')],
      },
      { network: initech, ports: [port('c1', 31, '10.40.0.11')] },
    ],
  };
  const guests = ['a1', 'a2', 'b1', 'b2', 'c1'];

  const fetchFrom = (guest: string, url: string) => lab.fetch(ns[guest]!, url);
  /** A DHCP exchange from the guest's port: the address its tenant's dnsmasq leases it. */
  async function lease(guest: string): Promise<string | undefined> {
    await lab.exec(ns[guest]!, ['ip', 'link', 'set', 'eth0', 'up']);
    const argv = ['busybox', 'udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '5', '-T', '2', '-s', '/bin/true'];
    const r = await lab.exec(ns[guest]!, argv, { reject: false });
    return /lease of (\S+) obtained/.exec(r.stdout + r.stderr)?.[1];
  }
  async function namespaces(): Promise<string[]> {
    const { stdout } = await execa('ip', ['-j', 'netns', 'list']);
    const mine = Object.values(tenants).map(spaceOf);
    return (JSON.parse(stdout || '[]') as { name: string }[]).map((n) => n.name).filter((n) => mine.includes(n));
  }
  /** An HTTP server in a guest (or the outside) that answers with its name; the clients it saw. */
  const serve = (guest: string, address: string) => lab.serveHttp(ns[guest]!, address, 8080, guest);

  describeAsRoot(`tenants with the same subnet on one host (namespaces), ${firewall} firewall`, () => {
    beforeAll(async () => {
      await lab.sweep();
      // a namespace a killed earlier run left behind (theirs are global, not under the lab's prefix)
      for (const t of Object.values(tenants)) await execa('ip', ['netns', 'del', spaceOf(t)], { reject: false });
      host = await lab.netns('host');
      for (const g of [...guests, 'out']) ns[g] = await lab.netns(g);
      plane = new HostPlane({ netns: host, stateDir: lab.stateDir, firewall });
      await lab.exec(host, ['ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.out!]);
      await lab.configureGuest(host, 'up0', `${OUTSIDE.host}/24`);
      await lab.configureGuest(ns.out!, 'eth0', `${OUTSIDE.outside}/24`);
    });
    afterAll(async () => {
      await plane?.teardown().catch(() => {});
      for (const t of Object.values(tenants)) await execa('ip', ['netns', 'del', spaceOf(t)], { reject: false });
      await lab.cleanup();
    });

    test('plan shows the namespaces and what runs inside them, and changes nothing', async () => {
      const p = await plane.plan(state);
      const g = spaceOf(tenants.globex);
      expect(p.ip).toContain(`netns add ${g}`);
      expect(p.changes).toContainEqual({ kind: 'namespace', netns: g, action: 'create', tenant: tenants.globex });
      const inside = p.namespaces.find((x) => x.netns === g)!;
      expect(inside.ip).toEqual(
        expect.arrayContaining([
          'addr add 10.40.0.1/24 dev vw-gw',
          'route replace default via 100.64.0.1 dev vw-transit',
        ]),
      );
      expect(inside.forwarding).toBe(true);
      expect(inside.firewall.length).toBeGreaterThan(0);
      expect(await namespaces()).toEqual([]);
    });

    test('every guest leases its own pinned address from its own tenant', async () => {
      const report = await plane.apply(state);
      expect(report.noop).toBe(false);
      expect((await namespaces()).sort()).toEqual([spaceOf(tenants.globex), spaceOf(tenants.initech)].sort());
      for (const g of guests) expect(await lease(g)).toBe(g === 'a2' || g === 'b2' ? '10.40.0.12' : '10.40.0.11');
      // each lease is in its own tenant's lease file, by the guest's MAC
      const macs = async (t: string) => (await plane.leases(t)).map((l) => l.mac).sort();
      expect(await macs(tenants.globex)).toEqual(['52:54:00:40:00:21', '52:54:00:40:00:22']);
      expect(await macs(tenants.initech)).toEqual(['52:54:00:40:00:31']);
      for (const g of guests) {
        const ip = g === 'a2' || g === 'b2' ? '10.40.0.12' : '10.40.0.11';
        await lab.configureGuest(ns[g]!, 'eth0', `${ip}/24`, '10.40.0.1');
      }
    });

    test("a namespaced tenant's dnsmasq answers no DHCP message naming another MAC than its sender's", async () => {
      const inside = spaceOf(tenants.globex);
      const b2 = '52:54:00:40:00:22';
      const b1 = '52:54:00:40:00:21';
      const sent = await Capture.start(host, port('b1', 21, '').name, 'in', `udp dst port 67 and ${naming(b2)}`);
      const forged = await Capture.start(inside, 'vw-gw', 'out', `udp src port 67 and ${naming(b2)}`);
      const own = await Capture.start(inside, 'vw-gw', 'out', `udp src port 67 and ${naming(b1)}`);
      try {
        const request = (chaddr: string, ip: string) =>
          lab.exec(ns.b1!, ['python3', SEND, 'udp', '255.255.255.255', '67', '68', dhcpRequest(chaddr, ip)]);
        await request(b2, '10.40.0.12');
        await sent.saw("b1's request naming b2's MAC leaving b1");
        await request(b1, '10.40.0.11'); // the barrier
        await own.saw("the namespace's dnsmasq answering b1's own request");
        expect(forged.count()).toBe(0);
      } finally {
        for (const c of [sent, forged, own]) await c.stop();
      }
    });

    test('the same address reaches its own tenant only; DNS answers each tenant its own names', async () => {
      await serve('a2', '10.40.0.12');
      await serve('b2', '10.40.0.12');
      const lookup = async (guest: string, name: string) => {
        const r = await lab.exec(ns[guest]!, ['busybox', 'nslookup', name, '10.40.0.1'], { reject: false });
        return r.exitCode === 0 && r.stdout.includes('10.40.0.12');
      };
      // independent probes, at once: the failing ones wait for their timeouts together
      expect(
        await Promise.all([
          fetchFrom('a1', 'http://10.40.0.12:8080/'),
          fetchFrom('b1', 'http://10.40.0.12:8080/'),
          lab.fetch(ns.c1!, 'http://10.40.0.12:8080/', 2),
          lookup('b1', 'b2'),
          lookup('a1', 'a2'),
          lookup('a1', 'b2'),
          lookup('c1', 'b2'),
        ]),
      ).toEqual(['a2', 'b2', undefined, true, true, false, false]);
    });

    test("DNS upstream: the namespace's dnsmasq forwards through both NATs to the tenant's resolver", async () => {
      const resolver = lab.spawn(ns.out!, [
        'dnsmasq',
        '--no-daemon',
        `--listen-address=${OUTSIDE.outside}`,
        '--bind-interfaces',
        '--no-resolv',
        '--no-hosts',
        `--address=/outside.test/${OUTSIDE.spare}`,
        // busybox nslookup asks for AAAA too: a refused one is retried for seconds
        '--address=/outside.test/2001:db8::99',
        '--log-queries',
        '--log-facility=-',
        `--pid-file=${lab.stateDir}/outside-dns.pid`,
      ]);
      let log = '';
      resolver.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      await waitFor('the outside resolver to start', 10_000, () => /started/.test(log));
      const r = await lab.exec(ns.b1!, ['busybox', 'nslookup', 'outside.test', '10.40.0.1'], { reject: false });
      expect(r.stdout).toContain(OUTSIDE.spare);
      // the resolver saw the query from the host's uplink address: NAT'd in the namespace and on the host
      expect(log).toContain(`query[A] outside.test from ${OUTSIDE.host}`);
      resolver.kill('SIGKILL');
    });

    test("only a tenant's own gateway answers ARP for its address (not the host, which has it on acme's bridge)", async () => {
      const answers = await Promise.all(
        ['a1', 'b1', 'c1'].map(async (g) => {
          const argv = ['busybox', 'arping', '-c', '2', '-w', '3', '-I', 'eth0', '10.40.0.1'];
          const r = await lab.exec(ns[g]!, argv, { reject: false });
          return [...new Set([...r.stdout.matchAll(/reply from 10\.40\.0\.1 \[([0-9a-f:]+)\]/gi)].map((m) => m[1]!))];
        }),
      );
      // one MAC each; the namespaced tenants' gateways are their veth ends (02:76:77:…), each its own
      expect(answers.map((macs) => macs.length)).toEqual([1, 1, 1]);
      expect(answers.slice(1).map((macs) => macs[0]!.toLowerCase().slice(0, 9))).toEqual(['02:76:77:', '02:76:77:']);
      expect(answers[1]).not.toEqual(answers[2]);
    });

    test('NAT: every tenant reaches the outside, which sees the host address', async () => {
      const seen = await serve('out', OUTSIDE.outside);
      for (const g of ['a1', 'b1', 'c1']) expect(await fetchFrom(g, `http://${OUTSIDE.outside}:8080/`)).toBe('out');
      expect([...seen]).toEqual([OUTSIDE.host]);
    });

    test("QoS: a namespaced tenant's port is shaped on the host like any other", async () => {
      // a server for as many tries as it takes (killed at cleanup): a try that fails or reports no
      // result (iperf3 -J once exited 0 without end.sum_received here) is tried again
      void lab.spawn(ns.out!, ['iperf3', '-s', '-B', OUTSIDE.outside]);
      const mbit = async (guest: string) => {
        const r = await waitFor(`iperf3 from ${guest} (the server may not listen yet)`, 20_000, async () => {
          const x = await lab.exec(ns[guest]!, ['iperf3', '-J', '-t', '2', '-c', OUTSIDE.outside], { reject: false });
          const bps = iperfReceived(x.stdout);
          if (x.exitCode === 0 && bps === undefined) console.log(`iperf3 exited 0 without a result: ${x.stdout}`);
          return x.exitCode === 0 && bps;
        });
        return r / 1e6;
      };
      const limited = await mbit('b1');
      expect(limited).toBeLessThan(8 * 1.1);
      expect(limited).toBeGreaterThan(8 * 0.5);
    });

    test('no tenant reaches another tenant, its namespace or the host; the outside reaches none', async () => {
      const blocked: [string, string][] = [
        // the other namespace's transit address, the host's ends of the transits, the host's uplink
        ...['100.64.0.6', '100.64.0.5', '100.64.0.1', OUTSIDE.host].map((t): [string, string] => ['b1', t]),
        ['a1', '100.64.0.2'],
        ['c1', '100.64.0.2'],
        ...['100.64.0.2', '100.64.0.6', '10.40.0.11'].map((t): [string, string] => ['out', t]),
      ];
      // while each still reaches its own gateway
      const open: [string, string][] = ['a1', 'b1', 'c1'].map((g) => [g, '10.40.0.1']);
      const answered = await Promise.all([...blocked, ...open].map(([from, to]) => lab.ping(ns[from]!, to)));
      expect(answered).toEqual([...blocked.map(() => false), ...open.map(() => true)]);
    });

    test('applying the same state again changes nothing', async () => {
      const p = await plane.plan(state);
      expect(p.changes).toEqual([]);
      expect(p.namespaces.every((x) => !x.ip.length && !x.firewall.length && !x.forwarding)).toBe(true);
      expect((await plane.apply(state)).noop).toBe(true);
    });

    test('drift inside a namespace is seen and repaired; a deleted namespace is made again', async () => {
      const g = spaceOf(tenants.globex);
      await execa('ip', ['netns', 'exec', g, 'ip', 'addr', 'flush', 'dev', 'vw-gw']);
      expect(await lab.ping(ns.b1!, '10.40.0.1')).toBe(false);
      expect((await plane.plan(state)).changes).toEqual([
        { kind: 'namespace', netns: g, action: 'configure', tenant: tenants.globex },
      ]);
      await plane.apply(state);
      expect(await lab.reaches(ns.b1!, '10.40.0.1')).toBe(true);

      const before = await plane.dnsmasqPid(tenants.globex);
      await execa('ip', ['netns', 'del', g]);
      await plane.apply(state);
      expect(await namespaces()).toContain(g);
      const after = await plane.dnsmasqPid(tenants.globex);
      expect(after).toBeDefined();
      expect(after).not.toBe(before);
      expect(await lease('b1')).toBe('10.40.0.11');
      expect(await fetchFrom('b1', `http://${OUTSIDE.outside}:8080/`)).toBe('out');
      expect((await plane.apply(state)).noop).toBe(true);
    });

    test("a security group holds for its tenant's address only, not the other tenant's same one", async () => {
      const locked: HostState = {
        networks: state.networks.map((n) =>
          n.network.tenant !== tenants.globex
            ? n
            : {
                ...n,
                ports: n.ports.map((p) => (p.hostname === 'b2' ? { ...p, securityGroups: ['locked'] } : p)),
                securityGroups: [
                  { name: 'locked', rules: [{ direction: 'ingress', protocol: 'icmp', peer: { any: true } }] },
                ],
              },
        ),
      };
      await plane.apply(locked);
      expect(
        await Promise.all([
          lab.fetch(ns.b1!, 'http://10.40.0.12:8080/', 2),
          lab.reaches(ns.b1!, '10.40.0.12'),
          fetchFrom('a1', 'http://10.40.0.12:8080/'),
        ]),
      ).toEqual([undefined, true, 'a2']);
      await plane.apply(state);
      expect(await fetchFrom('b1', 'http://10.40.0.12:8080/')).toBe('b2');
    });

    test('teardown removes the namespaces, their processes and devices', async () => {
      const pids = await Promise.all(Object.values(tenants).map((t) => plane.dnsmasqPid(t)));
      await plane.teardown();
      expect(await namespaces()).toEqual([]);
      for (const pid of pids) expect(pid !== undefined && pidAlive(pid)).toBe(false);
      const { stdout } = await lab.exec(host, ['ip', '-j', 'link', 'show']);
      const links = (JSON.parse(stdout) as { ifname: string }[]).map((l) => l.ifname);
      expect(links.filter((l) => l.startsWith('vw'))).toEqual([]);
    });
  });
}

/** The received rate of an iperf3 -J run, or undefined where its JSON has none. */
function iperfReceived(json: string): number | undefined {
  try {
    return (JSON.parse(json) as { end?: { sum_received?: { bits_per_second?: number } } }).end?.sum_received
      ?.bits_per_second;
  } catch {
    return undefined;
  }
}
