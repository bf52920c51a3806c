// What both firewall backends enforce beyond the rules themselves, derived from a host state:
// - the gateway's services a tenant's guests may reach on the host (everything else to the host
//   is dropped);
// - the segment uplinks (a VLAN sub-interface or a VXLAN device per tenant) with the gateway
//   address behind each, which DHCP and the gateway's ARP never cross.
import type { HostNetwork, HostState } from '../../types/host.js';
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

/** The gateway's services a guest may use: DHCP (also broadcast), DNS, and the network's hostServices. */
export function hostServicesOf(net: HostNetwork): { address: string; protocol: 'tcp' | 'udp'; port: number }[] {
  const gw = net.network.gateway;
  const dhcp =
    net.dhcp === false
      ? []
      : [
          { address: gw, protocol: 'udp' as const, port: 67 },
          { address: '255.255.255.255', protocol: 'udp' as const, port: 67 },
          { address: gw, protocol: 'udp' as const, port: 53 },
          { address: gw, protocol: 'tcp' as const, port: 53 },
        ];
  return [...dhcp, ...(net.network.hostServices ?? []).map((s) => ({ address: gw, ...s }))];
}
