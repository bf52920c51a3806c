// The network as a graph: hosts, each tenant's bridge on each host with its gateway, NAT and
// segment uplink, the VMs with their taps, the segments that join a tenant's bridges across hosts,
// and security groups with their members and rules. Each host's networks come from the one
// function that gives a host plane its desired state (hostStateFor), so the picture shows what
// the hosts are told to hold — uplink names, VNIs and VXLAN peers as that host sees them.
import type { GraphCluster, GraphEdge, GraphNode, NetworkGraph } from '../../types/graph.js';
import type { HostNetwork, HostPort } from '../../types/host.js';
import type { ResolvedNetwork, ResolvedSecurityGroup, ResolvedSecurityRule } from '../../types/resolved.js';
import type { HostTarget } from '../../types/vm.js';
import { hostStateFor } from '../engine/records-to-host.js';
import type { VmRecord } from '../engine/state/store.js';
import { namespaceNames, vlanDeviceName, vxlanDeviceName } from '../spec/index.js';

export interface GraphWorld {
  view: NetworkGraph['view'];
  /** every VM with the host it is (or will be) on */
  records: VmRecord[];
  /** the hosts VMs may be on (empty: this machine only) */
  hosts: HostTarget[];
  groups: ResolvedSecurityGroup[];
  /** live: each VM's domain state ('missing' where its domain is gone) */
  domains?: Map<string, string>;
  /** live: each tenant's host objects that differ from the records, and why */
  drift?: Map<string, string[]>;
}

/** A host's key in ids: its name, or `-` for this machine (no host name). */
const hostKey = (host: string | undefined) => host ?? '-';

export function buildGraph(world: GraphWorld): NetworkGraph {
  const g = new Builder();
  const records = [...world.records].sort((a, b) => a.vm.name.localeCompare(b.vm.name));
  const named = new Map(world.hosts.map((h) => [h.name, h]));
  const hosts = [...new Set([...world.hosts.map((h) => h.name), ...records.map((r) => r.host)])].sort(byHost);
  const uplinks = new Map<string, { id: string; segment: string }[]>(); // tenant -> its uplinks per host

  for (const host of hosts) {
    const target = host === undefined ? undefined : named.get(host);
    const cluster = `host:${hostKey(host)}`;
    g.cluster({ id: cluster, label: hostLabel(host, target, world) });
    const here = records.filter((r) => r.host === host);
    const { networks } = hostStateFor(
      records,
      {
        name: host,
        ...(target?.uplink ? { uplink: target.uplink } : {}),
        ...(target?.address ? { address: target.address } : {}),
      },
      world.groups,
    );
    if (networks.some((n) => n.network.nat))
      g.node({ id: `outside:${hostKey(host)}`, kind: 'outside', label: ['outside', 'masquerade'], cluster });
    for (const net of networks) {
      const uplink = drawNetwork(g, host, cluster, net, world.drift?.get(net.network.tenant));
      if (uplink) uplinks.set(net.network.tenant, [...(uplinks.get(net.network.tenant) ?? []), uplink]);
    }
    for (const r of here) {
      const domain = world.domains ? (world.domains.get(r.vm.name) ?? 'missing') : undefined;
      g.node({
        id: `vm:${r.vm.name}`,
        kind: 'vm',
        label: [
          r.vm.name,
          `${r.vm.vcpus} vCPU, ${r.vm.memoryMiB} MiB`,
          ...(domain !== undefined ? [`${r.accel}, ${domain}`] : []),
        ],
        cluster,
        ...(domain !== undefined && domain !== 'running' ? { drift: `domain ${domain}` } : {}),
      });
      for (const nic of r.vm.nics) {
        const net = networks.find((n) => n.network.tenant === nic.network.tenant);
        const port = net?.ports.find((p) => p.name === nic.tap);
        g.edge({
          from: `vm:${r.vm.name}`,
          to: bridgeId(host, nic.network.tenant),
          kind: 'port',
          label: portLabel(port),
        });
      }
    }
  }

  // a tenant's uplinks on different hosts carry one segment: every pair is joined
  for (const [, ups] of [...uplinks].sort(([a], [b]) => a.localeCompare(b)))
    for (let i = 0; i < ups.length; i++)
      for (let j = i + 1; j < ups.length; j++)
        g.edge({ from: ups[i]!.id, to: ups[j]!.id, kind: 'segment', label: ups[i]!.segment });

  drawGroups(g, records, world.groups);
  return g.graph(world.view);
}

/** The bridge, gateway and uplink of one tenant on one host; its uplink node, if it has one. */
function drawNetwork(
  g: Builder,
  host: string | undefined,
  cluster: string,
  net: HostNetwork,
  drift: string[] | undefined,
): { id: string; segment: string } | undefined {
  const n = net.network;
  const key = `${hostKey(host)}:${n.tenant}`;
  g.node({
    id: bridgeId(host, n.tenant),
    kind: 'bridge',
    label: [n.bridge, `tenant ${n.tenant}`, n.cidr],
    cluster,
    ...(drift?.length ? { drift: drift.join(', ') } : {}),
  });
  let gatewayCluster = cluster;
  if (n.namespace) {
    gatewayCluster = `netns:${key}`;
    g.cluster({
      id: gatewayCluster,
      label: `netns ${namespaceNames(n.tenant).netns} (transit ${n.namespace.transit})`,
      parent: cluster,
    });
  }
  g.node({ id: `gateway:${key}`, kind: 'gateway', label: gatewayLabel(n), cluster: gatewayCluster });
  g.edge({ from: bridgeId(host, n.tenant), to: `gateway:${key}`, kind: 'gateway', label: n.gateway });
  if (n.nat)
    g.edge({
      from: `gateway:${key}`,
      to: `outside:${hostKey(host)}`,
      kind: 'nat',
      label: [n.namespace ? 'NAT twice, via its transit' : 'NAT', n.uplink ? `out of ${n.uplink}` : '']
        .join(' ')
        .trim(),
    });
  const seg = n.segment;
  if (seg.type === 'none') return undefined;
  const id = `uplink:${key}`;
  const label =
    seg.type === 'vlan'
      ? [
          seg.id === undefined ? `${seg.uplink}.?` : vlanDeviceName(seg.uplink, seg.id),
          `VLAN ${seg.id ?? '?'} on ${seg.uplink}`,
        ]
      : [
          seg.vni === undefined ? 'vxlan' : vxlanDeviceName(n.tenant, seg.vni),
          `VNI ${seg.vni ?? '?'} on ${seg.uplink}`,
          ...(seg.local ? [`local ${seg.local}`] : []),
          ...(seg.remotes?.length ? [`peers ${seg.remotes.join(', ')}`] : []),
          ...(seg.group ? [`group ${seg.group}`] : []),
        ];
  g.node({ id, kind: 'uplink', label, cluster });
  g.edge({ from: bridgeId(host, n.tenant), to: id, kind: 'uplink' });
  return { id, segment: seg.type === 'vlan' ? `VLAN ${seg.id ?? '?'}` : `VNI ${seg.vni ?? '?'}` };
}

/** Groups, their members (by NIC) and their rules: who may reach whom, on what. */
function drawGroups(g: Builder, records: VmRecord[], groups: ResolvedSecurityGroup[]): void {
  const used = new Set(records.flatMap((r) => r.vm.nics.flatMap((n) => n.securityGroups ?? [])));
  const drawn = [...groups].filter((x) => used.has(x.name)).sort((a, b) => a.name.localeCompare(b.name));
  for (const grp of drawn)
    g.node({ id: `group:${grp.name}`, kind: 'group', label: [`group ${grp.name}`, `tenant ${grp.tenant}`] });
  for (const r of records)
    for (const nic of r.vm.nics)
      for (const name of nic.securityGroups ?? [])
        g.edge({ from: `vm:${r.vm.name}`, to: `group:${name}`, kind: 'member', label: nic.ip ?? nic.tap });
  for (const grp of drawn)
    for (const rule of grp.rules) {
      const peer = peerNode(g, rule);
      const [from, to] = rule.direction === 'ingress' ? [peer, `group:${grp.name}`] : [`group:${grp.name}`, peer];
      g.edge({ from, to, kind: 'rule', label: ruleLabel(rule) });
    }
}

function peerNode(g: Builder, rule: ResolvedSecurityRule): string {
  const peer = rule.peer;
  if ('group' in peer) return `group:${peer.group}`;
  const id = 'cidr' in peer ? `peer:${peer.cidr}` : 'peer:any';
  g.node({ id, kind: 'peer', label: ['cidr' in peer ? peer.cidr : 'anyone'] });
  return id;
}

const ruleLabel = (rule: ResolvedSecurityRule) =>
  [rule.protocol, ...(rule.ports ? [rule.ports.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',')] : [])].join(
    ' ',
  );

function gatewayLabel(n: ResolvedNetwork): string[] {
  return [
    `gateway ${n.gateway}`,
    `dnsmasq: DHCP ${n.dhcpRange[0]} - ${n.dhcpRange[1]}, DNS`,
    ...(n.hostServices?.length
      ? [`host services ${n.hostServices.map((s) => `${s.protocol}/${s.port}`).join(', ')}`]
      : []),
    n.nat ? 'NAT' : 'no NAT',
  ];
}

function portLabel(port: HostPort | undefined): string {
  if (!port) return '';
  const qos = port.qos
    ? [
        port.qos.egressKbps && `out ${port.qos.egressKbps} kbit/s`,
        port.qos.ingressKbps && `in ${port.qos.ingressKbps} kbit/s`,
      ]
        .filter(Boolean)
        .join(', ')
    : '';
  // its ways in from outside the tenant
  const ways = [
    ...(port.forwards ?? []).map((f) => `${f.address ?? 'uplink'}:${f.hostPort}/${f.protocol} -> ${f.port}`),
    ...(port.floatingIp ? [`floating IP ${port.floatingIp}`] : []),
  ];
  return [port.name, port.ip ?? 'DHCP', port.mac, qos, ...ways].filter(Boolean).join('\n');
}

function hostLabel(host: string | undefined, target: HostTarget | undefined, world: GraphWorld): string {
  if (host !== undefined) return `host ${host}${target?.address ? ` (${target.address})` : ''}`;
  // a VM without a host in a spec with hosts is placed by free memory when it is created
  return world.hosts.length > 0 && world.view === 'desired' ? 'placed at apply (by free memory)' : 'this host';
}

const byHost = (a: string | undefined, b: string | undefined) =>
  a === b ? 0 : a === undefined ? -1 : b === undefined ? 1 : a.localeCompare(b);

const bridgeId = (host: string | undefined, tenant: string) => `bridge:${hostKey(host)}:${tenant}`;

/** Collects nodes (first one of an id wins), clusters and edges in the order they are drawn. */
class Builder {
  private readonly clusters: GraphCluster[] = [];
  private readonly nodes = new Map<string, GraphNode>();
  private readonly edges: GraphEdge[] = [];

  cluster(c: GraphCluster): void {
    this.clusters.push(c);
  }

  node(n: GraphNode): void {
    if (!this.nodes.has(n.id)) this.nodes.set(n.id, n);
  }

  edge(e: GraphEdge): void {
    this.edges.push(e.label ? e : { from: e.from, to: e.to, kind: e.kind });
  }

  graph(view: NetworkGraph['view']): NetworkGraph {
    return { view, clusters: this.clusters, nodes: [...this.nodes.values()], edges: this.edges };
  }
}
