// QoS per guest port with tc, using only what the kernel has (see probe.ts):
// - to the guest (`ingressKbps`): an htb class on the port's egress (the host sends to the guest);
// - from the guest (`egressKbps`): the port's ingress is policed where the kernel has the police
//   action; otherwise (this kernel) redirected with mirred to an ifb device and shaped there.
// Observed with one `tc -j qdisc show` plus one `tc -batch` of class listings; applied with one
// `tc -batch -`.
import type { HostCapabilities, HostState, HostPort } from '../../types/host.js';
import { ifbName } from '../spec/index.js';
import { HostUnsupportedError } from '../errors/index.js';
import { batchLine, runBatch, type CommandRunner } from './command-runner.js';

interface ShaperSpec {
  /** device whose egress is shaped */
  dev: string;
  kbps: number;
  burstBytes?: number;
}

export interface QosDesired {
  /** htb root + one class per device */
  shapers: ShaperSpec[];
  /** port -> ifb redirects on the port's ingress */
  redirects: { port: string; ifb: string }[];
  /** every port virtwire manages (their qdiscs are removed when they want no QoS) */
  ports: string[];
  /** device (port or its ifb) -> its tenant */
  tenants: Map<string, string>;
}

/** One device's QoS change, typed (the batch lines are for running). */
export interface QosChange {
  kind: 'qos';
  action: 'set' | 'remove';
  device: string;
  tenant?: string;
}

export interface QosPlan {
  /** `tc -batch` lines */
  lines: string[];
  changes: QosChange[];
}

export function desiredQos(state: HostState, caps: HostCapabilities): QosDesired {
  const shapers: ShaperSpec[] = [];
  const redirects: { port: string; ifb: string }[] = [];
  const ports: string[] = [];
  const tenants = new Map<string, string>();
  for (const net of state.networks) {
    for (const port of net.ports) {
      ports.push(port.name);
      tenants.set(port.name, net.network.tenant);
      tenants.set(ifbName(port.name), net.network.tenant);
      const q = port.qos;
      if (!q) continue;
      const burstBytes = q.burstKiB ? Math.round(q.burstKiB * 1024) : undefined;
      if (q.ingressKbps) shapers.push({ dev: port.name, kbps: q.ingressKbps, burstBytes });
      if (q.egressKbps) {
        requireQos(caps, port);
        const ifb = ifbName(port.name);
        redirects.push({ port: port.name, ifb });
        shapers.push({ dev: ifb, kbps: q.egressKbps, burstBytes });
      }
    }
  }
  if (shapers.length > 0 && !caps.qdiscs.htb)
    throw new HostUnsupportedError('htb', 'kernel lacks the htb qdisc (CONFIG_NET_SCH_HTB); QoS cannot be applied');
  return { shapers, redirects, ports, tenants };
}

function requireQos(caps: HostCapabilities, port: HostPort): void {
  if (!caps.qdiscs.ingress || !caps.ifb || !caps.actions.mirred) {
    throw new HostUnsupportedError(
      'ifb',
      `kernel lacks ingress/ifb/mirred; egress limit of port ${port.name} cannot be applied`,
    );
  }
}

interface QdiscJson {
  kind: string;
  handle: string;
  dev: string;
  root?: boolean;
}

interface Observed {
  /** devices with virtwire's root htb (handle 1:) -> class rate/burst, when readable */
  htb: Map<string, { kbps: number; burstBytes: number } | undefined>;
  ingress: Set<string>;
  /** the ifb devices some port's ingress redirects to (its filter is there) */
  redirectsTo: Set<string>;
}

const UNIT: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, tbit: 1e12 };
const SIZE: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

function parseRate(text: string): number | undefined {
  const m = /^([\d.]+)([a-z]+)$/i.exec(text);
  const unit = m ? UNIT[m[2]!.toLowerCase()] : undefined;
  return m && unit ? (Number(m[1]) * unit) / 1000 : undefined;
}
function parseSize(text: string): number | undefined {
  const m = /^([\d.]+)([a-z]+)$/i.exec(text);
  const unit = m ? SIZE[m[2]!.toLowerCase()] : undefined;
  return m && unit ? Math.round(Number(m[1]) * unit) : undefined;
}

async function observeQos(runner: CommandRunner, devices: string[]): Promise<Observed> {
  const qdiscs = JSON.parse(
    (await runner.run(['tc', '-j', 'qdisc', 'show'], { step: 'qos: observe' })).stdout || '[]',
  ) as QdiscJson[];
  const htbDevs = qdiscs
    .filter((q) => q.kind === 'htb' && q.root && q.handle === '1:' && devices.includes(q.dev))
    .map((q) => q.dev);
  const ingress = new Set(qdiscs.filter((q) => q.kind === 'ingress' && devices.includes(q.dev)).map((q) => q.dev));
  const htb = new Map<string, { kbps: number; burstBytes: number } | undefined>(htbDevs.map((d) => [d, undefined]));
  if (htbDevs.length > 0) {
    // `tc -batch` prints one text line per class and does not name the device: when every
    // device has exactly its one class 1:1, the lines map to the devices in order; otherwise
    // the rates stay unknown and the classes are rewritten.
    const input = htbDevs.map((d) => batchLine(['class', 'show', 'dev', d])).join('\n') + '\n';
    const lines = (await runner.run(['tc', '-batch', '-'], { input, step: 'qos: observe' })).stdout
      .split('\n')
      .filter((l) => l.startsWith('class htb'));
    if (lines.length === htbDevs.length && lines.every((l) => / 1:1 root /.test(l))) {
      lines.forEach((line, i) => {
        const rate = parseRate(/ rate (\S+)/.exec(line)?.[1] ?? '');
        const burst = parseSize(/ burst (\S+)/.exec(line)?.[1] ?? '');
        if (rate !== undefined && burst !== undefined) htb.set(htbDevs[i]!, { kbps: rate, burstBytes: burst });
      });
    }
  }
  // a port's ingress qdisc without its redirect filter (deleted by hand) shapes nothing: drift.
  // One batch of listings; each redirect names its ifb, unique to its port.
  const redirectsTo = new Set<string>();
  if (ingress.size > 0) {
    const input = [...ingress].map((d) => batchLine(['filter', 'show', 'dev', d, 'parent', 'ffff:'])).join('\n') + '\n';
    const out = (await runner.run(['tc', '-batch', '-'], { input, step: 'qos: observe' })).stdout;
    for (const m of out.matchAll(/Redirect to device (\S+?)\)/g)) redirectsTo.add(m[1]!);
  }
  return { htb, ingress, redirectsTo };
}

/** tc batch lines (and typed changes) taking the observed qdiscs to the desired ones. */
export async function planQos(runner: CommandRunner, want: QosDesired, existing: Set<string>): Promise<QosPlan> {
  const devices = [...new Set([...want.ports, ...want.shapers.map((s) => s.dev)])].filter((d) => existing.has(d));
  const seen =
    devices.length > 0
      ? await observeQos(runner, devices)
      : { htb: new Map(), ingress: new Set<string>(), redirectsTo: new Set<string>() };
  const lines: string[] = [];
  const changed = new Map<string, QosChange['action']>();
  const shaped = new Set(want.shapers.map((s) => s.dev));
  const redirected = new Set(want.redirects.map((r) => r.port));
  const remove = (dev: string, where: 'root' | 'ingress') => {
    lines.push(batchLine(['qdisc', 'del', 'dev', dev, where]));
    changed.set(dev, 'remove');
  };
  for (const dev of seen.htb.keys()) if (!shaped.has(dev)) remove(dev, 'root');
  for (const dev of seen.ingress) if (!redirected.has(dev)) remove(dev, 'ingress');
  for (const s of want.shapers) {
    const have = seen.htb.get(s.dev);
    const burstOk = s.burstBytes === undefined || have?.burstBytes === s.burstBytes;
    if (seen.htb.has(s.dev) && have && Math.abs(have.kbps - s.kbps) < 1 && burstOk) continue;
    changed.set(s.dev, 'set');
    const burst = s.burstBytes ? ['burst', `${s.burstBytes}b`, 'cburst', `${s.burstBytes}b`] : [];
    // htb cannot change a live qdisc's parameters: keep an existing root and replace its class
    if (!seen.htb.has(s.dev))
      lines.push(batchLine(['qdisc', 'replace', 'dev', s.dev, 'root', 'handle', '1:', 'htb', 'default', 1]));
    lines.push(
      batchLine([
        'class',
        'replace',
        'dev',
        s.dev,
        'parent',
        '1:',
        'classid',
        '1:1',
        'htb',
        'rate',
        `${s.kbps}kbit`,
        'ceil',
        `${s.kbps}kbit`,
        ...burst,
        'quantum',
        QUANTUM,
      ]),
    );
  }
  for (const r of want.redirects) {
    if (seen.ingress.has(r.port) && seen.redirectsTo.has(r.ifb)) continue;
    changed.set(r.port, 'set');
    if (!seen.ingress.has(r.port)) lines.push(batchLine(['qdisc', 'add', 'dev', r.port, 'handle', 'ffff:', 'ingress']));
    lines.push(
      batchLine([
        'filter',
        'add',
        'dev',
        r.port,
        'parent',
        'ffff:',
        'protocol',
        'all',
        'prio',
        1,
        'u32',
        'match',
        'u32',
        0,
        0,
        'action',
        'mirred',
        'egress',
        'redirect',
        'dev',
        r.ifb,
      ]),
    );
  }
  const changes = [...changed].map(([device, action]): QosChange => {
    const tenant = want.tenants.get(device);
    return { kind: 'qos', action, device, ...(tenant ? { tenant } : {}) };
  });
  return { lines, changes };
}

// htb derives a class's quantum from rate / r2q and warns when that leaves 1,500..200,000
// bytes; with one class per device the quantum only needs to hold a full frame.
const QUANTUM = 1514;

export async function applyQos(runner: CommandRunner, lines: string[]): Promise<void> {
  await runBatch(runner, ['tc'], lines, { step: 'qos: apply' });
}
