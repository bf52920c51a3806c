// Where a VM runs: this machine, or one of the hosts given to createVm — the one its spec names,
// or else the one with the most free memory (as libvirt reports it) that fits the VM. A host is
// reached through its own runner (SSH for a remote host) and its own libvirt URI, and keeps the
// VM's disks and its dnsmasq files in its own state dir.
import type { HostTarget } from '../../types/vm.js';
import type { ResolvedVm } from '../../types/resolved.js';
import { SpecError, VirtwireError } from '../errors/index.js';
import { Problems, at, checkIfName, checkName, isRecord } from '../spec/index.js';
import { HostPlane, SshRunner, type CommandRunner } from '../host/index.js';
import type { Libvirt } from '../libvirt/index.js';
import type { HostState, SshTarget } from '../../types/host.js';
import { hostStateOf, type VmRecord } from './registry.js';
import { DEFAULT_STATE_DIR } from '../xml/index.js';

export interface HostContext {
  /** the host's name; undefined for this machine when no hosts were given */
  name: string | undefined;
  /** the host's NIC for tenant segments (its VLAN sub-interfaces and VXLAN devices) */
  uplink?: string;
  uri: string;
  runner: CommandRunner;
  /** the host plane there (its files are the host's files) */
  plane: HostPlane;
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

/** The same, collecting into `p` (a spec file's problems). */
export function checkHosts(p: Problems, input: unknown): HostTarget[] {
  if (input === undefined) return [];
  if (!Array.isArray(input)) p.add('hosts', 'must be a list of hosts');
  const names = new Set<string>();
  (Array.isArray(input) ? input : []).forEach((h: unknown, i) => {
    const path = at('hosts', i);
    if (!isRecord(h)) return p.add(path, 'must be an object with name and uri');
    for (const key of Object.keys(h)) if (!['name', 'uri', 'ssh', 'stateDir', 'uplink'].includes(key)) p.add(at(path, key), 'unknown field (allowed: name, uri, ssh, stateDir, uplink)');
    if (h.uplink !== undefined) checkIfName(p, at(path, 'uplink'), h.uplink);
    if (checkName(p, at(path, 'name'), h.name)) {
      if (names.has(h.name as string)) p.add(at(path, 'name'), `host ${String(h.name)} is listed twice`);
      names.add(h.name as string);
    }
    if (typeof h.uri !== 'string' || !/^[a-z0-9+]+:\/\/[^\s]*$/.test(h.uri)) p.add(at(path, 'uri'), `${JSON.stringify(h.uri ?? null)} is not a libvirt URI (e.g. qemu+ssh://root@hv1/system)`);
    if (h.ssh !== undefined) {
      if (!isRecord(h.ssh) || typeof h.ssh.destination !== 'string' || !/^[A-Za-z0-9_.@:-]+$/.test(h.ssh.destination) || h.ssh.destination.startsWith('-')) {
        p.add(at(path, 'ssh'), 'must be { destination: "user@host", identityFile?, port? }');
      }
    }
    if (h.stateDir !== undefined && (typeof h.stateDir !== 'string' || !h.stateDir.startsWith('/'))) p.add(at(path, 'stateDir'), 'must be an absolute path');
  });
  return Array.isArray(input) ? (input as HostTarget[]) : [];
}

/**
 * The host for `vm`: the one its spec names, else by free memory. Unreachable hosts are passed
 * over (a placement is not a reason to fail while another host can take the VM).
 */
export async function placeVm(vm: ResolvedVm, hosts: HostTarget[], connect: (uri: string) => Promise<Libvirt>): Promise<HostTarget | undefined> {
  if (hosts.length === 0) {
    if (vm.host !== undefined) throw new SpecError([{ path: 'host', message: `host ${vm.host} is not known: no hosts were given` }], `VM spec for ${vm.name}`);
    return undefined;
  }
  if (vm.host !== undefined) {
    const named = hosts.find((h) => h.name === vm.host);
    if (!named) throw new SpecError([{ path: 'host', message: `host ${vm.host} is not one of ${hosts.map((h) => h.name).join(', ')}` }], `VM spec for ${vm.name}`);
    return named;
  }
  const need = vm.memoryMiB * 1024 * 1024;
  const free = await Promise.all(hosts.map(async (h) => {
    let lv: Libvirt | undefined;
    try {
      lv = await connect(h.uri);
      return { host: h, bytes: await lv.freeMemory() };
    } catch (cause) {
      return { host: h, bytes: -1, cause };
    } finally {
      await lv?.close();
    }
  }));
  const fits = free.filter((f) => f.bytes >= need).sort((a, b) => b.bytes - a.bytes);
  if (fits.length > 0) return fits[0]!.host;
  const seen = free.map((f) => `${f.host.name}: ${f.bytes < 0 ? `unreachable (${(f.cause as Error).message})` : `${Math.floor(f.bytes / 1048576)} MiB free`}`);
  throw new VirtwireError('NO_HOST', `no host can take VM ${vm.name} (${vm.memoryMiB} MiB): ${seen.join('; ')}`);
}

// One SshRunner per SSH target in this process: it serialises the commands to its host (small
// SSH servers drop concurrent sessions on one connection now and then), so parallel creates on
// one host must share it.
const sshRunners = new Map<string, SshRunner>();
function sshRunnerFor(ssh: SshTarget): SshRunner {
  const key = JSON.stringify([ssh.destination, ssh.port, ssh.identityFile, ssh.controlDir, ssh.acceptNewHostKeys]);
  let r = sshRunners.get(key);
  if (!r) sshRunners.set(key, (r = new SshRunner(ssh)));
  return r;
}

/** How to work on `target` (undefined: this machine, with the call's own URI and state dir). */
export function hostContext(target: HostTarget | undefined, local: { runner: CommandRunner; uri: string; stateDir: string }): HostContext {
  if (!target) return { name: undefined, uri: local.uri, runner: local.runner, plane: new HostPlane({ runner: local.runner, stateDir: local.stateDir }), stateDir: local.stateDir, remote: false };
  const runner = target.ssh ? sshRunnerFor(target.ssh) : local.runner;
  const stateDir = target.stateDir ?? (target.ssh ? DEFAULT_STATE_DIR : local.stateDir);
  return { name: target.name, ...(target.uplink ? { uplink: target.uplink } : {}), uri: target.uri, runner, plane: new HostPlane({ runner, stateDir }), stateDir, remote: target.ssh !== undefined };
}

/** The records of the VMs on one host (undefined: this machine without a hosts list). */
export function recordsOn(records: VmRecord[], host: string | undefined): VmRecord[] {
  return records.filter((r) => r.host === host);
}

/**
 * What the host plane of `ctx` should hold: its VMs' networks and ports, the tenants' segments
 * on the host's own uplink NIC where it names one (NIC names differ between hosts; the
 * segment's id does not).
 */
export function hostStateFor(records: VmRecord[], ctx: Pick<HostContext, 'name' | 'uplink'>): HostState {
  const state = hostStateOf(recordsOn(records, ctx.name));
  if (!ctx.uplink) return state;
  const uplink = ctx.uplink;
  return {
    networks: state.networks.map((net) => {
      const seg = net.network.segment;
      return seg.type === 'none' ? net : { ...net, network: { ...net.network, segment: { ...seg, uplink } } };
    }),
  };
}
