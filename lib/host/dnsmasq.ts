// One dnsmasq per tenant network: configuration rendered from templates/dnsmasq.conf, a
// dhcp-hostsfile of static MAC -> IP (+name) leases, and process supervision through its pid
// file. Adding or removing a static lease rewrites the hostsfile and sends SIGHUP (dnsmasq
// re-reads dhcp-hostsfile on SIGHUP) — the instance is not restarted.
import { join } from 'node:path';
import type { HostNetwork } from '../../types/host.js';
import type { ResolvedNetwork } from '../../types/resolved.js';
import { checkSafeText, Problems } from '../spec/index.js';
import { VirtwireError } from '../errors/index.js';
import { renderTemplate } from './template.js';
import type { CommandRunner } from './command-runner.js';
import { waitUntil } from './wait.js';
import type { HostFiles } from './host-files.js';

export interface DnsmasqPaths {
  dir: string;
  conf: string;
  hostsFile: string;
  /** AAAA records of the tenant's names (addn-hosts: re-read on SIGHUP, like the hostsfile) */
  namesFile: string;
  leaseFile: string;
  pidFile: string;
}

export function dnsmasqPaths(stateDir: string, tenant: string): DnsmasqPaths {
  const dir = join(stateDir, 'dnsmasq', tenant);
  return {
    dir,
    conf: join(dir, 'dnsmasq.conf'),
    hostsFile: join(dir, 'hosts'),
    namesFile: join(dir, 'names'),
    leaseFile: join(dir, 'leases'),
    pidFile: join(dir, 'dnsmasq.pid'),
  };
}

const LEASE_TIME = '1h';

export interface DnsmasqOptions {
  /** the segment's MTU on this host, handed to the guests (DHCP option 26); default: none sent */
  mtu?: number;
  /** resolvers names outside the tenant are forwarded to; default none (internal only) */
  upstream?: string[];
}

const STUB = '127.0.0.53';
const nameservers = (text: string | undefined) =>
  [...(text ?? '').matchAll(/^\s*nameserver\s+([0-9a-fA-F.:]+)\s*$/gm)].map((m) => m[1]!);

/**
 * The host's own resolvers: /etc/resolv.conf's nameservers, or — where that is only
 * systemd-resolved's stub (127.0.0.53) — the upstream servers resolved itself uses.
 */
export async function hostResolvers(files: HostFiles): Promise<string[]> {
  const listed = nameservers(await files.read('/etc/resolv.conf'));
  if (listed.length > 0 && listed.every((a) => a === STUB)) {
    const upstream = nameservers(await files.read('/run/systemd/resolve/resolv.conf'));
    if (upstream.length > 0) return upstream;
  }
  return listed;
}

/** What a network forwards to: its own list, else the host's resolvers when it is NAT'd, else none. */
export function upstreamOf(network: ResolvedNetwork, host: string[]): string[] {
  return network.dns?.upstream ?? (network.nat ? host : []);
}

/** The dnsmasq configuration for a tenant network (deterministic: same input, same text). */
export function renderDnsmasqConfig(
  network: ResolvedNetwork,
  paths: DnsmasqPaths,
  options: DnsmasqOptions = {},
): string {
  const p = new Problems();
  for (const [key, value] of Object.entries(paths)) checkSafeText(p, key, value);
  p.throwIfAny('dnsmasq paths');
  const size = 2 ** (32 - network.prefix);
  return renderTemplate('dnsmasq.conf', {
    tenant: network.tenant,
    cidr: network.cidr,
    bridge: network.bridge,
    domain: `${network.tenant}.virtwire`,
    pidFile: paths.pidFile,
    leaseFile: paths.leaseFile,
    hostsFile: paths.hostsFile,
    namesFile: network.ipv6 ? paths.namesFile : undefined,
    rangeStart: network.dhcpRange[0],
    rangeEnd: network.dhcpRange[1],
    netmask: network.netmask,
    leaseTime: LEASE_TIME,
    // a network without NAT is not routed: no default route through the host
    router: network.nat ? network.gateway : undefined,
    gateway: network.gateway,
    mtu: options.mtu,
    upstream: (options.upstream ?? []).map((a) => {
      if (!/^[0-9a-fA-F.:]+$/.test(a))
        throw new VirtwireError('UNSAFE_VALUE', `refusing unsafe resolver address ${JSON.stringify(a)}`);
      return a;
    }),
    leaseMax: size,
    ...ipv6Values(network, options.mtu),
  });
}

/**
 * The template's IPv6 lines, each left out (undefined) on a network without IPv6. `ra` is the
 * empty string: a placeholder on lines that have no value of their own, only so they are left out
 * with the rest.
 */
function ipv6Values(network: ResolvedNetwork, mtu: number | undefined) {
  const v6 = network.ipv6;
  if (!v6) return {};
  return {
    ra: '',
    raMtu: mtu === undefined ? '' : `mtu:${mtu},`,
    routerLifetime: v6.outbound === 'none' ? 0 : 1800,
    range6: v6.network,
    gateway6: v6.gateway,
  };
}

/**
 * dhcp-hostsfile lines: `mac,ip[,[ip6]][,name]` (the IPv6 address only where it is pinned: DHCPv6
 * serves it), sorted so the file is deterministic.
 */
export function renderHostsFile(net: HostNetwork): string {
  const lines = net.ports
    .filter((p) => p.ip)
    .map((p) =>
      [p.mac, p.ip, ...(p.ip6 && p.ip6Pinned ? [`[${p.ip6}]`] : []), ...(p.hostname ? [p.hostname] : [])].join(','),
    )
    .sort();
  return lines.map((l) => `${l}\n`).join('');
}

/**
 * addn-hosts lines for a network with IPv6: each named port's IPv6 address (SLAAC or pinned),
 * so its name answers AAAA whether or not the guest ever asks DHCPv6 (expand-hosts adds the
 * tenant's domain). Empty without IPv6.
 */
export function renderNamesFile(net: HostNetwork): string {
  if (!net.network.ipv6) return '';
  const lines = net.ports.filter((p) => p.ip6 && p.hostname).map((p) => `${p.ip6} ${p.hostname}`);
  return lines
    .sort()
    .map((l) => `${l}\n`)
    .join('');
}

export interface DnsmasqStatus {
  pid: number | undefined;
  conf: string | undefined;
  hosts: string | undefined;
  names: string | undefined;
}

/** The running instance (pid alive and started with this config file) and the files on disk. */
export async function observeDnsmasq(files: HostFiles, paths: DnsmasqPaths): Promise<DnsmasqStatus> {
  const [pidText, conf, hosts, names] = await Promise.all([
    files.read(paths.pidFile),
    files.read(paths.conf),
    files.read(paths.hostsFile),
    files.read(paths.namesFile),
  ]);
  const pid = Number(pidText?.trim());
  let running: number | undefined;
  if (Number.isInteger(pid) && pid > 0) {
    // a pid file outlives its process, and pids are reused: the command line must be ours
    const cmdline = await files.process(pid);
    if (cmdline?.includes(`--conf-file=${paths.conf}`)) running = pid;
  }
  return { pid: running, conf, hosts, names };
}

export type DnsmasqAction = 'none' | 'start' | 'restart' | 'reload';

/** What reconciling one instance needs: start, restart (config changed), SIGHUP (leases changed). */
export function planDnsmasq(status: DnsmasqStatus, conf: string, hosts: string, names = ''): DnsmasqAction {
  if (status.pid === undefined) return 'start';
  if (status.conf !== conf) return 'restart';
  if (status.hosts !== hosts || (status.names ?? '') !== names) return 'reload';
  return 'none';
}

export async function applyDnsmasq(
  runner: CommandRunner,
  files: HostFiles,
  paths: DnsmasqPaths,
  action: DnsmasqAction,
  /** the config, the hostsfile, the names file, and the MACs of the tenant's ports (whose leases are kept) */
  { conf, hosts, names = '', macs }: { conf: string; hosts: string; names?: string; macs: string[] },
  status: DnsmasqStatus,
): Promise<number | undefined> {
  if (action === 'none') return status.pid;
  await files.mkdir(paths.dir);
  await files.write(paths.hostsFile, hosts);
  await files.write(paths.namesFile, names);
  // A lease of a MAC that is no longer a port's (its VM or NIC is gone) is dropped: dnsmasq keeps
  // a leased address from every other MAC — even one whose dhcp-host names it — until the lease
  // expires, so the next VM given that address would get another. The lease file may only be
  // edited while dnsmasq is stopped (it rewrites it), so such a change restarts the instance.
  const leases = (await files.read(paths.leaseFile)) ?? '';
  const kept = withoutStaleLeases(leases, macs);
  if (action === 'reload' && kept === leases) {
    await files.signal(status.pid!, 'HUP');
    return status.pid;
  }
  // the config and the leases are read and written by dnsmasq as root (the lease file is opened
  // before it drops privileges): root's only. The hostsfile is re-read on SIGHUP by dnsmasq's
  // own user and stays readable (MACs, addresses, names: no secrets)
  await files.write(paths.conf, conf, { mode: 0o600 });
  if (status.pid !== undefined) await stopDnsmasq(files, paths, status.pid);
  // read again: dnsmasq may have written leases until it stopped
  await files.write(paths.leaseFile, withoutStaleLeases((await files.read(paths.leaseFile)) ?? '', macs), {
    mode: 0o600,
  });
  // dnsmasq reports start-up errors through its exit code before it detaches, and writes its
  // pid file before the parent exits
  await runner.run(['dnsmasq', `--conf-file=${paths.conf}`], { step: `dnsmasq: start for ${paths.dir}` });
  const started = (await observeDnsmasq(files, paths)).pid;
  if (started === undefined)
    throw new VirtwireError('PROCESS_FAILED', `dnsmasq for ${paths.dir} exited right after starting`);
  return started;
}

/** The lease file without the leases of MACs that are no longer the tenant's ports'. */
export function withoutStaleLeases(leases: string, ports: string[]): string {
  const macs = new Set(ports.map((m) => m.toLowerCase()));
  return leases
    .split('\n')
    .filter((line) => {
      const mac = line.trim().split(/\s+/)[1];
      return !line.trim() || mac === undefined || macs.has(mac.toLowerCase());
    })
    .join('\n');
}

export async function stopDnsmasq(files: HostFiles, paths: DnsmasqPaths, pid?: number): Promise<void> {
  pid ??= (await observeDnsmasq(files, paths)).pid;
  if (pid === undefined) return;
  const stopping = pid;
  await files.signal(stopping, 'TERM');
  await waitUntil(async () => (await files.process(stopping)) === undefined, {
    timeoutMs: 10_000,
    what: `dnsmasq ${stopping} to exit`,
  });
}

/** Stops the instance and removes its files. */
export async function removeDnsmasq(files: HostFiles, paths: DnsmasqPaths): Promise<void> {
  await stopDnsmasq(files, paths);
  await files.remove(paths.dir);
}
