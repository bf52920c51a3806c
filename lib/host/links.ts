// Links: the tenant bridges, their uplinks (802.1Q VLAN or VXLAN), the guests' ports (taps or
// veths) and the ifb devices QoS needs. Observe (`ip -j -d addr`, `bridge -j fdb`)
// -> diff -> one `ip -batch -` (and one `bridge -batch -` for VXLAN peers), so the number of
// processes does not grow with the number of devices.
import { randomBytes } from 'node:crypto';
import type { HostState, HostNetwork } from '../../types/host.js';
import { ifbName, vlanDeviceName, vxlanDeviceName } from '../spec/index.js';
import { HostUnsupportedError, VirtwireError } from '../errors/index.js';
import { batchLine, runBatch, type CommandRunner } from './command-runner.js';
import { namespaceLinks, namespacesOf } from './namespace.js';

type LinkKind = 'bridge' | 'tap' | 'veth' | 'vlan' | 'vxlan' | 'ifb';

export interface DesiredLink {
  name: string;
  kind: LinkKind;
  /** the tenant network it belongs to */
  tenant: string;
  /** what must match for an existing link to be kept (kind-specific parameters) */
  identity: string;
  /**
   * tokens after `link add <name>` (or the whole `tuntap add` line for taps); none: the link is
   * made with its veth peer from another namespace, and only configured here
   */
  create: (string | number)[];
  master?: string;
  mtu?: number;
  /** addresses with prefix, e.g. 10.10.0.1/24 and fd10:10::1/64 (bridges); never link-local ones */
  addresses: string[];
  /** VXLAN: unicast peers, as all-zero FDB entries (head-end replication) */
  peers: string[];
  /** bridges: pass IPv4 frames through the IP hooks and conntrack (br_netfilter), for security groups */
  nfCallIptables?: true;
  /** the same for IPv6 frames (a network with IPv6 and security groups, or a backend that guards IPv6 ports there) */
  nfCallIp6tables?: true;
  /**
   * the host takes no part in ARP on it (`arp off`): a namespaced tenant's bridge, where the host
   * would otherwise answer for any address it has elsewhere (the weak host model) — another
   * tenant's gateway with the same address included — ahead of the tenant's own gateway
   */
  noArp?: true;
  /**
   * a guest's port: the bridge learns nothing from it (learning off) and knows its guest's MAC
   * from a static entry instead — a frame the port guard does not see (link-local ones go to the
   * bridge's input hook, not prerouting) cannot teach the bridge a neighbour's MAC on this port
   */
  guestMac?: string;
  /** per-device kernel settings, by /proc/sys path below net/ (e.g. ipv4/conf/<dev>/arp_ignore) */
  sysctls?: Record<string, string>;
}

export interface ObservedLink {
  name: string;
  kind: string;
  identity: string;
  master?: string;
  up: boolean;
  mtu: number;
  addresses: string[];
  peers: string[];
  /** the link's device group (`ip link set group`), 0 = default */
  group?: number;
  /** bridges: br_netfilter's per-bridge switch is on */
  nfCallIptables?: boolean;
  nfCallIp6tables?: boolean;
  noArp?: boolean;
  /** bridges: link-local frames (01:80:c2:00:00:0x) teach the FDB nothing */
  noLinklocalLearn?: boolean;
  /** bridge ports: the bridge learns source MACs from it */
  learning?: boolean;
  /** bridge ports: the MACs of the static FDB entries on it */
  staticMacs?: string[];
  /** bridges: the settings `bridgeSysctls` names, those the kernel has */
  sysctls?: Record<string, string>;
}

/**
 * A plain tenant's bridge holds its gateway address and nothing else of the host's: it answers
 * ARP only for addresses on itself (arp_ignore 1: not for another tenant's gateway or the
 * uplink's address, which the weak host model would). Without the network's IPv6 it takes no
 * part in IPv6 (no fe80:: address a guest could reach the host on); with it, it is the router
 * (its link-local address sends the advertisements) and learns nothing from what guests
 * advertise (accept_ra 0, autoconf 0). A kernel without IPv6 has none of the ipv6 settings.
 */
const bridgeSysctls = (dev: string, ipv6 = false): Record<string, string> => ({
  [`ipv4/conf/${dev}/arp_ignore`]: '1',
  [`ipv6/conf/${dev}/disable_ipv6`]: ipv6 ? '0' : '1',
  [`ipv6/conf/${dev}/accept_ra`]: '0',
  [`ipv6/conf/${dev}/autoconf`]: '0',
});

/** VXLAN's encapsulation over an IPv4 underlay: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
/** The smallest MTU a tenant segment may have (IPv6's minimum link MTU; what Neutron refuses below). */
const MIN_SEGMENT_MTU = 1280;
/** The UDP port of virtwire's VXLAN devices (IANA's). */
export const VXLAN_PORT = 4789;

/**
 * Each segmented tenant's MTU on this host, from its uplink as observed: VXLAN = the uplink's
 * MTU − 50, VLAN = the uplink's. Its bridge, uplink and ports get it, and dnsmasq hands it to
 * the guests. A missing uplink, or one too small for a segment, fails here, before anything
 * changes, naming the uplink, its MTU and what the segment needs.
 */
export function segmentMtus(state: HostState, observed: Map<string, ObservedLink>): Map<string, number> {
  const mtus = new Map<string, number>();
  for (const { network: n } of state.networks) {
    const seg = n.segment;
    if (seg.type === 'none') continue;
    const label = seg.type === 'vlan' ? 'VLAN' : 'VXLAN';
    const uplink = observed.get(seg.uplink);
    if (!uplink)
      throw new HostUnsupportedError(
        'uplink',
        `uplink ${seg.uplink} of tenant ${n.tenant}'s ${label} segment does not exist on this host`,
      );
    const overhead = seg.type === 'vxlan' ? VXLAN_OVERHEAD : 0;
    const mtu = uplink.mtu - overhead;
    if (mtu < MIN_SEGMENT_MTU) {
      const why = overhead
        ? ` (${MIN_SEGMENT_MTU} for the guests + ${overhead} for VXLAN over IPv4)`
        : ` (the guests' minimum)`;
      throw new HostUnsupportedError(
        'uplink-mtu',
        `uplink ${seg.uplink} has MTU ${uplink.mtu}; tenant ${n.tenant}'s ${label} segment needs at least ${MIN_SEGMENT_MTU + overhead}${why}`,
      );
    }
    mtus.set(n.tenant, mtu);
  }
  return mtus;
}

/** Devices virtwire owns: `vw` + kind letter + readable part + `-` + 6 hex (lib/spec/names.ts). */
export const OWNED_NAME = /^vw[btxivgr][a-z0-9]*-[0-9a-f]{6}$/;

/** validateHostState refuses a segment without its id; this only narrows the type. */
function allocated(id: number | undefined, tenant: string): number {
  if (id === undefined) throw new VirtwireError('INTERNAL', `tenant ${tenant}'s segment id was never allocated`);
  return id;
}

/** The tenant's uplink device (no MTU: see segmentMtus). */
export function uplinkOf(net: HostNetwork, mtu?: number): DesiredLink | undefined {
  const n = net.network;
  const seg = n.segment;
  if (seg.type === 'vlan') {
    const id = allocated(seg.id, n.tenant);
    const name = vlanDeviceName(seg.uplink, id);
    return {
      name,
      kind: 'vlan',
      tenant: n.tenant,
      identity: `vlan:${seg.uplink}:${id}`,
      create: ['link', seg.uplink, 'type', 'vlan', 'id', id],
      master: n.bridge,
      mtu,
      addresses: [],
      peers: [],
    };
  }
  if (seg.type === 'vxlan') {
    const vni = allocated(seg.vni, n.tenant);
    const name = vxlanDeviceName(n.tenant, vni);
    const create: (string | number)[] = ['type', 'vxlan', 'id', vni, 'dstport', VXLAN_PORT, 'dev', seg.uplink];
    if (seg.local) create.push('local', seg.local);
    if (seg.group) create.push('group', seg.group);
    const identity = `vxlan:${vni}:${seg.local ?? ''}:${seg.group ?? ''}:${seg.uplink}:${VXLAN_PORT}`;
    return {
      name,
      kind: 'vxlan',
      tenant: n.tenant,
      identity,
      create,
      master: n.bridge,
      mtu,
      addresses: [],
      peers: [...(seg.remotes ?? [])].sort(),
    };
  }
  return undefined;
}

/** What the firewall backend needs of the bridges. */
export interface BridgeHooks {
  /** a bridge's IPv6 frames from its ports pass ip6tables (iptables backend: its port guard checks them there) */
  ipv6PortFrames?: boolean;
}

/** Every link the state needs, bridges first, then uplinks, ifbs and ports; `mtus` from segmentMtus. */
export function desiredLinks(
  state: HostState,
  mtus: ReadonlyMap<string, number> = new Map(),
  hooks: BridgeHooks = {},
): DesiredLink[] {
  const links: DesiredLink[] = [];
  const namespaced = new Map(namespacesOf(state).map((ns) => [ns.tenant, ns]));
  for (const net of state.networks) {
    const n = net.network;
    const mtu = mtus.get(n.tenant);
    const uplink = uplinkOf(net, mtu);
    const tenant = n.tenant;
    links.push({
      name: n.bridge,
      kind: 'bridge',
      tenant,
      identity: 'bridge',
      create: ['type', 'bridge', 'forward_delay', 0, 'stp_state', 0, 'no_linklocal_learn', 1],
      mtu,
      // a namespaced tenant's gateway is in its namespace, behind a port of the bridge: the host
      // has no address there and answers no ARP
      addresses: namespaced.has(tenant)
        ? []
        : [`${n.gateway}/${n.prefix}`, ...(n.ipv6 ? [`${n.ipv6.gateway}/64`] : [])],
      ...(namespaced.has(tenant) ? { noArp: true as const } : {}),
      sysctls: bridgeSysctls(n.bridge, n.ipv6 !== undefined && !namespaced.has(tenant)),
      peers: [],
      // security groups are enforced in the IP forward hook, with conntrack: this bridge's frames
      // must pass it whatever the host-wide bridge-nf-call-iptables says
      ...(net.ports.some((p) => p.securityGroups?.length) ? { nfCallIptables: true as const } : {}),
      ...(n.ipv6 && net.ports.some((p) => p.securityGroups?.length || hooks.ipv6PortFrames)
        ? { nfCallIp6tables: true as const }
        : {}),
    });
    if (uplink) links.push(uplink);
    const ns = namespaced.get(tenant);
    if (ns) links.push(...namespaceLinks(ns, mtu));
    for (const port of net.ports) {
      if (port.qos?.egressKbps) {
        const ifb = ifbName(port.name);
        links.push({
          name: ifb,
          kind: 'ifb',
          tenant,
          identity: 'ifb',
          create: ['type', 'ifb'],
          addresses: [],
          peers: [],
        });
      }
      const create =
        port.kind === 'tap'
          ? ['tuntap', 'add', 'dev', port.name, 'mode', 'tap']
          : [
              'type',
              'veth',
              'peer',
              'name',
              port.peer!.name,
              'address',
              port.mac,
              ...(mtu ? ['mtu', mtu] : []),
              'netns',
              port.peer!.netns,
            ];
      links.push({
        name: port.name,
        kind: port.kind,
        tenant,
        identity: port.kind,
        create,
        master: n.bridge,
        mtu,
        addresses: [],
        peers: [],
        guestMac: port.mac.toLowerCase(),
      });
    }
  }
  return links;
}

interface IpLinkJson {
  ifname: string;
  link?: string;
  master?: string;
  flags?: string[];
  mtu: number;
  group?: string | number;
  linkinfo?: {
    info_kind?: string;
    info_data?: Record<string, unknown>;
    info_slave_kind?: string;
    info_slave_data?: Record<string, unknown>;
  };
}

interface IpAddrJson extends IpLinkJson {
  addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[];
}

function identityOf(l: IpLinkJson): { kind: string; identity: string } {
  const kind = l.linkinfo?.info_kind ?? 'unknown';
  const d = l.linkinfo?.info_data ?? {};
  switch (kind) {
    case 'tun':
      return d.type === 'tap' ? { kind: 'tap', identity: 'tap' } : { kind: 'tun', identity: 'tun' };
    case 'vlan':
      return { kind, identity: `vlan:${l.link ?? ''}:${String(d.id)}` };
    case 'vxlan':
      return {
        kind,
        identity: `vxlan:${String(d.id)}:${String(d.local ?? '')}:${String(d.group ?? '')}:${String(d.link ?? '')}:${String(d.port)}`,
      };
    default:
      return { kind, identity: kind };
  }
}

interface FdbJson {
  mac: string;
  ifname?: string;
  dst?: string;
  master?: string;
  state?: string;
  flags?: string[];
}

/**
 * The links of this host (or namespace) with their addresses, VXLAN peers and ports' FDB entries.
 * `wanted`: the devices a caller will keep — the others' bridge settings and FDB entries are not
 * read (a teardown deletes them; reading them cost the last VM's destroy ~50 ms).
 */
export async function observeLinks(
  runner: CommandRunner,
  step = 'links: observe',
  wanted?: ReadonlySet<string>,
): Promise<Map<string, ObservedLink>> {
  // one process for both: `ip -d addr show` prints each link's details (as `ip -d link show`
  // does, less its link mode and address generation mode, which nothing here reads) and its addresses
  const read = await runner.run(['ip', '-j', '-d', 'addr', 'show'], { step });
  const links = JSON.parse(read.stdout || '[]') as IpAddrJson[];
  const byName = new Map<string, ObservedLink>();
  for (const l of links) {
    const group = l.group === undefined || l.group === 'default' ? 0 : Number(l.group);
    byName.set(l.ifname, {
      name: l.ifname,
      ...identityOf(l),
      master: l.master,
      up: (l.flags ?? []).includes('UP'),
      mtu: l.mtu,
      addresses: [],
      peers: [],
      group,
      ...(l.linkinfo?.info_data?.nf_call_iptables === 1 ? { nfCallIptables: true } : {}),
      ...(l.linkinfo?.info_data?.nf_call_ip6tables === 1 ? { nfCallIp6tables: true } : {}),
      ...((l.flags ?? []).includes('NOARP') ? { noArp: true } : {}),
      ...(l.linkinfo?.info_kind === 'bridge'
        ? { noLinklocalLearn: l.linkinfo.info_data?.no_linklocal_learn === 1 }
        : {}),
      ...(l.linkinfo?.info_slave_kind === 'bridge'
        ? { learning: l.linkinfo.info_slave_data?.learning !== false, staticMacs: [] }
        : {}),
    });
  }
  for (const a of links) {
    const link = byName.get(a.ifname);
    // the kernel's own link-local addresses are not ours to compare (or delete)
    if (link)
      link.addresses = (a.addr_info ?? [])
        .filter((x) => x.family === 'inet' || (x.family === 'inet6' && x.scope !== 'link'))
        .map((x) => `${x.local}/${x.prefixlen}`);
  }
  const owned = [...byName.values()].filter((l) => OWNED_NAME.test(l.name) && (!wanted || wanted.has(l.name)));
  const bridges = owned.filter((l) => l.kind === 'bridge');
  // the bridges' settings, and the FDB where virtwire has VXLAN peers or bridge ports to know:
  // read at once
  const files = bridges.flatMap((b) => Object.keys(bridgeSysctls(b.name)).map((k) => `/proc/sys/net/${k}`));
  const [settings, fdbRead] = await Promise.all([
    // one process for every bridge's settings: `grep -H` names each file; -s: one the kernel
    // lacks (IPv6 off) is left out
    bridges.length > 0 ? runner.run(['grep', '-H', '-s', '.', ...files], { step, allowFailure: true }) : undefined,
    owned.some((l) => l.kind === 'vxlan' || l.learning !== undefined)
      ? runner.run(['bridge', '-j', 'fdb', 'show'], { step })
      : undefined,
  ]);
  if (settings) {
    for (const b of bridges) b.sysctls = {};
    for (const m of settings.stdout.matchAll(/^\/proc\/sys\/net\/((?:ipv4|ipv6)\/conf\/([^/]+)\/[a-z_0-9]+):(.*)$/gm)) {
      const b = byName.get(m[2]!);
      if (b?.sysctls) b.sysctls[m[1]!] = m[3]!.trim();
    }
  }
  if (fdbRead) {
    for (const e of JSON.parse(fdbRead.stdout || '[]') as FdbJson[]) {
      const link = e.ifname ? byName.get(e.ifname) : undefined;
      if (link?.kind === 'vxlan' && e.mac === '00:00:00:00:00:00' && e.dst) link.peers.push(e.dst);
      // a static entry that is not sticky moves to whichever port sends from its MAC
      if (link?.staticMacs && e.master && e.state === 'static' && e.flags?.includes('sticky'))
        link.staticMacs.push(e.mac);
    }
    for (const l of owned) l.peers.sort();
  }
  return byName;
}

/** One device's change, typed: what a caller classifies (the batch lines are for running). */
export interface LinkChange {
  kind: 'link';
  /** create: missing; recreate: its kind or parameters changed; configure: settings differ; delete: ours, unwanted */
  action: 'create' | 'recreate' | 'configure' | 'delete';
  device: string;
  linkKind: string;
  /** the tenant it belongs to (unknown for a leftover being deleted) */
  tenant?: string;
  /** configure: which settings differ */
  settings?: (
    | 'mtu'
    | 'master'
    | 'up'
    | 'address'
    | 'peers'
    | 'nf_call_iptables'
    | 'nf_call_ip6tables'
    | 'arp'
    | 'no_linklocal_learn'
    | 'learning'
    | 'fdb'
    | 'sysctl'
  )[];
}

export interface LinkPlan {
  /** `ip -batch` lines */
  ip: string[];
  /** `sysctl -w` arguments (key=value), after the ip batch made the devices */
  sysctl: string[];
  /** `ip -batch` lines after the settings: IPv6 addresses (a device takes one only once IPv6 is on for it) */
  ip6: string[];
  /** `bridge -batch` lines (VXLAN peers) */
  bridge: string[];
  /** names this plan creates (for rollback) */
  creates: string[];
  changes: LinkChange[];
}

/**
 * A MAC for a new bridge. A bridge whose MAC was never set takes the lowest of its ports' MACs,
 * and takes another when a port with a lower one joins (a veth's random host end, a VXLAN or VLAN
 * uplink): the gateway's MAC moves under the guests' ARP caches and their routed traffic goes to
 * the old one, dropped, until the entries expire. A MAC given at creation is kept. Random per
 * host, as libvirt's are: a tenant's bridges on two hosts share a segment. Locally administered.
 */
export function newBridgeMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = (bytes[0]! & 0xfc) | 0x02; // unicast, locally administered
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * The difference between observed and desired, as batch lines. Links virtwire owns that the
 * state does not want are deleted; a link whose kind or parameters changed is re-created.
 */
export function planLinks(
  desired: DesiredLink[],
  observed: Map<string, ObservedLink>,
  bridgeMac: () => string = newBridgeMac,
): LinkPlan {
  const ip: string[] = [];
  const bridge: string[] = [];
  const sysctl: string[] = [];
  const ip6: string[] = [];
  const creates: string[] = [];
  const changes: LinkChange[] = [];
  const wanted = new Map(desired.map((d) => [d.name, d]));

  // 1. delete what is ours and unwanted (ports before bridges: a bridge's deletion frees them)
  const stale = [...observed.values()].filter((o) => {
    const d = wanted.get(o.name);
    if (d) return d.identity !== o.identity; // changed: re-create below
    // VLAN devices keep the classic eth0.<vid> name: one on a virtwire bridge is virtwire's uplink
    return OWNED_NAME.test(o.name) || (o.kind === 'vlan' && o.master !== undefined && OWNED_NAME.test(o.master));
  });
  ip.push(...deleteLines(stale, observed));
  const gone = new Set(stale.map((o) => o.name));
  for (const o of stale)
    if (!wanted.has(o.name)) changes.push({ kind: 'link', action: 'delete', device: o.name, linkKind: o.kind });

  // 2. create, 3. configure
  for (const d of desired) {
    const o = gone.has(d.name) ? undefined : observed.get(d.name);
    if (!o && d.create.length > 0) {
      creates.push(d.name);
      const add = d.kind === 'bridge' ? ['link', 'add', d.name, 'address', bridgeMac()] : ['link', 'add', d.name];
      ip.push(batchLine(d.kind === 'tap' ? d.create : [...add, ...d.create]));
      changes.push({
        kind: 'link',
        action: observed.has(d.name) ? 'recreate' : 'create',
        device: d.name,
        linkKind: d.kind,
        tenant: d.tenant,
      });
    }
    const settings: NonNullable<LinkChange['settings']> = [];
    const set: (string | number)[] = [];
    const differs = (setting: (typeof settings)[number], ...tokens: (string | number)[]) => {
      settings.push(setting);
      set.push(...tokens);
    };
    if (d.mtu && o?.mtu !== d.mtu) differs('mtu', 'mtu', d.mtu);
    if (d.master && o?.master !== d.master) differs('master', 'master', d.master);
    if (!o?.up) differs('up', 'up');
    if (d.noArp && !o?.noArp) differs('arp', 'arp', 'off');
    // `type bridge …` ends the command: it comes last, once
    const bridgeOpts: (string | number)[] = [];
    if (d.nfCallIptables && !o?.nfCallIptables) {
      settings.push('nf_call_iptables');
      bridgeOpts.push('nf_call_iptables', 1);
    }
    if (d.nfCallIp6tables && !o?.nfCallIp6tables) {
      settings.push('nf_call_ip6tables');
      bridgeOpts.push('nf_call_ip6tables', 1);
    }
    if (o && d.kind === 'bridge' && !o.noLinklocalLearn) {
      settings.push('no_linklocal_learn');
      bridgeOpts.push('no_linklocal_learn', 1);
    }
    if (bridgeOpts.length) set.push('type', 'bridge', ...bridgeOpts);
    if (set.length > 0) ip.push(batchLine(['link', 'set', 'dev', d.name, ...set]));
    // a port's own options, once it is the bridge's (the master's ops apply them)
    if (d.guestMac && o?.learning !== false) {
      settings.push('learning');
      ip.push(batchLine(['link', 'set', 'dev', d.name, 'type', 'bridge_slave', 'learning', 'off']));
    }
    const statics = new Set(o?.staticMacs ?? []);
    const wantStatic = d.guestMac ? [d.guestMac] : [];
    const fdbLines = [
      ...wantStatic
        .filter((m) => !statics.has(m))
        .map((m) => batchLine(['fdb', 'replace', m, 'dev', d.name, 'master', 'static', 'sticky'])),
      ...[...statics]
        .filter((m) => !wantStatic.includes(m) && d.guestMac)
        .map((m) => batchLine(['fdb', 'del', m, 'dev', d.name, 'master'])),
    ];
    if (fdbLines.length) {
      bridge.push(...fdbLines);
      settings.push('fdb');
    }
    // a new device gets every setting; an existing one those that differ (and that it has)
    const tuned = Object.entries(d.sysctls ?? {}).filter(([k, v]) => !o || (o.sysctls?.[k] ?? v) !== v);
    if (tuned.length) {
      sysctl.push(...tuned.map(([k, v]) => `net.${k.replaceAll('/', '.')}=${v}`));
      settings.push('sysctl');
    }
    const have = new Set(o?.addresses ?? []);
    // a bridge, or a link given addresses, holds only those: one the host made for itself stays
    const exclusive = d.kind === 'bridge' || d.addresses.length > 0;
    const added = d.addresses.filter((a) => !have.has(a));
    const dropped = [...have].filter((a) => !d.addresses.includes(a) && exclusive);
    // an IPv6 gateway is the only router on its link: no duplicate detection to wait for (nodad)
    ip.push(...added.filter((a) => !a.includes(':')).map((a) => batchLine(['addr', 'add', a, 'dev', d.name])));
    ip6.push(...added.filter((a) => a.includes(':')).map((a) => batchLine(['addr', 'add', a, 'dev', d.name, 'nodad'])));
    ip.push(...dropped.map((a) => batchLine(['addr', 'del', a, 'dev', d.name])));
    if (added.length + dropped.length > 0) settings.push('address');
    const peers = new Set(o?.peers ?? []);
    const fdb = [
      ...d.peers
        .filter((p) => !peers.has(p))
        .map((p) => batchLine(['fdb', 'append', '00:00:00:00:00:00', 'dev', d.name, 'dst', p])),
      ...[...peers]
        .filter((p) => !d.peers.includes(p))
        .map((p) => batchLine(['fdb', 'del', '00:00:00:00:00:00', 'dev', d.name, 'dst', p])),
    ];
    if (fdb.length > 0) {
      bridge.push(...fdb);
      settings.push('peers');
    }
    if (o && settings.length > 0)
      changes.push({ kind: 'link', action: 'configure', device: d.name, linkKind: d.kind, tenant: d.tenant, settings });
  }
  return { ip, bridge, sysctl, ip6, creates, changes };
}

// Deleting a device makes the kernel wait for an RCU grace period; deleting a whole device
// group is one unregister of all of them (1,200 devices: ~25 s one by one, well under 1 s as a
// group). The group is used only when no device outside the doomed set is in it.
const DOOMED_GROUP = 191;

function deleteLines(stale: ObservedLink[], observed: Map<string, ObservedLink>): string[] {
  if (stale.length === 0) return [];
  const doomed = new Set(stale.map((o) => o.name));
  const groupFree = [...observed.values()].every((o) => doomed.has(o.name) || o.group !== DOOMED_GROUP);
  if (stale.length > 1 && groupFree) {
    return [
      ...stale.map((o) => batchLine(['link', 'set', 'dev', o.name, 'group', DOOMED_GROUP])),
      batchLine(['link', 'del', 'group', DOOMED_GROUP]),
    ];
  }
  const order = (k: string) => (k === 'bridge' ? 1 : 0);
  return stale.sort((a, b) => order(a.kind) - order(b.kind)).map((o) => batchLine(['link', 'del', 'dev', o.name]));
}

export async function applyLinkPlan(runner: CommandRunner, plan: LinkPlan): Promise<void> {
  await runBatch(runner, ['ip'], plan.ip, { step: 'links: apply' });
  await runBatch(runner, ['bridge'], plan.bridge, { step: 'links: FDB' });
  // -e: a setting the kernel lacks (IPv6 off) is not an error
  if (plan.sysctl.length > 0)
    await runner.run(['sysctl', '-q', '-e', '-w', ...plan.sysctl], { step: 'links: settings' });
  await runBatch(runner, ['ip'], plan.ip6, { step: 'links: IPv6 addresses' });
}

/** Deletes these links where they exist (rollback of what an apply created). */
export async function deleteLinks(runner: CommandRunner, names: string[]): Promise<void> {
  if (names.length === 0) return;
  const observed = await observeLinks(runner, 'links: rollback');
  const lines = names.filter((n) => observed.has(n)).map((n) => batchLine(['link', 'del', 'dev', n]));
  // -force: one already-gone link (a bridge's port deleted with it) must not stop the rest
  await runBatch(runner, ['ip', '-force'], lines, { step: 'links: rollback', allowFailure: true });
}

/** The bridge a device is enslaved to, if it exists and is. */
export async function linkMaster(runner: CommandRunner, dev: string): Promise<string | undefined> {
  const r = await runner.run(['ip', '-j', 'link', 'show', 'dev', dev], { allowFailure: true, step: 'links: observe' });
  if (r.exitCode !== 0) return undefined;
  return (JSON.parse(r.stdout || '[]') as { master?: string }[])[0]?.master;
}
