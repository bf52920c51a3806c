// The host network plane on a real kernel, inside namespaces this file makes: a "host"
// namespace where virtwire builds bridges, ports, firewall rules and dnsmasq; "guest" namespaces
// on the far end of each port's veth; an "outside" namespace beyond the host's uplink. The whole
// suite runs once per firewall backend: nftables, and the iptables + ebtables fallback (on this
// machine the iptables/ebtables tools are Debian's nf_tables-based ones; the backend drives them
// only through iptables-save/-restore and ebtables-save/-restore, as on a host without nft).
import { readFileSync, statSync } from 'node:fs';
import { HostPlane, probeHost, pidAlive, OWNED_NAME } from '../../lib/host/index.js';
import { validateNetwork, tapName } from '../../lib/spec/index.js';
import { ApplyError, HostUnsupportedError, SpecError } from '../../lib/errors/index.js';
import type { HostNetwork, HostPort, HostState } from '../../types/host.js';
import type { FirewallKind } from '../../lib/host/firewall/index.js';
import { describeAsRoot } from '../helpers/root.js';
import { Lab } from '../helpers/lab.js';
import { esc, probe } from '../helpers/capture.js';
import { waitFor } from '../helpers/wait.js';
import { OUTSIDE } from '../helpers/ranges.js';

suite('nftables', 'vwhp');
suite('iptables', 'vwhq');

function suite(firewall: FirewallKind, prefix: string): void {
  const lab = new Lab(prefix);
  let host: string;
  let plane: HostPlane;
  const ns: Record<string, string> = {};

  const acme = validateNetwork({ tenant: 'acme', cidr: '10.31.0.0/24' });
  const globex = validateNetwork({ tenant: 'globex', cidr: '10.32.0.0/24' });
  const port = (guest: string, index: number, ip?: string): HostPort => ({
    name: tapName(guest, 0),
    kind: 'veth',
    peer: { name: 'eth0', netns: `${prefix}-${guest}` },
    mac: `52:54:00:31:00:${String(index).padStart(2, '0')}`,
    ...(ip ? { ip, hostname: guest } : {}),
  });
  const acmeNet = (...extra: HostPort[]): HostNetwork => ({
    network: acme,
    ports: [port('a1', 11, '10.31.0.11'), port('a2', 12, '10.31.0.12'), ...extra],
  });
  const globexNet: HostNetwork = { network: globex, ports: [port('b1', 21, '10.32.0.21')] };
  const baseState: HostState = { networks: [acmeNet(port('a3', 13, '10.31.0.13')), globexNet] };

  async function hostLinks(): Promise<string[]> {
    const { stdout } = await lab.exec(host, ['ip', '-j', 'link', 'show']);
    return (JSON.parse(stdout) as { ifname: string }[]).map((l) => l.ifname).sort();
  }
  async function linkMac(dev: string): Promise<string> {
    const { stdout } = await lab.exec(host, ['ip', '-j', 'link', 'show', 'dev', dev]);
    return (JSON.parse(stdout) as { address: string }[])[0]!.address;
  }
  /**
   * `attempt` (a ping, which waits a second for its answer, false when none came) is captured
   * leaving `from`'s port (`sent`) and never reaches `to`'s; then the host pings `to`'s guest,
   * whose arrival proves the capture there works. Without `delivered`, every echo request at the
   * target but the host's one counts: an attempt that got through would arrive translated (its
   * tenant's masquerade: from another source), not as sent.
   */
  async function isolated(
    from: { port: string },
    sent: RegExp,
    to: { port: string; ip: string },
    attempt: () => Promise<boolean>,
    delivered?: RegExp,
  ): Promise<void> {
    const r = await probe({
      from: { netns: host, dev: from.port, filter: 'icmp or arp' },
      to: { netns: host, dev: to.port, filter: 'icmp or arp' },
      attempt,
      sent,
      barrier: async () => expect(await lab.ping(host, to.ip)).toBe(true),
      arrived: new RegExp(`> ${esc(to.ip)}: ICMP echo request`),
      delivered: delivered ?? /ICMP echo request/,
    });
    expect([r.result, r.delivered]).toEqual([false, delivered ? 0 : 1]);
  }
  /** virtwire's own tables (nftables) or chains (iptables, ebtables) in the host namespace. */
  async function ownedRules(): Promise<string[]> {
    const nft = (await lab.exec(host, ['nft', 'list', 'tables'])).stdout
      .split('\n')
      .filter((l) => l.includes('virtwire'));
    if (firewall === 'nftables') return nft.map((l) => l.replace(/^table /, '')).sort();
    expect(nft).toEqual([]); // the fallback never makes nft tables of its own
    const owned: string[] = [];
    for (const [tool, table] of [
      ['iptables', 'filter'],
      ['iptables', 'nat'],
      ['ip6tables', 'filter'],
      ['ebtables', 'nat'],
    ] as const) {
      const saved = (await lab.exec(host, [`${tool}-save`, '-t', table])).stdout;
      for (const m of saved.matchAll(/^:(VW[A-Z])-[0-9a-f]{12} /gm)) owned.push(`${tool} ${table} ${m[1]}`);
    }
    return owned.sort();
  }
  const fetchFrom = (guest: string, url: string) => lab.fetch(guest, url);

  describeAsRoot(`host network plane on a real kernel (namespaces), ${firewall} firewall`, () => {
    beforeAll(async () => {
      await lab.sweep();
      host = await lab.netns('host');
      for (const g of ['a1', 'a2', 'a3', 'a4', 'b1', 'out']) ns[g] = await lab.netns(g);
      plane = new HostPlane({ netns: host, stateDir: lab.stateDir, firewall });
      // the host's uplink to an "outside" network (a range free on this host: ranges.ts), made by
      // the test, not by virtwire
      await lab.exec(host, ['ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.out!]);
      await lab.configureGuest(host, 'up0', `${OUTSIDE.host}/24`);
      await lab.configureGuest(ns.out!, 'eth0', `${OUTSIDE.outside}/24`);
    });
    afterAll(async () => {
      await plane?.teardown().catch(() => {});
      await lab.cleanup();
    });

    test('bad input names every problem and changes nothing', async () => {
      const before = await hostLinks();
      const bad: HostState = {
        networks: [
          {
            network: acme,
            ports: [
              { ...port('a1', 11, '10.31.0.11'), mac: '01:00:5e:00:00:01' },
              { ...port('a2', 12, '10.32.0.12'), name: tapName('a1', 0) },
              { ...port('a3', 13), qos: { egressKbps: -1 } },
            ],
          },
        ],
      };
      const err = await plane.apply(bad).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SpecError);
      expect((err as SpecError).problems.map((p) => p.path)).toEqual([
        'networks[0].ports[0].mac',
        'networks[0].ports[1].name',
        'networks[0].ports[1].ip',
        'networks[0].ports[2].qos.egressKbps',
      ]);
      expect(await hostLinks()).toEqual(before);
      expect(await ownedRules()).toEqual([]);
    });

    test('a VLAN segment fails up front where the kernel lacks 802.1Q', async () => {
      const caps = await probeHost();
      const vlanNet = validateNetwork({
        tenant: 'initech',
        cidr: '10.33.0.0/24',
        segment: { type: 'vlan', id: 10, uplink: 'up0' },
      });
      const before = await hostLinks();
      if (caps.vlan) {
        // a kernel with 802.1Q (the lab-host tests run there): the VLAN device joins the bridge
        await plane.apply({ networks: [{ network: vlanNet, ports: [], dhcp: false }] });
        expect(await hostLinks()).toContain('up0.10');
        await plane.teardown();
        return;
      }
      const err = await plane.apply({ networks: [{ network: vlanNet, ports: [] }] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HostUnsupportedError);
      expect((err as HostUnsupportedError).feature).toBe('vlan');
      expect((err as Error).message).toBe(
        'kernel lacks 802.1Q (CONFIG_VLAN_8021Q); VLAN segment for tenant initech cannot be created',
      );
      expect(await hostLinks()).toEqual(before);
    });

    test('apply builds bridges, ports, rules and dnsmasq; the same state again changes nothing', async () => {
      const first = await plane.apply(baseState);
      expect(first.noop).toBe(false);
      const links = await hostLinks();
      for (const name of [acme.bridge, globex.bridge, tapName('a1', 0), tapName('b1', 0)])
        expect(links).toContain(name);
      expect(await ownedRules()).toEqual(
        firewall === 'nftables'
          ? ['bridge virtwire', 'inet virtwire']
          : [
              'ebtables nat VWR',
              'ebtables nat VWS',
              'ip6tables filter VWF',
              'ip6tables filter VWI',
              'ip6tables filter VWX',
              'iptables filter VWF',
              'iptables filter VWI',
              'iptables filter VWX',
              'iptables nat VWN',
            ],
      );
      expect(await plane.dnsmasqPid('acme')).toBeGreaterThan(0);
      expect(await plane.dnsmasqPid('globex')).toBeGreaterThan(0);
      const second = await plane.apply(baseState);
      expect(second.changes.filter((c) => c.count > 0)).toEqual([]);
      expect(second.noop).toBe(true);
      await lab.configureGuest(ns.a1!, 'eth0', '10.31.0.11/24', '10.31.0.1');
      await lab.configureGuest(ns.a2!, 'eth0', '10.31.0.12/24', '10.31.0.1');
      await lab.configureGuest(ns.b1!, 'eth0', '10.32.0.21/24', '10.32.0.1');
    });

    test('tenants are isolated: A reaches A, never B, in either direction', async () => {
      expect(await lab.reaches(ns.a1!, '10.31.0.12')).toBe(true);
      expect(await lab.reaches(ns.a1!, '10.31.0.1')).toBe(true);
      // each attempt is captured leaving its guest's port and never reaching the target's; the
      // host's own ping to the target afterwards proves the target's capture sees what arrives
      const a1 = { port: tapName('a1', 0), ip: '10.31.0.11' };
      const b1 = { port: tapName('b1', 0), ip: '10.32.0.21' };
      await isolated(a1, /10\.31\.0\.11 > 10\.32\.0\.21: ICMP echo request/, b1, () => lab.ping(ns.a1!, b1.ip));
      await isolated(b1, /10\.32\.0\.21 > 10\.31\.0\.11: ICMP echo request/, a1, () => lab.ping(ns.b1!, a1.ip));
      // nor the host's address on the other tenant's bridge: no answer comes back
      await isolated(a1, /> 10\.32\.0\.1: ICMP echo request/, a1, () => lab.ping(ns.a1!, '10.32.0.1'), /echo reply/);
      // B's guest taking an address from A's subnet gets nowhere either (its ARP stops at its port)
      await lab.exec(ns.b1!, ['ip', 'addr', 'add', '10.31.0.99/24', 'dev', 'eth0']);
      try {
        await isolated(b1, /who-has 10\.31\.0\.11 tell 10\.31\.0\.99/, a1, () => lab.ping(ns.b1!, a1.ip));
        await isolated(a1, /who-has 10\.31\.0\.99/, b1, () => lab.ping(ns.a1!, '10.31.0.99'));
      } finally {
        await lab.exec(ns.b1!, ['ip', 'addr', 'del', '10.31.0.99/24', 'dev', 'eth0']);
      }
    });

    test('NAT: a guest reaches an outside server, which sees the host address', async () => {
      const server = lab.spawn(ns.out!, [
        'node',
        '-e',
        `
        require('http').createServer((q, s) => s.end(q.socket.remoteAddress.replace('::ffff:', ''))).listen(8080, ${JSON.stringify(OUTSIDE.outside)}, () => console.log('listening'));
      `,
      ]);
      await new Promise<void>((resolve, reject) => {
        server.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
        server.on('exit', () => reject(new Error('server exited')));
      });
      expect(await fetchFrom(ns.a1!, `http://${OUTSIDE.outside}:8080/`)).toBe(OUTSIDE.host);
      // and nothing from outside reaches a guest unsolicited, even with a route to it: the ping is
      // captured arriving on the uplink, never at the guest's port
      await lab.exec(ns.out!, ['ip', 'route', 'replace', '10.31.0.0/24', 'via', OUTSIDE.host]);
      const a1 = { port: tapName('a1', 0), ip: '10.31.0.11' };
      const unsolicited = new RegExp(`${esc(OUTSIDE.outside)} > 10\\.31\\.0\\.11: ICMP echo request`);
      await isolated({ port: 'up0' }, unsolicited, a1, () => lab.ping(ns.out!, a1.ip));
      server.kill('SIGKILL');
    });

    test('DHCP: a guest gets its static lease; a new lease reloads dnsmasq without a restart', async () => {
      const pid = await plane.dnsmasqPid('acme');
      await lab.exec(ns.a3!, ['ip', 'link', 'set', 'eth0', 'up']);
      const dhcp = await lab.exec(ns.a3!, [
        'busybox',
        'udhcpc',
        '-i',
        'eth0',
        '-n',
        '-q',
        '-f',
        '-t',
        '5',
        '-T',
        '2',
        '-s',
        '/bin/true',
      ]);
      expect(dhcp.stdout + dhcp.stderr).toMatch(/lease of 10\.31\.0\.13 obtained/);
      const lease = await plane.waitForLease('acme', port('a3', 13).mac, { timeoutMs: 10_000 });
      expect(lease).toMatchObject({ ip: '10.31.0.13', hostname: 'a3' });
      // dnsmasq (root) reads its config and writes its leases: nobody else may read them
      const files = plane.dnsmasqPaths('acme');
      expect([files.conf, files.leaseFile].map((f) => (statSync(f).mode & 0o777).toString(8))).toEqual(['600', '600']);

      const grown: HostState = {
        networks: [acmeNet(port('a3', 13, '10.31.0.13'), port('a4', 14, '10.31.0.14')), globexNet],
      };
      const gatewayMac = await linkMac(acme.bridge);
      const report = await plane.apply(grown);
      expect(report.changes.find((c) => c.step === 'dnsmasq')!.count).toBe(1);
      // a port whose host end has a lower MAC than the bridge's joined: an unpinned bridge takes
      // that MAC and its guests' ARP entries for the gateway point nowhere until they expire
      await lab.exec(host, ['ip', 'link', 'set', 'dev', tapName('a4', 0), 'address', '02:00:00:00:00:01']);
      expect(await linkMac(acme.bridge)).toBe(gatewayMac);
      expect(await plane.dnsmasqPid('acme')).toBe(pid);
      expect(readFileSync(plane.dnsmasqPaths('acme').hostsFile, 'utf8')).toContain('52:54:00:31:00:14,10.31.0.14,a4');
      await lab.exec(ns.a4!, ['ip', 'link', 'set', 'eth0', 'up']);
      const dhcp2 = await lab.exec(ns.a4!, [
        'busybox',
        'udhcpc',
        '-i',
        'eth0',
        '-n',
        '-q',
        '-f',
        '-t',
        '5',
        '-T',
        '2',
        '-s',
        '/bin/true',
      ]);
      expect(dhcp2.stdout + dhcp2.stderr).toMatch(/lease of 10\.31\.0\.14 obtained/);
    });

    test('spoofing: a guest that changes its IP or MAC reaches nothing', async () => {
      expect(await lab.reaches(ns.a2!, '10.31.0.11')).toBe(true);
      const a1 = { port: tapName('a1', 0), ip: '10.31.0.11' };
      const a2 = { port: tapName('a2', 0) };
      // each attempt's ARP request is captured leaving a2's port, and never where it was going
      await lab.setGuestAddress(ns.a2!, 'eth0', '10.31.0.50/24', '10.31.0.1');
      try {
        await isolated(
          a2,
          /who-has 10\.31\.0\.11 tell 10\.31\.0\.50/,
          a1,
          () => lab.ping(ns.a2!, a1.ip),
          /10\.31\.0\.50/,
        );
        // nor the host (past the bridge's hooks, on the bridge device itself), where a1's ping arrives
        const toHost = await probe({
          from: { netns: host, dev: a2.port, filter: 'arp or icmp' },
          to: { netns: host, dev: acme.bridge, filter: 'arp or icmp', direction: 'in' },
          attempt: () => lab.ping(ns.a2!, '10.31.0.1'),
          sent: /who-has 10\.31\.0\.1 tell 10\.31\.0\.50/,
          barrier: async () => expect(await lab.ping(ns.a1!, '10.31.0.1')).toBe(true),
          arrived: /10\.31\.0\.11 > 10\.31\.0\.1: ICMP echo request/,
          delivered: /10\.31\.0\.50/,
        });
        expect([toHost.result, toHost.delivered]).toEqual([false, 0]);
      } finally {
        await lab.setGuestAddress(ns.a2!, 'eth0', '10.31.0.12/24', '10.31.0.1');
      }
      expect(await lab.reaches(ns.a2!, '10.31.0.11')).toBe(true);
      await lab.exec(ns.a2!, ['ip', 'link', 'set', 'eth0', 'address', '52:54:00:99:99:99']);
      try {
        await isolated(
          a2,
          /52:54:00:99:99:99 > .*who-has 10\.31\.0\.11/,
          a1,
          () => lab.ping(ns.a2!, a1.ip),
          /52:54:00:99:99:99/,
        );
      } finally {
        await lab.exec(ns.a2!, ['ip', 'link', 'set', 'eth0', 'address', port('a2', 12).mac]);
      }
    });

    test("tampering with virtwire's rules is drift: plan shows it, apply repairs it", async () => {
      const state: HostState = {
        networks: [acmeNet(port('a3', 13, '10.31.0.13'), port('a4', 14, '10.31.0.14')), globexNet],
      };
      expect((await plane.plan(state)).firewall).toEqual([]);
      if (firewall === 'nftables') {
        // one set element gone (the rules, the hash and the counts are untouched): a2's MAC
        // is no longer its port's, so a2 is cut off
        await lab.exec(host, [
          'nft',
          'delete',
          'element',
          'bridge',
          'virtwire',
          'port_macs',
          `{ "${tapName('a2', 0)}" . ${port('a2', 12).mac} }`,
        ]);
        expect(await lab.ping(ns.a2!, '10.31.0.11')).toBe(false);
      } else {
        // the forward chains flushed (their jumps and names untouched): tenants reach each other
        const saved = (await lab.exec(host, ['iptables-save', '-t', 'filter'])).stdout;
        const chains = [...saved.matchAll(/^:(VWF-[0-9a-f]{12}) /gm)].map((m) => m[1]!);
        expect(chains.length).toBeGreaterThan(0);
        for (const chain of chains) await lab.exec(host, ['iptables', '-w', '-F', chain]);
        expect(await lab.reaches(ns.a1!, '10.32.0.21')).toBe(true);
      }
      expect((await plane.plan(state)).firewall).toHaveLength(1);
      const report = await plane.apply(state);
      expect(report.changes.find((c) => c.step === 'firewall')!.count).toBe(1);
      expect(await lab.reaches(ns.a2!, '10.31.0.11')).toBe(true);
      const [a1, b1] = [
        { port: tapName('a1', 0), ip: '10.31.0.11' },
        { port: tapName('b1', 0), ip: '10.32.0.21' },
      ];
      await isolated(a1, /10\.31\.0\.11 > 10\.32\.0\.21: ICMP echo request/, b1, () => lab.ping(ns.a1!, b1.ip));
      expect((await plane.plan(state)).firewall).toEqual([]);
    });

    test('a dead dnsmasq is noticed and restarted by the next apply', async () => {
      const state: HostState = {
        networks: [acmeNet(port('a3', 13, '10.31.0.13'), port('a4', 14, '10.31.0.14')), globexNet],
      };
      const pid = (await plane.dnsmasqPid('globex'))!;
      process.kill(pid, 'SIGKILL');
      await waitFor('dnsmasq to die', 5_000, async () => (await plane.dnsmasqPid('globex')) === undefined);
      await plane.apply(state);
      const again = await plane.dnsmasqPid('globex');
      expect(again).toBeGreaterThan(0);
      expect(again).not.toBe(pid);
    });

    test('a failure half-way removes what the apply created and names the step', async () => {
      // a device that is not virtwire's already holds VNI 42 on up0: the kernel refuses a second
      // one half-way through the batch (a missing or too-small uplink is refused before any change)
      await lab.exec(host, [
        'ip',
        'link',
        'add',
        'clash42',
        'type',
        'vxlan',
        'id',
        '42',
        'dstport',
        '4789',
        'dev',
        'up0',
      ]);
      try {
        const before = await hostLinks();
        const broken = validateNetwork({
          tenant: 'hooli',
          cidr: '10.34.0.0/24',
          segment: { type: 'vxlan', vni: 42, uplink: 'up0' },
        });
        const state: HostState = {
          networks: [
            acmeNet(port('a3', 13, '10.31.0.13'), port('a4', 14, '10.31.0.14')),
            globexNet,
            { network: broken, ports: [port('h1', 41, '10.34.0.41')] },
          ],
        };
        const err = await plane.apply(state).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ApplyError);
        expect((err as ApplyError).step).toBe('links');
        expect((err as ApplyError).rolledBack).toBe(true);
        expect(await hostLinks()).toEqual(before);
      } finally {
        await lab.exec(host, ['ip', 'link', 'del', 'clash42']);
      }
    });

    test('teardown removes every device, rule, dnsmasq and file virtwire made', async () => {
      const pids = [(await plane.dnsmasqPid('acme'))!, (await plane.dnsmasqPid('globex'))!];
      await plane.teardown();
      expect((await hostLinks()).filter((l) => OWNED_NAME.test(l))).toEqual([]);
      expect(await hostLinks()).toContain('up0'); // not virtwire's: left alone
      expect(await ownedRules()).toEqual([]);
      for (const pid of pids) expect(pidAlive(pid)).toBe(false);
      expect(await plane.dnsmasqPid('acme')).toBeUndefined();
    });
  });
}
