// Group commit of host-plane applies. A create writes its record under the state lock, then asks
// for its host to be applied. The host plane converges a host to *all* records, so while one
// apply runs, every request that arrives joins the next one: 20 concurrent creates pay for two or
// three applies, not 20. Applies still run under the state lock, reading the records there, so
// creates of other processes are covered by whichever apply comes next (and never undone by one
// that read the records before theirs were written).
import type { ResolvedVm } from '../../types/resolved.js';
import { hostStateFor } from './host-state.js';
import type { HostContext, HostResolver } from './hosts.js';
import type { StateStore } from './state/store.js';
import { syncPeerHosts } from './ops/security-groups.js';

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

// one committer per (state dir, host) in this process, like the state lock's queues
const committers = new Map<string, Committer>();

/**
 * Applies `host`'s plane for the state's records (the VMs `vms` among them), coalesced with
 * concurrent requests for the same host; then the hosts whose group peers the VMs changed.
 */
export function commitHost(
  state: StateStore,
  hosts: HostResolver,
  host: HostContext,
  vms: ResolvedVm[],
  options: { batch?: boolean } = {},
): Promise<void> {
  const applyOnce = (batch: ResolvedVm[]) =>
    state.withLock(async () => {
      await host.plane.apply(hostStateFor(state.records(), host, state.securityGroups()));
      await syncPeerHosts(state, hosts, batch, host.name);
    });
  if (options.batch === false) return applyOnce(vms);
  const key = `${state.dir}\0${host.name ?? ''}\0${host.stateDir}`;
  let c = committers.get(key);
  if (!c) committers.set(key, (c = new Committer()));
  // a batch with other VMs that failed may have failed for their sake: once more alone, to know
  return c.request(vms, applyOnce).catch((e: unknown) => {
    if (e instanceof SharedFailure) return applyOnce(vms);
    throw e;
  });
}
