// dnsmasq's lease file: one line per lease, `<expiry> <mac> <ip> <hostname|*> <client-id|*>`.
// waitForLease resolves as soon as dnsmasq has written the lease (the one waiter: wait.ts).
import { pollFile, waitForFile } from './wait.js';
import type { HostFiles } from './host-files.js';

export interface Lease {
  expiry: number;
  mac: string;
  ip: string;
  hostname?: string;
}

export function parseLeases(text: string): Lease[] {
  const leases: Lease[] = [];
  for (const line of text.split('\n')) {
    const [expiry, mac, ip, hostname] = line.trim().split(/\s+/);
    if (!expiry || !mac || !ip || !/^\d+$/.test(expiry)) continue;
    leases.push({
      expiry: Number(expiry),
      mac: mac.toLowerCase(),
      ip,
      ...(hostname && hostname !== '*' ? { hostname } : {}),
    });
  }
  return leases;
}

export interface LeaseWait {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** only a lease given after this: its expiry later than this one's (a VM started again) */
  newerThan?: number;
}

const leaseOf = (mac: string, newerThan = -1) => {
  const want = mac.toLowerCase();
  return (text: string) => parseLeases(text).find((l) => l.mac === want && l.expiry > newerThan);
};

/** Resolves with the lease for `mac` once dnsmasq has written it; TIMEOUT after `timeoutMs`. */
export function waitForLease(
  leaseFile: string,
  mac: string,
  { timeoutMs = 60_000, signal, newerThan }: LeaseWait = {},
): Promise<Lease> {
  return waitForFile(leaseFile, leaseOf(mac, newerThan), {
    timeoutMs,
    what: `a DHCP lease for ${mac} in ${leaseFile}`,
    ...(signal ? { signal } : {}),
  });
}

/**
 * The same for a host whose files are reached through commands (a remote host): no inotify
 * reaches across SSH, so the lease file is re-read every `intervalMs` (one `cat` over the
 * host's open SSH connection).
 */
export function pollForLease(
  files: HostFiles,
  leaseFile: string,
  mac: string,
  { timeoutMs = 60_000, signal, intervalMs = 250, newerThan }: LeaseWait & { intervalMs?: number } = {},
): Promise<Lease> {
  return pollFile(() => files.read(leaseFile), leaseOf(mac, newerThan), {
    timeoutMs,
    intervalMs,
    what: `a DHCP lease for ${mac} in ${leaseFile}`,
    ...(signal ? { signal } : {}),
  });
}
