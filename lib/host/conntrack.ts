// Cutting tracked flows (`conntrack -D`), for the firewall's security groups (a flow now denied)
// and for floating IPs (a flow to one that moved to another guest).
import { HostCommandError } from '../errors/index.js';
import type { CommandRunner } from './command-runner.js';

/**
 * Forgets the tracked flows of each address on the given sides (default: original source and
 * destination, i.e. both ways) once the new rules are in: a packet of a flow now denied is judged
 * as new and dropped; one still allowed is picked up again (TCP's loose pickup), so cutting more
 * than needed costs at most a retransmission. One listing first: a `conntrack -D` per address (a
 * process each, ~15 ms) only where that address has flows. `conntrack -D` exits 1 when it found
 * nothing.
 */
export async function cutFlows(
  runner: CommandRunner,
  addresses: string[],
  sides: readonly string[] = ['-s', '-d'],
): Promise<void> {
  if (addresses.length === 0) return;
  const families = addresses.some((a) => a.includes(':')) ? ['ipv4', 'ipv6'] : ['ipv4'];
  const tracked = new Set<string>();
  for (const family of families) {
    const listed = await runner.run(['conntrack', '-L', '-f', family], { step: 'conntrack: list flows' });
    for (const m of listed.stdout.matchAll(/\b(?:src|dst)=(\S+)/g)) tracked.add(m[1]!);
  }
  for (const address of addresses.filter((a) => tracked.has(a)))
    for (const side of sides) {
      const argv = ['conntrack', '-D', ...(address.includes(':') ? ['-f', 'ipv6'] : []), side, address];
      const step = `conntrack: cut flows of ${address}`;
      const r = await runner.run(argv, { step, allowFailure: true });
      if (r.exitCode > 1) throw new HostCommandError({ argv, exitCode: r.exitCode, stderr: r.stderr, step });
    }
}
