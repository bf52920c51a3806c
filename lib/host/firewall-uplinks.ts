// The segment uplinks of a host state (a VLAN sub-interface or a VXLAN device per tenant) with
// the gateway address of the tenant behind each: what both firewall backends keep DHCP and the
// gateway's ARP from crossing.
import type { HostState } from '../../types/host.js';
import { uplinkOf } from './links.js';

export interface Uplink {
  /** the uplink device, e.g. eth1.100 or vwxacme-… */
  name: string;
  gateway: string;
}

export function uplinksOf(state: HostState): Uplink[] {
  return state.networks.flatMap((net) => {
    const u = uplinkOf(net);
    return u ? [{ name: u.name, gateway: net.network.gateway }] : [];
  });
}
