// The one way the engine pushes its records to hosts. A host plane converges a host to what the
// state's records (and security groups) say for it; every operation that changed records calls
// one of these, under the state lock:
// - applyHost: this host, now (the caller holds the lock);
// - reconcileHost: this host, taking the lock;
// - applyTenantHosts: every host where some of `tenants` have VMs (a group changed);
// - syncPeerHosts: the other hosts whose derived rules moved with these VMs (group peers,
//   VXLAN peers from the hosts list);
// - HostCommits.commit: a create's host, coalesced with concurrent creates (group commit), then
//   its peers.
import type { ResolvedVm } from '../../types/resolved.js';
import { hostStateFor, peersFromHosts } from './records-to-host.js';
import type { HostContext, HostResolver } from './hosts.js';
import type { StateStore } from './state/store.js';

/** Applies `host`'s plane for the state's records; the caller holds the state lock. */
export function applyHost(state: StateStore, host: HostContext): Promise<unknown> {
  return host.plane.apply(hostStateFor(state.records(), host, state.securityGroups()));
}

/** Re-applies one host's plane from the records, in the state lock. */
export function reconcileHost(state: StateStore, host: HostContext): Promise<unknown> {
  return state.withLock(() => applyHost(state, host));
}

/**
 * Re-applies, under the held state lock, every host where one of `tenants` has VMs — but
 * `except.host` (undefined there is this machine, so the host is wrapped).
 */
export async function applyTenantHosts(
  state: StateStore,
  hosts: HostResolver,
  tenants: ReadonlySet<string>,
  except?: { host: string | undefined },
): Promise<void> {
  const records = state.records();
  const where = new Set(
    records
      .filter((r) => (!except || r.host !== except.host) && r.vm.nics.some((n) => tenants.has(n.network.tenant)))
      .map((r) => r.host),
  );
  for (const [name, ctx] of hosts.all(records)) if (where.has(name)) await applyHost(state, ctx);
}

/**
 * A VM's NICs came, went or changed groups on host `here`: every other host of its tenants
 * re-applies when what it derives from other hosts' VMs moved — a group there names one of its
 * groups as a peer (member addresses), or the tenant's VXLAN segment takes its peers from the
 * hosts list (which hosts have the tenant). Under the held state lock; else nothing to do.
 */
export async function syncPeerHosts(
  state: StateStore,
  hosts: HostResolver,
  vms: ResolvedVm[],
  here: string | undefined,
): Promise<void> {
  const groups = state.securityGroups();
  const joined = new Set(vms.flatMap((vm) => vm.nics.flatMap((n) => n.securityGroups ?? [])));
  const groupPeers = groups.some((g) => g.rules.some((r) => 'group' in r.peer && joined.has(r.peer.group)));
  const tenants = new Set(
    vms.flatMap((vm) =>
      vm.nics.filter((n) => groupPeers || peersFromHosts(n.network.segment)).map((n) => n.network.tenant),
    ),
  );
  if (tenants.size > 0) await applyTenantHosts(state, hosts, tenants, { host: here });
}

type ApplyOnce = (vms: ResolvedVm[]) => Promise<void>;

interface Batch {
  vms: ResolvedVm[];
  /** the latest requester's apply (its host connections are the freshest) */
  apply: ApplyOnce;
  promise: Promise<void>;
}

/** A failed apply that also carried other VMs' changes. */
class SharedFailure extends Error {
  constructor(cause: unknown) {
    super('a shared host-plane apply failed', { cause });
  }
}

// Group commit: a create writes its record under the state lock, then asks for its host to be
// applied. While one apply runs, every request that arrives joins the next one: 20 concurrent
// creates pay for two or three applies, not 20. Applies still run under the state lock, reading
// the records there, so creates of other processes are covered by whichever apply comes next
// (and never undone by one that read the records before theirs were written).
class Committer {
  private current: Promise<void> | undefined;
  private next: Batch | undefined;

  /**
   * Resolves once an apply that began after this call has finished, and rejects if it failed —
   * with `shared` set when other VMs were in that apply (the failure may be theirs).
   */
  request(vms: ResolvedVm[], apply: ApplyOnce): Promise<void> {
    if (!this.current) return this.start(vms, apply);
    if (this.next) {
      const batch = this.next;
      batch.vms.push(...vms);
      batch.apply = apply;
      return batch.promise.catch((e: unknown) => Promise.reject(new SharedFailure(e)));
    }
    const batch: Batch = { vms: [...vms], apply, promise: Promise.resolve() };
    batch.promise = this.current
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.start(batch.vms, batch.apply);
      });
    this.next = batch;
    return batch.promise.catch((e: unknown) =>
      Promise.reject(batch.vms.length > vms.length ? new SharedFailure(e) : e),
    );
  }

  private start(vms: ResolvedVm[], apply: ApplyOnce): Promise<void> {
    const p: Promise<void> = apply(vms).finally(() => {
      if (this.current === p) this.current = undefined;
    });
    this.current = p;
    return p;
  }
}

/**
 * One committer per (state dir, host): a singleton of the composition root (no constructor
 * arguments, so no decorator), so every engine of the process shares it, as they share the state
 * lock's queues.
 */
export class HostCommits {
  private readonly committers = new Map<string, Committer>();

  /**
   * Applies `host`'s plane for the state's records (the VMs `vms` among them), coalesced with
   * concurrent requests for the same host; then the hosts whose group peers the VMs changed.
   */
  commit(
    state: StateStore,
    hosts: HostResolver,
    host: HostContext,
    vms: ResolvedVm[],
    options: { batch?: boolean } = {},
  ): Promise<void> {
    const applyOnce = (batch: ResolvedVm[]) =>
      state.withLock(async () => {
        await applyHost(state, host);
        await syncPeerHosts(state, hosts, batch, host.name);
      });
    if (options.batch === false) return applyOnce(vms);
    const key = `${state.dir}\0${host.name ?? ''}\0${host.stateDir}`;
    let c = this.committers.get(key);
    if (!c) this.committers.set(key, (c = new Committer()));
    // a batch with other VMs that failed may have failed for their sake: once more alone, to know
    return c.request(vms, applyOnce).catch((e: unknown) => {
      if (e instanceof SharedFailure) return applyOnce(vms);
      throw e;
    });
  }
}
