// The host's side of the ways in from outside a tenant (port forwards, floating IPs) beyond the
// firewall's NAT rules (policy.ts):
// - a plain tenant's floating IP is taken, as a /32, on the interface whose subnet holds it (so
//   the host answers ARP for it there); a namespaced tenant's is routed to its namespace's transit
//   address (its guests' addresses are not the host's to route) and the host answers ARP for it on
//   that interface all the same (a proxy neighbour entry). Each is marked in the state dir as
//   virtwire's, with the guest it goes to: only marked ones are ever removed, and the flows of
//   one that moves to another guest are cut (conntrack would keep sending them to the old one);
// - a forward without an address takes the addresses of the host's uplink (its network's
//   `uplink`, else the default route's device), read here, when the host is planned;
// - a forward's host port must not be one a host process already listens on.
// All of it is checked before anything changes.
import { join } from 'node:path';
import type { HostForward, HostState } from '../../types/host.js';
import { Problems, at, inSubnet, parseCidr, parseIpv4 } from '../spec/index.js';
import { batchLine, runBatch, type CommandRunner } from './command-runner.js';
import { cutFlows } from './conntrack.js';
import type { HostFiles } from './host-files.js';
import { OWNED_NAME, type ObservedLink } from './links.js';
import { NetnsRunner, namespacesOf } from './namespace.js';

/** A floating IP taken on (or routed by, `via`), or given back by, one of the host's interfaces. */
export interface AddressChange {
  kind: 'address';
  action: 'add' | 'remove';
  address: string;
  device: string;
  /** a namespaced tenant's: routed to its transit veth (the host answers ARP for it on `device`) */
  via?: string;
  tenant?: string;
}

/** How the host holds a floating IP, as marked in the state dir. */
interface Holding {
  /** the interface whose subnet holds it */
  device: string;
  /** the guest it goes to */
  ip?: string;
  /** a namespaced tenant's: routed to its namespace (`ip route … via nsAddress dev transit`) */
  via?: { transit: string; nsAddress: string; netns: string };
}

export interface WaysInPlan {
  changes: AddressChange[];
  /** `ip -batch` lines: what is given back first, then what is taken */
  ip: string[];
  /** holdings to mark as virtwire's, and addresses to forget */
  mark: [string, Holding][];
  unmark: string[];
  /** floating IPs whose flows to cut (moved or given back): on the host, and in a namespace they left */
  cut: { address: string; netns?: string }[];
}

const dirOf = (stateDir: string) => join(stateDir, 'floating');

/** The marks in the state dir (an older mark holds only the device's name). */
async function readMarks(files: HostFiles, stateDir: string): Promise<Map<string, Holding>> {
  const dir = dirOf(stateDir);
  const marks = new Map<string, Holding>();
  for (const name of await files.list(dir)) {
    const text = ((await files.read(join(dir, name))) ?? '').trim();
    marks.set(name, text.startsWith('{') ? (JSON.parse(text) as Holding) : { device: text });
  }
  return marks;
}

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

/**
 * `state` with every forward that names no address once per address of its network's uplink
 * (the network's `uplink`, else the default route's device), floating IPs left out; a SpecError
 * naming each forward whose uplink cannot be found or has no IPv4 address. Unchanged (nothing
 * read) when every forward names its address.
 */
export async function withForwardAddresses(
  runner: CommandRunner,
  files: HostFiles,
  stateDir: string,
  state: HostState,
  links: Promise<Map<string, ObservedLink>>,
): Promise<HostState> {
  const open = state.networks.some((n) => n.ports.some((p) => p.forwards?.some((f) => f.address === undefined)));
  if (!open) return state;
  const [observed, route, marks] = await Promise.all([
    links,
    runner.run(['ip', '-j', '-4', 'route', 'show', 'default'], { step: 'ways in: observe' }),
    readMarks(files, stateDir),
  ]);
  const defaultDev = (JSON.parse(route.stdout || '[]') as { dev?: string }[])[0]?.dev;
  const floating = new Set([...marks.keys(), ...state.networks.flatMap((n) => n.ports.map((p) => p.floatingIp))]);
  const p = new Problems();
  const networks = state.networks.map((net, i) => {
    const uplink = net.network.uplink ?? defaultDev;
    const addresses = (uplink === undefined ? [] : (observed.get(uplink)?.addresses ?? []))
      .map((c) => c.split('/')[0]!)
      .filter((a) => parseIpv4(a) !== undefined && !floating.has(a));
    const ports = net.ports.map((port, j) => {
      if (!port.forwards?.some((f) => f.address === undefined)) return port;
      const forwards = port.forwards.flatMap((f, k): HostForward[] => {
        if (f.address !== undefined) return [f];
        if (!addresses.length)
          p.add(
            at(at(at(at(at('networks', i), 'ports'), j), 'forwards'), k),
            uplink === undefined
              ? 'names no address, and the host has no default route (give an address, or the network an uplink)'
              : `names no address, and the host's uplink ${uplink} has no IPv4 address (give one)`,
          );
        return addresses.map((address) => ({ ...f, address }));
      });
      return { ...port, forwards };
    });
    return { ...net, ports };
  });
  p.throwIfAny('forwards on this host');
  return { networks };
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
 * address or every address, or (a forward on every address, as a host state given by hand may
 * have) on any address but the loopback's and the tenants' gateways (dnsmasq answers there).
 */
function takes(socket: Listening, f: HostForward, gateways: ReadonlySet<string>): boolean {
  if (socket.protocol !== f.protocol || socket.port !== f.hostPort) return false;
  if (socket.address === '*' || socket.address === f.address) return true;
  return f.address === undefined && !socket.address.startsWith('127.') && !gateways.has(socket.address);
}

/** The host's routes to single addresses and its proxy neighbour entries, read when a holding needs them. */
interface Routed {
  routes: { dst: string; gateway?: string; dev: string }[];
  proxies: { dst: string; dev: string }[];
}

async function observeRouted(runner: CommandRunner): Promise<Routed> {
  const step = 'ways in: observe';
  const [routes, proxies] = await Promise.all([
    runner.run(['ip', '-j', '-4', 'route', 'show'], { step }),
    runner.run(['ip', '-j', '-4', 'neigh', 'show', 'proxy'], { step }),
  ]);
  return {
    routes: JSON.parse(routes.stdout || '[]') as Routed['routes'],
    proxies: JSON.parse(proxies.stdout || '[]') as Routed['proxies'],
  };
}

const sameHolding = (a: Holding, b: Holding) =>
  a.device === b.device && a.via?.transit === b.via?.transit && a.via?.nsAddress === b.via?.nsAddress;

/** One part of a holding on the host (an address; a route, a proxy entry): whether it is there, its `ip` lines. */
interface Part {
  there: boolean;
  add: string[];
  del: string[];
  /** the device it is on */
  device: string;
}

/** The parts of `h` for `address`, and which of them are on the host. */
function parts(address: string, h: Holding, observed: ReadonlyMap<string, ObservedLink>, routed: Routed): Part[] {
  if (!h.via)
    return [
      {
        there: observed.get(h.device)?.addresses.includes(`${address}/32`) ?? false,
        add: ['address', 'add', `${address}/32`, 'dev', h.device],
        del: ['address', 'del', `${address}/32`, 'dev', h.device],
        device: h.device,
      },
    ];
  const { transit, nsAddress } = h.via;
  return [
    {
      there: routed.routes.some((r) => r.dst === address && r.dev === transit && r.gateway === nsAddress),
      add: ['route', 'replace', `${address}/32`, 'via', nsAddress, 'dev', transit],
      del: ['route', 'del', `${address}/32`, 'via', nsAddress, 'dev', transit],
      device: transit,
    },
    {
      there: routed.proxies.some((r) => r.dst === address && r.dev === h.device),
      add: ['neigh', 'add', 'proxy', address, 'dev', h.device],
      del: ['neigh', 'del', 'proxy', address, 'dev', h.device],
      device: h.device,
    },
  ];
}

/** What the link step does to devices: a route through one it removes or makes again goes with it. */
export interface LinkFate {
  removed: ReadonlySet<string>;
  remade: ReadonlySet<string>;
}

/** What the ways in of `state` need on the host, or a SpecError naming every problem. */
export async function planWaysIn(
  runner: CommandRunner,
  files: HostFiles,
  stateDir: string,
  state: HostState,
  observed: ReadonlyMap<string, ObservedLink>,
  fate: LinkFate,
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
  const spaces = namespacesOf(state);
  const wanted = new Map<string, Holding & { tenant: string }>();
  for (const { net, port, path } of ports) {
    const address = port.floatingIp;
    if (!address) continue;
    const device = deviceFor(address, observed);
    if (!device) {
      p.add(at(path, 'floatingIp'), `no interface of this host is on a subnet that holds ${address}`);
      continue;
    }
    const ns = spaces.find((s) => s.tenant === net.network.tenant);
    const via = ns && { transit: ns.transitVeth, nsAddress: ns.nsAddress, netns: ns.netns };
    wanted.set(address, { device, ip: port.ip!, ...(via ? { via } : {}), tenant: net.network.tenant });
  }
  p.throwIfAny('ways in on this host');

  const marks = await readMarks(files, stateDir);
  const needsRoutes = [...wanted.values(), ...marks.values()].some((h) => h.via);
  const routed = needsRoutes ? await observeRouted(runner) : { routes: [], proxies: [] };
  const plan: WaysInPlan = { changes: [], ip: [], mark: [], unmark: [], cut: [] };
  const there = (x: Part) => x.there && !fate.removed.has(x.device) && !fate.remade.has(x.device);
  const change = (action: AddressChange['action'], address: string, h: Holding, tenant?: string): AddressChange => ({
    kind: 'address',
    action,
    address,
    device: h.device,
    ...(h.via ? { via: h.via.transit } : {}),
    ...(tenant ? { tenant } : {}),
  });
  const adds: string[] = [];
  for (const address of new Set([...marks.keys(), ...wanted.keys()])) {
    const had = marks.get(address);
    const want = wanted.get(address);
    const same = had !== undefined && want !== undefined && sameHolding(had, want);
    if (had && !same) {
      // given back, or held another way now: what of it stays on the host goes
      const gone = parts(address, had, observed, routed).filter(there);
      plan.ip.push(...gone.map((x) => batchLine(x.del)));
      if (gone.length) plan.changes.push(change('remove', address, had));
    }
    // its flows go with it; inside a namespace it left only if that stays (else they are gone)
    if (had && (!same || had.ip !== want?.ip)) {
      const netns = had.via && spaces.some((s) => s.netns === had.via!.netns) ? had.via.netns : undefined;
      plan.cut.push({ address, ...(netns ? { netns } : {}) });
    }
    if (!want) {
      plan.unmark.push(address);
      continue;
    }
    const { tenant, ...holding } = want;
    const missing = parts(address, holding, observed, routed).filter((x) => !same || !there(x));
    adds.push(...missing.map((x) => batchLine(x.add)));
    if (missing.length) plan.changes.push(change('add', address, holding, tenant));
    if (!had || JSON.stringify(had) !== JSON.stringify(holding)) plan.mark.push([address, holding]);
  }
  // what is given back first: a floating IP moved from one namespaced tenant's route to another's
  plan.ip.push(...adds);
  return plan;
}

/** A mark: the holding as JSON (an address taken is known as virtwire's even if the batch fails half-way). */
const markText = (h: Holding) => `${JSON.stringify(h)}\n`;

/**
 * Runs the plan: marks first, then the `ip` lines, then the cut of the moved and given-back
 * floating IPs' flows (on the host, and inside a namespace they were routed to).
 */
export async function applyWaysIn(runner: CommandRunner, files: HostFiles, stateDir: string, plan: WaysInPlan) {
  const dir = dirOf(stateDir);
  if (plan.mark.length) await files.mkdir(dir);
  for (const [address, holding] of plan.mark) await files.write(join(dir, address), markText(holding));
  await runBatch(runner, ['ip'], plan.ip, { step: 'ways in: addresses' });
  for (const address of plan.unmark) await files.remove(join(dir, address));
  // both ways: flows sent to it (original destination) and its guest's, translated to it (reply destination)
  const sides = ['--orig-dst', '--reply-dst'];
  for (const { address, netns } of plan.cut) {
    await cutFlows(runner, [address], sides);
    if (netns) await cutFlows(new NetnsRunner(runner, netns), [address], sides);
  }
}

/** A rollback: what an apply took, given back, and its marks forgotten. */
export async function giveBack(runner: CommandRunner, files: HostFiles, stateDir: string, taken: AddressChange[]) {
  const lines = taken.map((c) =>
    batchLine(
      c.via
        ? ['route', 'del', `${c.address}/32`, 'dev', c.via]
        : ['address', 'del', `${c.address}/32`, 'dev', c.device],
    ),
  );
  const proxies = taken
    .filter((c) => c.via)
    .map((c) => batchLine(['neigh', 'del', 'proxy', c.address, 'dev', c.device]));
  await runBatch(runner, ['ip'], [...lines, ...proxies], { step: 'ways in: rollback' });
  for (const c of taken) await files.remove(join(dirOf(stateDir), c.address));
}
