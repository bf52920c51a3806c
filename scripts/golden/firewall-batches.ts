// The firewall golden cases (test/golden/firewall/<name>.json: host networks as specs, their
// ports and security groups) turned into the batches each backend sends to a host where nothing
// of virtwire's exists yet: the nft script, the iptables-restore and ebtables-restore files.
// Shared by the golden test and `npm run golden:update` (the only writer of the expected files).
import type { CommandRunner, RunResult } from '../../lib/host/command-runner.js';
import { chooseFirewall, type FirewallKind } from '../../lib/host/firewall/index.js';
import { innerState, namespacesOf } from '../../lib/host/namespace.js';
import { validateNetwork } from '../../lib/spec/index.js';
import type { HostCapabilities, HostNetwork, HostState } from '../../types/host.js';

interface CaseNetwork extends Omit<HostNetwork, 'network'> {
  network: unknown;
  namespace?: { transit: string };
}

/** A case file's networks resolved as the engine would give them to a host. */
export function caseState(text: string): HostState {
  const { networks } = JSON.parse(text) as { networks: CaseNetwork[] };
  return {
    networks: networks.map(({ network, namespace, ...rest }, i) => ({
      ...rest,
      network: { ...validateNetwork(network, `networks[${i}].network`), ...(namespace ? { namespace } : {}) },
    })),
  };
}

/** Every case is rendered in both backends. */
export const BACKENDS: readonly FirewallKind[] = ['nftables', 'iptables'];

/** A host with none of virtwire's tables or chains: nft lists nothing, the *-save tools print nothing. */
const emptyHost: CommandRunner = {
  async run(argv): Promise<RunResult> {
    if (argv[0] === 'nft') return { exitCode: 1, stdout: '', stderr: 'No such file or directory' };
    return { exitCode: 0, stdout: '', stderr: '' };
  },
};

const ALL = { nftables: true, nftBridge: true, iptables: true, ebtables: true } as HostCapabilities;

async function batches(state: HostState, kind: FirewallKind, where: string): Promise<string[]> {
  const plan = await chooseFirewall(ALL, kind).plan(emptyHost, state);
  return plan.commands.map((c) => `# ${where}: ${c.argv.join(' ')}\n${c.input}`);
}

/**
 * Every batch `kind` would send to an empty host, each headed by where it runs and its command
 * line: the host's, then each namespaced tenant's own (its gateway's NAT and guards).
 */
export async function firewallBatches(state: HostState, kind: FirewallKind): Promise<string> {
  const out = await batches(state, kind, 'host');
  for (const ns of namespacesOf(state)) out.push(...(await batches(innerState(ns), kind, `netns ${ns.tenant}`)));
  return out.join('\n');
}
