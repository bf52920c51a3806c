// virtwire's firewall: NAT, forwarding policy, tenant isolation, host access and per-port
// anti-spoofing, kept in virtwire's own tables (nftables) or its own chains (iptables and
// ebtables, where nft is absent), so they are found, diffed and removed as a whole and nothing
// else on the host is touched. A backend turns a HostState into the commands that make its
// rules true (none when they already are) and the commands that put back what was there.
import type { HostCapabilities, HostState } from '../../../types/host.js';
import { HostUnsupportedError } from '../../errors/index.js';
import type { CommandRunner } from '../command-runner.js';
import { nftablesBackend } from './nft-table.js';
import { iptablesBackend } from './iptables-chains.js';

/** One batch: a tool and the file it reads on stdin. */
export interface FirewallCommand {
  argv: string[];
  input: string;
}

/** One of virtwire's tables (or chain sets) to be replaced or removed, typed. */
export interface FirewallChange {
  kind: 'firewall';
  /** e.g. "inet virtwire", "bridge virtwire", "iptables filter", "ebtables nat" */
  table: string;
  action: 'replace' | 'remove';
}

export interface FirewallPlan {
  /** what makes the rules true; empty when they already are */
  commands: FirewallCommand[];
  /** one per command: which table it changes */
  changes: FirewallChange[];
  /**
   * puts the rules back as they were observed (rollback). A promise: nftables reads the tables
   * as text for it, which runs while the links change; apply awaits it before the firewall step
   * (nothing else changes the tables in between). Its failure is raised only where awaited.
   */
  restore: Promise<FirewallCommand[]>;
  /**
   * addresses of member ports whose security policy changed (or that left a peer group): their
   * conntrack entries go once the new rules are in, so flows now denied are cut
   */
  flush: string[];
}

export type FirewallKind = 'nftables' | 'iptables';

export interface FirewallBackend {
  readonly kind: FirewallKind;
  /** the capabilities it needs, for up-front checks */
  readonly features: readonly (keyof HostCapabilities)[];
  /**
   * IPv6 frames from bridge ports must pass the IP hooks (br_netfilter, the bridge's
   * nf_call_ip6tables): the iptables backend checks a neighbour advertisement's target there
   */
  readonly ipv6PortFramesInIpHooks: boolean;
  plan(runner: CommandRunner, state: HostState): Promise<FirewallPlan>;
}

const BACKENDS: Record<FirewallKind, FirewallBackend> = { nftables: nftablesBackend, iptables: iptablesBackend };

/**
 * The backend for this host: `preferred` when given, else nftables where the kernel and the
 * nft tool have it (inet and bridge families), else iptables + ebtables.
 */
export function chooseFirewall(caps: HostCapabilities, preferred?: FirewallKind): FirewallBackend {
  if (preferred) return BACKENDS[preferred];
  if (caps.nftables && caps.nftBridge) return nftablesBackend;
  if (caps.iptables && caps.ebtables) return iptablesBackend;
  throw new HostUnsupportedError(
    'nftables',
    'host lacks nftables (CONFIG_NF_TABLES, CONFIG_NF_TABLES_BRIDGE and the nft tool) and iptables with ebtables; tenant firewall rules cannot be created',
  );
}

export async function runFirewall(runner: CommandRunner, commands: FirewallCommand[], step: string): Promise<void> {
  for (const c of commands) await runner.run(c.argv, { input: c.input, step });
}
