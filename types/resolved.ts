// The normalised model lib/spec produces from user input: every default filled in, every name
// derived. Everything below lib/spec works on these, never on raw specs.
import type { BootSpec, CloudInitSpec, QosSpec, SegmentSpec, Accel, HostService, DataDiskSpec } from './spec.js';

export interface ResolvedNetwork {
  tenant: string;
  /** network address, e.g. 10.10.0.0 */
  network: string;
  prefix: number;
  cidr: string;
  netmask: string;
  broadcast: string;
  gateway: string;
  dhcpRange: [string, string];
  nat: boolean;
  uplink?: string;
  segment: SegmentSpec;
  /** the gateway's ports open to the tenant beyond DHCP, DNS and ping (absent: none) */
  hostServices?: HostService[];
  /** DNS forwarding as given (absent: the default for its NAT setting) */
  dns?: { upstream?: string[] };
  /** the network's IPv6 (absent: IPv4 only; the firewall drops every IPv6 frame of its ports) */
  ipv6?: ResolvedIpv6;
  /** host bridge name (<= 15 chars) */
  bridge: string;
  /**
   * The tenant's gateway, DHCP/DNS and NAT live in a network namespace of its own, joined to the
   * host by a transit /30 (`transit`, from the pool; the host holds its first address, the
   * namespace the second): given when its subnet overlaps another tenant's on one of its hosts,
   * and kept for the tenant's life. Absent: the gateway is on the host's bridge.
   */
  namespace?: { transit: string };
}

export interface ResolvedIpv6 {
  /** the /64, canonical text, e.g. fd10:10::/64 */
  cidr: string;
  /** its network address, e.g. fd10:10:: */
  network: string;
  /** the bridge's address in it (default ::1) */
  gateway: string;
  /**
   * what leaves the tenant: 'nat' masqueraded to the host's address (NAT66), 'routed' as it is (the
   * operator routes the prefix to this host), 'none' nothing (a network without NAT)
   */
  outbound: 'nat' | 'routed' | 'none';
}

export interface ResolvedNic {
  index: number;
  network: ResolvedNetwork;
  mac: string;
  /** undefined until allocated */
  ip?: string;
  /**
   * its IPv6 address on a network with `ipv6`: the one pinned (stateful DHCPv6), else its SLAAC
   * address (the MAC's EUI-64 in the /64) — with its link-local address, the only ones it may send from
   */
  ip6?: string;
  /** true when ip6 was given (served by DHCPv6; the NIC may also hold its SLAAC address) */
  ip6Pinned?: boolean;
  qos?: QosSpec;
  /** host tap name (<= 15 chars) */
  tap: string;
  /** its security groups, sorted (absent: none) */
  securityGroups?: string[];
  /** its port forwards, protocol filled in, in the order given (absent: none) */
  forwards?: ResolvedForward[];
  floatingIp?: string;
}

export interface ResolvedForward {
  hostPort: number;
  port: number;
  protocol: 'tcp' | 'udp';
  /** absent: every address of the host */
  address?: string;
}

/** A security group with its rules normalised: port ranges, one peer each. */
export interface ResolvedSecurityGroup {
  name: string;
  tenant: string;
  description?: string;
  rules: ResolvedSecurityRule[];
}

export interface ResolvedSecurityRule {
  direction: 'ingress' | 'egress';
  protocol: 'tcp' | 'udp' | 'icmp' | 'any';
  /** inclusive ranges, sorted; absent: every port */
  ports?: [number, number][];
  peer: { cidr: string } | { group: string } | { any: true };
  /** the one family it allows (a CIDR peer's own); absent: IPv4 and IPv6 */
  ethertype?: 'ipv4' | 'ipv6';
  description?: string;
}

export interface ResolvedVm {
  name: string;
  uuid: string;
  vcpus: number;
  memoryMiB: number;
  /** absent: memoryMiB */
  maxMemoryMiB?: number;
  disks?: DataDiskSpec[];
  accel: Accel;
  boot: BootSpec;
  cloudInit?: CloudInitSpec;
  nics: ResolvedNic[];
  serialLog?: string;
  host?: string;
}
