// Deterministic, length-capped host names for the devices virtwire owns (cdk8s-style: a readable
// part plus a short hash of the full identity). Linux interface names must fit 15 bytes; every
// virtwire device starts with "vw" and a kind letter so it is recognisable and never collides
// with devices virtwire does not own.
import { createHash } from 'node:crypto';

const IFNAME_MAX = 15;
const HASH_LEN = 6;

type DeviceKind = 'bridge' | 'tap' | 'vxlan' | 'ifb' | 'vlan' | 'gateway' | 'transit' | 'netns';
const KIND_PREFIX: Record<DeviceKind, string> = {
  bridge: 'vwb',
  tap: 'vwt',
  vxlan: 'vwx',
  ifb: 'vwi',
  vlan: 'vwv',
  gateway: 'vwg',
  transit: 'vwr',
  netns: 'vwn',
};

function shortHash(input: string, length = HASH_LEN): string {
  return createHash('sha256').update(input).digest('hex').slice(0, length);
}

/** `vwb` + up to 5 readable chars + `-` + 6 hex of the identity: always <= 15 chars. */
function deviceName(kind: DeviceKind, readable: string, identity: string): string {
  const prefix = KIND_PREFIX[kind];
  const room = IFNAME_MAX - prefix.length - 1 - HASH_LEN;
  const part = readable.replace(/[^a-z0-9]/g, '').slice(0, room);
  return `${prefix}${part}-${shortHash(`${kind}\0${identity}`)}`;
}

export function bridgeName(tenant: string): string {
  return deviceName('bridge', tenant, tenant);
}

export function tapName(vmName: string, nicIndex: number): string {
  return deviceName('tap', vmName, `${vmName}\0${nicIndex}`);
}

/** The Linux convention for a VLAN sub-interface (what vconfig made), capped when the uplink name is long. */
export function vlanDeviceName(uplink: string, vid: number): string {
  const classic = `${uplink}.${vid}`;
  return classic.length <= IFNAME_MAX ? classic : deviceName('vlan', uplink, `${uplink}\0${vid}`);
}

export function vxlanDeviceName(tenant: string, vni: number): string {
  return deviceName('vxlan', tenant, `${tenant}\0${vni}`);
}

/**
 * A namespaced tenant's names: its network namespace, and the host ends of the veth into its
 * bridge (the gateway's) and of its transit veth to the host.
 */
export function namespaceNames(tenant: string): { netns: string; gateway: string; transit: string } {
  return {
    netns: deviceName('netns', tenant, tenant),
    gateway: deviceName('gateway', tenant, tenant),
    transit: deviceName('transit', tenant, tenant),
  };
}

export function ifbName(tap: string): string {
  return deviceName('ifb', tap.slice(3), tap);
}

/** Name-based UUID (RFC 4122 version 5 layout) so a VM keeps its UUID across re-creates. */
export function stableUuid(name: string): string {
  const h = createHash('sha1').update(`virtwire-domain\0${name}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
