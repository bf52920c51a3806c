// A picture of the network as data: what `virtwire graph` draws (rendered as DOT, SVG or Mermaid).
// Built from the spec (the world apply would make) or from the state and the hosts (the world
// that is there now, drift marked). Every list is in a fixed order, so the same input gives the
// same document and a diff of two graphs shows what changed.

export type GraphFormat = 'dot' | 'mermaid';

export type GraphNodeKind =
  /** a VM: name, size, live state */
  | 'vm'
  /** a tenant's bridge on one host */
  | 'bridge'
  /** a tenant's gateway with its DHCP/DNS (dnsmasq) and NAT */
  | 'gateway'
  /** a tenant's segment uplink on one host: a VLAN sub-interface or a VXLAN device */
  | 'uplink'
  /** where a host masquerades its tenants out (its default route or a named uplink) */
  | 'outside'
  /** a security group */
  | 'group'
  /** a security rule's peer that is not a group: a CIDR, or anyone */
  | 'peer';

export interface GraphNode {
  /** unique and deterministic, e.g. `vm:web`, `bridge:hv1:acme` */
  id: string;
  kind: GraphNodeKind;
  /** the label's lines, the first one its name */
  label: string[];
  /** the cluster it is drawn in (a host, a tenant's namespace); absent: the top level */
  cluster?: string;
  /** live graphs: how it differs from the records (a domain not running, host objects drifted) */
  drift?: string;
}

export interface GraphCluster {
  id: string;
  label: string;
  /** a cluster inside another (a tenant's namespace inside its host) */
  parent?: string;
}

export type GraphEdgeKind =
  /** a VM's NIC: its tap on the tenant's bridge */
  | 'port'
  /** a bridge and its gateway */
  | 'gateway'
  /** a bridge and its segment uplink */
  | 'uplink'
  /** one tenant's uplinks on two hosts: the same VLAN id or VNI (undirected) */
  | 'segment'
  /** a gateway masquerading out of its host */
  | 'nat'
  /** a NIC's membership of a security group */
  | 'member'
  /** a security rule: traffic from `from` to `to` allowed on the label's protocol and ports */
  | 'rule';

export interface GraphEdge {
  from: string;
  to: string;
  kind: GraphEdgeKind;
  label?: string;
}

export interface NetworkGraph {
  /** 'desired': the spec as apply would leave the hosts; 'live': the state and the hosts now */
  view: 'desired' | 'live';
  clusters: GraphCluster[];
  nodes: GraphNode[];
  edges: GraphEdge[];
}
