// virtwire's own nftables tables: NAT, forwarding policy and tenant isolation (`inet virtwire`),
// and per-port anti-spoofing (`bridge virtwire`). Each table is replaced as a whole in one
// atomic `nft -f -` transaction, so its rules are found, diffed and removed together and
// nothing outside these tables is touched. The rendered ruleset's hash is stored with the table:
// same hash, nothing to do.
import { createHash } from 'node:crypto';
import type { HostState, HostNetwork, HostPort } from '../../types/host.js';
import type { CommandRunner } from './command-runner.js';

export const TABLE = 'virtwire';

// Every value below is a validated interface name, IPv4 address, CIDR or MAC (lib/spec), and
// names are quoted as nft strings. `q` refuses anything that could leave the quotes.
const q = (name: string) => {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new Error(`refusing unsafe interface name ${JSON.stringify(name)}`);
  return `"${name}"`;
};

function natRules(net: HostNetwork): string[] {
  const n = net.network;
  const b = q(n.bridge);
  const rules: string[] = [];
  if (n.nat) {
    // like libvirt: multicast and broadcast stay local, the subnet itself is not translated
    const out = n.uplink ? ` oifname ${q(n.uplink)}` : ` oifname != ${b}`;
    rules.push(`ip saddr ${n.cidr} ip daddr 224.0.0.0/24 return`);
    rules.push(`ip saddr ${n.cidr} ip daddr 255.255.255.255 return`);
    rules.push(`ip saddr ${n.cidr} ip daddr != ${n.cidr}${out} masquerade`);
  }
  return rules;
}

function forwardRules(net: HostNetwork): string[] {
  const n = net.network;
  const b = q(n.bridge);
  const rules = [
    // where br_netfilter is on (bridge-nf-call-iptables), frames bridged between two ports of
    // one bridge pass this hook too: the tenant's own L2 traffic is not ours to route or drop
    `iifname ${b} oifname ${b} accept`,
    `iifname ${b} oifname @tenant_bridges drop`,
  ];
  if (n.nat) {
    const out = n.uplink ? ` oifname ${q(n.uplink)}` : '';
    rules.push(`iifname ${b} ip saddr ${n.cidr}${out} accept`);
    rules.push(`oifname ${b} ip daddr ${n.cidr} ct state established,related accept`);
  }
  // not NAT, or not from/to the subnet: never routed (libvirt rejects these too)
  rules.push(`iifname ${b} drop`, `oifname ${b} drop`);
  return rules;
}

/** A guest may reach the host only on its own gateway address (never another tenant's). */
function inputRules(net: HostNetwork): string[] {
  const n = net.network;
  return [`iifname ${q(n.bridge)} ip daddr != { ${n.gateway}, 255.255.255.255 } drop`];
}

// Anti-spoofing as a constant handful of rules over sets keyed by port: the rule count does not
// grow with the ports (a thousand ports are a thousand set elements, not six thousand rules),
// which keeps observing the table cheap.
const SPOOF_RULES = [
  'iifname @ports iifname . ether saddr != @port_macs drop',
  'iifname @ports ether type != { ip, arp } drop',
  'iifname @ports iifname . arp saddr ether != @port_macs drop',
  // an address-less ARP probe (0.0.0.0) and DHCP are allowed before the guest has its address
  'iifname @ip_ports arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @port_ips drop',
  'iifname @ip_ports ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept',
  'iifname @ip_ports iifname . ip saddr != @port_ips drop',
];

function set(name: string, type: string, elements: string[]): string[] {
  return [`  set ${name} {`, `    type ${type}`, ...(elements.length ? [`    elements = { ${elements.join(', ')} }`] : []), '  }'];
}

function spoofTable(ports: HostPort[]): string[] {
  const withIp = ports.filter((p) => p.ip);
  return [
    ...set('ports', 'ifname', ports.map((p) => q(p.name))),
    ...set('ip_ports', 'ifname', withIp.map((p) => q(p.name))),
    ...set('port_macs', 'ifname . ether_addr', ports.map((p) => `${q(p.name)} . ${mac(p.mac)}`)),
    ...set('port_ips', 'ifname . ipv4_addr', withIp.map((p) => `${q(p.name)} . ${ipv4(p.ip!)}`)),
  ];
}

// validated upstream (lib/spec, validateHostState); checked again because they are spliced into nft input
const mac = (raw: string) => {
  const m = raw.toLowerCase();
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m)) throw new Error(`refusing unsafe MAC ${JSON.stringify(m)}`);
  return m;
};
const ipv4 = (a: string) => {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(a)) throw new Error(`refusing unsafe address ${JSON.stringify(a)}`);
  return a;
};

const chain = (name: string, hook: string, rules: string[]) =>
  [`  chain ${name} {`, `    ${hook}; policy accept;`, ...rules.map((r) => `    ${r}`), '  }'];

export interface Ruleset {
  inet: string;
  bridge: string;
  /** how many rules each table holds: a table whose rules were flushed keeps its hash set */
  rules: { inet: number; bridge: number };
}

/** The two tables' bodies for a host state (empty bodies when there are no networks). */
export function renderRuleset(state: HostState): Ruleset {
  const nets = state.networks;
  const counts = { inet: 0, bridge: 0 };
  const bridges = nets.map((n) => q(n.network.bridge));
  const inet = nets.length === 0 ? [] : [
    '  set tenant_bridges {',
    '    type ifname',
    `    elements = { ${bridges.join(', ')} }`,
    '  }',
    ...chain('postrouting', 'type nat hook postrouting priority srcnat', counted('inet', nets.flatMap(natRules))),
    ...chain('forward', 'type filter hook forward priority filter', counted('inet', nets.flatMap(forwardRules))),
    ...chain('input', 'type filter hook input priority filter', counted('inet', nets.flatMap(inputRules))),
  ];
  const ports = nets.flatMap((n) => n.ports);
  const bridge = ports.length === 0 ? [] : [...spoofTable(ports), ...chain('prerouting', 'type filter hook prerouting priority -200', counted('bridge', SPOOF_RULES))];
  return { inet: inet.join('\n'), bridge: bridge.join('\n'), rules: counts };

  function counted(table: keyof typeof counts, rules: string[]): string[] {
    counts[table] += rules.length;
    return rules;
  }
}

const hashOf = (body: string) => createHash('sha256').update(body).digest('hex').slice(0, 16);

/** The nft script that atomically replaces (or, with an empty body, removes) one table. */
export function tableScript(family: 'inet' | 'bridge', body: string): string {
  // "table X" first makes the delete valid when the table does not exist yet
  const lines = [`table ${family} ${TABLE}`, `delete table ${family} ${TABLE}`];
  // the hash lives in a tiny set's comment: listing it is cheap where listing thousands of
  // rules is not
  if (body) lines.push(`table ${family} ${TABLE} {`, `  set ${HASH_SET} {`, '    type ifname', `    comment "virtwire:${hashOf(body)}"`, '  }', body, '}');
  return lines.join('\n') + '\n';
}

const HASH_SET = 'applied';

/**
 * The live table: the hash recorded with it and how many rules it holds (null when the table
 * does not exist). Both are needed: `nft flush table` empties the chains but keeps the sets.
 */
async function liveTable(runner: CommandRunner, family: string): Promise<{ hash: string | undefined; rules: number } | null> {
  // -t (terse): without set elements, so the listing stays small however many ports there are
  const r = await runner.run(['nft', '-t', '-j', 'list', 'table', family, TABLE], { allowFailure: true, step: 'firewall: observe' });
  if (r.exitCode !== 0) return null;
  const items = (JSON.parse(r.stdout) as { nftables: Record<string, { name?: string; comment?: string }>[] }).nftables;
  const set = items.find((x) => x.set?.name === HASH_SET)?.set;
  return { hash: /^virtwire:([0-9a-f]+)$/.exec(set?.comment ?? '')?.[1], rules: items.filter((x) => 'rule' in x).length };
}

export interface FirewallPlan {
  /** nft script to run, empty when the tables are already as desired */
  script: string;
  /** restores the tables as they were (for rollback) */
  restore: string;
}

export async function planFirewall(runner: CommandRunner, state: HostState): Promise<FirewallPlan> {
  const want = renderRuleset(state);
  let script = '';
  let restore = '';
  for (const family of ['inet', 'bridge'] as const) {
    const body = want[family];
    const live = await liveTable(runner, family);
    const same = body ? live?.hash === hashOf(body) && live.rules === want.rules[family] : live === null;
    if (same) continue;
    script += tableScript(family, body);
    const current = live === null ? '' : (await runner.run(['nft', 'list', 'table', family, TABLE], { step: 'firewall: observe' })).stdout;
    restore += `table ${family} ${TABLE}\ndelete table ${family} ${TABLE}\n${current}\n`;
  }
  return { script, restore };
}

export async function applyNft(runner: CommandRunner, script: string, step: string): Promise<void> {
  if (script) await runner.run(['nft', '-f', '-'], { input: script, step });
}
