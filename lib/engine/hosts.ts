// Where a VM runs: this machine, or one of the hosts given to createVm — the one its spec names,
// or else the one with the most free memory (as libvirt reports it) that fits the VM. A host is
// reached through its own runner (SSH for a remote host) and its own libvirt URI, and keeps the
// VM's disks and its dnsmasq files in its own state dir.
import type { HostTarget } from '../../types/vm.js';
import type { ResolvedVm } from '../../types/resolved.js';
import { SpecError, VirtwireError } from '../errors/index.js';
import { checkKnownHostsFile, type CommandRunner } from '../host/index.js';
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
  /** the URI a host is opened with (HostResolver.uriOf: host keys checked as for its commands) */
  uriOf: (h: HostTarget) => string = (h) => h.uri,
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
        return { host: h, bytes: await withHypervisor(connect, uriOf(h), (hv) => hv.freeMemory()) };
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

const SSH_TRANSPORTS = ['qemu+ssh:', 'qemu+libssh:', 'qemu+libssh2:'];

/**
 * The URI a host's libvirt is opened with: its SSH transport checks host keys against the same
 * known_hosts as the host's commands. qemu+ssh runs the ssh program, which reads only the user's
 * own ~/.ssh/known_hosts (and takes no file from the URI): it becomes qemu+libssh with virtwire's.
 * A libssh URI without a known_hosts of its own gets it; one with its own keeps it (checked: a
 * device or symlink is refused). The policy: strict → known_hosts_verify=normal, accept-new → auto.
 */
export function libvirtUriFor(uri: string, knownHosts: string, policy: 'strict' | 'accept-new' = 'strict'): string {
  const url = new URL(uri);
  if (!SSH_TRANSPORTS.includes(url.protocol)) return uri;
  const params = url.searchParams;
  if (!params.has('known_hosts')) params.set('known_hosts', knownHosts);
  if (!params.has('known_hosts_verify')) params.set('known_hosts_verify', policy === 'accept-new' ? 'auto' : 'normal');
  checkKnownHostsFile(params.get('known_hosts')!);
  const transport = url.protocol === 'qemu+ssh:' ? 'qemu+libssh:' : url.protocol;
  params.delete('no_tty'); // the ssh program's; libssh never prompts
  return `${transport}//${url.username ? `${url.username}@` : ''}${url.host}${url.pathname}?${params}`;
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
    const knownHosts = this.knownHosts(target);
    const ssh = target.ssh && { ...target.ssh, knownHostsFile: knownHosts };
    const runner = ssh ? runners.ssh(ssh) : runners.local();
    const stateDir = target.stateDir ?? (target.ssh ? DEFAULT_STATE_DIR : this.scope.stateDir);
    return {
      name: target.name,
      ...(target.uplink ? { uplink: target.uplink } : {}),
      ...(target.address ? { address: target.address } : {}),
      uri: this.uriOf(target),
      runner,
      plane: planes(runner, stateDir),
      stateDir,
      remote: target.ssh !== undefined,
    };
  }

  /**
   * Host keys are checked against virtwire's own known_hosts in the state dir unless one is
   * named: by the host's commands and by its libvirt connection alike.
   */
  private knownHosts(target: HostTarget): string {
    return target.ssh?.knownHostsFile ?? statePaths(this.scope.stateDir).knownHosts;
  }

  /** The libvirt URI `target` is opened with (libvirtUriFor). */
  uriOf(target: HostTarget): string {
    return libvirtUriFor(target.uri, this.knownHosts(target), target.ssh?.hostKeyPolicy);
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
