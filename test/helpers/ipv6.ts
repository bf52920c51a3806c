// IPv6 helpers of the tests. The host plane turns IPv6 forwarding on for a network with cidr6
// (as libvirt does): a test that makes one in this machine's own namespace puts the setting back
// as it found it.
import { execa } from 'execa';
import type { Lab } from './lab.js';

/** Reads net.ipv6.conf.all.forwarding now; the returned function restores it. */
export async function keepIpv6Forwarding(): Promise<() => Promise<void>> {
  const before = (await execa('sysctl', ['-n', 'net.ipv6.conf.all.forwarding'])).stdout.trim();
  return async () => {
    await execa('sysctl', ['-q', '-w', `net.ipv6.conf.all.forwarding=${before}`]);
  };
}

/** A namespace's eth0's global IPv6 addresses once duplicate detection is done (what SLAAC gave it). */
export async function globalIpv6(lab: Lab, ns: string): Promise<string[]> {
  const { stdout } = await lab.exec(ns, ['ip', '-j', '-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'global']);
  return (JSON.parse(stdout) as { addr_info: { local: string; tentative?: boolean }[] }[])
    .flatMap((l) => l.addr_info)
    .filter((a) => !a.tentative)
    .map((a) => a.local);
}
