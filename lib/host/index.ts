export {
  HostPlane,
  DEFAULT_STATE_DIR,
  type HostPlaneOptions,
  type ApplyReport,
  type HostPlan,
  type HostChange,
  type DnsmasqChange,
} from './plane.js';
export type { NamespaceChange, NamespacePlan } from './tenant-namespaces.js';
export type { LinkChange } from './links.js';
export type { QosChange } from './qos.js';
export type { AddressChange } from './ways-in.js';
export type { FirewallChange } from './firewall/index.js';
export { LocalRunner, batchLine, type CommandRunner, type RunOptions, type RunResult } from './command-runner.js';
export { probeHost } from './probe.js';
export { kvmVerdict, hasVirtFlags, qemuGroup, type KvmVerdict } from './kvm.js';
export { validateHostState } from './validate-host-state.js';
export { renderDnsmasqConfig, renderHostsFile, dnsmasqPaths, type DnsmasqPaths } from './dnsmasq.js';
export { pidAlive, LocalFiles, RunnerFiles, type HostFiles } from './host-files.js';
export { parseLeases, type Lease, type LeaseWait } from './leases.js';
export type { FirewallKind, FirewallCommand } from './firewall/index.js';
export { renderRuleset } from './firewall/nft.js';
export { desiredLinks, planLinks, newBridgeMac, linkMaster, segmentMtus, OWNED_NAME } from './links.js';
export { FileLock, lockedError, type LockHolder } from './file-lock.js';
export { waitUntil, waitForFile, pollFile } from './wait.js';
export { sshAnswer, CLOUD_INIT_DONE } from './guest.js';
export { SshRunner, checkKnownHostsFile, type SshTarget } from './ssh-runner.js';
