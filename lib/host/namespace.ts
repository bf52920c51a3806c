// A namespaced tenant (the engine gives one to a tenant whose subnet overlaps another's on a
// host): its bridge, taps, uplink, QoS, anti-spoofing and security groups stay on the host as for
// every tenant, but its gateway address, dnsmasq and first NAT live in a network namespace of its
// own:
//
//   guest ─ tap ─┐                        netns vwn<tenant>-<hash>
//   guest ─ tap ─┼─ bridge ─ vwg… ═ veth ═ vw-gw  (gateway, dnsmasq)
//   uplink ──────┘                          │ NAT to its transit address
//                host: vwr… (T+1/30) ═ veth ═ vw-transit (T+2/30)
//                NAT to the host's uplink ─ out
//
// The host only ever sees the tenant's transit address at L3, so two tenants with the same
// subnet never meet in its routing table or its conntrack (their bridged frames get a conntrack
// zone per bridge). Inside, the namespace holds the same rules a plain tenant's gateway gets on
// the host — the firewall backends render them from `innerState` — and only its dnsmasq runs there.
import { createHash } from 'node:crypto';
import type { HostNetwork, HostState } from '../../types/host.js';
import { namespaceNames, parseCidr, formatIpv4 } from '../spec/index.js';
import { type CommandRunner, type RunOptions, type RunResult } from './command-runner.js';
import type { DesiredLink, ObservedLink } from './links.js';

/** The namespace's own ends of its two veths (names inside it need not be unique on the host). */
const NS_GATEWAY = 'vw-gw';
export const NS_TRANSIT = 'vw-transit';

export interface TenantNamespace {
  tenant: string;
  netns: string;
  /** host end of the veth into the tenant's bridge (the namespace end holds the gateway) */
  gatewayVeth: string;
  /** host end of the transit veth, holding `hostAddress`/30 */
  transitVeth: string;
  hostAddress: string;
  nsAddress: string;
  /**
   * with the tenant's IPv6: the transit's IPv6 ends (host ::1, namespace ::2 of a /64 derived
   * from the transit /30 in virtwire's own ULA range, transit6Of); the namespace NAT66s to its own
   */
  hostAddress6?: string;
  nsAddress6?: string;
  /** the conntrack zone the tenant's bridged frames are tracked in on the host */
  zone: number;
  net: HostNetwork;
}

/** The namespaced tenants of a state, with their names and transit addresses. */
export function namespacesOf(state: HostState): TenantNamespace[] {
  return state.networks.flatMap((net) => {
    const ns = net.network.namespace;
    if (!ns) return [];
    const names = namespaceNames(net.network.tenant);
    const transit = parseCidr(ns.transit)!;
    return [
      {
        tenant: net.network.tenant,
        netns: names.netns,
        gatewayVeth: names.gateway,
        transitVeth: names.transit,
        hostAddress: formatIpv4(transit.network + 1),
        nsAddress: formatIpv4(transit.network + 2),
        ...(net.network.ipv6 ? transit6Of(transit.network) : {}),
        zone: zoneOf(transit.network),
        net,
      },
    ];
  });
}

/**
 * A transit /30's IPv6 pair: fd00:7677:<its network, 32 bits>::1 (the host) and ::2 (the
 * namespace), a /64 of their own in fd00:7677::/32 (virtwire's: lib/spec refuses a cidr6 there).
 */
function transit6Of(transitNetwork: number): { hostAddress6: string; nsAddress6: string } {
  const hi = (transitNetwork >>> 16).toString(16);
  const lo = (transitNetwork & 0xffff).toString(16);
  return { hostAddress6: `fd00:7677:${hi}:${lo}::1`, nsAddress6: `fd00:7677:${hi}:${lo}::2` };
}

/**
 * A zone per transit /30 (zone 0 is every plain tenant's and the host's): 16 bits, so two
 * namespaced tenants share one only 65,535 /30s apart in the pool (validateHostState refuses that
 * on one host).
 */
function zoneOf(transitNetwork: number): number {
  return ((transitNetwork >>> 2) % 65535) + 1;
}

/**
 * What the namespace holds, as a host state of its own: the tenant's network with its gateway on
 * the namespace's veth end, NAT'd out of the transit veth; no ports (they are on the host's
 * bridge: their MACs only, as DHCP clients) and no segment. The firewall backends and dnsmasq
 * render it as for any network.
 */
export function innerState(ns: TenantNamespace): HostState {
  const { namespace: _namespace, ...network } = ns.net.network;
  return {
    networks: [
      {
        network: { ...network, bridge: NS_GATEWAY, uplink: NS_TRANSIT, segment: { type: 'none' } },
        ports: [],
        dhcpClients: ns.net.ports.map((p) => p.mac),
        // the host sends each forward on to the namespace's transit address, same port
        // (one per protocol and port: a forward on several host addresses arrives on one)
        forwardsIn: ns.net.ports.flatMap((p) =>
          (p.forwards ?? [])
            .filter((f, i, all) => all.findIndex((g) => g.protocol === f.protocol && g.hostPort === f.hostPort) === i)
            .map((f) => ({ ...f, address: ns.nsAddress, port: f.port, ip: p.ip! })),
        ),
        // the host routes each floating IP to the namespace's transit address, untranslated
        floatingIn: ns.net.ports.flatMap((p) => (p.floatingIp ? [{ floatingIp: p.floatingIp, ip: p.ip! }] : [])),
        ...(ns.net.dhcp === false ? { dhcp: false } : {}),
      },
    ],
  };
}

/** Runs every command inside a network namespace, through another runner (`ip netns exec`). */
export class NetnsRunner implements CommandRunner {
  constructor(
    private readonly inner: CommandRunner,
    readonly netns: string,
  ) {}

  run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    return this.inner.run(['ip', 'netns', 'exec', this.netns, ...argv], options);
  }
}

/**
 * What a namespace that does not exist yet shows: no links, no tables, no chains. plan() asks it
 * instead of failing to enter the namespace, so a dry run shows everything the apply would do.
 */
export const FRESH_NAMESPACE: CommandRunner = {
  async run(argv) {
    // nft exits 1 for a table that does not exist; the *-save tools print nothing
    return { stdout: argv[0] === 'ip' ? '[]' : '', stderr: '', exitCode: argv[0] === 'nft' ? 1 : 0 };
  },
};

/**
 * The host's ends of a namespaced tenant's veths, with the links desiredLinks makes for every
 * tenant: the gateway's end is a port of the tenant's bridge (its MTU), the namespace end of
 * each is created inside the namespace with it.
 */
export function namespaceLinks(ns: TenantNamespace, mtu: number | undefined): DesiredLink[] {
  const base = { kind: 'veth' as const, tenant: ns.tenant, identity: 'veth', peers: [] };
  return [
    {
      ...base,
      name: ns.gatewayVeth,
      create: [
        'type',
        'veth',
        'peer',
        'name',
        NS_GATEWAY,
        'address',
        gatewayMac(ns.tenant),
        ...(mtu ? ['mtu', mtu] : []),
        'netns',
        ns.netns,
      ],
      master: ns.net.network.bridge,
      mtu,
      addresses: [],
    },
    {
      ...base,
      name: ns.transitVeth,
      create: ['type', 'veth', 'peer', 'name', NS_TRANSIT, 'netns', ns.netns],
      addresses: [`${ns.hostAddress}/30`, ...(ns.hostAddress6 ? [`${ns.hostAddress6}/64`] : [])],
    },
  ];
}

/**
 * The namespace's ends of the same veths, made with them from the host side (no `create`): the
 * gateway's end holds the gateway address (and the segment's MTU), the transit end its address.
 */
export function insideLinks(ns: TenantNamespace, mtu: number | undefined): DesiredLink[] {
  const base = { kind: 'veth' as const, tenant: ns.tenant, identity: 'veth', create: [], peers: [] };
  return [
    {
      ...base,
      name: NS_GATEWAY,
      mtu,
      addresses: [
        `${ns.net.network.gateway}/${ns.net.network.prefix}`,
        ...(ns.net.network.ipv6 ? [`${ns.net.network.ipv6.gateway}/64`] : []),
      ],
    },
    { ...base, name: NS_TRANSIT, addresses: [`${ns.nsAddress}/30`, ...(ns.nsAddress6 ? [`${ns.nsAddress6}/64`] : [])] },
  ];
}

/**
 * The gateway's MAC, the same whenever its veth is made again (a repaired namespace): the guests'
 * ARP entries for their gateway stay right. Locally administered, "vw", 3 bytes of the tenant.
 */
function gatewayMac(tenant: string): string {
  const h = createHash('sha256').update(`gateway\0${tenant}`).digest();
  return ['02', '76', '77', ...[h[0]!, h[1]!, h[2]!].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** The namespaces of this host (`ip netns list`: global, whichever namespace asks). */
export async function observeNamespaces(runner: CommandRunner): Promise<Set<string>> {
  const r = await runner.run(['ip', '-j', 'netns', 'list'], { step: 'namespaces: observe' });
  return new Set((JSON.parse(r.stdout || '[]') as { name: string }[]).map((n) => n.name));
}

/** The in-namespace state that makes its devices work, as observed. */
export interface NamespaceSeen {
  links: Map<string, ObservedLink>;
  /** the default route's gateway */
  route: string | undefined;
  forwarding: boolean;
  /** the IPv6 default route's gateway, and whether IPv6 forwarding is on */
  route6?: string | undefined;
  forwarding6?: boolean;
}

/** `links`: the namespace's links, observed with observeLinks through the same runner. */
export async function observeInside(
  runner: CommandRunner,
  links: Promise<Map<string, ObservedLink>>,
): Promise<NamespaceSeen> {
  const step = 'namespace: observe';
  const [seenLinks, route, fwd, route6, fwd6] = await Promise.all([
    links,
    runner.run(['ip', '-j', 'route', 'show', 'default'], { step }),
    runner.run(['sysctl', '-n', 'net.ipv4.ip_forward'], { step }),
    runner.run(['ip', '-j', '-6', 'route', 'show', 'default'], { step, allowFailure: true }),
    runner.run(['sysctl', '-n', 'net.ipv6.conf.all.forwarding'], { step, allowFailure: true }),
  ]);
  const gateway = (out: string) => (JSON.parse(out || '[]') as { gateway?: string }[])[0]?.gateway;
  return {
    links: seenLinks,
    route: gateway(route.stdout),
    forwarding: fwd.stdout.trim() === '1',
    route6: gateway(route6.stdout),
    forwarding6: fwd6.stdout.trim() === '1',
  };
}
