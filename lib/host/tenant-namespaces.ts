// The host plane's step for namespaced tenants (namespace.ts says what such a namespace holds):
// which of virtwire's namespaces exist and which are wanted, the `ip netns` lines around the
// host's link batch, each namespace's inside (links, default route, forwarding, firewall) planned
// against what it holds and applied, and the rollback of what an apply made.
import { join } from 'node:path';
import type { HostState } from '../../types/host.js';
import { LocalRunner, batchLine, runBatch, type CommandRunner } from './command-runner.js';
import { observeLinks, planLinks, type ObservedLink } from './links.js';
import { runFirewall, type FirewallBackend, type FirewallCommand } from './firewall/index.js';
import type { HostFiles } from './host-files.js';
import {
  FRESH_NAMESPACE,
  NS_TRANSIT,
  NetnsRunner,
  innerState,
  insideLinks,
  namespacesOf,
  observeInside,
  observeNamespaces,
  type NamespaceSeen,
  type TenantNamespace,
} from './namespace.js';

/** A namespaced tenant's network namespace: made, its inside (addresses, route, rules) set, or removed. */
export interface NamespaceChange {
  kind: 'namespace';
  netns: string;
  /** unknown for a leftover being removed */
  tenant?: string;
  action: 'create' | 'configure' | 'delete';
}

/** What runs inside one tenant's namespace (`ip netns exec <netns> …`). */
export interface NamespacePlan {
  netns: string;
  tenant: string;
  /** `ip -batch` input */
  ip: string[];
  /** `sysctl -w net.ipv4.ip_forward=1` is needed */
  forwarding: boolean;
  /** `sysctl -w net.ipv6.conf.all.forwarding=1` is needed (a tenant with IPv6) */
  forwarding6?: boolean;
  firewall: FirewallCommand[];
}

/** A namespace's plan with what puts its firewall back (the apply's rollback). */
export interface InsidePlan extends NamespacePlan {
  restore: FirewallCommand[];
}

/** virtwire's namespaces on a host, as observed against a state. */
export interface SpacesSeen {
  wanted: TenantNamespace[];
  /** marked as virtwire's in this state dir */
  marked: string[];
  present: Set<string>;
  /** wanted, not present */
  created: string[];
  /** marked, not wanted */
  removed: string[];
}

export class TenantNamespaces {
  private readonly dir: string;

  constructor(
    private readonly runner: CommandRunner,
    private readonly files: HostFiles,
    stateDir: string,
  ) {
    this.dir = join(stateDir, 'netns');
  }

  /** The wanted namespaces, those that exist, and what to create and remove. */
  async observe(state: HostState): Promise<SpacesSeen> {
    const wanted = namespacesOf(state);
    const marked = await this.files.list(this.dir);
    // only namespaces marked in this state dir are removed: another's are not this plane's
    const present = wanted.length || marked.length ? await observeNamespaces(this.runner) : new Set<string>();
    const names = new Set(wanted.map((s) => s.netns));
    return {
      wanted,
      marked,
      present,
      created: wanted.filter((s) => !present.has(s.netns)).map((s) => s.netns),
      removed: marked.filter((n) => !names.has(n)),
    };
  }

  /** Namespaces are made before the host's link batch makes the veths into them, removed after it. */
  batches(seen: SpacesSeen): { add: string[]; del: string[] } {
    return {
      add: seen.created.map((n) => batchLine(['netns', 'add', n])),
      del: seen.removed.filter((n) => seen.present.has(n)).map((n) => batchLine(['netns', 'del', n])),
    };
  }

  /** A namespace that is gone took the peers of its veths with it: their host ends are made again. */
  orphanVeths(seen: SpacesSeen, observed: Map<string, ObservedLink>): void {
    for (const s of seen.wanted.filter((s) => !seen.present.has(s.netns)))
      for (const end of [s.gatewayVeth, s.transitVeth]) {
        const o = observed.get(end);
        if (o) observed.set(end, { ...o, identity: 'orphaned' });
      }
  }

  /**
   * Marks the wanted namespaces as virtwire's, before they exist (a rollback or teardown finds
   * them), then makes them.
   */
  async create(seen: SpacesSeen, add: string[]): Promise<void> {
    for (const s of seen.wanted) if (!seen.marked.includes(s.netns)) await this.mark(s.netns, true);
    await this.batch(add);
  }

  /** Removes the unwanted namespaces and their marks. */
  async remove(seen: SpacesSeen, del: string[]): Promise<void> {
    await this.batch(del);
    for (const netns of seen.removed) await this.mark(netns, false);
  }

  /**
   * What each wanted namespace's inside needs, observed concurrently (a handful of processes
   * each); one that does not exist yet is planned as a fresh one. `made`: apply, after create().
   */
  plan(
    seen: SpacesSeen,
    backend: FirewallBackend,
    mtus: ReadonlyMap<string, number>,
    made: boolean,
  ): Promise<InsidePlan[]> {
    return Promise.all(
      seen.wanted.map(async (s) => {
        const runner = made || seen.present.has(s.netns) ? this.inside(s.netns) : FRESH_NAMESPACE;
        const inside = await observeInside(runner, observeLinks(runner, 'namespace: observe'));
        const { ip, forwarding, forwarding6 } = planInside(s, inside, mtus.get(s.tenant));
        const fw = await backend.plan(runner, innerState(s));
        return {
          netns: s.netns,
          tenant: s.tenant,
          ip,
          forwarding,
          ...(forwarding6 ? { forwarding6 } : {}),
          firewall: fw.commands,
          restore: await fw.restore,
        };
      }),
    );
  }

  /** The typed changes of a plan: namespaces made, removed, or whose inside differs. */
  changes(seen: SpacesSeen, insides: InsidePlan[]): NamespaceChange[] {
    const tenantOf = (netns: string) => {
      const tenant = seen.wanted.find((s) => s.netns === netns)?.tenant;
      return tenant === undefined ? {} : { tenant };
    };
    return [
      ...seen.created.map((netns) => ({ kind: 'namespace' as const, netns, action: 'create' as const })),
      ...seen.removed.map((netns) => ({ kind: 'namespace' as const, netns, action: 'delete' as const })),
      ...insides
        .filter((x) => seen.present.has(x.netns) && (x.ip.length || x.firewall.length || x.forwarding || x.forwarding6))
        .map(({ netns }) => ({ kind: 'namespace' as const, netns, action: 'configure' as const })),
    ].map((c) => ({ ...c, ...tenantOf(c.netns) }));
  }

  /**
   * Makes one namespace's inside as planned; `touched` gets the plan before its firewall changes
   * (what a rollback restores). Returns the number of lines and commands run.
   */
  async applyInside(plan: InsidePlan, step: string, touched: InsidePlan[]): Promise<number> {
    const ns = this.inside(plan.netns);
    // IPv6 forwarding first: it also stops the namespace taking router advertisements (its own)
    if (plan.forwarding6) await ns.run(['sysctl', '-q', '-w', 'net.ipv6.conf.all.forwarding=1'], { step });
    await runBatch(ns, ['ip'], plan.ip, { step: `${step}: links` });
    if (plan.forwarding) await ns.run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], { step });
    touched.push(plan);
    await runFirewall(ns, plan.firewall, `${step}: firewall`);
    return plan.ip.length + plan.firewall.length + (plan.forwarding ? 1 : 0) + (plan.forwarding6 ? 1 : 0);
  }

  /** Rollback: a namespace's firewall as it was. */
  restoreInside(plan: InsidePlan): Promise<void> {
    return runFirewall(this.inside(plan.netns), plan.restore, 'namespace: rollback');
  }

  /** Rollback: a namespace this apply made, and its mark. */
  async unmake(netns: string): Promise<void> {
    await this.machine.run(['ip', 'netns', 'del', netns], { step: 'namespace: rollback', allowFailure: true });
    await this.mark(netns, false);
  }

  /**
   * Runs commands inside a tenant's namespace: on this machine entered directly (a named
   * namespace is reachable from any other), elsewhere through the plane's runner.
   */
  inside(netns: string): CommandRunner {
    return this.runner instanceof LocalRunner ? new LocalRunner(netns) : new NetnsRunner(this.runner, netns);
  }

  /**
   * Named namespaces are the machine's, not a network namespace's: made and removed from the
   * machine's mount namespace (one made inside `ip netns exec` would stay private to it).
   */
  private get machine(): CommandRunner {
    return this.runner instanceof LocalRunner ? new LocalRunner() : this.runner;
  }

  private async batch(lines: string[]): Promise<void> {
    await runBatch(this.machine, ['ip'], lines, { step: 'links: namespaces' });
  }

  private async mark(netns: string, on: boolean): Promise<void> {
    if (!on) return this.files.remove(join(this.dir, netns));
    await this.files.mkdir(this.dir);
    await this.files.write(join(this.dir, netns), '');
  }
}

/**
 * The `ip -batch` lines inside a namespace (loopback, its veth ends' MTU, addresses and state —
 * planned as every link is —, the default route to the host) and whether forwarding must be
 * switched on: nothing when all is as desired.
 */
export function planInside(
  ns: TenantNamespace,
  seen: NamespaceSeen,
  mtu: number | undefined,
): { ip: string[]; forwarding: boolean; forwarding6?: true } {
  const route = ['route', 'replace', 'default', 'via', ns.hostAddress, 'dev', NS_TRANSIT];
  const links = planLinks(insideLinks(ns, mtu), seen.links);
  const route6 = ns.hostAddress6 ? ['route', 'replace', 'default', 'via', ns.hostAddress6, 'dev', NS_TRANSIT] : [];
  const ip = [
    ...(seen.links.get('lo')?.up ? [] : [batchLine(['link', 'set', 'dev', 'lo', 'up'])]),
    ...links.ip,
    ...links.ip6,
    ...(seen.route === ns.hostAddress ? [] : [batchLine(route)]),
    ...(ns.hostAddress6 && seen.route6 !== ns.hostAddress6 ? [batchLine(route6)] : []),
  ];
  return {
    ip,
    forwarding: ns.net.network.nat && !seen.forwarding,
    ...(ns.hostAddress6 !== undefined && !seen.forwarding6 ? { forwarding6: true as const } : {}),
  };
}
