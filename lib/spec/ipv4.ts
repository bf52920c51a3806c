// IPv4 arithmetic on unsigned 32-bit numbers. Strict dotted-quad parsing: no leading zeros
// (010 would be octal to some tools and decimal to others), no missing octets.

const OCTET = /^(0|[1-9][0-9]{0,2})$/;

export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!OCTET.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = value * 256 + n;
  }
  return value;
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

export interface Ipv4Cidr {
  network: number;
  prefix: number;
  /** the address as written, which may have host bits set */
  address: number;
}

export function parseCidr(text: string): Ipv4Cidr | undefined {
  const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(text);
  if (!m) return undefined;
  const address = parseIpv4(m[1]!);
  const prefix = Number(m[2]);
  if (address === undefined || prefix > 32 || (m[2]!.length > 1 && m[2]!.startsWith('0'))) return undefined;
  return { address, prefix, network: (address & maskOf(prefix)) >>> 0 };
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function broadcastOf(network: number, prefix: number): number {
  return (network | (~maskOf(prefix) >>> 0)) >>> 0;
}

export function inSubnet(ip: number, network: number, prefix: number): boolean {
  return (ip & maskOf(prefix)) >>> 0 === network;
}
