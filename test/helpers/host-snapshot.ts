// What "the host as it was" means in the VM tests: devices, the nft ruleset, dnsmasq and QEMU
// processes, libvirt's domains, the named network namespaces and the state dir's VM records.
import { execa } from 'execa';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export interface HostSnapshot {
  links: string[];
  nft: string;
  processes: string[];
  domains: string[];
  netns: string[];
  records: string[];
}

/**
 * The ruleset without the elements of virtwire's dynamic sets (dyn_…): the kernel fills them from
 * the traffic (flow and packet-rate state), and they expire on their own.
 */
function withoutKernelElements(ruleset: string): string {
  return ruleset.replace(/(set dyn_\S+ \{[^}]*?)\n\t+elements = \{[^}]*\}/g, '$1');
}

export async function hostSnapshot(stateDir: string): Promise<HostSnapshot> {
  const links = (JSON.parse((await execa('ip', ['-j', 'link', 'show'])).stdout) as { ifname: string }[])
    .map((l) => l.ifname)
    .sort();
  const nft = withoutKernelElements((await execa('nft', ['list', 'ruleset'])).stdout);
  const ps = await execa('pgrep', ['-a', '-f', '^(dnsmasq|/usr/bin/qemu-system)'], { reject: false });
  const domains = (await execa('virsh', ['-c', 'qemu:///system', 'list', '--all', '--name'])).stdout
    .split('\n')
    .filter(Boolean)
    .sort();
  const vms = join(stateDir, 'vms');
  const netns = (JSON.parse((await execa('ip', ['-j', 'netns', 'list'])).stdout || '[]') as { name: string }[])
    .map((n) => n.name)
    .sort();
  return {
    links,
    nft,
    processes: ps.stdout.split('\n').filter(Boolean).sort(),
    domains,
    netns,
    records: existsSync(vms) ? readdirSync(vms).sort() : [],
  };
}
