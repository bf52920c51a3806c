import { createHash } from 'node:crypto';

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** Canonical lower-case MAC, or undefined when it is not a usable unicast address. */
export function parseMac(text: string): { mac: string } | { error: string } {
  if (!MAC_RE.test(text)) return { error: `"${text}" is not a MAC address (xx:xx:xx:xx:xx:xx)` };
  const mac = text.toLowerCase();
  const first = parseInt(mac.slice(0, 2), 16);
  if (first & 1) return { error: `${mac} is a multicast address; a NIC needs a unicast MAC` };
  if (mac === '00:00:00:00:00:00') return { error: 'the all-zero MAC is not usable' };
  return { mac };
}

/** Deterministic MAC in QEMU's 52:54:00 range from a seed (VM name + NIC index). */
export function deriveMac(seed: string): string {
  const h = createHash('sha256').update(`mac\0${seed}`).digest();
  return ['52', '54', '00', ...[h[0]!, h[1]!, h[2]!].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}
