// IPv6 arithmetic on 128-bit BigInts. Parsing takes what RFC 4291 allows (node's isIPv6 decides
// the syntax; an embedded IPv4 tail included); formatting is RFC 5952's one canonical text
// (lowercase, the longest run of zero groups compressed), so two spellings of one address compare
// equal everywhere below lib/spec.
import { isIPv6 } from 'node:net';

const ALL = (1n << 128n) - 1n;

export function parseIpv6(text: string): bigint | undefined {
  if (typeof text !== 'string' || text.includes('%') || !isIPv6(text)) return undefined;
  let t = text.toLowerCase();
  // an IPv4 tail (::ffff:10.0.0.1) as two groups
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(t);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    t = `${t.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = t.split('::') as [string, string | undefined];
  const groups = (s: string | undefined) => (s ? s.split(':') : []);
  const h = groups(head);
  const tl = groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - tl.length).fill('0'), ...tl];
  return all.reduce((n, g) => (n << 16n) | BigInt(parseInt(g, 16)), 0n);
}

export function formatIpv6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  // the longest run of two or more zero groups (the first of equals) becomes ::
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.at < 0) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
}

export interface Ipv6Cidr {
  network: bigint;
  prefix: number;
  /** the address as written, which may have host bits set */
  address: bigint;
}

const maskOf6 = (prefix: number): bigint => (prefix === 0 ? 0n : (ALL << BigInt(128 - prefix)) & ALL);

export function parseCidr6(text: string): Ipv6Cidr | undefined {
  const m = /^([0-9a-fA-F:.]+)\/([0-9]{1,3})$/.exec(text);
  if (!m) return undefined;
  const address = parseIpv6(m[1]!);
  const prefix = Number(m[2]);
  if (address === undefined || prefix > 128 || (m[2]!.length > 1 && m[2]!.startsWith('0'))) return undefined;
  return { address, prefix, network: address & maskOf6(prefix) };
}

export const inPrefix6 = (ip: bigint, network: bigint, prefix: number): boolean => (ip & maskOf6(prefix)) === network;

/** Where an address is, as far as a tenant subnet cares: only ULA (fc00::/7) and global unicast (2000::/3) qualify. */
export function kindOf6(ip: bigint): 'ula' | 'global' | 'link-local' | 'multicast' | 'other' {
  if (inPrefix6(ip, 0xfc00n << 112n, 7)) return 'ula';
  if (inPrefix6(ip, 0x2000n << 112n, 3)) return 'global';
  if (inPrefix6(ip, 0xfe80n << 112n, 10)) return 'link-local';
  if (inPrefix6(ip, 0xffn << 120n, 8)) return 'multicast';
  return 'other';
}

/**
 * The modified EUI-64 interface identifier of a MAC (RFC 4291 appendix A) in a /64: the address
 * SLAAC gives a NIC that does not use temporary or stable-privacy addresses — Linux's default
 * (addr_gen_mode 0), and the one address port security lets it send from (as Neutron does).
 */
function eui64(mac: string, network: bigint): bigint {
  const b = mac.split(':').map((x) => parseInt(x, 16));
  const id = [b[0]! ^ 0x02, b[1]!, b[2]!, 0xff, 0xfe, b[3]!, b[4]!, b[5]!].reduce((n, x) => (n << 8n) | BigInt(x), 0n);
  return (network & maskOf6(64)) | id;
}

/** A NIC's link-local address (fe80::/64 with its EUI-64 identifier). */
export const linkLocalOf = (mac: string): string => formatIpv6(eui64(mac, 0xfe80n << 112n));

/** The solicited-node multicast group of an address (RFC 4291 2.7.1): where its neighbour solicitations go. */
export const solicitedNodeOf = (address: string): string =>
  formatIpv6(0xff0200000000000000000001ff000000n | (parseIpv6(address)! & 0xffffffn));

/** A NIC's SLAAC address in a /64 (`network`: its address, canonical text). */
export const slaacOf = (mac: string, network: string): string => formatIpv6(eui64(mac, parseIpv6(network)!));

/**
 * Every IPv6 address a NIC may send from: on a network with IPv6 (`ipv6`) its link-local one,
 * its ip6, and its SLAAC one (beside a pinned ip6 the guest holds both); none without.
 */
export function ipv6Sources(mac: string, ipv6: { network: string } | undefined, ip6: string | undefined): string[] {
  if (!ipv6 || !ip6) return [];
  return [...new Set([linkLocalOf(mac), ip6, slaacOf(mac, ipv6.network)])];
}
