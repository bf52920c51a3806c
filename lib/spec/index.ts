export { Problems, at } from './problems.js';
export { resolveVm, validateVm, VM_DEFAULTS } from './vm.js';
export { resolveNetwork, validateNetwork, sameNetwork, resolvePools, withoutSegmentId, DEFAULT_POOLS, VLAN_ID_MAX, VNI_MAX } from './network.js';
export { parseIpv4, formatIpv4, parseCidr, inSubnet, broadcastOf, maskOf } from './ipv4.js';
export { parseMac, deriveMac } from './mac.js';
export { bridgeName, tapName, vlanDeviceName, vxlanDeviceName, ifbName, deviceName, stableUuid, shortHash, IFNAME_MAX } from './names.js';
export { checkIfName, checkSafeText, checkAbsolutePath, checkName, checkPositive, isRecord, NAME_RE } from './checks.js';
