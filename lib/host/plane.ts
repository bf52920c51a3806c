// The host network plane: makes a HostState true on this host (or in one network namespace).
// Each piece observes what is there and applies only the difference, batched; applying the same
// state twice changes nothing. A failure half-way removes what this apply created, restores
// virtwire's nft tables and stops the dnsmasq instances it started, then throws ApplyError.
import { join } from 'node:path';
import type { HostCapabilities, HostState } from '../../types/host.js';
import { ApplyError, VirtwireError } from '../errors/index.js';
import { LocalRunner, type CommandRunner } from './command-runner.js';
import { probeHost, requireFeature } from './probe.js';
import { validateHostState } from './validate-host-state.js';
import {
  applyLinkPlan,
  deleteLinks,
  desiredLinks,
  observeLinks,
  planLinks,
  segmentMtus,
  type LinkChange,
  type LinkPlan,
  type DesiredLink,
  type ObservedLink,
} from './links.js';
import {
  chooseFirewall,
  runFirewall,
  type FirewallBackend,
  type FirewallChange,
  type FirewallCommand,
  type FirewallKind,
  type FirewallPlan,
} from './firewall/index.js';
import {
  TenantNamespaces,
  type InsidePlan,
  type NamespaceChange,
  type NamespacePlan,
  type SpacesSeen,
} from './tenant-namespaces.js';
import { applyQos, desiredQos, planQos, type QosChange, type QosDesired } from './qos.js';
import {
  applyDnsmasq,
  hostResolvers,
  upstreamOf,
  dnsmasqPaths,
  observeDnsmasq,
  planDnsmasq,
  removeDnsmasq,
  renderDnsmasqConfig,
  renderHostsFile,
  renderNamesFile,
  stopDnsmasq,
  type DnsmasqPaths,
  type DnsmasqAction,
} from './dnsmasq.js';
import { waitForLease, pollForLease, parseLeases, type Lease, type LeaseWait } from './leases.js';
import { LocalFiles, RunnerFiles, type HostFiles } from './host-files.js';
import { innerState } from './namespace.js';
import { cutFlows } from './conntrack.js';
import {
  applyWaysIn,
  giveBack,
  planWaysIn,
  withForwardAddresses,
  type AddressChange,
  type LinkFate,
  type WaysInPlan,
} from './ways-in.js';

/**
 * virtwire's directory on a host: the one definition of the default. The host plane keeps its
 * dnsmasq files below it; the engine's state module (lib/engine/state) owns the rest of its layout.
 */
export const DEFAULT_STATE_DIR = '/var/lib/virtwire';

export interface HostPlaneOptions {
  /** runs every command; default: a LocalRunner in `netns` (or the host's namespace) */
  runner?: CommandRunner;
  /** network namespace to build in (tests, labs); default: the host's */
  netns?: string;
  /** where dnsmasq configs, hostsfiles and leases live; default DEFAULT_STATE_DIR (/var/lib/virtwire) */
  stateDir?: string;
  /** capabilities; default: probed once per process */
  capabilities?: HostCapabilities;
  /** firewall backend; default: nftables where the host has it, else iptables + ebtables */
  firewall?: FirewallKind;
  /** the host's files and processes (dnsmasq's); default: this machine's for a LocalRunner, else through `runner` */
  files?: HostFiles;
}

/** A typed change of the host plane: a device, QoS, a firewall table, a dnsmasq instance or a tenant's namespace. */
export type HostChange = LinkChange | QosChange | FirewallChange | DnsmasqChange | NamespaceChange | AddressChange;

export interface DnsmasqChange {
  kind: 'dnsmasq';
  tenant: string;
  action: Exclude<DnsmasqAction, 'none'> | 'remove';
}

export interface HostPlan {
  /** what apply would change, typed (what callers classify and show) */
  changes: HostChange[];
  /** `ip -batch` input */
  ip: string[];
  /** `bridge -batch` input (VXLAN peers, guests' static FDB entries) */
  bridge: string[];
  /** `sysctl -w` arguments: the bridges' own settings */
  sysctl: string[];
  /** firewall batches (`nft -f -`, or `iptables-restore`/`ebtables-restore`); none when the rules are as desired */
  firewall: FirewallCommand[];
  /** `tc -batch` input */
  tc: string[];
  /** addresses whose tracked flows `conntrack -D` forgets (a security policy changed) */
  conntrack: string[];
  /** inside each namespaced tenant's namespace, after the host's `ip -batch` made it */
  namespaces: NamespacePlan[];
}

export interface ApplyReport {
  /** what each step changed: batch lines run, dnsmasq actions taken */
  changes: { step: string; count: number }[];
  /** true when nothing needed changing */
  noop: boolean;
}

export class HostPlane {
  readonly runner: CommandRunner;
  readonly stateDir: string;
  readonly files: HostFiles;
  private readonly caps: HostCapabilities | undefined;
  private readonly firewallKind: FirewallKind | undefined;
  private readonly spaces: TenantNamespaces;

  constructor(options: HostPlaneOptions = {}) {
    this.runner = options.runner ?? new LocalRunner(options.netns);
    this.stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
    this.caps = options.capabilities;
    this.firewallKind = options.firewall;
    // a LocalRunner runs on this machine (in whichever namespace): its files are ours
    this.files =
      options.files ?? (this.runner instanceof LocalRunner ? new LocalFiles() : new RunnerFiles(this.runner));
    this.spaces = new TenantNamespaces(this.runner, this.files, this.stateDir);
  }

  private get local(): boolean {
    return this.files instanceof LocalFiles;
  }

  /** This host's capabilities: probed locally (cached per boot), or through a remote runner. */
  private probe(): Promise<HostCapabilities> {
    // a LocalRunner is this kernel (in whichever namespace): the local, cached probe holds
    const local = this.runner instanceof LocalRunner;
    return local
      ? probeHost({ cacheFile: join(this.stateDir, 'capabilities.json') })
      : probeHost({ runner: this.runner });
  }

  dnsmasqPaths(tenant: string): DnsmasqPaths {
    return dnsmasqPaths(this.stateDir, tenant);
  }

  /** Makes `state` true. Bad input and missing kernel features fail before anything changes. */
  async apply(state: HostState): Promise<ApplyReport> {
    // an uplink that is missing or too small for its segment fails here too, before any change
    const p = await this.prepare(state);
    const changes: { step: string; count: number }[] = [];
    const done: string[] = [];
    const created: string[] = [];
    const started: DnsmasqPaths[] = [];
    let restoreFirewall: FirewallCommand[] = [];
    const touched: InsidePlan[] = [];
    const taken: AddressChange[] = [];
    let step = 'links';
    try {
      created.push(...p.links.creates); // before running: a batch failing half-way has made some
      await this.spaces.create(p.spaces, p.netns.add);
      await applyLinkPlan(this.runner, p.links);
      await this.spaces.remove(p.spaces, p.netns.del);
      changes.push({
        step,
        count:
          p.netns.add.length +
          p.links.ip.length +
          p.links.bridge.length +
          p.links.sysctl.length +
          p.links.ip6.length +
          p.netns.del.length,
      });
      done.push(step);

      // inside each namespace, now that it and its veth ends exist: planned again, against it,
      // then changed one by one
      step = 'namespaces: observe';
      for (const inside of await this.spaces.plan(p.spaces, p.backend, p.mtus, true)) {
        step = `namespace ${inside.netns}`;
        changes.push({ step, count: await this.spaces.applyInside(inside, step, touched) });
      }
      done.push('namespaces');

      // read now, while the firewall and links change: the qdiscs of the devices that exist
      // after the link step (re-created ones have none); awaited at its step
      const tc = planQos(this.runner, p.qos, new Set(p.desired.map((d) => d.name)));
      tc.catch(() => {}); // a failure is thrown where it is awaited

      step = 'ip forwarding';
      if (p.forwarding4) {
        await this.runner.run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], { step });
        changes.push({ step, count: 1 });
      }
      if (p.forwarding6) {
        await this.runner.run(['sysctl', '-q', '-w', 'net.ipv6.conf.all.forwarding=1'], { step });
        changes.push({ step, count: 1 });
      }
      done.push(step);

      step = 'firewall';
      restoreFirewall = await p.firewall.restore;
      await runFirewall(this.runner, p.firewall.commands, step);
      changes.push({ step, count: p.firewall.commands.length });
      done.push(step);

      step = 'conntrack';
      await cutFlows(this.runner, p.firewall.flush);
      changes.push({ step, count: p.firewall.flush.length });
      done.push(step);

      step = 'ways in: addresses';
      await applyWaysIn(this.runner, this.files, this.stateDir, p.ways);
      taken.push(...p.ways.changes.filter((c) => c.action === 'add'));
      changes.push({ step, count: p.ways.ip.length });
      done.push(step);

      step = 'qos';
      const { lines } = await tc;
      await applyQos(this.runner, lines);
      changes.push({ step, count: lines.length });
      done.push(step);

      step = 'dnsmasq';
      let actions = 0;
      for (const { tenant, paths, conf, hosts, names, macs, status, action, runner } of p.dnsmasq.instances) {
        step = `dnsmasq ${tenant}: ${action}`;
        await applyDnsmasq(runner, this.files, paths, action, { conf, hosts, names, macs }, status);
        if (action === 'start' || action === 'restart') started.push(paths);
        if (action !== 'none') actions++;
      }
      step = 'dnsmasq: remove unwanted';
      for (const tenant of p.dnsmasq.unwanted) {
        await removeDnsmasq(this.files, this.dnsmasqPaths(tenant));
        actions++;
      }
      changes.push({ step: 'dnsmasq', count: actions });
      done.push('dnsmasq');
    } catch (cause) {
      const rollbackErrors: unknown[] = [];
      const attempt = async (fn: () => Promise<void>) => fn().catch((e: unknown) => void rollbackErrors.push(e));
      for (const paths of started) await attempt(() => stopDnsmasq(this.files, paths));
      await attempt(() => runFirewall(this.runner, restoreFirewall, 'firewall: rollback'));
      await attempt(() => giveBack(this.runner, this.files, this.stateDir, taken));
      for (const inside of touched) await attempt(() => this.spaces.restoreInside(inside));
      await attempt(() => deleteLinks(this.runner, created));
      for (const netns of p.spaces.created) await attempt(() => this.spaces.unmake(netns));
      throw new ApplyError(
        { step, stepsDone: done, rolledBack: rollbackErrors.length === 0, rollbackErrors },
        { cause },
      );
    }
    return { changes, noop: changes.every((c) => c.count === 0) };
  }

  /**
   * What apply(state) would do, read-only: typed changes per device, table and dnsmasq
   * instance, and the exact batch input for each tool. (QoS is planned against today's devices.)
   */
  async plan(state: HostState): Promise<HostPlan> {
    const p = await this.prepare(state);
    const existing = new Set([...p.observed.keys()].filter((n) => p.desired.some((d) => d.name === n)));
    const qos = await planQos(this.runner, p.qos, existing);
    const inside = await this.spaces.plan(p.spaces, p.backend, p.mtus, false);
    const namespaces = this.spaces.changes(p.spaces, inside);
    const dnsmasq: DnsmasqChange[] = [
      ...p.dnsmasq.instances.flatMap(({ tenant, action }) =>
        action === 'none' ? [] : [{ kind: 'dnsmasq' as const, tenant, action }],
      ),
      ...p.dnsmasq.unwanted.map((tenant) => ({ kind: 'dnsmasq' as const, tenant, action: 'remove' as const })),
    ];
    return {
      changes: [
        ...p.links.changes,
        ...namespaces,
        ...p.firewall.changes,
        ...p.ways.changes,
        ...qos.changes,
        ...dnsmasq,
      ],
      // shown as one batch; apply runs the namespace lines as batches of their own, before and
      // after the links, from the machine's mount namespace (see TenantNamespaces), and the
      // floating IPs' addresses after the firewall
      ip: [...p.netns.add, ...p.links.ip, ...p.links.ip6, ...p.netns.del, ...p.ways.ip],
      bridge: p.links.bridge,
      sysctl: p.links.sysctl,
      firewall: p.firewall.commands,
      tc: qos.lines,
      conntrack: p.firewall.flush,
      namespaces: inside.map(({ netns, tenant, ip, forwarding, firewall }) => ({
        netns,
        tenant,
        ip,
        forwarding,
        firewall,
      })),
    };
  }

  /**
   * Shared by plan() and apply(): validation, kernel features, then one observation of links
   * and firewall, and what each part would do. Nothing on the host changes here.
   */
  private async prepare(given: HostState): Promise<Prepared> {
    validateHostState(given);
    const caps = this.caps ?? (await this.probe());
    const backend = checkFeatures(given, caps, this.firewallKind);
    const qos = desiredQos(given, caps);
    // links, virtwire's firewall rules and forwarding are observed together: none depends on
    // another (only a forward without an address waits for the links: it takes the uplink's)
    const links = observeLinks(this.runner, undefined, new Set(desiredLinks(given).map((l) => l.name)));
    const forwarding = Promise.all([needsIpv4Forwarding(this.runner, given), needsIpv6Forwarding(this.runner, given)]);
    forwarding.catch(() => {}); // a refusal is thrown where it is awaited
    const state = await withForwardAddresses(this.runner, this.files, this.stateDir, given, links);
    const [observed, firewall, spaces, [forwarding4, forwarding6]] = await Promise.all([
      links,
      backend.plan(this.runner, state),
      this.spaces.observe(state),
      forwarding,
    ]);
    const mtus = segmentMtus(state, observed);
    this.spaces.orphanVeths(spaces, observed);
    const desired = desiredLinks(state, mtus, { ipv6PortFrames: backend.ipv6PortFramesInIpHooks });
    const linkPlan = planLinks(desired, observed);
    const netns = this.spaces.batches(spaces);
    const dnsmasq = await this.planDnsmasqs(state, mtus, spaces);
    const ways = await planWaysIn(this.runner, this.files, this.stateDir, state, observed, fateOf(linkPlan));
    return {
      observed,
      desired,
      links: linkPlan,
      netns,
      firewall,
      qos,
      dnsmasq,
      spaces,
      backend,
      mtus,
      ways,
      forwarding4,
      forwarding6,
    };
  }

  /** Removes everything virtwire made here: devices, rules, dnsmasq instances and their files. */
  async teardown(): Promise<ApplyReport> {
    return this.apply({ networks: [] });
  }

  /**
   * Resolves with the lease dnsmasq hands to `mac` on `tenant`'s network, as soon as it is
   * written (watched on this machine; on a remote host, re-read over its SSH connection).
   */
  waitForLease(tenant: string, mac: string, options?: LeaseWait): Promise<Lease> {
    const file = this.dnsmasqPaths(tenant).leaseFile;
    return this.local ? waitForLease(file, mac, options) : pollForLease(this.files, file, mac, options);
  }

  async leases(tenant: string): Promise<Lease[]> {
    return parseLeases((await this.files.read(this.dnsmasqPaths(tenant).leaseFile)) ?? '');
  }

  /** The pid of `tenant`'s dnsmasq when it runs. */
  async dnsmasqPid(tenant: string): Promise<number | undefined> {
    return (await observeDnsmasq(this.files, this.dnsmasqPaths(tenant))).pid;
  }

  /**
   * Per tenant with DHCP: its rendered files, what runs now and what to do; and the instances no
   * network wants. A namespaced tenant's runs in its namespace, on its gateway's veth end.
   */
  private async planDnsmasqs(state: HostState, mtus: ReadonlyMap<string, number>, spaces: SpacesSeen) {
    // the host's resolvers, read once, where a NAT network forwards to them by default
    const needed = state.networks.some((n) => n.dhcp !== false && n.network.nat && !n.network.dns?.upstream);
    const resolvers = needed ? await hostResolvers(this.files) : [];
    const instances = await Promise.all(
      state.networks
        .filter((n) => n.dhcp !== false)
        .map(async (net) => {
          const tenant = net.network.tenant;
          const paths = this.dnsmasqPaths(tenant);
          const mtu = mtus.get(tenant);
          const upstream = upstreamOf(net.network, resolvers);
          const space = spaces.wanted.find((s) => s.tenant === tenant);
          const served = space ? innerState(space).networks[0]!.network : net.network;
          const conf = renderDnsmasqConfig(served, paths, { ...(mtu === undefined ? {} : { mtu }), upstream });
          const hosts = renderHostsFile(net);
          const names = renderNamesFile(net);
          const status = await observeDnsmasq(this.files, paths);
          const macs = net.ports.map((p) => p.mac);
          const runner = space ? this.spaces.inside(space.netns) : this.runner;
          // an instance running while its namespace is made again serves the old one: restarted
          const fresh = space !== undefined && status.pid !== undefined && !spaces.present.has(space.netns);
          const action = fresh ? 'restart' : planDnsmasq(status, conf, hosts, names);
          return { tenant, paths, conf, hosts, names, macs, status, action, runner };
        }),
    );
    const wanted = new Set(instances.map((i) => i.tenant));
    const present = await this.files.list(join(this.stateDir, 'dnsmasq'));
    return { instances, unwanted: present.filter((t) => !wanted.has(t)) };
  }
}

interface Prepared {
  observed: Map<string, ObservedLink>;
  desired: DesiredLink[];
  links: LinkPlan;
  /** `netns add` lines (before the links), `netns del` lines (after) */
  netns: { add: string[]; del: string[] };
  firewall: FirewallPlan;
  qos: QosDesired;
  dnsmasq: Awaited<ReturnType<HostPlane['planDnsmasqs']>>;
  spaces: SpacesSeen;
  backend: FirewallBackend;
  mtus: Map<string, number>;
  ways: WaysInPlan;
  /** IPv4 forwarding must be turned on (a NAT network, and it is off) */
  forwarding4: boolean;
  /** IPv6 forwarding must be turned on (checked safe: needsIpv6Forwarding) */
  forwarding6: boolean;
}

/** The devices the link step removes, and the ones it makes (again): nothing routed through them survives it. */
function fateOf(plan: LinkPlan): LinkFate {
  const by = (actions: LinkChange['action'][]) =>
    new Set(plan.changes.filter((c) => actions.includes(c.action)).map((c) => c.device));
  return { removed: by(['delete']), remade: by(['create', 'recreate']) };
}

/** Every kernel feature the state needs, checked before the first command runs; the firewall backend. */
function checkFeatures(
  state: HostState,
  caps: HostCapabilities,
  firewallKind: FirewallKind | undefined,
): FirewallBackend {
  // teardown needs no features, and removes rules of the backend in use (or the one asked for)
  if (state.networks.length === 0)
    return chooseFirewall(caps, firewallKind ?? (caps.nftables ? 'nftables' : 'iptables'));
  requireFeature(caps, 'bridge', 'tenant bridges');
  const firewall = chooseFirewall(caps, firewallKind);
  for (const feature of firewall.features) requireFeature(caps, feature, 'tenant firewall rules');
  for (const net of state.networks) {
    const n = net.network;
    if (n.segment.type === 'vlan') requireFeature(caps, 'vlan', `VLAN segment for tenant ${n.tenant}`);
    if (n.segment.type === 'vxlan') requireFeature(caps, 'vxlan', `VXLAN segment for tenant ${n.tenant}`);
    if (net.dhcp !== false) requireFeature(caps, 'dnsmasq', `DHCP/DNS for tenant ${n.tenant}`);
    if (n.namespace) requireFeature(caps, 'veth', `the namespace of tenant ${n.tenant}`);
    // ebtables cannot read a neighbour advertisement's target: ip6tables checks it on bridged frames
    if (n.ipv6 && net.ports.length && firewall.ipv6PortFramesInIpHooks)
      requireFeature(caps, 'brNetfilter', `the IPv6 port guard of tenant ${n.tenant} (iptables backend)`);
    for (const port of net.ports) {
      requireFeature(caps, port.kind, `port ${port.name} of tenant ${n.tenant}`);
    }
    if (net.ports.some((port) => port.securityGroups?.length)) {
      requireFeature(caps, 'brNetfilter', `security groups of tenant ${n.tenant}`);
      requireFeature(caps, 'conntrack', `security groups of tenant ${n.tenant}`);
    }
  }
  return firewall;
}

/** Whether a state with a NAT network needs the host's IPv4 forwarding turned on (it is off). */
async function needsIpv4Forwarding(runner: CommandRunner, state: HostState): Promise<boolean> {
  if (!state.networks.some((n) => n.network.nat)) return false;
  const fwd = await runner.run(['sysctl', '-n', 'net.ipv4.ip_forward'], { step: 'ip forwarding: observe' });
  return fwd.stdout.trim() !== '1';
}

/**
 * Whether a state with IPv6 needs the host's IPv6 forwarding turned on — read before anything
 * changes, with the check that it is safe to: a host that forwards IPv6 stops taking router
 * advertisements on an interface whose accept_ra is 1, and where the host's own routes came from
 * advertisements (its default route, say) it would lose them when they expire. Refused as libvirt
 * refuses it, naming the interfaces to set accept_ra=2 on (the operator's call: their uplink is
 * not virtwire's to change).
 */
async function needsIpv6Forwarding(runner: CommandRunner, state: HostState): Promise<boolean> {
  if (!state.networks.some((n) => n.network.ipv6)) return false;
  const step = 'ip forwarding: observe';
  const fwd = await runner.run(['sysctl', '-n', 'net.ipv6.conf.all.forwarding'], { step });
  if (fwd.stdout.trim() === '1') return false;
  const routes = await runner.run(['ip', '-j', '-6', 'route', 'show', 'proto', 'ra'], { step, allowFailure: true });
  const devs = [...new Set((JSON.parse(routes.stdout || '[]') as { dev?: string }[]).flatMap((r) => r.dev ?? []))];
  const risky: string[] = [];
  for (const dev of devs) {
    const ra = await runner.run(['sysctl', '-n', `net.ipv6.conf.${dev}.accept_ra`], { step, allowFailure: true });
    if (ra.stdout.trim() !== '2') risky.push(dev);
  }
  if (risky.length)
    throw new VirtwireError(
      'HOST_UNSUPPORTED',
      `IPv6 forwarding (for a network's cidr6) would stop ${risky.join(', ')} from taking router advertisements, and ` +
        `the host's routes learned from them would be lost: set net.ipv6.conf.<dev>.accept_ra=2 on ${risky.join(', ')} first`,
    );
  return true;
}
