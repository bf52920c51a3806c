// The host's side of the ways in from outside a tenant (port forwards, floating IPs) beyond the
// firewall's NAT rules (policy.ts): a floating IP is taken, as a /32, on the interface whose
// subnet holds it (so the host answers ARP for it there), and marked in the state dir as
// virtwire's (only marked addresses are ever removed); a forward's host port must not be one a
// host process already listens on. Both are checked before anything changes.
import { join } from 'node:path';
import type { HostForward, HostState } from '../../types/host.js';
import { Problems, at, inSubnet, parseCidr, parseIpv4 } from '../spec/index.js';
import { batchLine, runBatch, type CommandRunner } from './command-runner.js';
import type { HostFiles } from './host-files.js';
import { OWNED_NAME, type ObservedLink } from './links.js';

/** A floating IP's address taken on, or given back by, one of the host's interfaces. */
export interface AddressChange {
  kind: 'address';
  action: 'add' | 'remove';
  address: string;
  device: string;
  tenant?: string;
}

export interface WaysInPlan {
  changes: AddressChange[];
  /** `ip -batch` lines */
  ip: string[];
  /** addresses to mark as virtwire's (address -> device), and to forget */
  mark: [string, string][];
  unmark: string[];
}

const dirOf = (stateDir: string) => join(stateDir, 'floating');

/** The interface (not one of virtwire's) with a subnet that holds `address`, if any. */
function deviceFor(address: string, observed: ReadonlyMap<string, ObservedLink>): string | undefined {
  const a = parseIpv4(address)!;
  for (const link of observed.values()) {
    if (OWNED_NAME.test(link.name)) continue;
    for (const cidr of link.addresses) {
      const c = parseCidr(cidr);
      if (c && c.prefix < 32 && inSubnet(a, c.network, c.prefix)) return link.name;
    }
  }
  return undefined;
}

/** Sockets the host listens on (`ss`): protocol, address ('*' for every address), port. */
export interface Listening {
  protocol: 'tcp' | 'udp';
  address: string;
  port: number;
}

export function parseSs(text: string): Listening[] {
  return text.split('\n').flatMap((line) => {
    // Netid State Recv-Q Send-Q Local-Address:Port Peer-Address:Port …
    const f = line.trim().split(/\s+/);
    const m = /^(.*):(\d+)$/.exec(f[4] ?? '');
    if ((f[0] !== 'tcp' && f[0] !== 'udp') || !m) return [];
    const raw = m[1]!.replace(/%.*$/, '').replace(/^\[(.*)\]$/, '$1');
    // every address: IPv4's, and IPv6's (a dual-stack socket takes IPv4 too: `*` or `::`)
    const any = raw === '0.0.0.0' || raw === '*' || raw === '::';
    const address = any ? '*' : raw.replace(/^::ffff:/, '');
    // an IPv6-only address cannot take what a forward sends on (IPv4)
    if (!any && !/^\d+\.\d+\.\d+\.\d+$/.test(address)) return [];
    return [{ protocol: f[0], address, port: Number(m[2]) }];
  });
}

async function listening(runner: CommandRunner): Promise<Listening[]> {
  const r = await runner.run(['ss', '-H', '-n', '-l', '-t', '-u'], { step: 'ways in: observe' });
  return parseSs(r.stdout);
}

/**
 * Whether `socket` takes what `f` would forward: the same protocol and port, on the forward's
 * address or every address, or (a forward on every address) on any address but the loopback's
 * and the tenants' gateways (those stay the host's: dnsmasq answers there).
 */
function takes(socket: Listening, f: HostForward, gateways: ReadonlySet<string>): boolean {
  if (socket.protocol !== f.protocol || socket.port !== f.hostPort) return false;
  if (socket.address === '*' || socket.address === f.address) return true;
  return f.address === undefined && !socket.address.startsWith('127.') && !gateways.has(socket.address);
}

/** What the ways in of `state` need on the host, or a SpecError naming every problem. */
export async function planWaysIn(
  runner: CommandRunner,
  files: HostFiles,
  stateDir: string,
  state: HostState,
  observed: ReadonlyMap<string, ObservedLink>,
): Promise<WaysInPlan> {
  const p = new Problems();
  const ports = state.networks.flatMap((net, i) =>
    net.ports.map((port, j) => ({ net, port, path: at(at(at('networks', i), 'ports'), j) })),
  );
  if (ports.some(({ port }) => port.forwards?.length)) {
    const socks = await listening(runner);
    const gateways = new Set(state.networks.map((n) => n.network.gateway));
    for (const { port, path } of ports)
      (port.forwards ?? []).forEach((f, k) => {
        const s = socks.find((x) => takes(x, f, gateways));
        if (s)
          p.add(
            at(at(path, 'forwards'), k),
            `${f.protocol} port ${f.hostPort} is in use on the host (a process listens on ${s.address}:${s.port})`,
          );
      });
  }
  const plan: WaysInPlan = { changes: [], ip: [], mark: [], unmark: [] };
  const dir = dirOf(stateDir);
  const marked = new Map<string, string>();
  for (const name of await files.list(dir)) marked.set(name, ((await files.read(join(dir, name))) ?? '').trim());
  const wanted = new Set<string>();
  for (const { net, port, path } of ports) {
    const address = port.floatingIp;
    if (!address) continue;
    wanted.add(address);
    const device = deviceFor(address, observed);
    if (!device) {
      p.add(at(path, 'floatingIp'), `no interface of this host is on a subnet that holds ${address}`);
      continue;
    }
    if (!observed.get(device)!.addresses.includes(`${address}/32`)) {
      plan.ip.push(batchLine(['address', 'add', `${address}/32`, 'dev', device]));
      plan.changes.push({ kind: 'address', action: 'add', address, device, tenant: net.network.tenant });
    }
    if (marked.get(address) !== device) plan.mark.push([address, device]);
  }
  p.throwIfAny('ways in on this host');
  for (const [address, device] of marked) {
    if (wanted.has(address)) continue;
    if (observed.get(device)?.addresses.includes(`${address}/32`)) {
      plan.ip.push(batchLine(['address', 'del', `${address}/32`, 'dev', device]));
      plan.changes.push({ kind: 'address', action: 'remove', address, device });
    }
    plan.unmark.push(address);
  }
  return plan;
}

/** Runs the plan: marks first (an address added is known as virtwire's even if the batch fails half-way). */
export async function applyWaysIn(runner: CommandRunner, files: HostFiles, stateDir: string, plan: WaysInPlan) {
  const dir = dirOf(stateDir);
  if (plan.mark.length) await files.mkdir(dir);
  for (const [address, device] of plan.mark) await files.write(join(dir, address), `${device}\n`);
  await runBatch(runner, ['ip'], plan.ip, { step: 'ways in: addresses' });
  for (const address of plan.unmark) await files.remove(join(dir, address));
}

/** A rollback: the addresses an apply took, given back, and their marks forgotten. */
export async function giveBack(runner: CommandRunner, files: HostFiles, stateDir: string, taken: AddressChange[]) {
  const lines = taken.map((c) => batchLine(['address', 'del', `${c.address}/32`, 'dev', c.device]));
  await runBatch(runner, ['ip'], lines, { step: 'ways in: rollback' });
  for (const c of taken) await files.remove(join(dirOf(stateDir), c.address));
}
