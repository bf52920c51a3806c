// What a hostile guest sends, byte for byte, as the hex raw-send.py takes (run in the attacker's
// namespace: `python3 SEND frame|udp|udpflood …`), and tcpdump filters that pick them out.
import { fileURLToPath } from 'node:url';
import { parseIpv6 } from '../../lib/spec/index.js';

export const SEND = fileURLToPath(new URL('./raw-send.py', import.meta.url));

export const hex = (mac: string) => mac.replaceAll(':', '');
const ip4hex = (ip: string) =>
  ip
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .join('');
/** An ARP request (who has `target`, tell `sender`), broadcast from `mac`. */
export const arpRequest = (mac: string, sender: string, target: string) =>
  `ffffffffffff${hex(mac)}0806` + `0001080006040001${hex(mac)}${ip4hex(sender)}000000000000${ip4hex(target)}`;
/** A DHCPREQUEST for `ip` (INIT-REBOOT: no server named) with the broadcast flag, naming `chaddr`. */
export const dhcpRequest = (chaddr: string, ip: string) =>
  '0101060012345678' +
  '00008000' +
  '00'.repeat(16) +
  hex(chaddr) +
  '00'.repeat(10 + 192) +
  '63825363' +
  '350103' +
  `3204${ip4hex(ip)}` +
  'ff';
/** tcpdump's test that a BOOTP message (UDP payload) names `chaddr`. */
export const naming = (chaddr: string) =>
  `udp[36:4] = 0x${hex(chaddr).slice(0, 8)} and udp[40:2] = 0x${hex(chaddr).slice(8)}`;
/** A VXLAN packet's payload: the header with `vni`, then the inner frame. */
export const vxlan = (vni: number, inner: string) => `08000000${vni.toString(16).padStart(6, '0')}00${inner}`;

const ip6hex = (ip: string) => parseIpv6(ip)!.toString(16).padStart(32, '0');
/**
 * A router advertisement (ICMPv6 134, checksum left to the kernel) for `prefix`/64 with SLAAC on,
 * a router lifetime of 1800 s, and `mac` as its source link-layer address.
 */
export const routerAdvert = (prefix: string, mac: string) =>
  '86000000' +
  '40000708' +
  '00000000' +
  '00000000' +
  `030440c0` +
  '00278d00' +
  '00093a80' +
  '00000000' +
  ip6hex(prefix) +
  `0101${hex(mac)}`;
/** An unsolicited neighbour advertisement (ICMPv6 136, override set) that `target` is at `mac`. */
export const neighbourAdvert = (target: string, mac: string) =>
  '88000000' + '20000000' + ip6hex(target) + `0201${hex(mac)}`;

/**
 * A destination options header of 24 bytes whose last 16 are `address` (the data of an
 * experimental option a receiver skips, RFC 4727, after a PadN): in front of an ICMPv6 message
 * it stands where the message's bytes 8-23 would be without it — a neighbour advertisement's
 * target, to whatever reads fixed offsets from the IPv6 header. Its next header is the kernel's.
 */
export const dstOptsWith = (address: string) => '0002' + '01020000' + '1e10' + ip6hex(address);

/**
 * A whole Ethernet frame carrying one ICMPv6 message (hop limit 255), its checksum computed over
 * the IPv6 pseudo-header: for what a socket would not send as given (e.g. from the unspecified
 * address, which a raw socket replaces by one of the sender's own).
 */
export function icmp6Frame(srcMac: string, dstMac: string, src: string, dst: string, message: string): string {
  const body = icmp6Checksummed(src, dst, message);
  const ip6 = '60000000' + body.length.toString(16).padStart(4, '0') + '3aff' + ip6hex(src) + ip6hex(dst);
  return `${hex(dstMac)}${hex(srcMac)}86dd${ip6}${body.toString('hex')}`;
}

/**
 * The same message in two IPv6 fragments (one identification, a fragment header each): the first
 * carries its first `firstBytes` (a multiple of 8), the second the rest — for a neighbour
 * advertisement cut at 8, its type in the first and its target in the second.
 */
export function icmp6Fragments(
  srcMac: string,
  dstMac: string,
  src: string,
  dst: string,
  message: string,
  firstBytes: number,
): [string, string] {
  const body = icmp6Checksummed(src, dst, message);
  const id = '76770001';
  const part = (offset: number, bytes: Buffer, more: boolean) => {
    const frag = '3a00' + ((offset << 3) | (more ? 1 : 0)).toString(16).padStart(4, '0') + id;
    const length = (8 + bytes.length).toString(16).padStart(4, '0');
    const ip6 = '60000000' + length + '2cff' + ip6hex(src) + ip6hex(dst);
    return `${hex(dstMac)}${hex(srcMac)}86dd${ip6}${frag}${bytes.toString('hex')}`;
  };
  return [part(0, body.subarray(0, firstBytes), true), part(firstBytes / 8, body.subarray(firstBytes), false)];
}

/** An ICMPv6 message with its checksum over the IPv6 pseudo-header. */
function icmp6Checksummed(src: string, dst: string, message: string): Buffer {
  const body = Buffer.from(message, 'hex');
  const pseudo = Buffer.concat([
    Buffer.from(ip6hex(src) + ip6hex(dst), 'hex'),
    Buffer.from([0, 0, body.length >> 8, body.length & 255, 0, 0, 0, 58]),
    body,
  ]);
  let sum = 0;
  for (let i = 0; i < pseudo.length; i += 2) sum += (pseudo[i]! << 8) | (pseudo[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  body.writeUInt16BE(~sum & 0xffff, 2);
  return body;
}
