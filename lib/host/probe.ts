// What this kernel and these tools can do, found by trying each thing in a scratch network
// namespace (module lists and /proc/config.gz are not reliable: features may be built in, or
// modules may be missing). Read once per process and cached.
import { readFileSync, existsSync, statSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { HostCapabilities } from '../../types/host.js';
import { HostUnsupportedError } from '../errors/index.js';
import { LocalRunner, type CommandRunner } from './command-runner.js';

let cached: Promise<HostCapabilities> | undefined;

/**
 * The host's capabilities: probed on first call, then cached for the process and, with
 * `cacheFile`, for the rest of this boot (the key is the kernel's boot id and the tools' files;
 * a probe takes ~0.5 s, which a short-lived CLI process would otherwise pay every time).
 */
export function probeHost(options: { cacheFile?: string; runner?: CommandRunner } = {}): Promise<HostCapabilities> {
  if (options.runner) {
    // another host (SSH): probed there, once per runner
    let caps = remote.get(options.runner);
    if (!caps) remote.set(options.runner, (caps = runProbe(options.runner, (ns) => inNetns(options.runner!, ns))));
    return caps;
  }
  return (cached ??=
    fromFile(options.cacheFile) ??
    runProbe(new LocalRunner(), (ns) => new LocalRunner(ns)).then((caps) => toFile(options.cacheFile, caps)));
}

const remote = new WeakMap<CommandRunner, Promise<HostCapabilities>>();

/** Commands of `runner` run inside network namespace `ns` of the same host. */
function inNetns(runner: CommandRunner, ns: string): CommandRunner {
  return { netns: ns, run: (argv, options) => runner.run(['ip', 'netns', 'exec', ns, ...argv], options) };
}

const PROBE_VERSION = 4;
const TOOLS = [
  '/usr/sbin/ip',
  '/usr/sbin/nft',
  '/usr/sbin/tc',
  '/usr/sbin/dnsmasq',
  '/bin/ip',
  '/sbin/tc',
  '/usr/sbin/iptables',
  '/usr/sbin/ebtables',
];
function cacheKey(): string {
  const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  // the probe's version: a cache written by an older probe lacks newer fields
  const tools = `v${PROBE_VERSION}|` + TOOLS.map((t) => (existsSync(t) ? `${t}:${statSync(t).mtimeMs}` : '')).join(',');
  return `${boot}|${tools}`;
}

function fromFile(file: string | undefined): Promise<HostCapabilities> | undefined {
  if (!file || !existsSync(file)) return undefined;
  try {
    const { key, caps } = JSON.parse(readFileSync(file, 'utf8')) as { key: string; caps: HostCapabilities };
    return key === cacheKey() ? Promise.resolve(caps) : undefined;
  } catch {
    return undefined; // unreadable: probe again
  }
}

function toFile(file: string | undefined, caps: HostCapabilities): HostCapabilities {
  if (file) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify({ key: cacheKey(), caps }) + '\n');
  }
  return caps;
}

async function runProbe(host: CommandRunner, inside: (ns: string) => CommandRunner): Promise<HostCapabilities> {
  const ns = `vwprobe-${process.pid}`;
  await host.run(['ip', 'netns', 'add', ns]);
  try {
    const r = inside(ns);
    const ok = async (argv: string[]) => (await r.run(argv, { allowFailure: true })).exitCode === 0;
    const veth = await ok(['ip', 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1']);
    const bridge = await ok(['ip', 'link', 'add', 'b0', 'type', 'bridge']);
    const tap = await ok(['ip', 'tuntap', 'add', 'dev', 't0', 'mode', 'tap']);
    const vlan = veth && (await ok(['ip', 'link', 'add', 'link', 'p0', 'name', 'p0.10', 'type', 'vlan', 'id', '10']));
    const vxlan =
      veth && (await ok(['ip', 'link', 'add', 'x0', 'type', 'vxlan', 'id', '10', 'dstport', '4789', 'dev', 'p0']));
    const ifb = await ok(['ip', 'link', 'add', 'i0', 'type', 'ifb']);
    const qdisc = async (kind: string, ...args: string[]) => {
      const added = await ok(['tc', 'qdisc', 'add', 'dev', 'p1', 'root', 'handle', '1:', kind, ...args]);
      if (added) await ok(['tc', 'qdisc', 'del', 'dev', 'p1', 'root']);
      return added;
    };
    const qdiscs = {
      htb: veth && (await qdisc('htb')),
      tbf: veth && (await qdisc('tbf', 'rate', '1mbit', 'burst', '10k', 'latency', '50ms')),
      sfq: veth && (await qdisc('sfq')),
      fq_codel: veth && (await qdisc('fq_codel')),
      ingress: veth && (await ok(['tc', 'qdisc', 'add', 'dev', 'p0', 'handle', 'ffff:', 'ingress'])),
    };
    const action = (...a: string[]) =>
      ok([
        'tc',
        'filter',
        'add',
        'dev',
        'p0',
        'parent',
        'ffff:',
        'protocol',
        'all',
        'u32',
        'match',
        'u32',
        '0',
        '0',
        'action',
        ...a,
      ]);
    const actions = {
      police: qdiscs.ingress && (await action('police', 'rate', '1mbit', 'burst', '10k', 'drop')),
      mirred: qdiscs.ingress && ifb && (await action('mirred', 'egress', 'redirect', 'dev', 'i0')),
    };
    const nft = (family: string) =>
      r
        .run(['nft', '-f', '-'], {
          allowFailure: true,
          input: `table ${family} vwprobe {\n  chain c {\n    type filter hook forward priority 0; policy accept;\n  }\n}\n`,
        })
        .then(
          (x) => x.exitCode === 0,
          () => false,
        );
    const nftables = await nft('inet');
    const nftBridge = nftables && (await nft('bridge'));
    // the backend keeps IPv6's rules beside IPv4's (ip6tables: what the kernel and the package give together)
    const iptables =
      (await ok(['iptables', '-w', '-L', '-n']).catch(() => false)) &&
      (await ok(['ip6tables', '-w', '-L', '-n']).catch(() => false));
    const ebtables = await ok(['ebtables', '-t', 'nat', '-L']).catch(() => false);
    const dnsmasq = await ok(['dnsmasq', '--version']).catch(() => false);
    // the per-bridge switch exists only with br_netfilter built or loaded (its sysctl dir says so)
    const brNetfilter =
      bridge &&
      (await ok(['ip', 'link', 'set', 'dev', 'b0', 'type', 'bridge', 'nf_call_iptables', '1'])) &&
      (await ok(['test', '-e', '/proc/sys/net/bridge/bridge-nf-call-iptables']));
    const conntrack = await ok(['conntrack', '--version']).catch(() => false);
    return {
      ...{ bridge, tap, veth, vlan, vxlan, ifb, nftables, nftBridge, iptables, ebtables, qdiscs, actions, dnsmasq },
      ...{ brNetfilter, conntrack },
    };
  } finally {
    await host.run(['ip', 'netns', 'del', ns], { allowFailure: true });
  }
}

/** The kernel config option behind each feature, for error messages. */
const KERNEL_OPTION: Record<string, string> = {
  vlan: 'CONFIG_VLAN_8021Q',
  vxlan: 'CONFIG_VXLAN',
  bridge: 'CONFIG_BRIDGE',
  tap: 'CONFIG_TUN',
  veth: 'CONFIG_VETH',
  ifb: 'CONFIG_IFB',
  nftables: 'CONFIG_NF_TABLES (and the nft tool)',
  nftBridge: 'CONFIG_NF_TABLES_BRIDGE',
  iptables: 'CONFIG_IP_NF_IPTABLES and CONFIG_IP6_NF_IPTABLES (and the iptables tools)',
  ebtables: 'CONFIG_BRIDGE_NF_EBTABLES (and the ebtables tools)',
  htb: 'CONFIG_NET_SCH_HTB',
  ingress: 'CONFIG_NET_SCH_INGRESS',
  mirred: 'CONFIG_NET_ACT_MIRRED',
  dnsmasq: 'the dnsmasq binary (Debian package dnsmasq-base)',
  brNetfilter: 'CONFIG_BRIDGE_NETFILTER, built in or loaded: modprobe br_netfilter',
  conntrack: 'the conntrack tool (Debian package conntrack)',
};

/** Throws HostUnsupportedError naming the missing feature and what needed it. */
export function requireFeature(caps: HostCapabilities, feature: string, purpose: string): void {
  const value =
    feature in caps.qdiscs
      ? caps.qdiscs[feature as keyof HostCapabilities['qdiscs']]
      : feature in caps.actions
        ? caps.actions[feature as keyof HostCapabilities['actions']]
        : caps[feature as keyof HostCapabilities];
  if (value === true) return;
  const what = feature === 'vlan' ? '802.1Q' : feature;
  throw new HostUnsupportedError(
    feature,
    `${hostLacks(feature)} ${what} (${KERNEL_OPTION[feature] ?? feature}); ${purpose} cannot be created`,
  );
}

const hostLacks = (feature: string) =>
  ['dnsmasq', 'nftables', 'iptables', 'ebtables', 'conntrack'].includes(feature) ? 'host lacks' : 'kernel lacks';
