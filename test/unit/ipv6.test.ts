// IPv6 beside IPv4 (issue: dual-stack tenants), everything that needs no host: address text,
// network and NIC validation (every problem with its path), allocation, the dnsmasq files, the
// host-state checks. The firewall's rules are pinned by test/golden/firewall/dual-stack.nft; the
// kernel's part runs in test/integration/ipv6-plane.test.ts.
import {
  formatIpv6,
  linkLocalOf,
  parseIpv6,
  slaacOf,
  solicitedNodeOf,
  validateNetwork,
  validateSecurityGroup,
  validateVm,
} from '../../lib/spec/index.js';
import { allocate } from '../../lib/engine/allocate.js';
import { specOf } from '../../lib/engine/spec-of.js';
import { parseSpecText } from '../../lib/engine/spec-file.js';
import { dnsmasqPaths, renderDnsmasqConfig, renderHostsFile } from '../../lib/host/index.js';
import { renderNamesFile } from '../../lib/host/dnsmasq.js';
import { validateHostState } from '../../lib/host/validate-host-state.js';
import type { VmRecord } from '../../lib/engine/state/store.js';
import { problems } from '../helpers/problems.js';

const acme = { tenant: 'acme', cidr: '10.10.0.0/24', cidr6: 'fd00:10::/64' };
const vm = (name: string, nics: object[]) => validateVm({ name, boot: { kernel: '/boot/k' }, nics });
const record = (v: ReturnType<typeof validateVm>): VmRecord => ({ vm: v, accel: 'tcg', createdAt: 'now' });

describe('IPv6 address text', () => {
  test.each([
    ['FD00:0010:0000:0000:0000:0000:0000:0001', 'fd00:10::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // the first of two equal runs
    ['2001:db8:20:0:5054:ff:fe00:3', '2001:db8:20:0:5054:ff:fe00:3'], // one zero group stays
    ['::', '::'],
    ['::ffff:10.0.0.1', '::ffff:a00:1'],
  ])('%s is %s (RFC 5952)', (text, canonical) => expect(formatIpv6(parseIpv6(text)!)).toBe(canonical));

  test('not addresses', () => {
    for (const t of ['fd00::1::2', 'fe80::1%eth0', 'g::1', '1:2:3:4:5:6:7:8:9', ''])
      expect(parseIpv6(t)).toBeUndefined();
  });

  test("a MAC's EUI-64 address and its link-local one", () => {
    expect(slaacOf('52:54:00:12:34:56', 'fd00:10::')).toBe('fd00:10::5054:ff:fe12:3456');
    expect(linkLocalOf('52:54:00:12:34:56')).toBe('fe80::5054:ff:fe12:3456');
  });

  test("an address's solicited-node group: ff02::1:ff and its last 24 bits (RFC 4291)", () => {
    expect(solicitedNodeOf('fd00:10::1')).toBe('ff02::1:ff00:1');
    expect(solicitedNodeOf('2001:db8::5054:ff:fe12:3456')).toBe('ff02::1:ff12:3456');
  });
});

describe('networks with cidr6', () => {
  test('resolved: canonical /64, gateway6 ::1, NAT66 by default; routed with nat6: false; none without NAT', () => {
    expect(validateNetwork({ ...acme, cidr6: 'FD00:10:0::/64' }).ipv6).toEqual({
      cidr: 'fd00:10::/64',
      network: 'fd00:10::',
      gateway: 'fd00:10::1',
      outbound: 'nat',
    });
    expect(validateNetwork({ ...acme, nat6: false, gateway6: 'fd00:10::fe' }).ipv6).toMatchObject({
      gateway: 'fd00:10::fe',
      outbound: 'routed',
    });
    expect(validateNetwork({ ...acme, nat: false }).ipv6!.outbound).toBe('none');
    expect(validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24' }).ipv6).toBeUndefined();
  });

  test('every problem named with its path', () => {
    expect(problems(() => validateNetwork({ ...acme, cidr6: 'fd00:10::/48' }))).toEqual({
      cidr6: expect.stringMatching(/prefix \/48 is not \/64/),
    });
    expect(problems(() => validateNetwork({ ...acme, cidr6: 'fd00:10::1/64' }))).toEqual({
      cidr6: expect.stringMatching(/host bits set; did you mean fd00:10::\/64\?/),
    });
    expect(problems(() => validateNetwork({ ...acme, cidr6: 'fe80::/64' }))).toEqual({
      cidr6: expect.stringMatching(/link-local prefix; a tenant subnet is ULA/),
    });
    expect(problems(() => validateNetwork({ ...acme, cidr6: '10.0.0.0/8' }))).toEqual({
      cidr6: expect.stringMatching(/is not an IPv6 CIDR/),
    });
    expect(
      problems(() =>
        validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24', nat: false, gateway6: 'fd00::1', nat6: 1 }),
      ),
    ).toEqual({ gateway6: 'needs cidr6', nat6: 'needs cidr6' });
    expect(problems(() => validateNetwork({ ...acme, gateway6: 'fd00:11::1', nat: false, nat6: true }))).toEqual({
      gateway6: 'gateway6 fd00:11::1 is outside fd00:10::/64',
      nat6: expect.stringMatching(/applies to a NAT network only/),
    });
  });
});

describe('NICs on networks with cidr6', () => {
  test('SLAAC by default (the MAC in EUI-64), a pinned ip6 canonical and marked', () => {
    const v = vm('web', [
      { network: acme, mac: '52:54:00:00:00:01' },
      { network: acme, ip6: 'FD00:10::0:12' },
    ]);
    expect(v.nics[0]).toMatchObject({ ip6: 'fd00:10::5054:ff:fe00:1' });
    expect(v.nics[0]!.ip6Pinned).toBeUndefined();
    expect(v.nics[1]).toMatchObject({ ip6: 'fd00:10::12', ip6Pinned: true });
    expect(vm('old', [{ network: { tenant: 'old', cidr: '10.9.0.0/24' } }]).nics[0]!.ip6).toBeUndefined();
  });

  test('a resolved VM written back as a spec (what apply and update create from) keeps its IPv6', () => {
    for (const net of [acme, { ...acme, nat6: false }, { ...acme, nat: false }]) {
      const v = vm('web', [{ network: net }, { network: net, ip6: 'fd00:10::12' }]);
      expect(validateVm(specOf(v))).toEqual(v);
    }
  });

  test('bad ip6s: each problem at its NIC', () => {
    expect(
      problems(() =>
        vm('web', [
          { network: acme, ip6: 'fd00:11::5' },
          { network: acme, ip6: 'fd00:10::1' },
          { network: acme, ip6: 'nope' },
          { network: { tenant: 'old', cidr: '10.9.0.0/24' }, ip6: 'fd00:9::5' },
          { network: acme, ip6: 'fd00:10::5' },
          { network: acme, ip6: 'fd00:10:0::5' },
        ]),
      ),
    ).toEqual({
      'nics[0].ip6': 'fd00:11::5 is outside fd00:10::/64',
      'nics[1].ip6': 'fd00:10::1 is the gateway of fd00:10::/64',
      'nics[2].ip6': '"nope" is not an IPv6 address',
      'nics[3].ip6': 'the network of tenant old has no cidr6',
      'nics[5].ip6': 'fd00:10:0::5 is already used by nics[4]',
    });
  });

  test('allocation: a pinned ip6 another VM holds (its pinned or its SLAAC one) is refused', () => {
    const a = allocate(vm('a', [{ network: acme, mac: '52:54:00:00:00:01', ip6: 'fd00:10::5' }]), []);
    expect(() => allocate(vm('b', [{ network: acme, ip6: 'fd00:10::5' }]), [record(a)])).toThrow(
      /nics\[0\]\.ip6: fd00:10::5 is already used on tenant acme/,
    );
    const c = allocate(vm('c', [{ network: acme, mac: '52:54:00:00:00:03' }]), [record(a)]);
    expect(() => allocate(vm('d', [{ network: acme, ip6: c.nics[0]!.ip6 }]), [record(a), record(c)])).toThrow(
      /is already used on tenant acme/,
    );
  });

  test('a tenant that needs a namespace of its own (its IPv4 overlaps) has IPv6 NAT66 only; one /64 per tenant', () => {
    const a = allocate(vm('a', [{ network: { tenant: 'one', cidr: '10.10.0.0/24' } }]), []);
    expect(() => allocate(vm('b', [{ network: { ...acme, tenant: 'two', nat6: false } }]), [record(a)])).toThrow(
      /nics\[0\]\.network\.nat6: tenant two has a namespace of its own on this host .* can only leave NAT66'd/,
    );
    const b = allocate(vm('b', [{ network: { ...acme, tenant: 'two' } }]), [record(a)]);
    expect(b.nics[0]!.network).toMatchObject({ namespace: { transit: '100.64.0.0/30' }, ipv6: { outbound: 'nat' } });
    expect(problems(() => validateNetwork({ ...acme, cidr6: 'fd00:7677:1::/64' }))).toEqual({
      cidr6: expect.stringMatching(/keeps for namespaced tenants' transits/),
    });
    const c = allocate(vm('c', [{ network: acme }]), []);
    expect(() =>
      allocate(vm('d', [{ network: { tenant: 'other', cidr: '10.20.0.0/24', cidr6: 'fd00:10::/64' } }]), [record(c)]),
    ).toThrow(/fd00:10::\/64 of tenant other is also tenant acme's on this host/);
    expect(() =>
      parseSpecText(
        [
          'networks:',
          '  - { tenant: a, cidr: 10.1.0.0/24, cidr6: "fd00:1::/64" }',
          '  - { tenant: b, cidr: 10.2.0.0/24, cidr6: "fd00:1::/64" }',
          'vms: []',
        ].join('\n'),
      ),
    ).toThrow(/networks\[1\]\.cidr6: fd00:1::\/64 is also tenant a's: one \/64 is one link/);
  });
});

describe('security-group rules for IPv6', () => {
  test('an IPv6 CIDR peer, canonical; host bits and an ethertype against its family are problems at their paths', () => {
    const rule = (peer: object, ethertype?: string) => ({
      direction: 'ingress',
      protocol: 'tcp',
      peer,
      ...(ethertype ? { ethertype } : {}),
    });
    expect(
      validateSecurityGroup({ name: 'web', tenant: 'acme', rules: [rule({ cidr: 'FD00:10:0::/64' }, 'ipv6')] })
        .rules[0],
    ).toMatchObject({ peer: { cidr: 'fd00:10::/64' }, ethertype: 'ipv6' });
    expect(
      problems(() =>
        validateSecurityGroup({
          name: 'web',
          tenant: 'acme',
          rules: [rule({ cidr: 'fd00:10::1/64' }), rule({ cidr: 'fd00:11::/64' }, 'ipv4'), rule({ any: true }, 'ipx')],
        }),
      ),
    ).toEqual({
      'rules[0].peer.cidr': 'fd00:10::1/64 has host bits set; did you mean fd00:10::/64?',
      'rules[1].ethertype': 'ipv4, but the peer fd00:11::/64 is ipv6',
      'rules[2].ethertype': '"ipx" is not ipv4 or ipv6',
    });
  });
});

describe('dnsmasq for a network with cidr6', () => {
  const net = validateNetwork(acme);
  const paths = dnsmasqPaths('/var/lib/virtwire', 'acme');
  const ports = [
    {
      name: 'vwt-a',
      kind: 'tap' as const,
      mac: '52:54:00:00:00:01',
      ip: '10.10.0.11',
      ip6: 'fd00:10::5054:ff:fe00:1',
      hostname: 'web',
    },
    {
      name: 'vwt-b',
      kind: 'tap' as const,
      mac: '52:54:00:00:00:02',
      ip: '10.10.0.12',
      ip6: 'fd00:10::12',
      ip6Pinned: true as const,
      hostname: 'db',
    },
  ];

  test('router advertisements, DHCPv6 for the pinned, no DNS server over IPv6, names from addn-hosts', () => {
    const conf = renderDnsmasqConfig(net, paths, { mtu: 1450 }).split('\n');
    expect(conf).toEqual(
      expect.arrayContaining([
        'enable-ra',
        `ra-param=${net.bridge},mtu:1450,30,1800`,
        'dhcp-range=fd00:10::,static,slaac,64,1h',
        'dhcp-option=option6:dns-server',
        'addn-hosts=/var/lib/virtwire/dnsmasq/acme/names',
      ]),
    );
    // nothing leaves a network without NAT: no default route (router lifetime 0)
    expect(renderDnsmasqConfig(validateNetwork({ ...acme, nat: false }), paths)).toContain(
      `ra-param=${net.bridge},30,0`,
    );
    // and an IPv4-only network has none of it
    const v4 = renderDnsmasqConfig(validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24' }), paths);
    expect(v4).not.toMatch(/enable-ra|ra-param|option6|addn-hosts|dhcp-range=fd/);
    const hostNet = { network: net, ports };
    expect(renderHostsFile(hostNet)).toBe(
      '52:54:00:00:00:01,10.10.0.11,web\n52:54:00:00:00:02,10.10.0.12,[fd00:10::12],db\n',
    );
    expect(renderNamesFile(hostNet)).toBe('fd00:10::12 db\nfd00:10::5054:ff:fe00:1 web\n');
  });

  test('a host state: a port ip6 canonical, in its network cidr6, its own', () => {
    const bad = [
      { ...ports[0]!, ip6: 'FD00:10::7' },
      { ...ports[1]!, ip6: 'fd00:11::7' },
      { ...ports[0]!, name: 'vwt-c', mac: '52:54:00:00:00:03', ip: '10.10.0.13', ip6: 'fd00:10::1' },
    ];
    expect(problems(() => validateHostState({ networks: [{ network: net, ports: bad }] }))).toEqual({
      'networks[0].ports[0].ip6': '"FD00:10::7" is not an IPv6 address in canonical form (RFC 5952)',
      'networks[0].ports[1].ip6': 'fd00:11::7 is not a guest address of fd00:10::/64',
      'networks[0].ports[2].ip6': 'fd00:10::1 is not a guest address of fd00:10::/64',
    });
    const v4 = validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24' });
    expect(problems(() => validateHostState({ networks: [{ network: v4, ports: [ports[0]!] }] }))).toEqual({
      'networks[0].ports[0].ip6': 'the network of tenant acme has no IPv6',
    });
  });
});
