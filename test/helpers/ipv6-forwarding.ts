// The host plane turns IPv6 forwarding on for a network with cidr6 (as libvirt does); a test that
// makes such a network on this machine's own namespace puts the setting back as it found it.
import { execa } from 'execa';

/** Reads net.ipv6.conf.all.forwarding now; the returned function restores it. */
export async function keepIpv6Forwarding(): Promise<() => Promise<void>> {
  const before = (await execa('sysctl', ['-n', 'net.ipv6.conf.all.forwarding'])).stdout.trim();
  return async () => {
    await execa('sysctl', ['-q', '-w', `net.ipv6.conf.all.forwarding=${before}`]);
  };
}
