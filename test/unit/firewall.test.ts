// lib/host's firewall backends without a kernel: what they render, what they decide to change
// against what they observe, and that a rollback leads back to exactly what was observed.
import { validateNetwork, tapName, ipv6Sources } from '../../lib/spec/index.js';
import { chooseFirewall } from '../../lib/host/firewall/index.js';
import { renderRuleset } from '../../lib/host/firewall/nft.js';
import { parseTable, nftablesBackend } from '../../lib/host/firewall/nft-table.js';
import { hashOf } from '../../lib/host/firewall/hash.js';
import { desiredTables } from '../../lib/host/firewall/iptables.js';
import { parseSave, transition, iptablesBackend, type TableSeen } from '../../lib/host/firewall/iptables-chains.js';
import type { CommandRunner } from '../../lib/host/command-runner.js';
import { innerState, namespacesOf } from '../../lib/host/namespace.js';
import type { HostCapabilities, HostPort, HostSecurityGroup, HostState } from '../../types/host.js';

const acme = validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24' });
const globex = validateNetwork({ tenant: 'globex', cidr: '10.20.0.0/24', nat: false });
const web = tapName('web', 0);
const db = tapName('db', 0);
const state: HostState = {
  networks: [
    { network: acme, ports: [{ name: web, kind: 'tap', mac: '52:54:00:00:00:01', ip: '10.10.0.11' }] },
    { network: globex, ports: [{ name: db, kind: 'tap', mac: '52:54:00:00:00:02' }] },
  ],
};
const caps = (over: Partial<HostCapabilities>) =>
  ({ nftables: true, nftBridge: true, iptables: true, ebtables: true, ...over }) as HostCapabilities;

describe('choosing a backend', () => {
  test('nftables where it is whole, else iptables + ebtables, else a clear refusal', () => {
    expect(chooseFirewall(caps({})).kind).toBe('nftables');
    expect(chooseFirewall(caps({ nftBridge: false })).kind).toBe('iptables');
    expect(chooseFirewall(caps({ nftables: false })).kind).toBe('iptables');
    expect(chooseFirewall(caps({}), 'iptables').kind).toBe('iptables');
    expect(() => chooseFirewall(caps({ nftables: false, ebtables: false }))).toThrow(
      /host lacks nftables .* and iptables with ebtables; tenant firewall rules cannot be created/,
    );
  });
});

describe('iptables backend', () => {
  const [filter, nat, eb] = desiredTables(state);
  const rules = (t: typeof filter, role: string) => t!.chains.find((c) => c.name.startsWith(`VW${role}-`))!.rules;

  test('the same policy as the nft tables, in chains named for their role and hash', () => {
    expect(filter!.chains.map((c) => [c.name.slice(0, 4), c.from])).toEqual([
      ['VWX-', undefined],
      ['VWF-', 'FORWARD'],
      ['VWI-', 'INPUT'],
    ]);
    const x = filter!.chains[0]!.name;
    expect(rules(filter, 'F')).toEqual([
      // each guest address's share of the host's connection tracking
      `-i ${acme.bridge} -m conntrack --ctstate NEW -m hashlimit --hashlimit-above 1000/sec --hashlimit-burst 2000 --hashlimit-mode srcip --hashlimit-name vwflow -j DROP`,
      `-i ${acme.bridge} -m conntrack --ctstate NEW -m connlimit --connlimit-above 16384 --connlimit-mask 32 --connlimit-saddr -j DROP`,
      `-i ${globex.bridge} -m conntrack --ctstate NEW -m hashlimit --hashlimit-above 1000/sec --hashlimit-burst 2000 --hashlimit-mode srcip --hashlimit-name vwflow -j DROP`,
      `-i ${globex.bridge} -m conntrack --ctstate NEW -m connlimit --connlimit-above 16384 --connlimit-mask 32 --connlimit-saddr -j DROP`,
      `-i ${acme.bridge} -o ${acme.bridge} -j ACCEPT`,
      `-i ${acme.bridge} -j ${x}`,
      `-i ${acme.bridge} -d 169.254.0.0/16 -j DROP`,
      `-i ${acme.bridge} -p udp -m multiport --dports 4789,8472,6081 -j DROP`,
      `-i ${acme.bridge} -s 10.10.0.0/24 -j ACCEPT`,
      `-o ${acme.bridge} -d 10.10.0.0/24 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      `-i ${acme.bridge} -j DROP`,
      `-o ${acme.bridge} -j DROP`,
      `-i ${globex.bridge} -o ${globex.bridge} -j ACCEPT`,
      `-i ${globex.bridge} -j ${x}`,
      `-i ${globex.bridge} -d 169.254.0.0/16 -j DROP`,
      `-i ${globex.bridge} -p udp -m multiport --dports 4789,8472,6081 -j DROP`,
      `-i ${globex.bridge} -j DROP`,
      `-o ${globex.bridge} -j DROP`,
    ]);
    // isolation grows with the tenants, not with their pairs
    expect(rules(filter, 'X')).toEqual([`-o ${acme.bridge} -j DROP`, `-o ${globex.bridge} -j DROP`]);
    expect(rules(nat, 'N')).toEqual([
      '-s 10.10.0.0/24 -d 224.0.0.0/24 -j RETURN',
      '-s 10.10.0.0/24 -d 255.255.255.255/32 -j RETURN',
      `-s 10.10.0.0/24 ! -d 10.10.0.0/24 ! -o ${acme.bridge} -j MASQUERADE`,
    ]);
    expect(rules(eb, 'S')).toContain(`-i ${web} -p IPv4 --ip-src ! 10.10.0.11 -j DROP`);
    expect(rules(eb, 'S')).toContain(`-i ${db} -s ! 52:54:00:00:00:02 -j DROP`);
    expect(rules(eb, 'S').filter((r) => r.includes(db) && r.includes('--ip-src'))).toEqual([]); // no address: no IP rule
    expect(rules(eb, 'S').at(-1)).toBe(`-i ${db} -j DROP`); // neither IPv4 nor ARP
    // a changed state renames every chain of the table it changes
    const [filter2, nat2] = desiredTables({ networks: [state.networks[0]!] });
    expect(filter2!.chains[1]!.name).not.toBe(filter!.chains[1]!.name);
    expect(nat2!.chains[0]!.name).toBe(nat!.chains[0]!.name);
  });

  test("a segment uplink: DHCP and the gateway's ARP stopped at it, both ways", () => {
    const seg = validateNetwork({
      tenant: 'acme',
      cidr: '10.10.0.0/24',
      segment: { type: 'vlan', id: 100, uplink: 'eth1' },
    });
    const [, , ebt] = desiredTables({ networks: [{ network: seg, ports: [] }] });
    expect(ebt!.chains.map((c) => [c.name.slice(0, 4), c.from, c.rules])).toEqual([
      [
        'VWS-',
        'PREROUTING',
        [
          '-i eth1.100 -p IPv4 --ip-proto udp --ip-dport 67:68 -j DROP',
          '-i eth1.100 -p ARP --arp-ip-dst 10.10.0.1 -j DROP',
          '-i eth1.100 -p ARP --arp-ip-src 10.10.0.1 -j DROP',
        ],
      ],
      [
        'VWP-',
        'POSTROUTING',
        [
          '-o eth1.100 -p IPv4 --ip-proto udp --ip-dport 67:68 -j DROP',
          '-o eth1.100 -p ARP --arp-ip-dst 10.10.0.1 -j DROP',
          '-o eth1.100 -p ARP --arp-ip-src 10.10.0.1 -j DROP',
        ],
      ],
    ]);
  });

  test('nothing seen: chains declared and filled, jumps inserted', () => {
    const script = transition(filter!, empty());
    const f = filter!.chains[1]!.name;
    expect(script.split('\n')[0]).toBe('*filter');
    expect(script).toContain(`:${f} - [0:0]\n`);
    expect(script).toContain(`-I FORWARD 1 -j ${f}\n`);
    expect(script.trimEnd().endsWith('COMMIT')).toBe(true);
    expect(transition(eb!, empty())).toContain(`:${eb!.chains[0]!.name} RETURN\n`);
  });

  test('seen as wanted: nothing; a flushed chain or a doubled jump: only that is mended', () => {
    const seen = seenFrom(filter!);
    expect(transition(filter!, seen)).toBe('');
    const f = filter!.chains[1]!.name;
    seen.chains.set(f, []);
    seen.jumps.push({ from: 'FORWARD', to: f });
    const script = transition(filter!, seen);
    expect(script).toBe(
      [
        '*filter',
        `:${f} - [0:0]`,
        ...rules(filter, 'F').map((r) => `-A ${f} ${r}`),
        `-D FORWARD -j ${f}`,
        'COMMIT',
        '',
      ].join('\n'),
    );
  });

  test('a changed state swaps in new chains and removes the old ones and their jumps', () => {
    const old = desiredTables({ networks: [state.networks[0]!] })[0]!;
    const script = transition(filter!, seenFrom(old)).split('\n');
    const [oldF, newF] = [old.chains[1]!.name, filter!.chains[1]!.name];
    expect(script).toContain(`-D FORWARD -j ${oldF}`);
    expect(script).toContain(`-I FORWARD 1 -j ${newF}`);
    // emptied before deleted: the old forward chain jumps to the old cross-tenant chain
    expect(script.indexOf(`-X ${old.chains[0]!.name}`)).toBeGreaterThan(script.indexOf(`-F ${oldF}`));
  });

  test("parseSave: only virtwire's chains and jumps", () => {
    const seen = parseSave(
      [
        '*filter',
        ':INPUT ACCEPT [0:0]',
        ':FORWARD ACCEPT [0:0]',
        ':DOCKER - [0:0]',
        ':VWF-0123456789ab - [0:0]',
        '-A FORWARD -j DOCKER',
        '-A FORWARD -j VWF-0123456789ab',
        '-A VWF-0123456789ab -i vwb1 -j DROP',
        '-A DOCKER -j RETURN',
        'COMMIT',
      ].join('\n'),
    );
    expect([...seen.chains]).toEqual([['VWF-0123456789ab', ['-i vwb1 -j DROP']]]);
    expect(seen.jumps).toEqual([{ from: 'FORWARD', to: 'VWF-0123456789ab', position: 2 }]);
  });

  test('apply then rollback leads back to exactly what was seen (restore semantics modelled)', async () => {
    // a host with an older ruleset of virtwire's, one chain flushed by hand, and others' rules
    const before = desiredTables({ networks: [state.networks[1]!] });
    const tables = new Map(before.map((t) => [`${t.tool} ${t.table}`, modelOf(seenFrom(t))]));
    tables.get('iptables filter')!.rules.get('FORWARD')!.unshift('-j DOCKER');
    const runner = modelRunner(tables);
    const snapshot = () => JSON.stringify([...tables].map(([k, t]) => [k, [...t.rules]]));
    const original = snapshot();
    const plan = await iptablesBackend.plan(runner, state);
    expect(plan.commands.map((c) => c.argv[0])).toEqual([
      'iptables-restore',
      'iptables-restore',
      'ebtables-restore',
      'ip6tables-restore',
    ]);
    for (const c of plan.commands) await runner.run(c.argv, { input: c.input });
    expect((await iptablesBackend.plan(runner, state)).commands).toEqual([]);
    for (const c of await plan.restore) await runner.run(c.argv, { input: c.input });
    expect(snapshot()).toBe(original);
  });
});

describe('iptables backend: IPv6', () => {
  const dual = validateNetwork({ tenant: 'acme', cidr: '10.10.0.0/24', cidr6: 'fd00:10::/64' });
  const mac = '52:54:00:00:00:01';
  const port: HostPort = { name: web, kind: 'tap', mac, ip: '10.10.0.11', ip6: 'fd00:10::11' };
  const own = ipv6Sources(mac, dual.ipv6, port.ip6); // link-local, pinned, SLAAC
  const withGroup = (tcpPort: number): HostState => {
    const group: HostSecurityGroup = {
      name: 'web',
      rules: [{ direction: 'ingress', protocol: 'tcp', ports: [[tcpPort, tcpPort]], peer: { any: true } }],
    };
    return {
      networks: [{ network: dual, ports: [{ ...port, securityGroups: ['web'] }], securityGroups: [group] }],
    };
  };
  const tables = desiredTables({ networks: [{ network: dual, ports: [port] }] });
  const table = (tool: string, name: string) => tables.find((t) => t.tool === tool && t.table === name)!;
  const chain = (t: ReturnType<typeof table>, name: string) => t.chains.find((c) => c.name === name)!;

  test('a port sends IPv6 from its own addresses only: ebtables returns for each in a chain of its own', () => {
    const eb = table('ebtables', 'nat');
    const guard = eb.chains.find((c) => c.name.startsWith('VWS-'))!.rules;
    const jump = guard.find((r) => r.startsWith(`-i ${web} -p IPv6 -j VWM-`))!;
    expect(chain(eb, jump.split(' -j ')[1]!).rules).toEqual([
      ...own.map((a) => `-p IPv6 --ip6-src ${a}/128 -j RETURN`),
      '-j DROP',
    ]);
    // before it: no RA, redirect or DHCPv6 server message; after it: IPv6 passes, anything else is dropped
    expect(guard.slice(guard.indexOf(jump) - 7, guard.indexOf(jump) + 3)).toEqual([
      `-i ${web} -p IPv6 --ip6-proto ipv6-icmp --ip6-icmp-type 134 -j DROP`,
      `-i ${web} -p IPv6 --ip6-proto ipv6-icmp --ip6-icmp-type 137 -j DROP`,
      `-i ${web} -p IPv6 --ip6-proto udp --ip6-sport 547 -j DROP`,
      `-i ${web} -p IPv6 --ip6-proto udp --ip6-dport 546 -j DROP`,
      `-i ${web} -p IPv6 --ip6-src ::/128 --ip6-proto ipv6-icmp --ip6-icmp-type 133 -j RETURN`,
      `-i ${web} -p IPv6 --ip6-src ::/128 --ip6-proto ipv6-icmp --ip6-icmp-type 135 -j RETURN`,
      `-i ${web} -p IPv6 --ip6-src ::/128 --ip6-proto ipv6-icmp --ip6-icmp-type 143 -j RETURN`,
      jump,
      `-i ${web} -p IPv6 -j RETURN`,
      `-i ${web} -j DROP`,
    ]);
  });

  test("a neighbour advertisement's target, which ebtables cannot read, is checked in ip6tables' raw table", () => {
    const raw = table('ip6tables', 'raw');
    const na = raw.chains.find((c) => c.name.startsWith('VWA-'))!;
    expect(na.from).toBe('PREROUTING');
    // neighbour discovery in fragments first (RFC 6980: never fragmented), then the target's check
    expect(na.rules.slice(0, 5)).toEqual(
      [133, 134, 135, 136, 137].map(
        (t) => `-m physdev --physdev-in ${web} -p ipv6-icmp -m icmp6 --icmpv6-type ${t} -m frag -j DROP`,
      ),
    );
    expect(na.rules).toHaveLength(6);
    expect(na.rules[5]).toMatch(
      new RegExp(
        `^-m physdev --physdev-in ${web} -p ipv6-icmp -m icmp6 --icmpv6-type 136 -j VWM-[0-9a-f]{12}-[0-9a-f]{6}$`,
      ),
    );
    const targets = chain(raw, na.rules[5]!.split(' -j ')[1]!).rules;
    // next header 58 (no extension header moves the message), then the target's four words
    expect(targets[1]).toBe(
      '-m u32 --u32 4>>8&0xFF=0x3A&&48=0xfd000010&&52=0x00000000&&56=0x00000000&&60=0x00000011 -j RETURN',
    );
    expect(targets).toHaveLength(own.length + 1);
    expect(targets.at(-1)).toBe('-j DROP');
  });

  test("an IPv4-only host has no IPv6 nat or raw chains; its tenants' IPv6 is not forwarded", () => {
    const v4 = desiredTables(state).filter((t) => t.tool === 'ip6tables');
    expect(v4.filter((t) => t.table !== 'filter').flatMap((t) => t.chains)).toEqual([]);
    const forward = v4[0]!.chains.find((c) => c.name.startsWith('VWF-'))!.rules;
    expect(forward.filter((r) => r.includes('ACCEPT'))).toEqual([
      `-i ${acme.bridge} -o ${acme.bridge} -j ACCEPT`,
      `-i ${globex.bridge} -o ${globex.bridge} -j ACCEPT`,
    ]);
    expect(table('ip6tables', 'nat').chains[0]!.rules).toContain(
      `-s fd00:10::/64 ! -d fd00:10::/64 ! -o ${dual.bridge} -j MASQUERADE`,
    );
  });

  test("a member port's flows of both families are cut when its policy changes; apply and rollback are exact", async () => {
    const tables = new Map<string, Model>();
    const runner = modelRunner(tables);
    for (const c of (await iptablesBackend.plan(runner, withGroup(80))).commands)
      await runner.run(c.argv, { input: c.input });
    const original = JSON.stringify([...tables].map(([k, t]) => [k, [...t.rules]]));
    const plan = await iptablesBackend.plan(runner, withGroup(443));
    expect(plan.flush).toEqual(['10.10.0.11', ...own].sort());
    for (const c of plan.commands) await runner.run(c.argv, { input: c.input });
    expect((await iptablesBackend.plan(runner, withGroup(443))).commands).toEqual([]);
    for (const c of await plan.restore) await runner.run(c.argv, { input: c.input });
    expect(JSON.stringify([...tables].map(([k, t]) => [k, [...t.rules]]))).toBe(original);
  });
});

describe('nftables backend', () => {
  test('observed set elements are compared with the wanted ones', async () => {
    const r = renderRuleset(state);
    const listing = (drop?: string) =>
      JSON.stringify({
        nftables: [
          { set: { name: 'applied', comment: `virtwire:${hashOf(r.bridge)}` } },
          ...Object.entries(r.sets.bridge).map(([name, elems]) => ({
            set: {
              name,
              elem: elems.filter((e) => e !== drop).map((e) => (e.includes(' . ') ? { concat: e.split(' . ') } : e)),
            },
          })),
          ...Array.from({ length: r.rules.bridge }, () => ({ rule: {} })),
        ],
      });
    expect(parseTable(listing()).sets.port_macs).toEqual([`${web} . 52:54:00:00:00:01`, `${db} . 52:54:00:00:00:02`]);
    const runner = (json: string): CommandRunner => ({
      run: async (argv) => ({
        exitCode: 0,
        stdout: argv.includes('bridge') ? json : JSON.stringify({ nftables: [] }),
        stderr: '',
      }),
    });
    const bridgeCommands = async (json: string) =>
      (await nftablesBackend.plan(runner(json), state)).commands.filter((c) => c.input.includes('table bridge'));
    expect(await bridgeCommands(listing())).toEqual([]);
    expect(await bridgeCommands(listing(`${db} . 52:54:00:00:00:02`))).toHaveLength(1);
  });
});

function empty(): TableSeen {
  return { chains: new Map(), policies: new Map(), jumps: [] };
}

function seenFrom(t: ReturnType<typeof desiredTables>[number]): TableSeen {
  return {
    chains: new Map(t.chains.map((c) => [c.name, [...c.rules]])),
    policies: new Map(t.chains.map((c) => [c.name, c.policy ?? '-'])),
    jumps: t.chains.filter((c) => c.from).map((c) => ({ from: c.from!, to: c.name })),
  };
}

/** One table as the kernel holds it: rules per chain (built-ins included), in order. */
interface Model {
  rules: Map<string, string[]>;
  policies: Map<string, string>;
}

function modelOf(seen: TableSeen): Model {
  const rules = new Map<string, string[]>([
    ['FORWARD', []],
    ['INPUT', []],
    ['POSTROUTING', []],
    ['PREROUTING', []],
    ...[...seen.chains].map(([n, r]) => [n, [...r]] as [string, string[]]),
  ]);
  for (const j of seen.jumps) rules.get(j.from)!.push(`-j ${j.to}`);
  return { rules, policies: new Map(seen.policies) };
}

/** `*-save -t T` and `*-restore --noflush` over models, with the semantics the backend relies on. */
function modelRunner(tables: Map<string, Model>): CommandRunner {
  const table = (tool: string, name: string) => {
    const key = `${tool.replace(/-.*/, '')} ${name}`;
    if (!tables.has(key)) tables.set(key, modelOf({ chains: new Map(), policies: new Map(), jumps: [] }));
    return tables.get(key)!;
  };
  return {
    async run(argv, options = {}) {
      if (argv[0]!.endsWith('-save')) {
        const t = table(argv[0]!, argv[2]!);
        const lines = [`*${argv[2]}`, ...[...t.rules.keys()].map((c) => `:${c} ${t.policies.get(c) ?? '-'} [0:0]`)];
        for (const [c, rs] of t.rules) for (const r of rs) lines.push(`-A ${c} ${r}`);
        return { exitCode: 0, stdout: [...lines, 'COMMIT'].join('\n'), stderr: '' };
      }
      const lines = options.input!.trim().split('\n');
      const t = table(argv[0]!, lines[0]!.slice(1));
      for (const line of lines.slice(1, -1)) {
        const decl = /^:(\S+) (\S+)/.exec(line);
        if (decl) {
          t.rules.set(decl[1]!, []);
          t.policies.set(decl[1]!, decl[2]!);
          continue;
        }
        const [op, chain, ...rest] = line.split(' ');
        const rs = t.rules.get(chain!);
        if (!rs) throw new Error(`no chain ${chain} for: ${line}`);
        if (op === '-A') rs.push(rest.join(' '));
        else if (op === '-I') rs.splice(Number(rest[0]) - 1, 0, rest.slice(1).join(' '));
        else if (op === '-D') {
          const i = rs.indexOf(rest.join(' '));
          if (i < 0) throw new Error(`no such rule: ${line}`);
          rs.splice(i, 1);
        } else if (op === '-F') rs.length = 0;
        else if (op === '-X') {
          if (rs.length || [...t.rules.values()].some((x) => x.includes(`-j ${chain}`)))
            throw new Error(`chain in use: ${line}`);
          t.rules.delete(chain!);
          t.policies.delete(chain!);
        } else throw new Error(`unmodelled: ${line}`);
      }
      return { exitCode: 0, stdout: '', stderr: '' };
    },
  };
}

describe('a namespaced tenant (its gateway in a namespace of its own) on the host', () => {
  // acme keeps its gateway on the host; globex has the same subnet, in a namespace
  const twin = {
    ...validateNetwork({ tenant: 'globex', cidr: '10.10.0.0/24' }),
    namespace: { transit: '100.64.0.4/30' },
  };
  const [ns] = namespacesOf({ networks: [{ network: twin, ports: [] }] });
  const both: HostState = {
    networks: [
      { network: acme, ports: [{ name: web, kind: 'tap', mac: '52:54:00:00:00:01', ip: '10.10.0.11' }] },
      { network: twin, ports: [{ name: db, kind: 'tap', mac: '52:54:00:00:00:02', ip: '10.10.0.11' }] },
    ],
  };

  test('nftables: its bridged frames in a zone of their own, shielded from the other masquerade, NAT of its transit', () => {
    const r = renderRuleset(both);
    const b = `"${twin.bridge}"`;
    // a 16-bit zone of its own (zone 0 is the host's and the plain tenants'), one per transit /30
    expect(ns!.zone).toBeGreaterThan(0);
    expect(ns!.zone).toBeLessThan(65536);
    const next = { ...twin, tenant: 'initech', namespace: { transit: '100.64.0.8/30' } };
    expect(namespacesOf({ networks: [{ network: next, ports: [] }] })[0]!.zone).not.toBe(ns!.zone);
    expect(r.inet).toContain(`iifname ${b} ct zone set ${ns!.zone}`);
    expect(r.inet).toContain('type filter hook prerouting priority raw');
    // the shield comes before any masquerade: acme's would take globex's frames otherwise
    const post = r.inet.slice(r.inet.indexOf('chain postrouting'));
    expect(post.indexOf(`oifname ${b} return`)).toBeLessThan(post.indexOf('masquerade'));
    expect(r.inet).toContain(`ip saddr 100.64.0.6 oifname != "${ns!.transitVeth}" masquerade`);
    // nothing routed through its bridge on the host; its transit is a tenant device like a bridge
    expect(r.inet).toContain(`iifname ${b} drop`);
    expect(r.sets.inet.tenant_bridges).toEqual([acme.bridge, twin.bridge, ns!.transitVeth]);
    // its gateway is not on the host: no host services, no ping to the gateway address here
    expect(r.sets.inet.host_services!.every((e) => e.startsWith(acme.bridge))).toBe(true);
    expect(r.sets.inet.bridge_gws).toEqual([`${acme.bridge} . 10.10.0.1`]);
  });

  test('iptables: the same in a raw chain, the nat chain and the filter chains', () => {
    const tables = desiredTables(both);
    const chain = (table: string, role: string) =>
      tables
        .find((t) => t.tool === 'iptables' && t.table === table)!
        .chains.find((c) => c.name.startsWith(`VW${role}-`))!;
    expect(chain('raw', 'Z')).toMatchObject({
      from: 'PREROUTING',
      rules: [`-i ${twin.bridge} -j CT --zone ${ns!.zone}`],
    });
    expect(chain('nat', 'N').rules[0]).toBe(`-o ${twin.bridge} -j RETURN`);
    expect(chain('nat', 'N').rules).toContain(`-s 100.64.0.6/32 ! -o ${ns!.transitVeth} -j MASQUERADE`);
    expect(chain('filter', 'X').rules).toContain(`-o ${ns!.transitVeth} -j DROP`);
    // its bridge and transit reach nothing on the host but replies (its gateway is not here)
    const input = chain('filter', 'I').rules;
    for (const dev of [twin.bridge, ns!.transitVeth])
      expect(input.filter((r) => r.startsWith(`-i ${dev} `))).toEqual([
        `-i ${dev} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN`,
        `-i ${dev} -j DROP`,
      ]);
  });

  test('inside the namespace: the gateway on its veth end, NAT out of its transit', () => {
    const inner = innerState(ns!);
    expect(inner.networks[0]!.network).toMatchObject({ bridge: 'vw-gw', uplink: 'vw-transit', gateway: '10.10.0.1' });
    expect(inner.networks[0]!.network.namespace).toBeUndefined();
    expect(renderRuleset(inner).inet).toContain(
      'ip saddr 10.10.0.0/24 ip daddr != 10.10.0.0/24 oifname "vw-transit" masquerade',
    );
  });
});
