// Finding a recorded VM, its host and its domain: what every lifecycle operation starts with.
import type { VmOptions } from '../../../types/vm.js';
import { VirtwireError } from '../../errors/index.js';
import type { DomainHandle, Hypervisor } from '../../libvirt/index.js';
import type { EngineDeps } from '../deps.js';
import { withHypervisor, type HostContext } from '../hosts.js';
import type { StateStore, VmRecord } from '../state/store.js';
import { bind, type Bound } from './scope.js';

export interface Located extends Bound {
  record: VmRecord;
  host: HostContext;
  state: StateStore;
}

/** The VM's record and its host; NOT_FOUND when the state has no VM of that name. */
export async function locate(deps: EngineDeps, name: string, options: VmOptions = {}): Promise<Located> {
  const bound = await bind(deps, options);
  const record = bound.state.get(name);
  if (!record) throw new VirtwireError('NOT_FOUND', `no VM named ${name} in the state (${bound.state.where})`);
  return { ...bound, record, host: bound.hosts.ofRecord(record) };
}

/** Runs `fn` with the VM's domain on its host (NOT_FOUND when libvirt has none), freeing it after. */
export function withDomain<T>(
  deps: EngineDeps,
  at: Located,
  fn: (dom: DomainHandle, hv: Hypervisor) => Promise<T>,
): Promise<T> {
  return withHypervisor(deps.connect, at.host.uri, async (hv) => {
    const dom = await hv.lookupDomain(at.record.vm.name);
    if (!dom)
      throw new VirtwireError(
        'NOT_FOUND',
        `VM ${at.record.vm.name} has no domain on ${at.host.name ?? 'this machine'} (plan shows it as missing)`,
      );
    try {
      return await fn(dom, hv);
    } finally {
      dom.free();
    }
  });
}

/**
 * Subscribes to the domain's events, runs `action`, then resolves true as soon as `predicate`
 * holds (checked at once and on each of its events), false after `timeoutMs`.
 */
export async function untilDomain(
  hv: Hypervisor,
  dom: DomainHandle,
  action: () => Promise<void>,
  predicate: (event?: string) => Promise<boolean>,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean> {
  let resolve!: (v: boolean) => void;
  const done = new Promise<boolean>((r) => (resolve = r));
  const sub = await hv.onDomainEvent((e) => {
    if (e.name === dom.name)
      void predicate(e.type).then(
        (ok) => ok && resolve(true),
        () => undefined,
      );
  });
  const timer = setTimeout(() => resolve(false), timeoutMs);
  const onAbort = () => resolve(false);
  signal?.addEventListener('abort', onAbort);
  try {
    await action();
    if (await predicate()) return true;
    return await done;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    await sub.off();
  }
}
