// lib/host without a kernel: what would be run, rendered and refused.
import { validateNetwork, tapName } from '../../lib/spec/index.js';
import {
  HostPlane,
  batchLine,
  desiredLinks,
  planLinks,
  newBridgeMac,
  segmentMtus,
  renderDnsmasqConfig,
  renderHostsFile,
  dnsmasqPaths,
  parseLeases,
  renderRuleset,
  validateHostState,
} from '../../lib/host/index.js';
import { renderTemplate } from '../../lib/host/template.js';
import { namespacesOf } from '../../lib/host/namespace.js';
import { planInside } from '../../lib/host/tenant-namespaces.js';
import { withoutStaleLeases } from '../../lib/host/dnsmasq.js';
import { HostUnsupportedError, SpecError } from '../../lib/errors/index.js';
import type { HostCapabilities, HostNetwork, HostState } from '../../types/host.js';
import type { ObservedLink } from '../../lib/host/links.js';
import { RecordingRunner } from '../helpers/recording-runner.js';

const acme = validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24' });
const globex = validateNetwork({
  tenant: 'globex',
  cidr: '10.20.0.0/24',
  nat: false,
  segment: { type: 'vxlan', vni: 7, uplink: 'eth1', remotes: ['192.0.2.2'] },
});
const acmeNet: HostNetwork = {
  network: acme,
  ports: [{ name: tapName('web', 0), kind: 'tap', mac: '52:54:00:00:00:01', ip: '10.10.0.11', hostname: 'web' }],
};
const globexNet: HostNetwork = {
  network: globex,
  ports: [
    { name: tapName('db', 0), kind: 'tap', mac: '52:54:00:00:00:02', ip: '10.20.0.11', qos: { egressKbps: 1000 } },
  ],
};
const state: HostState = { networks: [acmeNet, globexNet] };

const allCaps: HostCapabilities = {
  bridge: true,
  tap: true,
  veth: true,
  vlan: true,
  vxlan: true,
  ifb: true,
  nftables: true,
  nftBridge: true,
  iptables: true,
  ebtables: true,
  qdiscs: { htb: true, tbf: true, sfq: false, fq_codel: false, ingress: true },
  actions: { police: false, mirred: true },
  dnsmasq: true,
  brNetfilter: true,
  conntrack: true,
};

describe('links', () => {
  const observedFrom = (plan: ReturnType<typeof desiredLinks>): Map<string, ObservedLink> =>
    new Map(
      plan.map((d) => [
        d.name,
        {
          name: d.name,
          kind: d.kind,
          identity: d.identity,
          master: d.master,
          up: true,
          mtu: d.mtu ?? 1500,
          addresses: d.addresses,
          peers: d.peers,
          ...(d.kind === 'bridge' ? { noLinklocalLearn: true, sysctls: d.sysctls } : {}),
          ...(d.guestMac ? { learning: false, staticMacs: [d.guestMac] } : {}),
        },
      ]),
    );

  test('from nothing: one batch creates bridges, uplinks, ifbs and taps in order', () => {
    const plan = planLinks(desiredLinks(state), new Map(), () => '02:00:00:00:00:01');
    expect(plan.ip).toContain(
      `link add ${acme.bridge} address 02:00:00:00:00:01 type bridge forward_delay 0 stp_state 0 no_linklocal_learn 1`,
    );
    expect(plan.ip).toContain(`tuntap add dev ${tapName('web', 0)} mode tap`);
    expect(plan.ip).toContain(`addr add 10.10.0.1/24 dev ${acme.bridge}`);
    expect(plan.ip.findIndex((l) => l.includes(`link add ${acme.bridge}`))).toBeLessThan(
      plan.ip.findIndex((l) => l.includes(`master ${acme.bridge}`)),
    );
    expect(plan.ip.some((l) => /^link add vwx\S+ type vxlan id 7 dstport 4789 dev eth1$/.test(l))).toBe(true);
    // guests' ports: the bridge learns nothing from them, and knows each guest's MAC statically
    expect(plan.bridge).toEqual([
      `fdb replace 52:54:00:00:00:01 dev ${tapName('web', 0)} master static sticky`,
      expect.stringMatching(/^fdb append 00:00:00:00:00:00 dev vwx\S+ dst 192\.0\.2\.2$/),
      `fdb replace 52:54:00:00:00:02 dev ${tapName('db', 0)} master static sticky`,
    ]);
    const web = tapName('web', 0);
    expect(plan.ip.indexOf(`link set dev ${web} type bridge_slave learning off`)).toBeGreaterThan(
      plan.ip.findIndex((l) => l.startsWith(`link set dev ${web} master`)),
    );
    expect(plan.creates).toHaveLength(6); // 2 bridges, vxlan, ifb, 2 taps
    // a new bridge: ARP only for its own addresses, no IPv6
    expect(plan.sysctl).toContain(`net.ipv4.conf.${acme.bridge}.arp_ignore=1`);
    expect(plan.sysctl).toContain(`net.ipv6.conf.${acme.bridge}.disable_ipv6=1`);
  });

  test("a new bridge's MAC is its own: unicast, locally administered, not another host's", () => {
    const macs = Array.from({ length: 64 }, () => newBridgeMac());
    for (const mac of macs) {
      expect(mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      expect(parseInt(mac.slice(0, 2), 16) & 0x03).toBe(0x02);
    }
    expect(new Set(macs).size).toBe(64);
    expect(planLinks(desiredLinks(state), new Map()).ip.filter((l) => / type bridge /.test(l))).toEqual([
      expect.stringMatching(/^link add \S+ address [0-9a-f][26ae]:[0-9a-f:]{14} type bridge /),
      expect.stringMatching(/^link add \S+ address [0-9a-f][26ae]:[0-9a-f:]{14} type bridge /),
    ]);
  });

  test("a dual-stack bridge's IPv6 frames pass ip6tables where the backend guards its ports there (iptables)", () => {
    const dual = validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24', cidr6: 'fd00:10::/64' });
    const port = { name: 'vwt-x-0', kind: 'tap' as const, mac: '52:54:00:00:00:01', ip: '10.10.0.11' };
    const bridgeOf = (s: HostState, hooks?: { ipv6PortFrames: boolean }) =>
      desiredLinks(s, new Map(), hooks).find((l) => l.kind === 'bridge')!;
    const withPort: HostState = { networks: [{ network: dual, ports: [port] }] };
    expect(bridgeOf(withPort, { ipv6PortFrames: true }).nfCallIp6tables).toBe(true);
    expect(bridgeOf(withPort, { ipv6PortFrames: false }).nfCallIp6tables).toBeUndefined();
    // no ports (a segment's bridge on a host without guests): nothing to guard
    expect(
      bridgeOf({ networks: [{ network: dual, ports: [] }] }, { ipv6PortFrames: true }).nfCallIp6tables,
    ).toBeUndefined();
    expect(bridgeOf(state, { ipv6PortFrames: true }).nfCallIp6tables).toBeUndefined(); // IPv4 only
  });

  test('observed equal to desired: nothing to do', () => {
    const desired = desiredLinks(state);
    expect(planLinks(desired, observedFrom(desired))).toEqual({
      ip: [],
      bridge: [],
      sysctl: [],
      ip6: [],
      creates: [],
      changes: [],
    });
  });

  test('a port that learns again, a lost or foreign static entry, a bridge learning from link-local frames: drift', () => {
    const desired = desiredLinks(state);
    const observed = observedFrom(desired);
    const web = tapName('web', 0);
    const db = tapName('db', 0);
    observed.set(web, { ...observed.get(web)!, learning: true, staticMacs: [] });
    observed.set(db, { ...observed.get(db)!, staticMacs: ['52:54:00:00:00:02', '52:54:00:00:00:01'] });
    // arp_ignore reset; no IPv6 setting at all (a kernel without IPv6): nothing to set for it
    const acmeArp = `ipv4/conf/${acme.bridge}/arp_ignore`;
    observed.set(acme.bridge, { ...observed.get(acme.bridge)!, noLinklocalLearn: false, sysctls: { [acmeArp]: '0' } });
    const plan = planLinks(desired, observed);
    expect(plan.sysctl).toEqual([`net.ipv4.conf.${acme.bridge}.arp_ignore=1`]);
    expect(plan.ip).toEqual([
      `link set dev ${acme.bridge} type bridge no_linklocal_learn 1`,
      `link set dev ${web} type bridge_slave learning off`,
    ]);
    expect(plan.bridge).toEqual([
      `fdb replace 52:54:00:00:00:01 dev ${web} master static sticky`,
      `fdb del 52:54:00:00:00:01 dev ${db} master`,
    ]);
    expect(plan.changes.map((c) => [c.device, c.settings])).toEqual([
      [acme.bridge, ['no_linklocal_learn', 'sysctl']],
      [web, ['learning', 'fdb']],
      [db, ['fdb']],
    ]);
  });

  test('owned leftovers are deleted, foreign devices never touched, changed uplinks re-created', () => {
    const desired = desiredLinks(state);
    const observed = observedFrom(desired);
    observed.set('vwtold-abcdef', {
      name: 'vwtold-abcdef',
      kind: 'tap',
      identity: 'tap',
      up: true,
      mtu: 1500,
      addresses: [],
      peers: [],
    });
    observed.set('eth0', {
      name: 'eth0',
      kind: 'unknown',
      identity: 'unknown',
      up: true,
      mtu: 1500,
      addresses: ['172.16.0.2/24'],
      peers: [],
    });
    const vx = desired.find((d) => d.kind === 'vxlan')!;
    observed.set(vx.name, { ...observed.get(vx.name)!, identity: 'vxlan:8::' });
    const plan = planLinks(desired, observed);
    // several deletions go as one device group (one kernel unregister for all)
    expect(plan.ip.slice(0, 2).sort()).toEqual(
      [`link set dev ${vx.name} group 191`, 'link set dev vwtold-abcdef group 191'].sort(),
    );
    expect(plan.ip[2]).toBe('link del group 191');
    expect(plan.ip.some((l) => l.startsWith(`link add ${vx.name} type vxlan`))).toBe(true);
    expect(plan.ip.join('\n')).not.toContain('eth0');
    // the same, typed: what a caller classifies without reading batch lines
    expect(plan.changes).toEqual(
      expect.arrayContaining([
        { kind: 'link', action: 'delete', device: 'vwtold-abcdef', linkKind: 'tap' },
        { kind: 'link', action: 'recreate', device: vx.name, linkKind: 'vxlan', tenant: 'globex' },
      ]),
    );
    expect(plan.changes).toHaveLength(2);
    // unless a device virtwire is not deleting is in that group: then one by one
    observed.set('eth0', { ...observed.get('eth0')!, group: 191 });
    const careful = planLinks(desired, observed);
    expect(careful.ip).toContain('link del dev vwtold-abcdef');
    expect(careful.ip).toContain(`link del dev ${vx.name}`);
    expect(careful.ip.join('\n')).not.toContain('group');
  });

  describe('segment MTU from the uplink', () => {
    const vlanNet = validateNetwork({
      tenant: 'ops',
      cidr: '10.30.0.0/24',
      segment: { type: 'vlan', id: 30, uplink: 'eth1' },
    });
    const withUplink = (mtu: number): Map<string, ObservedLink> =>
      new Map([
        ['eth1', { name: 'eth1', kind: 'unknown', identity: 'unknown', up: true, mtu, addresses: [], peers: [] }],
      ]);

    test('VXLAN = uplink − 50, VLAN = the uplink; bridge, uplink and ports all get it', () => {
      const mtus = segmentMtus({ networks: [globexNet, { network: vlanNet, ports: [] }, acmeNet] }, withUplink(1400));
      expect([...mtus]).toEqual([
        ['globex', 1350],
        ['ops', 1400],
      ]);
      const links = desiredLinks(state, mtus);
      const globexLinks = links.filter(
        (l) => l.name === globex.bridge || l.kind === 'vxlan' || l.name === tapName('db', 0),
      );
      expect(globexLinks.map((l) => l.mtu)).toEqual([1350, 1350, 1350]);
      expect(links.find((l) => l.name === acme.bridge)!.mtu).toBeUndefined(); // no segment: left alone
    });

    test('an uplink too small for the segment, or missing, is refused naming it, its MTU and the need', () => {
      expect(() => segmentMtus(state, withUplink(1320))).toThrow(
        new HostUnsupportedError(
          'uplink-mtu',
          "uplink eth1 has MTU 1320; tenant globex's VXLAN segment needs at least 1330 (1280 for the guests + 50 for VXLAN over IPv4)",
        ),
      );
      expect(() => segmentMtus(state, new Map())).toThrow(
        /uplink eth1 of tenant globex's VXLAN segment does not exist on this host/,
      );
      expect(segmentMtus(state, withUplink(1330)).get('globex')).toBe(1280);
    });

    test('a changed uplink MTU is a change of bridge, uplink, port and dnsmasq', () => {
      const before = desiredLinks(state, segmentMtus(state, withUplink(1500)));
      const after = desiredLinks(state, segmentMtus(state, withUplink(1400)));
      const plan = planLinks(after, observedFrom(before));
      expect(plan.ip.filter((l) => l.endsWith(' mtu 1350'))).toHaveLength(3);
      expect(plan.creates).toEqual([]);
    });
  });

  test('typed changes: a missing port is created for its tenant; a detached bridge port is reconfigured', () => {
    const desired = desiredLinks(state);
    const observed = observedFrom(desired);
    observed.delete(tapName('web', 0));
    observed.set(tapName('db', 0), { ...observed.get(tapName('db', 0))!, master: undefined, up: false });
    expect(planLinks(desired, observed).changes).toEqual([
      { kind: 'link', action: 'create', device: tapName('web', 0), linkKind: 'tap', tenant: 'acme' },
      {
        kind: 'link',
        action: 'configure',
        device: tapName('db', 0),
        linkKind: 'tap',
        tenant: 'globex',
        settings: ['master', 'up'],
      },
    ]);
  });

  test('batch lines refuse tokens that could split or comment a line', () => {
    expect(() => batchLine(['link', 'add', 'a b'])).toThrow(/unsafe/);
    expect(() => batchLine(['link', 'add', 'x\nlink del eth0'])).toThrow(/unsafe/);
    expect(() => batchLine(['addr', '#'])).toThrow(/unsafe/);
    expect(batchLine(['link', 'set', 'dev', 'vwb-1', 'up'])).toBe('link set dev vwb-1 up');
  });
});

describe('dnsmasq configuration', () => {
  const paths = dnsmasqPaths('/var/lib/virtwire', 'acme');

  test('a NAT network: bound to its bridge, its range, router and DNS on the gateway', () => {
    const conf = renderDnsmasqConfig(acme, paths);
    expect(conf.split('\n')).toEqual(
      expect.arrayContaining([
        `interface=${acme.bridge}`,
        'except-interface=lo',
        'bind-dynamic',
        'no-resolv',
        'domain=acme.virtwire',
        'dhcp-range=10.10.0.2,10.10.0.254,255.255.255.0,1h',
        // one lease per MAC: a client id cannot draw a second address from the range
        'dhcp-ignore-clid',
        'dhcp-option=option:router,10.10.0.1',
        'dhcp-option=option:dns-server,10.10.0.1',
        'dhcp-hostsfile=/var/lib/virtwire/dnsmasq/acme/hosts',
        'dhcp-leasefile=/var/lib/virtwire/dnsmasq/acme/leases',
        'pid-file=/var/lib/virtwire/dnsmasq/acme/dnsmasq.pid',
      ]),
    );
    expect(conf).not.toContain('option:mtu');
    expect(conf).not.toMatch(/\{\{/);
  });

  test('an unrouted VXLAN network: no default route, the segment MTU it is given', () => {
    const conf = renderDnsmasqConfig(globex, dnsmasqPaths('/var/lib/virtwire', 'globex'), { mtu: 1350 });
    expect(conf).not.toContain('option:router');
    expect(conf).toContain('dhcp-option=option:mtu,1350');
  });

  test('DNS upstream: one server= line each; the host resolvers for NAT, none without; [] keeps it internal', async () => {
    const { hostResolvers, upstreamOf } = await import('../../lib/host/dnsmasq.js');
    const conf = renderDnsmasqConfig(acme, paths, { upstream: ['10.255.255.53', '2001:db8::53'] });
    expect(conf).toContain('no-resolv\nserver=10.255.255.53\nserver=2001:db8::53\n');
    expect(renderDnsmasqConfig(acme, paths)).not.toContain('server=');
    const files = (resolv: string, resolved?: string) =>
      ({
        read: async (f: string) =>
          f === '/etc/resolv.conf' ? resolv : f === '/run/systemd/resolve/resolv.conf' ? resolved : undefined,
      }) as never;
    expect(await hostResolvers(files('search x\nnameserver 10.255.255.53\n'))).toEqual(['10.255.255.53']);
    // systemd-resolved's stub: its own upstream servers instead
    expect(
      await hostResolvers(
        files('nameserver 127.0.0.53\noptions edns0\n', 'nameserver 192.0.2.53\nnameserver 192.0.2.54\n'),
      ),
    ).toEqual(['192.0.2.53', '192.0.2.54']);
    expect(upstreamOf(acme, ['192.0.2.53'])).toEqual(['192.0.2.53']); // NAT: the host's
    expect(upstreamOf(globex, ['192.0.2.53'])).toEqual([]); // no NAT: none
    const internal = validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24', dns: { upstream: [] } });
    expect(upstreamOf(internal, ['192.0.2.53'])).toEqual([]);
    expect(() =>
      validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24', dns: { upstream: ['8.8.8.8', 'resolver.example'] } }),
    ).toThrow(/dns\.upstream\[1\]: "resolver\.example" is not an IPv4 or IPv6 address/);
  });

  test('paths that could inject a config line are refused', () => {
    expect(() => renderDnsmasqConfig(acme, { ...paths, leaseFile: '/tmp/x\ndhcp-script=/bin/sh' })).toThrow(SpecError);
    expect(() => renderTemplate('dnsmasq.conf', { bridge: 'x\ny' })).toThrow(/control characters/);
  });

  test('hostsfile: sorted mac,ip,name lines for ports with addresses', () => {
    const net: HostNetwork = {
      network: acme,
      ports: [
        { name: 'vwtb-000001', kind: 'tap', mac: '52:54:00:00:00:09', ip: '10.10.0.19' },
        { name: 'vwta-000002', kind: 'tap', mac: '52:54:00:00:00:01', ip: '10.10.0.11', hostname: 'web' },
        { name: 'vwtc-000003', kind: 'tap', mac: '52:54:00:00:00:05' },
      ],
    };
    expect(renderHostsFile(net)).toBe('52:54:00:00:00:01,10.10.0.11,web\n52:54:00:00:00:09,10.10.0.19\n');
  });

  test("leases of MACs that are no longer a port's are dropped (dnsmasq would keep their addresses from others)", () => {
    const leases = '1764100000 52:54:00:AA:00:01 10.10.0.2 old *\n1764100001 52:54:00:00:00:02 10.10.0.3 kept *\n';
    expect(withoutStaleLeases(leases, ['52:54:00:00:00:02', '52:54:00:00:00:03'])).toBe(
      '1764100001 52:54:00:00:00:02 10.10.0.3 kept *\n',
    );
    expect(withoutStaleLeases(leases, ['52:54:00:aa:00:01', '52:54:00:00:00:02'])).toBe(leases);
  });

  test('lease file parsing', () => {
    const leases = parseLeases(
      '1764100000 52:54:00:AA:00:01 10.10.0.11 web *\n\ngarbage\n1764100001 52:54:00:00:00:02 10.10.0.12 * 01:52:54:00:00:00:02\n',
    );
    expect(leases).toEqual([
      { expiry: 1764100000, mac: '52:54:00:aa:00:01', ip: '10.10.0.11', hostname: 'web' },
      { expiry: 1764100001, mac: '52:54:00:00:00:02', ip: '10.10.0.12' },
    ]);
  });
});

describe('firewall ruleset', () => {
  test('NAT, isolation, host access and anti-spoofing rules', () => {
    const { inet, bridge } = renderRuleset(state);
    const a = `"${acme.bridge}"`;
    expect(inet).toContain(`elements = { ${a}, "${globex.bridge}" }`);
    expect(inet).toContain(`ip saddr 10.10.0.0/24 ip daddr != 10.10.0.0/24 oifname != ${a} masquerade`);
    expect(inet).not.toContain('ip saddr 10.20.0.0/24 ip daddr != 10.20.0.0/24'); // globex is not NAT
    expect(inet).toContain(`iifname ${a} oifname @tenant_bridges drop`);
    // the host: replies, and on each tenant's own gateway DHCP, DNS, ping; nothing else
    expect(inet).toContain('iifname @tenant_bridges ct state established,related accept');
    expect(inet).toContain('iifname . ip daddr . meta l4proto . th dport @host_services accept');
    expect(inet).toContain('iifname . ip daddr @bridge_gws icmp type echo-request accept');
    expect(inet).toMatch(/iifname @tenant_bridges drop\n {2}\}$/);
    expect(inet).toContain(`${a} . 10.10.0.1 . udp . 53, ${a} . 10.10.0.1 . tcp . 53`);
    expect(inet).toContain(`${a} . 255.255.255.255 . udp . 67`);
    expect(inet).not.toContain(`${a} . 10.20.0.1`); // never another tenant's gateway
    const web = `"${tapName('web', 0)}"`;
    const db = `"${tapName('db', 0)}"`;
    expect(bridge).toContain(`elements = { ${web} . 52:54:00:00:00:01, ${db} . 52:54:00:00:00:02 }`);
    expect(bridge).toContain(`elements = { ${web} . 10.10.0.11, ${db} . 10.20.0.11 }`);
    expect(bridge).toContain('iifname @ports iifname . ether saddr != @port_macs drop');
    expect(bridge).toContain('iifname @ip_ports iifname . ip saddr != @port_ips drop');
    // DHCP and router guard: no DHCP server on a guest port, no ARP claiming its gateway
    expect(bridge).toContain('iifname @ports udp sport 67 drop');
    expect(bridge).toContain('iifname @ports udp dport 68 drop');
    expect(bridge).toContain(`elements = { ${web} . 10.10.0.1, ${db} . 10.20.0.1 }`);
    expect(bridge).toContain('iifname . arp saddr ip @port_gws drop');
    // globex's VXLAN uplink: DHCP and its gateway's ARP do not cross it, either way
    expect(bridge).toMatch(
      /set uplink_gws \{\n\s+type ifname \. ipv4_addr\n\s+elements = \{ "vwx\S+" \. 10\.20\.0\.1 \}/,
    );
    expect(bridge).toContain('iifname @uplinks udp dport { 67, 68 } drop');
    expect(bridge).toMatch(/chain postrouting \{[\s\S]*oifname \. arp saddr ip @uplink_gws drop/);
    // every port's packet rate is capped first (the default: one rule for every port at that rate)
    expect(bridge).toMatch(
      /chain prerouting \{\n.*\n\s+iifname @pps_100000 add @dyn_pps_100000 \{ iifname limit rate over 100000\/second burst 10000 packets \} drop\n/,
    );
    expect(bridge).toContain(`set pps_100000 {\n    type ifname\n    elements = { ${[db, web].sort().join(', ')} }`);
    // the rule count does not grow with the ports, the uplinks or the tenants: the rate cap, the
    // ports' 12-step ladder, and 3 guards each way on the uplinks
    expect(renderRuleset(state).rules.bridge).toBe(19);
    // a port's QoS that raises (or lowers) its rate: one more rule, for that rate's ports
    const raised = {
      networks: state.networks.map((n, i) =>
        i === 0 ? { ...n, ports: n.ports.map((p) => ({ ...p, qos: { packetsPerSecond: 250_000 } })) } : n,
      ),
    };
    expect(renderRuleset(raised).rules.bridge).toBe(20);
    expect(renderRuleset(raised).bridge).toContain('limit rate over 250000/second burst 25000 packets');
    // globex adds its 4 forward rules and its 3 out-of-bounds drops (link-local, overlay ports, its
    // VXLAN peer's underlay address); its peer's address is out of bounds for acme too (1), and the
    // host's VXLAN port takes that peer only (2)
    expect(renderRuleset({ networks: [acmeNet] }).rules.inet + 4 + 3 + 1 + 2).toBe(renderRuleset(state).rules.inet);
    expect(inet).toContain(`iifname "${acme.bridge}" ip daddr 169.254.0.0/16 drop`);
    expect(inet).toContain(`iifname "${acme.bridge}" udp dport { 4789, 8472, 6081 } drop`);
    expect(inet).toMatch(/chain input \{\n.*\n\s+udp dport 4789 ip saddr \S+ accept\n\s+udp dport 4789 drop\n/);
  });

  test("a network's hostServices open exactly those ports on its gateway", () => {
    const meta = validateNetwork({
      tenant: 'acme',
      cidr: '10.10.0.0/24',
      hostServices: [{ port: 8775, protocol: 'tcp' }],
    });
    const { inet } = renderRuleset({ networks: [{ ...acmeNet, network: meta }] });
    expect(inet).toContain(`"${acme.bridge}" . 10.10.0.1 . tcp . 8775`);
    const err = (() => {
      try {
        validateNetwork({
          tenant: 'acme',
          cidr: '10.10.0.0/24',
          hostServices: [
            { port: 0, protocol: 'sctp' },
            { port: 22, protocol: 'tcp' },
            { port: 22, protocol: 'tcp' },
          ],
        });
      } catch (e) {
        return e as SpecError;
      }
    })()!;
    expect(err.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'hostServices[0].port: 0 is out of range 1..65535',
      'hostServices[0].protocol: "sctp" is not tcp or udp',
      'hostServices[2]: tcp/22 is listed twice',
    ]);
  });

  test('no networks: no tables at all', () => {
    expect(renderRuleset({ networks: [] })).toEqual({
      inet: '',
      bridge: '',
      rules: { inet: 0, bridge: 0 },
      sets: { inet: {}, bridge: {} },
    });
  });
});

describe('HostPlane refuses before running anything', () => {
  test('bad state: every problem, no command run', async () => {
    const runner = new RecordingRunner();
    const plane = new HostPlane({ runner, capabilities: allCaps });
    const bad: HostState = {
      networks: [acmeNet, { ...acmeNet, ports: [{ ...acmeNet.ports[0]!, mac: 'nope', kind: 'veth' }] }],
    };
    const err = await plane.apply(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    expect((err as SpecError).problems.map((p) => p.path)).toEqual([
      'networks[1].network.tenant',
      'networks[1].network.bridge',
      'networks[1].ports[0].name',
      'networks[1].ports[0].peer',
      'networks[1].ports[0].mac',
    ]);
    expect(runner.calls).toEqual([]);
  });

  test('a VLAN segment on a kernel without 802.1Q: HostUnsupportedError, no command run', async () => {
    const runner = new RecordingRunner();
    const plane = new HostPlane({ runner, capabilities: { ...allCaps, vlan: false } });
    const vlan = validateNetwork({
      tenant: 'acme',
      cidr: '10.10.0.0/24',
      segment: { type: 'vlan', id: 10, uplink: 'eth0' },
    });
    const err = await plane.apply({ networks: [{ network: vlan, ports: [] }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostUnsupportedError);
    expect((err as Error).message).toBe(
      'kernel lacks 802.1Q (CONFIG_VLAN_8021Q); VLAN segment for tenant acme cannot be created',
    );
    expect(runner.calls).toEqual([]);
  });

  test('an uplink too small for its VXLAN segment: refused after observing, before any change', async () => {
    const links = JSON.stringify([{ ifname: 'eth1', mtu: 1320, flags: ['UP'], linkinfo: {} }]);
    const runner = new RecordingRunner([
      { match: (a) => a.join(' ') === 'ip -j -d addr show', stdout: links },
      { match: (a) => a[0] === 'nft', stdout: '', exitCode: 1 }, // no virtwire tables yet
    ]);
    const plane = new HostPlane({ runner, capabilities: allCaps });
    await expect(plane.apply(state)).rejects.toMatchObject({ code: 'HOST_UNSUPPORTED', feature: 'uplink-mtu' });
    await expect(plane.plan(state)).rejects.toMatchObject({ code: 'HOST_UNSUPPORTED', feature: 'uplink-mtu' });
    // observations only (ip -j, nft -j list, sysctl -n): nothing that changes the host
    const reads = (argv: readonly string[]) =>
      argv.includes('-j') || argv.includes('list') || argv[0] === 'ls' || (argv[0] === 'sysctl' && argv[1] === '-n');
    expect(runner.calls.every((c) => reads(c.argv))).toBe(true);
  });

  test('IPv6 ports on the iptables backend without br_netfilter: refused up front, naming it', async () => {
    const runner = new RecordingRunner();
    const plane = new HostPlane({ runner, capabilities: { ...allCaps, brNetfilter: false }, firewall: 'iptables' });
    const dual = validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24', cidr6: 'fd00:10::/64' });
    const port = { name: 'vwt-x-0', kind: 'tap' as const, mac: '52:54:00:00:00:01', ip: '10.10.0.11' };
    const err = await plane.apply({ networks: [{ network: dual, ports: [port] }] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'HOST_UNSUPPORTED', feature: 'brNetfilter' });
    expect((err as Error).message).toMatch(/br_netfilter.*the IPv6 port guard of tenant acme \(iptables backend\)/);
    expect(runner.calls).toEqual([]);
  });

  test('an egress limit without ifb/mirred: refused up front', async () => {
    const runner = new RecordingRunner();
    const plane = new HostPlane({ runner, capabilities: { ...allCaps, ifb: false } });
    await expect(plane.apply(state)).rejects.toMatchObject({ code: 'HOST_UNSUPPORTED', feature: 'ifb' });
    expect(runner.calls).toEqual([]);
  });

  test('two tenants with DHCP on one gateway address: refused, it cannot be served twice', () => {
    const twin = validateNetwork({ tenant: 'twin', cidr: '10.10.0.0/24' });
    expect(() => validateHostState({ networks: [acmeNet, { network: twin, ports: [] }] })).toThrow(
      /networks\[1\]\.dhcp: gateway 10\.10\.0\.1 is also tenant acme's/,
    );
    expect(() => validateHostState({ networks: [acmeNet, { network: twin, ports: [], dhcp: false }] })).not.toThrow();
  });

  test('validateHostState accepts a good state', () => {
    expect(() => validateHostState(state)).not.toThrow();
  });
});

describe('SSH runner', () => {
  test('every argv element reaches the remote shell as one word, uninterpreted', async () => {
    const { shellQuote } = await import('../../lib/host/ssh-runner.js');
    expect(shellQuote('eth1.100')).toBe('eth1.100');
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    expect(shellQuote('$(reboot); rm -rf /')).toBe(`'$(reboot); rm -rf /'`);
    expect(shellQuote('')).toBe(`''`);
    expect(shellQuote('*')).toBe(`'*'`);
    expect(shellQuote('a\nb')).toBe(`'a\nb'`);
  });
});

describe('batch failures name their line', () => {
  test('ip/tc/bridge "Command failed -:N" and nft "/dev/stdin:N:" map to the input line and its device', async () => {
    const { failedBatchLine } = await import('../../lib/host/command-runner.js');
    const input =
      'link add vwxacme-1a2b3c type vxlan id 5 dstport 4789 dev eth0\nlink set dev vwxacme-1a2b3c mtu 1450\n';
    expect(failedBatchLine('RTNETLINK answers: Invalid argument\nCommand failed -:2\n', input)).toEqual({
      number: 2,
      text: 'link set dev vwxacme-1a2b3c mtu 1450',
      device: 'vwxacme-1a2b3c',
    });
    expect(failedBatchLine('Command failed -:1', input)).toMatchObject({ device: 'vwxacme-1a2b3c' });
    expect(
      failedBatchLine(
        '/dev/stdin:3:3-5: Error: No symbol type information\n  foo bar\n',
        'table inet x {\n chain c {\n  foo bar\n }\n}\n',
      ),
    ).toEqual({ number: 3, text: 'foo bar' });
    expect(failedBatchLine('Command failed -:9', input)).toBeUndefined();
    expect(failedBatchLine('Command failed -:1', undefined)).toBeUndefined();
  });

  test('the error message carries the line', async () => {
    const { HostCommandError } = await import('../../lib/errors/index.js');
    const e = new HostCommandError({
      argv: ['ip', '-batch', '-'],
      exitCode: 1,
      stderr: 'RTNETLINK answers: Invalid argument\nCommand failed -:2',
      step: 'links: apply',
      line: { number: 2, text: 'link set dev vwx-1 mtu 1450', device: 'vwx-1' },
    });
    expect(e.message).toBe(
      'links: apply: ip -batch - exited 1 at input line 2 "link set dev vwx-1 mtu 1450" (device vwx-1): RTNETLINK answers: Invalid argument\nCommand failed -:2',
    );
  });
});

describe('KVM: one rule for every host, through its runner and files', () => {
  const files = (cpu: string, conf?: string, kvm = true) =>
    ({
      read: async (p: string) =>
        p === '/proc/cpuinfo'
          ? `processor\t: 0\nflags\t\t: ${cpu}\n`
          : p === '/etc/libvirt/qemu.conf'
            ? conf
            : undefined,
      exists: async (p: string) => p === '/dev/kvm' && kvm,
    }) as unknown as import('../../lib/host/index.js').HostFiles;

  test('a PVM /dev/kvm without vmx/svm is not usable, whatever its mode or what libvirt claims', async () => {
    const { kvmVerdict } = await import('../../lib/host/index.js');
    const runner = new RecordingRunner();
    expect(await kvmVerdict(runner, files('fpu sse2 hypervisor'))).toEqual({
      usable: false,
      reason: 'the CPU has no vmx/svm flag',
    });
    expect(runner.calls).toEqual([]);
  });

  test('with vmx: usable when the QEMU user (qemu.conf, else libvirt-qemu) can open /dev/kvm', async () => {
    const { kvmVerdict } = await import('../../lib/host/index.js');
    const yes = new RecordingRunner();
    expect(await kvmVerdict(yes, files('fpu vmx sse2'))).toEqual({ usable: true });
    expect(yes.calls).toEqual([
      { argv: ['runuser', '-u', 'libvirt-qemu', '--', 'test', '-r', '/dev/kvm', '-a', '-w', '/dev/kvm'] },
    ]);
    const no = new RecordingRunner([{ match: () => true, stdout: '', exitCode: 1 }]);
    expect(await kvmVerdict(no, files('svm', '# comment\nuser = "qemu"\n'))).toEqual({
      usable: false,
      reason: '/dev/kvm cannot be opened by the QEMU user qemu',
    });
    expect(no.calls[0]!.argv.slice(0, 3)).toEqual(['runuser', '-u', 'qemu']);
    const root = new RecordingRunner();
    await kvmVerdict(root, files('vmx', 'user = "root"'));
    expect(root.calls[0]!.argv[0]).toBe('test');
    expect(await kvmVerdict(new RecordingRunner(), files('vmx', undefined, false))).toEqual({
      usable: false,
      reason: '/dev/kvm does not exist',
    });
  });
});

describe('SSH control directory', () => {
  test("refused unless it is the caller's own directory, mode 0700, not a symlink", async () => {
    const { checkControlDir } = await import('../../lib/host/ssh-runner.js');
    const { mkdtempSync, mkdirSync, chmodSync, symlinkSync, rmSync, chownSync, statSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'vwctl-'));
    try {
      const ok = join(dir, 'ok');
      checkControlDir(ok); // made 0700
      expect((statSync(ok).mode & 0o777).toString(8)).toBe('700');
      const loose = join(dir, 'loose');
      mkdirSync(loose);
      chmodSync(loose, 0o755);
      expect(() => checkControlDir(loose)).toThrow(/has mode 755, not 700: refusing to use it/);
      const link = join(dir, 'link');
      symlinkSync(ok, link);
      expect(() => checkControlDir(link)).toThrow(/is a symbolic link/);
      if (process.getuid?.() === 0) {
        const theirs = join(dir, 'theirs');
        mkdirSync(theirs, { mode: 0o700 });
        chownSync(theirs, 65534, 65534);
        expect(() => checkControlDir(theirs)).toThrow(/is owned by uid 65534, not 0/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a tenant namespace's inside", () => {
  const net = {
    ...validateNetwork({ tenant: 'globex', cidr: '10.10.0.0/24' }),
    namespace: { transit: '100.64.0.4/30' },
  };
  const [ns] = namespacesOf({ networks: [{ network: net, ports: [] }] });
  const link = (name: string, addresses: string[], mtu = 1500) => ({
    name,
    kind: 'veth',
    identity: 'veth',
    up: true,
    mtu,
    addresses,
    peers: [],
  });

  test('fresh: loopback, both veth ends with their addresses, the route to the host, forwarding', () => {
    const fresh = planInside(ns!, { links: new Map(), route: undefined, forwarding: false }, 1450);
    expect(fresh).toEqual({
      ip: [
        'link set dev lo up',
        'link set dev vw-gw mtu 1450 up',
        'addr add 10.10.0.1/24 dev vw-gw',
        'link set dev vw-transit up',
        'addr add 100.64.0.6/30 dev vw-transit',
        'route replace default via 100.64.0.5 dev vw-transit',
      ],
      forwarding: true,
    });
  });

  test('as desired: nothing; a foreign address on the gateway end is removed', () => {
    const links = new Map([
      ['lo', { ...link('lo', []), kind: 'unknown' }],
      ['vw-gw', link('vw-gw', ['10.10.0.1/24'], 1450)],
      ['vw-transit', link('vw-transit', ['100.64.0.6/30'])],
    ]);
    const seen = { links, route: '100.64.0.5', forwarding: true };
    expect(planInside(ns!, seen, 1450)).toEqual({ ip: [], forwarding: false });
    links.set('vw-gw', link('vw-gw', ['10.10.0.1/24', '10.10.0.99/24'], 1450));
    expect(planInside(ns!, seen, 1450).ip).toEqual(['addr del 10.10.0.99/24 dev vw-gw']);
  });
});
