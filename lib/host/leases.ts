// dnsmasq's lease file: one line per lease, `<expiry> <mac> <ip> <hostname|*> <client-id|*>`.
// waitForLease watches the file's directory and resolves as soon as the lease is written.
import { watch, readFileSync, existsSync } from 'node:fs';
import { dirname, basename } from 'node:path';
import { waitUntil } from './wait.js';
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
    leases.push({ expiry: Number(expiry), mac: mac.toLowerCase(), ip, ...(hostname && hostname !== '*' ? { hostname } : {}) });
  }
  return leases;
}

export function readLeases(leaseFile: string): Lease[] {
  return existsSync(leaseFile) ? parseLeases(readFileSync(leaseFile, 'utf8')) : [];
}

/** Resolves with the lease for `mac` once dnsmasq has written it; rejects after `timeoutMs`. */
export function waitForLease(leaseFile: string, mac: string, { timeoutMs = 60_000, signal }: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Lease> {
  const want = mac.toLowerCase();
  const find = () => readLeases(leaseFile).find((l) => l.mac === want);
  return new Promise((resolve, reject) => {
    const name = basename(leaseFile);
    // dnsmasq rewrites the file in place or replaces it: watch the directory for either
    const watcher = watch(dirname(leaseFile), (_event, file) => {
      if (file === null || file === name) check();
    });
    const timer = setTimeout(() => done(new Error(`no DHCP lease for ${mac} in ${leaseFile} within ${timeoutMs} ms`)), timeoutMs);
    const onAbort = () => done(new Error('waitForLease aborted'));
    signal?.addEventListener('abort', onAbort);
    function done(err: Error | undefined, lease?: Lease) {
      watcher.close();
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(lease!);
    }
    function check() {
      const lease = find();
      if (lease) done(undefined, lease);
    }
    check(); // it may already be there
  });
}

/**
 * The same for a host whose files are reached through commands (a remote host): no inotify
 * reaches across SSH, so the lease file is re-read every `intervalMs` (one `cat` over the
 * host's open SSH connection) until the lease is there, the deadline passes or `signal` aborts.
 */
export async function pollForLease(files: HostFiles, leaseFile: string, mac: string, { timeoutMs = 60_000, signal, intervalMs = 250 }: { timeoutMs?: number; signal?: AbortSignal; intervalMs?: number } = {}): Promise<Lease> {
  const want = mac.toLowerCase();
  let lease: Lease | undefined;
  const found = async () => (lease = parseLeases((await files.read(leaseFile)) ?? '').find((l) => l.mac === want)) !== undefined;
  await waitUntil(found, { timeoutMs, intervalMs, ...(signal ? { signal } : {}), what: `a DHCP lease for ${mac} in ${leaseFile}` });
  return lease!;
}
