export { Problems, at } from './problems.js';
export { resolveVm, validateVm } from './vm.js';
export {
  resolveNetwork,
  validateNetwork,
  sameNetwork,
  subnetsOverlap,
  resolvePools,
  withoutSegmentId,
  DEFAULT_POOLS,
} from './network.js';
export { parseIpv4, parseCidr, formatIpv4, broadcastOf, inSubnet } from './ipv4.js';
export { parseMac, deriveMac } from './mac.js';
export { bridgeName, tapName, vlanDeviceName, vxlanDeviceName, ifbName, namespaceNames, stableUuid } from './names.js';
export {
  checkIfName,
  checkSafeText,
  checkAbsolutePath,
  checkInt,
  checkKeys,
  checkName,
  checkPositive,
  isRecord,
} from './checks.js';
export { resolveSecurityGroup, validateSecurityGroup, checkSecurityReferences } from './security-group.js';
