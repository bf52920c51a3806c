// What a record holds that no other may: the allocation's results as (kind, key) → owner. A
// database state keeps them under unique keys, so two operators can never both commit the same
// address, MAC, tap, segment id or transit /30 — whatever their locks did (see pg-store.ts).
// The owner is the VM for what is the VM's own, the tenant for what a tenant's VMs share.
import type { VmRecord } from './store.js';

export interface Claim {
  kind: 'ip' | 'mac' | 'tap' | 'vlan' | 'vni' | 'transit';
  key: string;
  owner: string;
}

export function claimsOf(record: VmRecord): Claim[] {
  const vm = record.vm.name;
  const out = new Map<string, Claim>();
  const add = (c: Claim) => out.set(`${c.kind} ${c.key}`, c);
  for (const nic of record.vm.nics) {
    const net = nic.network;
    const tenant = `tenant:${net.tenant}`;
    // the same tenant may reuse an address range another tenant has: addresses are per tenant
    if (nic.ip) add({ kind: 'ip', key: `${net.tenant}/${nic.ip}`, owner: vm });
    if (nic.ip6) add({ kind: 'ip', key: `${net.tenant}/${nic.ip6}`, owner: vm });
    add({ kind: 'mac', key: nic.mac, owner: vm });
    add({ kind: 'tap', key: nic.tap, owner: vm }); // unique across the state, as allocate.ts checks
    if (net.segment.type === 'vlan' && net.segment.id !== undefined)
      add({ kind: 'vlan', key: String(net.segment.id), owner: tenant });
    if (net.segment.type === 'vxlan' && net.segment.vni !== undefined)
      add({ kind: 'vni', key: String(net.segment.vni), owner: tenant });
    if (net.namespace) add({ kind: 'transit', key: net.namespace.transit, owner: tenant });
  }
  return [...out.values()];
}
