// The host network plane's desired state: what lib/host makes true on one host (or one network
// namespace). Built from resolved specs by the engine, or by hand for containers and tests.
import type { QosSpec } from './spec.js';
import type { ResolvedNetwork } from './resolved.js';

/** A guest's port on its tenant bridge: a tap (a VM's NIC) or a veth whose peer is in a netns. */
export interface HostPort {
  /** host-side device name (<= 15 chars), e.g. from tapName() */
  name: string;
  kind: 'tap' | 'veth';
  /** veth only: the other end, created inside `netns` with the guest's MAC */
  peer?: { name: string; netns: string };
  /** the guest's MAC: the only source MAC the port may send from */
  mac: string;
  /** the guest's IP: the only source IP it may send from; also its static DHCP lease */
  ip?: string;
  /**
   * the guest's IPv6 address on a network with IPv6 (its SLAAC address, or a pinned one that
   * DHCPv6 serves): with its link-local one (from its MAC), the only IPv6 sources it may send from
   */
  ip6?: string;
  /** ip6 was given: DHCPv6 hands it out (the guest may hold its SLAAC address too) */
  ip6Pinned?: true;
  /** DNS name for the static lease */
  hostname?: string;
  qos?: QosSpec;
  /** names of its network's security groups (absent or empty: open within the tenant) */
  securityGroups?: string[];
  /** the host's ports that reach this guest (its network must be NAT'd; the guest needs its ip) */
  forwards?: HostForward[];
  /** an address of the host's uplink subnet mapped 1:1 to this guest (it needs its ip) */
  floatingIp?: string;
}

export interface HostForward {
  hostPort: number;
  port: number;
  protocol: 'tcp' | 'udp';
  /**
   * absent: the addresses of the host's uplink — the network's `uplink`, else the device of the
   * host's default route — resolved on the host when it is planned (never every address: a
   * management or storage network does not expose guests)
   */
  address?: string;
}

/** A security group as a host enforces it: its peer groups resolved to their members' addresses. */
export interface HostSecurityGroup {
  name: string;
  rules: HostSecurityRule[];
}

export interface HostSecurityRule {
  direction: 'ingress' | 'egress';
  protocol: 'tcp' | 'udp' | 'icmp' | 'any';
  /** inclusive ranges; absent: every port */
  ports?: [number, number][];
  /** a group peer carries its members' addresses, IPv4 and IPv6, on every host (kept current by the engine) */
  peer: { cidr: string } | { group: string; addresses: string[] } | { any: true };
  /** the one family it allows; absent: both */
  ethertype?: 'ipv4' | 'ipv6';
}

export interface HostNetwork {
  network: ResolvedNetwork;
  ports: HostPort[];
  /** run dnsmasq (DHCP + DNS) on the bridge; default true */
  dhcp?: boolean;
  /**
   * MACs of guests whose ports are elsewhere that this network's dnsmasq serves (a namespaced
   * tenant's guests, seen from inside its namespace); with the ports' own, the only MACs a DHCP
   * message may come from and name
   */
  dhcpClients?: string[];
  /** forwards to guests whose ports are elsewhere (a namespaced tenant's, served inside its namespace) */
  forwardsIn?: (HostForward & { ip: string })[];
  /** floating IPs of guests whose ports are elsewhere (a namespaced tenant's: routed to its namespace) */
  floatingIn?: { floatingIp: string; ip: string }[];
  /** the tenant's security groups its ports name */
  securityGroups?: HostSecurityGroup[];
}

export interface HostState {
  networks: HostNetwork[];
}

/** What the kernel and tools of a host can do, read once by the probe. */
export interface HostCapabilities {
  bridge: boolean;
  tap: boolean;
  veth: boolean;
  vlan: boolean;
  vxlan: boolean;
  ifb: boolean;
  nftables: boolean;
  nftBridge: boolean;
  iptables: boolean;
  /** ebtables (the iptables backend's anti-spoofing) */
  ebtables: boolean;
  qdiscs: Record<'htb' | 'tbf' | 'sfq' | 'fq_codel' | 'ingress', boolean>;
  actions: Record<'police' | 'mirred', boolean>;
  dnsmasq: boolean;
  /** br_netfilter: a bridge's IPv4 frames pass the IP hooks with conntrack (security groups) */
  brNetfilter: boolean;
  /** the conntrack tool: cuts flows a changed security group no longer allows */
  conntrack: boolean;
}

/** How to reach a remote host with the system `ssh` (key-based, non-interactive). */
export interface SshTarget {
  /** user@host or host */
  destination: string;
  identityFile?: string;
  port?: number;
  /**
   * where the control socket lives: a directory owned by the caller, mode 0700, checked before
   * every use; default <OS temp dir>/virtwire-ssh-<uid>
   */
  controlDir?: string;
  /**
   * 'strict' (default): the host's key must already be in `knownHostsFile`; 'accept-new': the
   * first key seen is recorded there, a changed key is refused (OpenSSH's
   * StrictHostKeyChecking=accept-new). No policy turns checking off.
   */
  hostKeyPolicy?: 'strict' | 'accept-new';
  /** virtwire's own known_hosts; default <state dir>/known_hosts */
  knownHostsFile?: string;
}
