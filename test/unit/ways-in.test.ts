// Ways in from outside a tenant (port forwards, floating IPs): their validation in a VM spec,
// their conflicts between VMs, the host's listening sockets, and the rules each backend renders.
import { validateVm } from '../../lib/spec/index.js';
import { allocate } from '../../lib/engine/allocate.js';
import { SpecError } from '../../lib/errors/index.js';
import { parseSs } from '../../lib/host/ways-in.js';
import { renderRuleset } from '../../lib/host/firewall/nft.js';
import { desiredTables } from '../../lib/host/firewall/iptables.js';
import { validateNetwork } from '../../lib/spec/index.js';
import type { VmRecord } from '../../lib/engine/state/store.js';
import type { HostState } from '../../types/host.js';

const net = { tenant: 'acme', cidr: '10.10.0.0/24' };
const vm = (name: string, nic: Record<string, unknown>) => ({
  name,
  boot: { kernel: '/boot/vmlinuz' },
  nics: [{ network: net, ...nic }],
});

function problems(fn: () => unknown): Record<string, string> {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return Object.fromEntries((e as SpecError).problems.map((p) => [p.path, p.message]));
  }
  throw new Error('expected a SpecError');
}

describe('forwards and floating IPs in a VM spec', () => {
  test('a forward resolves with its protocol; a floating IP as given', () => {
    const r = validateVm(vm('web', { forwards: [{ hostPort: 8080, port: 80 }], floatingIp: '192.0.2.50' }));
    expect(r.nics[0]!.forwards).toEqual([{ hostPort: 8080, port: 80, protocol: 'tcp' }]);
    expect(r.nics[0]!.floatingIp).toBe('192.0.2.50');
  });

  test('every problem is named with its path', () => {
    const p = problems(() =>
      validateVm({
        name: 'web',
        boot: { kernel: '/boot/vmlinuz' },
        nics: [
          {
            network: net,
            forwards: [
              { hostPort: 0, port: 80 },
              { hostPort: 8080, port: 70000, protocol: 'sctp' },
              { hostPort: 8081, port: 80, address: '127.0.0.1' },
              { hostPort: 8082, port: 80, extra: 1 },
              { hostPort: 9000, port: 90 },
              { hostPort: 9000, port: 91, address: '192.0.2.10' },
            ],
            floatingIp: '10.10.0.99',
          },
          { network: { tenant: 'globex', cidr: '10.20.0.0/24', nat: false }, forwards: [{ hostPort: 22, port: 22 }] },
          { network: { tenant: 'initech', cidr: '10.30.0.0/24' }, floatingIp: '224.0.0.1' },
        ],
      }),
    );
    expect(p).toEqual({
      'nics[0].forwards[0].hostPort': expect.stringMatching(/1 to 65535|out of range/),
      'nics[0].forwards[1].port': expect.stringMatching(/out of range 1\.\.65535/),
      'nics[0].forwards[1].protocol': "must be 'tcp' or 'udp'",
      'nics[0].forwards[2].address': '127.0.0.1 is not an address other hosts can send to',
      'nics[0].forwards[3].extra': expect.stringMatching(/unknown field/),
      'nics[0].forwards[5]': '192.0.2.10:9000/tcp is already forwarded by nics[0].forwards[4]',
      'nics[0].floatingIp': "10.10.0.99 is inside the NIC's own subnet 10.10.0.0/24",
      'nics[1].forwards': "tenant globex's network is not NAT'd: nothing outside it can be forwarded in",
      'nics[2].floatingIp': '224.0.0.1 is multicast or reserved',
    });
  });

  test('two VMs on one host cannot take one host port or one floating IP; on another host they may', () => {
    const records: VmRecord[] = [];
    const put = (spec: unknown, host?: string) => {
      const v = allocate(validateVm(spec), records, {}, host);
      records.push({ vm: v, accel: 'tcg', createdAt: 'now', ...(host ? { host } : {}) });
    };
    put(vm('a', { forwards: [{ hostPort: 8080, port: 80 }], floatingIp: '192.0.2.50' }));
    const p = problems(() =>
      put(
        vm('b', {
          forwards: [
            { hostPort: 8080, port: 8080, address: '192.0.2.10' },
            { hostPort: 8080, port: 80, protocol: 'udp' },
          ],
          floatingIp: '192.0.2.50',
        }),
      ),
    );
    expect(p).toEqual({
      'nics[0].forwards[0]': '192.0.2.10:8080/tcp on this host is already forwarded by VM a nics[0].forwards[0]',
      'nics[0].floatingIp': '192.0.2.50 is already the floating IP of VM a nics[0]',
    });
    // the same port on another host is that host's
    expect(() => put(vm('c', { forwards: [{ hostPort: 8080, port: 80 }] }), 'lab2')).not.toThrow();
    // a tenant that gets a namespace of its own (its subnet overlaps acme's here) has no floating IPs yet
    const overlapping = {
      name: 'd',
      boot: { kernel: '/boot/vmlinuz' },
      nics: [{ network: { tenant: 'globex', cidr: '10.10.0.0/24' }, floatingIp: '192.0.2.60' }],
    };
    expect(problems(() => put(overlapping))).toEqual({
      'nics[0].floatingIp': expect.stringMatching(/not supported yet for tenant globex, which has a network namespace/),
    });
  });
});

describe('the host side', () => {
  test("ss's listening sockets: protocol, address ('*' for all), port", () => {
    const text = [
      'udp   UNCONN 0      0          10.10.0.1:53        0.0.0.0:*',
      'tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*',
      'tcp   LISTEN 0      4096       127.0.0.1:631       0.0.0.0:*',
      'tcp   LISTEN 0      5      10.0.0.1%eth1:8080      0.0.0.0:*',
      'tcp   LISTEN 0      1                  *:9999            *:*',
      'tcp   LISTEN 0      128             [::]:2222         [::]:*',
      'tcp   LISTEN 0      128    [::ffff:10.0.0.2]:8443         [::]:*',
      'tcp   LISTEN 0      128            [::1]:25           [::]:*',
    ].join('\n');
    expect(parseSs(text)).toEqual([
      { protocol: 'udp', address: '10.10.0.1', port: 53 },
      { protocol: 'tcp', address: '*', port: 22 },
      { protocol: 'tcp', address: '127.0.0.1', port: 631 },
      { protocol: 'tcp', address: '10.0.0.1', port: 8080 },
      // IPv6's every address (dual-stack) is IPv4's too; an IPv6-only address takes nothing forwarded
      { protocol: 'tcp', address: '*', port: 9999 },
      { protocol: 'tcp', address: '*', port: 2222 },
      { protocol: 'tcp', address: '10.0.0.2', port: 8443 },
    ]);
  });

  const acme = validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24' });
  const globex = validateNetwork({ tenant: 'globex', cidr: '10.20.0.0/24' });
  const state: HostState = {
    networks: [
      {
        network: acme,
        ports: [
          {
            name: 'vwt-web-0',
            kind: 'tap',
            mac: '52:54:00:00:00:01',
            ip: '10.10.0.11',
            forwards: [{ hostPort: 8080, port: 80, protocol: 'tcp' }],
            floatingIp: '192.0.2.50',
          },
        ],
      },
      { network: globex, ports: [{ name: 'vwt-db-0', kind: 'tap', mac: '52:54:00:00:00:02', ip: '10.20.0.11' }] },
    ],
  };

  test("nft: the tenant's own guests first (hairpin), no other tenant, then everyone; the guest leaves from its floating IP", () => {
    const { inet } = renderRuleset(state);
    const pre = /chain prerouting \{\n[^\n]*\n([\s\S]*?)\n {2}\}/
      .exec(inet)![1]!
      .split('\n')
      .map((l) => l.trim());
    expect(pre).toEqual([
      `iifname "${acme.bridge}" ip daddr 10.10.0.1 return`,
      `iifname "${acme.bridge}" fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto tcp th dport 8080 dnat ip to 10.10.0.11:80`,
      `iifname "${acme.bridge}" ip daddr 192.0.2.50 dnat ip to 10.10.0.11`,
      'iifname @tenant_bridges return',
      'fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto tcp th dport 8080 dnat ip to 10.10.0.11:80',
      'ip daddr 192.0.2.50 dnat ip to 10.10.0.11',
    ]);
    expect(inet).toContain(`oifname "${acme.bridge}" ip daddr 10.10.0.0/24 ct status dnat accept`);
    expect(inet).toContain(`oifname "${acme.bridge}" ip saddr 10.10.0.0/24 ct status dnat masquerade`);
    expect(inet).toMatch(
      /snat ip to 192\.0\.2\.50\n\s+ip saddr 10\.10\.0\.0\/24 ip daddr != 10\.10\.0\.0\/24 oifname != "\S+" masquerade/,
    );
    // globex has no way in: none of these rules
    expect(inet).not.toContain(`oifname "${globex.bridge}" ip daddr 10.20.0.0/24 ct status dnat accept`);
  });

  test('iptables: the same, in a PREROUTING and an OUTPUT chain of its own', () => {
    const nat = desiredTables(state).find((t) => t.tool === 'iptables' && t.table === 'nat')!;
    const d = nat.chains.find((c) => c.from === 'PREROUTING')!;
    expect(d.rules).toEqual([
      `-i ${acme.bridge} -d 10.10.0.1/32 -j RETURN`,
      `-i ${acme.bridge} -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.10.0.11:80`,
      `-i ${acme.bridge} -d 192.0.2.50/32 -j DNAT --to-destination 10.10.0.11`,
      `-i ${acme.bridge} -j RETURN`,
      `-i ${globex.bridge} -j RETURN`,
      '-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.10.0.11:80',
      '-d 192.0.2.50/32 -j DNAT --to-destination 10.10.0.11',
    ]);
    expect(nat.chains.find((c) => c.from === 'OUTPUT')!.rules).toHaveLength(2);
  });
});
