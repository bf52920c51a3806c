// Removing a VM from the state: its record and files (here, and on its host), then its host's
// plane re-applied without it — the last VM of a tenant takes the tenant's network with it.
import { applyHost } from '../reconcile.js';
import type { HostContext } from '../hosts.js';
import type { StateStore } from '../state/store.js';
import { vmPaths } from '../state/paths.js';

export function removeRecord(state: StateStore, host: HostContext, name: string): Promise<void> {
  return state.withLock(async () => {
    // its extracted kernel stays in the host's cache (kernel-cache.ts) for the next VM to boot it
    await state.remove(name);
    // a remote host's state dir may have the same path as ours: it is still another machine's
    if (host.remote || host.stateDir !== state.dir) await host.plane.files.remove(vmPaths(host.stateDir, name).dir);
    await applyHost(state, host);
  });
}
