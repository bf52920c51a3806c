// Ways in from outside a tenant (port forwards, floating IPs): their validation in a VM spec,
// their conflicts between VMs, the host's listening sockets and uplink addresses, the floating IPs'
// holdings (address, or route and proxy ARP), and the rules each backend renders.
import { validateVm } from '../../lib/spec/index.js';
import { allocate } from '../../lib/engine/allocate.js';
import { applyWaysIn, parseSs, planWaysIn, withForwardAddresses } from '../../lib/host/ways-in.js';
import { namespacesOf } from '../../lib/host/namespace.js';
import type { ObservedLink } from '../../lib/host/links.js';
import { renderRuleset } from '../../lib/host/firewall/nft.js';
import { desiredTables } from '../../lib/host/firewall/iptables.js';
import { validateNetwork } from '../../lib/spec/index.js';
import type { VmRecord } from '../../lib/engine/state/store.js';
import type { HostPort, HostState } from '../../types/host.js';
import { RecordingRunner } from '../helpers/recording-runner.js';
import { MemoryFiles } from '../helpers/fake-engine.js';
import { problems } from '../helpers/problems.js';

const net = { tenant: 'acme', cidr: '10.10.0.0/24' };
const vm = (name: string, nic: Record<string, unknown>) => ({
  name,
  boot: { kernel: '/boot/vmlinuz' },
  nics: [{ network: net, ...nic }],
});

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
    // a tenant that gets a namespace of its own (its subnet overlaps acme's here) has floating IPs
    // too (routed to its namespace), never one another VM holds
    const overlapping = (name: string, floatingIp: string) => ({
      name,
      boot: { kernel: '/boot/vmlinuz' },
      nics: [{ network: { tenant: 'globex', cidr: '10.10.0.0/24' }, floatingIp }],
    });
    put(overlapping('d', '192.0.2.60'));
    expect(records.at(-1)!.vm.nics[0]).toMatchObject({ floatingIp: '192.0.2.60', network: { namespace: {} } });
    expect(problems(() => put(overlapping('e', '192.0.2.50')))).toEqual({
      'nics[0].floatingIp': '192.0.2.50 is already the floating IP of VM a nics[0]',
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

describe("the host's side of the ways in, planned", () => {
  const acme = validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24' });
  const globex = {
    ...validateNetwork({ tenant: 'globex', cidr: '10.10.0.0/24' }),
    namespace: { transit: '100.64.0.4/30' },
  };
  const link = (name: string, addresses: string[]): [string, ObservedLink] => [
    name,
    { name, kind: 'veth', identity: '', up: true, mtu: 1500, addresses, peers: [] },
  ];
  const port = (name: string, n: number, extra: Partial<HostPort> = {}): HostPort => ({
    name,
    kind: 'tap',
    mac: `52:54:00:00:00:0${n}`,
    ip: `10.10.0.1${n}`,
    ...extra,
  });
  const routeTo = (dev: string | undefined) => ({
    match: (a: string[]) => a.join(' ') === 'ip -j -4 route show default',
    stdout: JSON.stringify(dev ? [{ dst: 'default', gateway: '192.0.2.1', dev }] : []),
  });
  const fate = { removed: new Set<string>(), remade: new Set<string>() };

  test("a forward without an address takes the uplink's addresses (the default route's device), never a floating IP", async () => {
    const runner = new RecordingRunner([routeTo('eth9')]);
    const links = new Map([
      link('eth9', ['192.0.2.10/24', '192.0.2.11/24', '192.0.2.50/32']),
      link('mgmt0', ['10.1.0.5/24']),
    ]);
    const state: HostState = {
      networks: [
        {
          network: acme,
          ports: [
            port('vwt-a-0', 1, {
              forwards: [
                { hostPort: 8080, port: 80, protocol: 'tcp' },
                { hostPort: 53, port: 53, protocol: 'udp', address: '10.1.0.5' },
              ],
            }),
            port('vwt-b-0', 2, { floatingIp: '192.0.2.50' }),
          ],
        },
      ],
    };
    const out = await withForwardAddresses(runner, new MemoryFiles(), '/s', state, Promise.resolve(links));
    expect(out.networks[0]!.ports[0]!.forwards).toEqual([
      { hostPort: 8080, port: 80, protocol: 'tcp', address: '192.0.2.10' },
      { hostPort: 8080, port: 80, protocol: 'tcp', address: '192.0.2.11' },
      { hostPort: 53, port: 53, protocol: 'udp', address: '10.1.0.5' },
    ]);
    // the network's own uplink wins over the default route
    const own = { networks: [{ ...state.networks[0]!, network: { ...acme, uplink: 'mgmt0' } }] };
    const viaOwn = await withForwardAddresses(runner, new MemoryFiles(), '/s', own, Promise.resolve(links));
    expect(viaOwn.networks[0]!.ports[0]!.forwards![0]).toMatchObject({ address: '10.1.0.5' });
    // nothing is read when every forward names its address
    const quiet = new RecordingRunner();
    const named = {
      networks: [
        {
          network: acme,
          ports: [port('vwt-a-0', 1, { forwards: [{ hostPort: 1, port: 1, protocol: 'tcp', address: '10.1.0.5' }] })],
        },
      ],
    } satisfies HostState;
    expect(await withForwardAddresses(quiet, new MemoryFiles(), '/s', named, new Promise<never>(() => {}))).toBe(named);
    expect(quiet.calls).toEqual([]);
  });

  test('without a default route (or an uplink with no IPv4 address) each such forward is refused, with its path', async () => {
    const state: HostState = {
      networks: [
        { network: acme, ports: [port('vwt-a-0', 1, { forwards: [{ hostPort: 8080, port: 80, protocol: 'tcp' }] })] },
      ],
    };
    const none = withForwardAddresses(
      new RecordingRunner([routeTo(undefined)]),
      new MemoryFiles(),
      '/s',
      state,
      Promise.resolve(new Map()),
    );
    await expect(none).rejects.toMatchObject({
      problems: [{ path: 'networks[0].ports[0].forwards[0]', message: expect.stringMatching(/no default route/) }],
    });
    const bare = withForwardAddresses(
      new RecordingRunner([routeTo('eth9')]),
      new MemoryFiles(),
      '/s',
      state,
      Promise.resolve(new Map([link('eth9', [])])),
    );
    await expect(bare).rejects.toMatchObject({
      problems: [
        { path: 'networks[0].ports[0].forwards[0]', message: expect.stringMatching(/uplink eth9 has no IPv4 address/) },
      ],
    });
  });

  test("a namespaced tenant's floating IP is routed to its namespace, answered by proxy ARP; moved, its flows are cut there; given back, both go", async () => {
    const files = new MemoryFiles();
    const observed = new Map([link('eth9', ['192.0.2.10/24'])]);
    const [ns] = namespacesOf({ networks: [{ network: globex, ports: [] }] });
    const at = (which: 1 | 2): HostState => ({
      networks: [
        {
          network: globex,
          ports: [
            port('vwt-a-0', 1, which === 1 ? { floatingIp: '192.0.2.60' } : {}),
            port('vwt-b-0', 2, which === 2 ? { floatingIp: '192.0.2.60' } : {}),
          ],
        },
      ],
    });
    const runner = new RecordingRunner();
    const first = await planWaysIn(runner, files, '/s', at(1), observed, fate);
    expect(first.ip).toEqual([
      `route replace 192.0.2.60/32 via ${ns!.nsAddress} dev ${ns!.transitVeth}`,
      'neigh add proxy 192.0.2.60 dev eth9',
    ]);
    expect(first.changes).toEqual([
      { kind: 'address', action: 'add', address: '192.0.2.60', device: 'eth9', via: ns!.transitVeth, tenant: 'globex' },
    ]);
    await applyWaysIn(runner, files, '/s', first);
    // as the host now shows it
    const shown = new RecordingRunner([
      {
        match: (a) => a.join(' ') === 'ip -j -4 route show',
        stdout: JSON.stringify([{ dst: '192.0.2.60', gateway: ns!.nsAddress, dev: ns!.transitVeth }]),
      },
      {
        match: (a) => a.join(' ') === 'ip -j -4 neigh show proxy',
        stdout: JSON.stringify([{ dst: '192.0.2.60', dev: 'eth9' }]),
      },
    ]);
    expect(await planWaysIn(shown, files, '/s', at(1), observed, fate)).toMatchObject({ ip: [], changes: [], cut: [] });
    // moved to another guest of the tenant: nothing on the host changes, the flows inside its namespace are cut
    const moved = await planWaysIn(shown, files, '/s', at(2), observed, fate);
    expect(moved).toMatchObject({ ip: [], changes: [], cut: [{ address: '192.0.2.60', netns: ns!.netns }] });
    await applyWaysIn(shown, files, '/s', moved);
    expect(shown.calls.map((c) => c.argv.join(' '))).toContain(`ip netns exec ${ns!.netns} conntrack -L -f ipv4`);
    // given back (the tenant gone: its transit with it): the proxy entry goes, the route with its device
    const gone = await planWaysIn(shown, files, '/s', { networks: [] }, observed, {
      ...fate,
      removed: new Set([ns!.transitVeth]),
    });
    expect(gone).toMatchObject({
      ip: ['neigh del proxy 192.0.2.60 dev eth9'],
      unmark: ['192.0.2.60'],
      cut: [{ address: '192.0.2.60' }],
    });
  });
});
