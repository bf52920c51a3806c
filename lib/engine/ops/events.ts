// Lifecycle events of virtwire's VMs (started, stopped, crashed, rebooted, …), from every host
// the state involves, through the binding's event loop. Events of domains the state does not hold
// are left out.
import type { VmEvent, VmOptions } from '../../../types/vm.js';
import type { Hypervisor, Subscription } from '../../libvirt/index.js';
import type { EngineDeps } from '../deps.js';
import { bind } from './scope.js';

export async function onVmEvent(
  deps: EngineDeps,
  handler: (event: VmEvent) => void,
  options: VmOptions = {},
): Promise<Subscription> {
  const { state, hosts } = await bind(deps, options);
  const open: { hv: Hypervisor; sub: Subscription }[] = [];
  try {
    for (const ctx of hosts.all(state.records()).values()) {
      const hv = await deps.connect(ctx.uri);
      open.push({
        hv,
        sub: await hv.onDomainEvent((e) => {
          // the state is read when the event comes: VMs created after subscribing count too
          if (state.get(e.name) && e.type !== 'pmsuspended') handler({ name: e.name, type: e.type });
        }),
      });
    }
  } catch (e) {
    for (const o of open) await o.hv.close();
    throw e;
  }
  return {
    off: async () => {
      for (const o of open.splice(0)) {
        await o.sub.off();
        await o.hv.close();
      }
    },
  };
}
