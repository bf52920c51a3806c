// The vocabulary of virtwire's tenant firewall policy, neutral of any backend: a rule is a list
// of conditions and a verdict. policy.ts writes every rule once in these terms; nft.ts and
// iptables.ts only render them (nft syntax; iptables-restore and ebtables-restore lines).
//
// Rules that apply per port, per tenant device or per uplink are *keyed*: one rule over a set of
// rows (a row is a device and what belongs to it, e.g. a port and its MAC). nftables keeps such a
// rule as one rule and the rows as a set (the rule count does not grow with the ports);
// iptables and ebtables have no sets, so they repeat the rule once per row, grouped by device.

/** What a condition looks at. */
export type Field =
  | 'iif' // input device
  | 'oif' // output device
  | 'saddr' // IPv4 source: an address or a CIDR
  | 'daddr' // IPv4 destination
  | 'ct' // conntrack state: 'established' (established or related)
  | 'ctStatus' // conntrack status: 'dnat' (its destination was translated)
  | 'daddrType' // the destination's kind: 'local' (one of this host's addresses)
  | 'l4proto' // tcp | udp | icmp
  | 'dport' // transport destination port (after l4proto)
  | 'udpSport'
  | 'udpDport' // a port, or a list of ports
  | 'icmpType' // 'echo-request'
  | 'etherSrc' // source MAC
  | 'etherType' // 'ip' | 'arp' | 'ip6'
  | 'arpSpa' // ARP sender IPv4 address
  | 'arpTpa' // ARP target IPv4 address
  | 'arpSha' // ARP sender MAC
  | 'dhcpChaddr' // a DHCP message's client hardware address (a MAC; UDP payload bytes 28-33)
  | 'saddr6' // IPv6 source: an address or a CIDR
  | 'daddr6' // IPv6 destination
  | 'icmp6Type' // an ICMPv6 type by name, or a list of them
  | 'ndTarget' // the target address of a neighbour solicitation or advertisement (ICMPv6 bytes 8-23)
  | 'fragment'; // 'yes': the packet is an IPv6 fragment (it has a fragment header)

export type Value = string | number | number[] | string[];

/** The ICMPv6 types an `icmp6Type` condition may name (nft's names), with their numbers (iptables', ebtables'). */
export const ICMP6_TYPES: Readonly<Record<string, number>> = {
  'echo-request': 128,
  'nd-router-solicit': 133,
  'nd-router-advert': 134,
  'nd-neighbor-solicit': 135,
  'nd-neighbor-advert': 136,
  'nd-redirect': 137,
  'mld2-listener-report': 143,
};

export interface Cond {
  field: Field;
  value: Value;
  not?: boolean;
}

/** A device condition on membership of a device set (nft `oifname @set`; iptables jumps to a chain listing it). */
export interface InSet {
  field: 'iif' | 'oif';
  set: string;
}

/**
 * What becomes of a matching packet:
 * - accept: forwarded (nft accept, iptables ACCEPT);
 * - pass: fine as far as virtwire goes; the host's own rules still decide (nft accept in
 *   virtwire's table; RETURN from virtwire's chain);
 * - return: leaves the chain unchanged (NAT exemptions);
 * - zone: its conntrack zone is set (tenants with the same addresses tracked apart);
 * - dnat: its destination becomes `to` (and `port`, if given); snat: its source becomes `to`.
 */
export type Verdict =
  | 'accept'
  | 'pass'
  | 'return'
  | 'drop'
  | 'masquerade'
  | { zone: number }
  | { dnat: string; port?: number }
  | { snat: string };

/** A rule with literal values. */
export interface Rule {
  conds: (Cond | InSet)[];
  verdict: Verdict;
}

/**
 * A rule over the rows of `set`: the packet's `key` fields are a row of it (or, `not`, its
 * device's row is another; only devices of `members` are checked then), and `conds` hold.
 */
export interface KeyedRule {
  key: Field[];
  set: string;
  not?: boolean;
  members?: string;
  conds: Cond[];
  verdict: Verdict;
}

/** A named set of rows: tuples of the values of `fields` (the first is always a device). */
export interface RowSet {
  fields: Field[];
  rows: Value[][];
}

/**
 * Keyed rules that share their devices: `devices` (a device set) orders the expansion for
 * backends without sets — every rule for the first device, then the next.
 */
export interface Block {
  devices: string;
  rules: KeyedRule[];
}

export const isInSet = (c: Cond | InSet): c is InSet => 'set' in c;

/** The rows of `set` whose device is `device`. */
export const rowsOf = (set: RowSet | undefined, device: string): Value[][] =>
  (set?.rows ?? []).filter((r) => r[0] === device);
