// Which tenants get a network namespace of their own, and their transit /30s. A tenant whose
// subnet overlaps a tenant's that has its gateway in a host's own namespace (a "plain" tenant)
// on the same host gets one when its first VM is created, and keeps it for its life: the plain
// tenant is never rewired under its running guests. Transit /30s come from one pool shared by
// every host of a state dir, like segment ids.
import type { ResolvedNetwork } from '../../types/resolved.js';
import type { SegmentPools } from '../../types/spec.js';
import { DEFAULT_POOLS, Problems, at, broadcastOf, formatIpv4, parseCidr, subnetsOverlap } from '../spec/index.js';
import type { VmRecord } from './state/store.js';

const BLOCK = 4; // a /30: network, the host's end, the namespace's end, broadcast

export class Namespaces {
  /** transit /30s in use, by network address */
  private readonly taken = new Set<number>();
  /** each known tenant's namespace as recorded (null: its gateway is on the host) */
  private readonly ofTenant = new Map<string, ResolvedNetwork['namespace'] | null>();
  /** one network per tenant on the VM's host */
  private readonly here = new Map<string, ResolvedNetwork>();

  constructor(
    records: VmRecord[],
    private readonly pools: SegmentPools,
    private readonly host: string | undefined,
  ) {
    for (const r of records)
      for (const { network: n } of r.vm.nics) {
        if (!this.ofTenant.has(n.tenant)) this.ofTenant.set(n.tenant, n.namespace ?? null);
        if (n.namespace) this.taken.add(parseCidr(n.namespace.transit)!.network);
        if ((r.host ?? r.vm.host) === host && !this.here.has(n.tenant)) this.here.set(n.tenant, n);
      }
  }

  /**
   * `given` carries a namespace only where it comes from the VM's own record (a spec cannot name
   * one): a VM updated or re-created keeps it, also when it is its tenant's only VM.
   */
  assign(p: Problems, path: string, given: ResolvedNetwork): ResolvedNetwork {
    const { namespace: own, ...net } = given;
    if (!this.ofTenant.has(net.tenant) && own && !this.taken.has(parseCidr(own.transit)!.network)) {
      this.taken.add(parseCidr(own.transit)!.network);
      this.ofTenant.set(net.tenant, own);
    }
    const recorded = this.ofTenant.get(net.tenant);
    const clash = [...this.here.values()].find(
      (o) => o.tenant !== net.tenant && !o.namespace && subnetsOverlap(o, net),
    );
    const where = this.host ? `host ${this.host}` : 'this host';
    const sameLink = net.ipv6
      ? [...this.here.values()].find((o) => o.tenant !== net.tenant && o.ipv6?.cidr === net.ipv6!.cidr)
      : undefined;
    if (sameLink)
      p.add(
        at(path, 'cidr6'),
        `${net.ipv6!.cidr} of tenant ${net.tenant} is also tenant ${sameLink.tenant}'s on ${where}: one /64 is one ` +
          `link, give each tenant a /64 of its own`,
      );
    // in a namespace of its own the tenant's IPv6 leaves NAT66'd to its transit: it cannot be routed as it is
    if ((recorded || (recorded === undefined && clash)) && net.ipv6?.outbound === 'routed')
      p.add(
        at(path, 'nat6'),
        `tenant ${net.tenant} has a namespace of its own on ${where} (its ${net.cidr} overlaps tenant ` +
          `${clash?.tenant ?? 'another'}'s), where its IPv6 can only leave NAT66'd: drop nat6: false or give it another IPv4 subnet`,
      );
    if (recorded) return this.note({ ...net, namespace: recorded });
    if (recorded === null || !clash) {
      if (clash)
        p.add(
          at(path, 'cidr'),
          `${net.cidr} of tenant ${net.tenant} overlaps ${clash.cidr} of tenant ${clash.tenant} on ${where}, and both ` +
            `have their gateway in the host's own namespace (a tenant gets a namespace of its own only when it ` +
            `arrives on a host where its subnet is taken): place the VM on another host or give a tenant another subnet`,
        );
      this.ofTenant.set(net.tenant, null);
      return this.note(net);
    }
    if (net.hostServices?.length)
      p.add(
        at(path, 'hostServices'),
        `tenant ${net.tenant} needs a namespace of its own (${net.cidr} overlaps tenant ${clash.tenant}'s ${clash.cidr} ` +
          `on ${where}), where host services on its gateway are not supported: drop them or give it another subnet`,
      );
    const transit = this.free();
    if (transit === undefined) {
      p.add(
        at(path, 'cidr'),
        `tenant ${net.tenant} needs a namespace of its own (it overlaps tenant ${clash.tenant} on ${where}), but the transit pool ${this.pool()} is exhausted`,
      );
      return net;
    }
    this.taken.add(transit);
    const namespace = { transit: `${formatIpv4(transit)}/30` };
    this.ofTenant.set(net.tenant, namespace);
    return this.note({ ...net, namespace });
  }

  private note(net: ResolvedNetwork): ResolvedNetwork {
    if (!this.here.has(net.tenant)) this.here.set(net.tenant, net);
    return net;
  }

  private pool(): string {
    return this.pools.transit ?? DEFAULT_POOLS.transit;
  }

  private free(): number | undefined {
    const pool = parseCidr(this.pool())!;
    const last = broadcastOf(pool.network, pool.prefix);
    for (let a = pool.network; a + BLOCK - 1 <= last; a += BLOCK) if (!this.taken.has(a)) return a;
    return undefined;
  }
}
