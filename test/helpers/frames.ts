// What a hostile guest sends, byte for byte, as the hex raw-send.py takes (run in the attacker's
// namespace: `python3 SEND frame|udp|udpflood …`), and tcpdump filters that pick them out.
import { fileURLToPath } from 'node:url';

export const SEND = fileURLToPath(new URL('./raw-send.py', import.meta.url));

export const hex = (mac: string) => mac.replaceAll(':', '');
const ip4hex = (ip: string) =>
  ip
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .join('');
/** An ARP request (who has `target`, tell `sender`), broadcast from `mac`. */
export const arpRequest = (mac: string, sender: string, target: string) =>
  `ffffffffffff${hex(mac)}0806` + `0001080006040001${hex(mac)}${ip4hex(sender)}000000000000${ip4hex(target)}`;
/** A DHCPREQUEST for `ip` (INIT-REBOOT: no server named) with the broadcast flag, naming `chaddr`. */
export const dhcpRequest = (chaddr: string, ip: string) =>
  '0101060012345678' +
  '00008000' +
  '00'.repeat(16) +
  hex(chaddr) +
  '00'.repeat(10 + 192) +
  '63825363' +
  '350103' +
  `3204${ip4hex(ip)}` +
  'ff';
/** tcpdump's test that a BOOTP message (UDP payload) names `chaddr`. */
export const naming = (chaddr: string) =>
  `udp[36:4] = 0x${hex(chaddr).slice(0, 8)} and udp[40:2] = 0x${hex(chaddr).slice(8)}`;
/** A VXLAN packet's payload: the header with `vni`, then the inner frame. */
export const vxlan = (vni: number, inner: string) => `08000000${vni.toString(16).padStart(6, '0')}00${inner}`;
