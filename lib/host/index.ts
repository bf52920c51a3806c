export { HostPlane, type HostPlaneOptions, type ApplyReport, type HostPlan } from './plane.js';
export { ExecaRunner, batchLine, type CommandRunner, type RunOptions, type RunResult } from './command-runner.js';
export { probeHost, kvmUsable, requireFeature } from './probe.js';
export { validateHostState } from './host-state.js';
export { renderDnsmasqConfig, renderHostsFile, dnsmasqPaths, pidAlive, type DnsmasqPaths } from './dnsmasq.js';
export { parseLeases, waitForLease, type Lease } from './leases.js';
export { renderRuleset, tableScript } from './firewall.js';
export { desiredLinks, planLinks, linkMaster, OWNED_NAME, VXLAN_MTU } from './links.js';
export { waitUntil } from './wait.js';
