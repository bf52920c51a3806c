// Security groups as both firewall backends enforce them (Neutron's security groups, on the IP
// forward hook that br_netfilter gives each tenant bridge, with conntrack):
// - a port is known by its bridge and its address (anti-spoofing guarantees a port sends from its
//   address only, and runs before these rules);
// - a port in groups has an ingress policy: replies to its own flows, then every ingress rule of
//   its groups, else drop; and an egress policy the same way when any of its groups has an
//   egress rule (otherwise its egress is open);
// - ports with the same groups share one policy (a chain), named by the hash of its rules: the
//   rule count grows with the groups, not the VMs, and a changed policy is a new name — the ports
//   that moved to it get their conntrack entries cut.
// An allowed packet *returns* to the forward chain rather than being accepted there: a packet
// between two member ports must pass the receiver's ingress and the sender's egress policy.
import { createHash } from 'node:crypto';
import type { HostSecurityGroup, HostSecurityRule, HostState } from '../../../types/host.js';
import { ipv6Sources } from '../../spec/index.js';

type Direction = 'ingress' | 'egress';

/** One policy: the rules a port's groups give it in one direction. */
export interface SgPolicy {
  direction: Direction;
  /** the tenant whose group member sets the rules name */
  tenant: string;
  /** its groups' rules of this direction, in group order */
  rules: { group: string; rule: HostSecurityRule }[];
}

/** A port with groups: where it is, and its policies. */
export interface SgPort {
  bridge: string;
  ip: string;
  /** every IPv6 address it may send from (its link-local one included: none may bypass its policy) */
  ip6s: string[];
  tenant: string;
  ingress: SgPolicy;
  /** absent: egress open (none of its groups has an egress rule) */
  egress?: SgPolicy;
}

/** Every port in groups, with its policies (ports without an address cannot be: validation says so). */
export function sgPorts(state: HostState): SgPort[] {
  return state.networks.flatMap((net) => {
    const groups = new Map((net.securityGroups ?? []).map((g) => [g.name, g]));
    const tenant = net.network.tenant;
    return net.ports
      .filter((p) => p.securityGroups?.length && p.ip)
      .map((p) => {
        const mine = p.securityGroups!.map((name) => groups.get(name)).filter((g): g is HostSecurityGroup => !!g);
        const policy = (direction: Direction): SgPolicy => ({
          direction,
          tenant,
          rules: mine.flatMap((g) =>
            g.rules.filter((r) => r.direction === direction).map((rule) => ({ group: g.name, rule })),
          ),
        });
        const egress = policy('egress');
        return {
          bridge: net.network.bridge,
          ip: p.ip!,
          ip6s: ipv6Sources(p.mac, net.network.ipv6, p.ip6),
          tenant,
          ingress: policy('ingress'),
          ...(egress.rules.length ? { egress } : {}),
        };
      });
  });
}

/** A group's short id inside a ruleset: stable, safe in any chain or set name. */
export function groupId(tenant: string, group: string): string {
  return createHash('sha256').update(`${tenant}/${group}`).digest('hex').slice(0, 10);
}

/** A policy's name part: the hash of what it allows (`render` is the backend's text of each rule). */
export function policyId(policy: SgPolicy, render: (rule: HostSecurityRule, group: string) => string): string {
  const text = [policy.direction, policy.tenant, ...policy.rules.map((r) => render(r.rule, r.group))].join('\n');
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}

/** Whether a rule applies to a family: its ethertype (a CIDR peer's is its own), else both. */
export const ruleFamily = (rule: HostSecurityRule, family: 'ipv4' | 'ipv6'): boolean =>
  (rule.ethertype ?? family) === family &&
  !('cidr' in rule.peer && rule.peer.cidr.includes(':') !== (family === 'ipv6'));

/** The groups referenced as peers, per tenant, with their members' addresses. */
export function peerGroups(state: HostState): { tenant: string; group: string; addresses: string[] }[] {
  const seen = new Map<string, { tenant: string; group: string; addresses: string[] }>();
  for (const net of state.networks)
    for (const g of net.securityGroups ?? [])
      for (const r of g.rules)
        if ('group' in r.peer)
          seen.set(`${net.network.tenant}/${r.peer.group}`, {
            tenant: net.network.tenant,
            group: r.peer.group,
            addresses: [...r.peer.addresses].sort(),
          });
  return [...seen.values()];
}
