// Values spliced into firewall input (nft scripts, iptables-restore and ebtables-restore files).
// Every one was validated upstream (lib/spec, validateHostState); they are checked again here,
// where they meet the parser, so nothing can leave its token or start a new line.
import { VirtwireError } from '../../errors/index.js';

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
