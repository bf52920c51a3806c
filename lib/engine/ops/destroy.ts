// destroyVm: the domain stopped and undefined on its host, then its record, files and host-plane
// share removed (the last VM of a tenant takes the tenant's network).
import type { DestroyVmOptions } from '../../../types/vm.js';
import { VirtwireError } from '../../errors/index.js';
import { VIRTWIRE_XMLNS } from '../../xml/index.js';
import type { EngineDeps } from '../deps.js';
import { withHypervisor } from '../hosts.js';
import { bind } from './scope.js';
import { removeRecord } from './remove-record.js';
import { undefine } from './create.js';
import { syncPeerHosts } from '../reconcile.js';

export async function destroyVm(deps: EngineDeps, name: string, options: DestroyVmOptions = {}): Promise<boolean> {
  const { state, hosts } = await bind(deps, options);
  const record = state.get(name);
  // the hosts given, else the host as the record keeps it (destroy works from the state alone)
  const host = record ? hosts.ofRecord(record) : hosts.context(undefined);
  // a state that can no longer be written (a database lost) stops here: the domain stays with its record
  if (record) await state.check();
  const found = await withHypervisor(deps.connect, host.uri, async (hv) => {
    const dom = await hv.lookupDomain(name);
    const ours = dom ? record !== undefined || (await dom.xml()).includes(VIRTWIRE_XMLNS) : false;
    if (!record && !ours) {
      dom?.free();
      return false;
    }
    if (dom) {
      if (await dom.isActive()) await dom.destroy();
      await undefine(dom);
    }
    return true;
  });
  if (!found) {
    if (options.missingOk) return false;
    throw new VirtwireError('NOT_FOUND', `no VM named ${name} was created by virtwire here (state ${state.where})`);
  }
  await removeRecord(state, host, name);
  // its addresses leave the member sets of other hosts' rules
  if (record) await state.withLock(() => syncPeerHosts(state, hosts, [record.vm], record.host));
  return true;
}
