// What a host plane should hold, derived from the records: the one function from records to a
// host's desired state. Only the VMs recorded on that host count (this machine: the VMs recorded
// without a host), and each tenant's segment goes out of the host's own uplink NIC where it names
// one (NIC names differ between hosts; the segment's id does not).
import type { HostNetwork, HostState } from '../../types/host.js';
import type { HostContext } from './hosts.js';
import type { VmRecord } from './state/store.js';

export function hostStateFor(records: VmRecord[], host: Pick<HostContext, 'name' | 'uplink'>): HostState {
  const byTenant = new Map<string, HostNetwork>();
  for (const { vm } of records.filter((r) => r.host === host.name)) {
    for (const nic of vm.nics) {
      const tenant = nic.network.tenant;
      let net = byTenant.get(tenant);
      if (!net) {
        const seg = nic.network.segment;
        const network =
          host.uplink && seg.type !== 'none'
            ? { ...nic.network, segment: { ...seg, uplink: host.uplink } }
            : nic.network;
        byTenant.set(tenant, (net = { network, ports: [] }));
      }
      net.ports.push({
        name: nic.tap,
        kind: 'tap',
        mac: nic.mac,
        ...(nic.ip ? { ip: nic.ip } : {}),
        hostname: nic.index === 0 ? vm.name : `${vm.name}-nic${nic.index}`.slice(0, 31),
        ...(nic.qos ? { qos: nic.qos } : {}),
      });
    }
  }
  return { networks: [...byTenant.values()].sort((a, b) => a.network.tenant.localeCompare(b.network.tenant)) };
}
