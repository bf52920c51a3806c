// Where a VM runs: this machine, or one of the hosts given to createVm — the one its spec names,
// or else the one with the most free memory (as libvirt reports it) that fits the VM. A host is
// reached through its own runner (SSH for a remote host) and its own libvirt URI, and keeps the
// VM's disks and its dnsmasq files in its own state dir.
import type { HostTarget } from '../../types/vm.js';
import type { ResolvedVm } from '../../types/resolved.js';
import { SpecError, VirtwireError } from '../errors/index.js';
import {
  Problems,
  at,
  checkAbsolutePath,
  checkIfName,
  checkInt,
  checkKeys,
  checkName,
  isRecord,
  parseIpv4,
} from '../spec/index.js';
import type { CommandRunner } from '../host/index.js';
import type { Hypervisor } from '../libvirt/index.js';
import type { Connector, EngineDeps, TenantPlane } from './deps.js';
import type { VmRecord } from './state/store.js';
import { DEFAULT_STATE_DIR, statePaths } from './state/paths.js';

export interface HostContext {
  /** the host's name; undefined for this machine when no hosts were given */
  name: string | undefined;
  /** the host's NIC for tenant segments (its VLAN sub-interfaces and VXLAN devices) */
  uplink?: string;
  /** its underlay address: VXLAN peers are derived from the hosts (HostTarget.address) */
  address?: string;
  uri: string;
  runner: CommandRunner;
  /** the host plane there (its files are the host's files) */
  plane: TenantPlane;
  /** the state dir on that host */
  stateDir: string;
  remote: boolean;
}

/** Every problem of a hosts list, with its path, before anything is contacted. */
export function validateHosts(input: unknown): HostTarget[] {
  const p = new Problems();
  const hosts = checkHosts(p, input);
  p.throwIfAny('hosts');
  return hosts;
}

const HOST_KEYS = ['name', 'uri', 'ssh', 'stateDir', 'uplink', 'address'];
const SSH_KEYS = ['destination', 'identityFile', 'port', 'controlDir', 'hostKeyPolicy', 'knownHostsFile'];

/** The same, collecting into `p` (a spec file's problems). */
export function checkHosts(p: Problems, input: unknown): HostTarget[] {
  if (input === undefined) return [];
  if (!Array.isArray(input)) p.add('hosts', 'must be a list of hosts');
  const names = new Set<string>();
  (Array.isArray(input) ? input : []).forEach((h: unknown, i) => {
    const path = at('hosts', i);
    if (!isRecord(h)) return p.add(path, 'must be an object with name and uri');
    checkKeys(p, path, h, HOST_KEYS);
    if (h.uplink !== undefined) checkIfName(p, at(path, 'uplink'), h.uplink);
    if (h.address !== undefined && (typeof h.address !== 'string' || parseIpv4(h.address) === undefined))
      p.add(at(path, 'address'), `${JSON.stringify(h.address)} is not an IPv4 address`);
    if (checkName(p, at(path, 'name'), h.name)) {
      if (names.has(h.name as string)) p.add(at(path, 'name'), `host ${String(h.name)} is listed twice`);
      names.add(h.name as string);
    }
    checkLibvirtUri(p, at(path, 'uri'), h.uri);
    if (h.ssh !== undefined) checkSsh(p, at(path, 'ssh'), h.ssh);
    if (h.stateDir !== undefined) checkAbsolutePath(p, at(path, 'stateDir'), h.stateDir);
  });
  return Array.isArray(input) ? (input as HostTarget[]) : [];
}

function checkSsh(p: Problems, path: string, ssh: unknown): void {
  if (!isRecord(ssh)) return p.add(path, 'must be { destination: "user@host", identityFile?, port?, hostKeyPolicy? }');
  checkKeys(p, path, ssh, SSH_KEYS);
  const dest = ssh.destination;
  if (typeof dest !== 'string' || !/^[A-Za-z0-9_.@:-]+$/.test(dest) || dest.startsWith('-')) {
    p.add(at(path, 'destination'), 'must be "user@host" or "host" (letters, digits, _ . @ : -; not starting with -)');
  }
  for (const key of ['identityFile', 'controlDir', 'knownHostsFile'] as const) {
    if (ssh[key] !== undefined) checkAbsolutePath(p, at(path, key), ssh[key]);
  }
  if (ssh.port !== undefined) checkInt(p, at(path, 'port'), ssh.port, 1, 65535);
  if (ssh.hostKeyPolicy !== undefined && ssh.hostKeyPolicy !== 'strict' && ssh.hostKeyPolicy !== 'accept-new') {
    p.add(
      at(path, 'hostKeyPolicy'),
      `${JSON.stringify(ssh.hostKeyPolicy)} is not strict or accept-new (host keys are always checked)`,
    );
  }
}

// libvirt transports virtwire accepts, and the URI parameters each may carry. Anything else —
// ext (runs a program of the URI's choosing), unix sockets elsewhere, command=, socket=,
// netcat=, or a parameter that turns host-key checking off — is refused as bad input.
const TRANSPORTS: Record<string, readonly string[]> = {
  qemu: [],
  'qemu+ssh': ['keyfile', 'known_hosts', 'known_hosts_verify', 'sshauth', 'no_tty', 'mode'],
  'qemu+libssh': ['keyfile', 'known_hosts', 'known_hosts_verify', 'sshauth', 'no_tty', 'mode'],
  'qemu+libssh2': ['keyfile', 'known_hosts', 'known_hosts_verify', 'sshauth', 'no_tty', 'mode'],
  'qemu+tls': ['pkipath', 'no_verify'],
  test: [],
};

/** A libvirt URI of an allowed transport with only its allowed parameters. */
export function checkLibvirtUri(p: Problems, path: string, uri: unknown): boolean {
  const bad = (why: string) => {
    p.add(path, `${JSON.stringify(uri ?? null)} ${why}`);
    return false;
  };
  if (typeof uri !== 'string' || !/^[a-z0-9+]+:\/\/[^\s]*$/.test(uri))
    return bad('is not a libvirt URI (e.g. qemu+ssh://root@hv1/system)');
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return bad('is not a libvirt URI (e.g. qemu+ssh://root@hv1/system)');
  }
  const scheme = url.protocol.slice(0, -1);
  const allowed = TRANSPORTS[scheme];
  if (!allowed)
    return bad(
      `uses transport ${scheme}; allowed: qemu:///system, ${Object.keys(TRANSPORTS)
        .filter((t) => t.includes('+'))
        .map((t) => `${t}://`)
        .join(', ')}`,
    );
  if (scheme === 'qemu' && (url.host !== '' || url.pathname !== '/system'))
    return bad('must be qemu:///system for this machine');
  if (scheme.startsWith('qemu') && url.pathname !== '/system') return bad('must name the system instance (…/system)');
  for (const [key, value] of url.searchParams) {
    if (!allowed.includes(key))
      return bad(
        `has parameter ${key}, which virtwire does not allow (${allowed.length ? `allowed: ${allowed.join(', ')}` : 'none are'})`,
      );
    if (key === 'known_hosts_verify' && value !== 'normal' && value !== 'auto')
      return bad('turns host-key checking off (known_hosts_verify may be normal or auto)');
    if (key === 'no_verify' && value !== '0') return bad('turns certificate checking off (no_verify)');
  }
  return true;
}

/** Opens a connection, runs `fn`, closes it whatever happens. */
export async function withHypervisor<T>(
  connect: Connector,
  uri: string,
  fn: (hv: Hypervisor) => Promise<T>,
): Promise<T> {
  const hv = await connect(uri);
  try {
    return await fn(hv);
  } finally {
    await hv.close();
  }
}

/**
 * The host for `vm`: the one its spec names, else by free memory. Unreachable hosts are passed
 * over (a placement is not a reason to fail while another host can take the VM).
 */
export async function placeVm(
  vm: ResolvedVm,
  hosts: HostTarget[],
  connect: Connector,
): Promise<HostTarget | undefined> {
  if (hosts.length === 0) {
    if (vm.host !== undefined)
      throw new SpecError(
        [{ path: 'host', message: `host ${vm.host} is not known: no hosts were given` }],
        `VM spec for ${vm.name}`,
      );
    return undefined;
  }
  if (vm.host !== undefined) {
    const named = hosts.find((h) => h.name === vm.host);
    if (!named)
      throw new SpecError(
        [{ path: 'host', message: `host ${vm.host} is not one of ${hosts.map((h) => h.name).join(', ')}` }],
        `VM spec for ${vm.name}`,
      );
    return named;
  }
  const need = vm.memoryMiB * 1024 * 1024;
  const free = await Promise.all(
    hosts.map(async (h) => {
      try {
        return { host: h, bytes: await withHypervisor(connect, h.uri, (hv) => hv.freeMemory()) };
      } catch (cause) {
        return { host: h, bytes: -1, cause };
      }
    }),
  );
  const fits = free.filter((f) => f.bytes >= need).sort((a, b) => b.bytes - a.bytes);
  if (fits.length > 0) return fits[0]!.host;
  const seen = free.map(
    (f) =>
      `${f.host.name}: ${f.bytes < 0 ? `unreachable (${(f.cause as Error).message})` : `${Math.floor(f.bytes / 1048576)} MiB free`}`,
  );
  throw new VirtwireError('NO_HOST', `no host can take VM ${vm.name} (${vm.memoryMiB} MiB): ${seen.join('; ')}`);
}

/** What a call works on: this machine's URI and state dir, and the hosts it was given. */
export interface Scope {
  uri: string;
  stateDir: string;
  hosts: HostTarget[];
}

/** Host contexts of one call, made through the engine's collaborators (never constructed here). */
export class HostResolver {
  constructor(
    private readonly deps: Pick<EngineDeps, 'runners' | 'planes'>,
    private readonly scope: Scope,
  ) {}

  /** How to work on `target` (undefined: this machine, with the call's own URI and state dir). */
  context(target: HostTarget | undefined): HostContext {
    const { runners, planes } = this.deps;
    if (!target) {
      const runner = runners.local();
      return {
        name: undefined,
        uri: this.scope.uri,
        runner,
        plane: planes(runner, this.scope.stateDir),
        stateDir: this.scope.stateDir,
        remote: false,
      };
    }
    // host keys are checked against virtwire's own known_hosts in the state dir unless one is named
    const ssh = target.ssh && {
      ...target.ssh,
      knownHostsFile: target.ssh.knownHostsFile ?? statePaths(this.scope.stateDir).knownHosts,
    };
    const runner = ssh ? runners.ssh(ssh) : runners.local();
    const stateDir = target.stateDir ?? (target.ssh ? DEFAULT_STATE_DIR : this.scope.stateDir);
    return {
      name: target.name,
      ...(target.uplink ? { uplink: target.uplink } : {}),
      ...(target.address ? { address: target.address } : {}),
      uri: target.uri,
      runner,
      plane: planes(runner, stateDir),
      stateDir,
      remote: target.ssh !== undefined,
    };
  }

  /** The host a recorded VM lives on: as the call's hosts describe it, else as its record keeps it. */
  ofRecord(record: VmRecord): HostContext {
    if (record.host === undefined) return this.context(undefined);
    const target = this.scope.hosts.find((h) => h.name === record.host) ?? record.hostTarget;
    const given = this.scope.hosts.map((h) => h.name).join(', ') || 'none';
    if (!target)
      throw new VirtwireError(
        'NOT_FOUND',
        `VM ${record.vm.name} runs on host ${record.host}, which is not among the hosts given (${given})`,
      );
    return this.context(target);
  }

  /**
   * Every host the records or the call involve: this machine (unless every VM lives on named
   * hosts), and each named host — from the call's hosts, else as its records keep it.
   */
  all(records: VmRecord[]): Map<string | undefined, HostContext> {
    const known = new Map<string, HostTarget>();
    for (const r of records) if (r.host && r.hostTarget) known.set(r.host, r.hostTarget);
    for (const h of this.scope.hosts) known.set(h.name, h);
    const out = new Map<string | undefined, HostContext>();
    if (this.scope.hosts.length === 0 || records.some((r) => r.host === undefined))
      out.set(undefined, this.context(undefined));
    for (const [name, h] of known) out.set(name, this.context(h));
    for (const r of records) {
      if (r.host !== undefined && !out.has(r.host))
        throw new VirtwireError(
          'NOT_FOUND',
          `VM ${r.vm.name} is recorded on host ${r.host}, which neither the hosts given nor the record describe`,
        );
    }
    return out;
  }
}
