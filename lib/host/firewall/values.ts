// Values spliced into firewall input (nft scripts, iptables-restore and ebtables-restore files).
// Every one was validated upstream (lib/spec, validateHostState); they are checked again here,
// where they meet the parser, so nothing can leave its token or start a new line.
import { VirtwireError } from '../../errors/index.js';
import { formatIpv6, parseIpv6 } from '../../spec/index.js';

export function ifname(name: string): string {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name))
    throw new VirtwireError('UNSAFE_VALUE', `refusing unsafe interface name ${JSON.stringify(name)}`);
  return name;
}

export function mac(raw: string): string {
  const m = raw.toLowerCase();
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m))
    throw new VirtwireError('UNSAFE_VALUE', `refusing unsafe MAC ${JSON.stringify(m)}`);
  return m;
}

export function ipv4(a: string): string {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(a))
    throw new VirtwireError('UNSAFE_VALUE', `refusing unsafe address ${JSON.stringify(a)}`);
  return a;
}

export function port(p: number): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535)
    throw new VirtwireError('UNSAFE_VALUE', `refusing unsafe port ${JSON.stringify(p)}`);
  return p;
}

export function cidr(c: string): string {
  const [a, len, ...rest] = c.split('/');
  if (rest.length || !len || !/^\d{1,2}$/.test(len))
    throw new VirtwireError('UNSAFE_VALUE', `refusing unsafe CIDR ${JSON.stringify(c)}`);
  return `${ipv4(a!)}/${len}`;
}

/** An IPv6 address in its canonical text (lib/spec's formatting): what nft prints back. */
export function ipv6(a: string): string {
  const v = parseIpv6(a);
  if (v === undefined || formatIpv6(v) !== a)
    throw new VirtwireError('UNSAFE_VALUE', `refusing unsafe IPv6 address ${JSON.stringify(a)}`);
  return a;
}

export function cidr6(c: string): string {
  const [a, len, ...rest] = c.split('/');
  if (rest.length || !len || !/^\d{1,3}$/.test(len) || Number(len) > 128)
    throw new VirtwireError('UNSAFE_VALUE', `refusing unsafe IPv6 CIDR ${JSON.stringify(c)}`);
  return `${ipv6(a!)}/${len}`;
}

/** An IPv6 address as 32 hex digits (a raw 128-bit field's value). */
export const ipv6Hex = (a: string): string => parseIpv6(ipv6(a))!.toString(16).padStart(32, '0');
