// `virtwire graph` on fixtures: the model from a known spec (desired) and from records with drift
// (live), and both renderers' determinism and escaping. No host, no process (dot -Tsvg: golden).
import { readFileSync } from 'node:fs';
import { parseSpecText } from '../../lib/engine/spec-file.js';
import { allocate } from '../../lib/engine/allocate.js';
import type { VmRecord } from '../../lib/engine/state/store.js';
import { buildGraph } from '../../lib/graph/build.js';
import { desiredWorld } from '../../lib/graph/world.js';
import { renderGraph } from '../../lib/graph/index.js';
import type { NetworkGraph } from '../../types/graph.js';

const text = readFileSync(new URL('../golden/graphs/two-hosts.yaml', import.meta.url), 'utf8');
const spec = parseSpecText(text, 'two-hosts.yaml');
const desired = () => buildGraph(desiredWorld(spec, []));
const edges = (g: NetworkGraph, kind: string) =>
  g.edges.filter((e) => e.kind === kind).map((e) => `${e.from} -> ${e.to}${e.label ? ` (${e.label})` : ''}`);

describe('the desired graph of a known spec', () => {
  test('every VM sits in its host, every NIC is a port on its tenant bridge there', () => {
    const g = desired();
    expect(g.view).toBe('desired');
    expect(g.clusters.map((c) => c.label)).toEqual([
      'host hv1 (192.0.2.11)',
      'netns vwnglobe-defae0 (transit 100.64.0.0/30)',
      'host hv2 (192.0.2.12)',
      'placed at apply (by free memory)',
    ]);
    const vms = g.nodes.filter((n) => n.kind === 'vm').map((n) => [n.id, n.cluster]);
    expect(vms).toEqual([
      ['vm:shop', 'host:hv1'],
      ['vm:web', 'host:hv1'],
      ['vm:db', 'host:hv2'],
      ['vm:batch', 'host:-'],
    ]);
    expect(edges(g, 'port').map((e) => e.split(' (')[0])).toEqual([
      'vm:shop -> bridge:hv1:globex',
      'vm:web -> bridge:hv1:acme',
      'vm:db -> bridge:hv2:acme',
      'vm:db -> bridge:hv2:initech',
      'vm:batch -> bridge:-:initech',
    ]);
    // a port carries its tap, address (pinned or allocated), MAC and QoS
    const web = g.edges.find((e) => e.from === 'vm:web')!.label!.split('\n');
    expect(web).toEqual([
      expect.stringMatching(/^vwtweb-[0-9a-f]{6}$/),
      '10.10.0.2',
      expect.stringMatching(/^52:54:00:/),
      'out 8000 kbit/s, in 16000 kbit/s',
      // and its ways in from outside the tenant
      'uplink:8080/tcp -> 80',
      'floating IP 192.0.2.50',
    ]);
    expect(g.edges.find((e) => e.from === 'vm:db')!.label).toContain('10.10.0.20');
  });

  test('each tenant bridge per host, its gateway, NAT and uplink; segments join the hosts', () => {
    const g = desired();
    const bridges = g.nodes.filter((n) => n.kind === 'bridge').map((n) => n.id);
    expect(bridges).toEqual([
      'bridge:hv1:acme',
      'bridge:hv1:globex',
      'bridge:hv2:acme',
      'bridge:hv2:initech',
      'bridge:-:initech',
    ]);
    const uplink = (id: string) => g.nodes.find((n) => n.id === id)!.label;
    // VXLAN: its VNI from the pool, peers from the hosts list as each host sees them
    expect(uplink('uplink:hv1:acme')).toEqual([
      expect.stringMatching(/^vwxacme-/),
      'VNI 4096 on eth1',
      'local 192.0.2.11',
      'peers 192.0.2.12',
    ]);
    expect(uplink('uplink:hv2:acme').slice(2)).toEqual(['local 192.0.2.12', 'peers 192.0.2.11']);
    expect(uplink('uplink:hv2:initech')).toEqual(['eth1.20', 'VLAN 20 on eth1']);
    expect(edges(g, 'segment')).toEqual([
      'uplink:hv1:acme -> uplink:hv2:acme (VNI 4096)',
      'uplink:hv2:initech -> uplink:-:initech (VLAN 20)',
    ]);
    // NAT where the tenant has it (initech has not); the overlapping tenant's gateway in its namespace
    expect(edges(g, 'nat')).toEqual([
      'gateway:hv1:acme -> outside:hv1 (NAT)',
      'gateway:hv1:globex -> outside:hv1 (NAT twice, via its transit)',
      'gateway:hv2:acme -> outside:hv2 (NAT)',
    ]);
    expect(g.nodes.find((n) => n.id === 'gateway:hv1:globex')!.cluster).toBe('netns:hv1:globex');
    expect(g.nodes.find((n) => n.id === 'gateway:hv1:acme')!.label).toContain('host services udp/8125');
    expect(g.nodes.some((n) => n.id === 'outside:-')).toBe(false);
  });

  test('security groups: members by NIC, and every rule as an edge from who may to whom', () => {
    const g = desired();
    expect(edges(g, 'member')).toEqual(['vm:db -> group:db (10.10.0.20)', 'vm:web -> group:web (10.10.0.2)']);
    expect(edges(g, 'rule')).toEqual([
      'group:web -> group:db (tcp 5432)',
      'group:db -> peer:10.10.0.0/24 (udp 8000-8100)',
      'peer:any -> group:web (tcp 80,443)',
      'peer:198.51.100.0/24 -> group:web (tcp 22)',
    ]);
  });

  test('the state allocated addresses and VNIs: the graph shows them, not new ones', () => {
    // the records as an earlier apply left them: web got .7, acme the VNI 5000 (another pool then)
    const web = spec.vms.find((v) => v.name === 'web')!;
    const pinned = { ...web, nics: [{ ...web.nics[0]!, ip: '10.10.0.7' }] };
    const recorded: VmRecord[] = [
      { vm: allocate(pinned, [], { vni: [5000, 5999] }), accel: 'tcg', createdAt: '', host: 'hv1' },
    ];
    const g = buildGraph(desiredWorld(spec, recorded));
    expect(g.edges.find((e) => e.from === 'vm:web')!.label).toContain('10.10.0.7');
    expect(g.nodes.find((n) => n.id === 'uplink:hv2:acme')!.label[1]).toBe('VNI 5000 on eth1');
  });
});

describe('the live graph', () => {
  const records = (): VmRecord[] => {
    const out: VmRecord[] = [];
    const small = parseSpecText(
      'networks:\n  - {tenant: acme, cidr: 10.10.0.0/24}\nvms:\n' +
        ['a', 'b'].map((n) => `  - {name: ${n}, boot: {kernel: /k}, nics: [{network: acme}]}\n`).join(''),
    );
    for (const vm of small.vms) out.push({ vm: allocate(vm, out), accel: 'tcg', createdAt: '' });
    return out;
  };

  test('marks a domain that is not running and a tenant whose host objects drifted', () => {
    const g = buildGraph({
      view: 'live',
      records: records(),
      hosts: [],
      groups: [],
      domains: new Map([
        ['a', 'running'],
        ['b', 'shut off'],
      ]),
      drift: new Map([['acme', ['dnsmasq not running']]]),
    });
    expect(g.clusters.map((c) => c.label)).toEqual(['this host']);
    const node = (id: string) => g.nodes.find((n) => n.id === id)!;
    expect(node('vm:a')).toMatchObject({ label: ['a', '1 vCPU, 256 MiB', 'tcg, running'] });
    expect(node('vm:a').drift).toBeUndefined();
    expect(node('vm:b').drift).toBe('domain shut off');
    expect(node('bridge:-:acme').drift).toBe('dnsmasq not running');
    // a domain libvirt no longer has
    const gone = buildGraph({ view: 'live', records: records(), hosts: [], groups: [], domains: new Map() });
    expect(gone.nodes.find((n) => n.id === 'vm:a')!.drift).toBe('domain missing');
    expect(renderGraph(g)).toContain('"vm:b" [label="b\\n1 vCPU, 256 MiB\\ntcg, shut off\\ndrift: domain shut off", ');
    expect(renderGraph(g, 'mermaid')).toContain('class bridge_3a__2d__3a_acme,vm_3a_b drift');
  });
});

describe('renderers', () => {
  test('the same spec twice gives byte-identical DOT and Mermaid', () => {
    expect(renderGraph(desired())).toBe(renderGraph(buildGraph(desiredWorld(parseSpecText(text), []))));
    expect(renderGraph(desired(), 'mermaid')).toBe(renderGraph(desired(), 'mermaid'));
  });

  test('every id and label is escaped: quotes, backslashes, line breaks, angle brackets', () => {
    const g: NetworkGraph = {
      view: 'desired',
      clusters: [{ id: 'c"1', label: 'a "quoted" \\ cluster' }],
      nodes: [
        { id: 'n"1', kind: 'vm', label: ['x"y', 'back\\slash', '<b>'], cluster: 'c"1' },
        { id: 'n-1', kind: 'peer', label: ['two\nlines'] },
      ],
      edges: [{ from: 'n"1', to: 'n-1', kind: 'rule', label: 'tcp "80"' }],
    };
    const dot = renderGraph(g);
    expect(dot).toContain('subgraph "cluster_c\\"1" {');
    expect(dot).toContain('label="a \\"quoted\\" \\\\ cluster";');
    expect(dot).toContain('"n\\"1" [label="x\\"y\\nback\\\\slash\\n<b>", ');
    expect(dot).toContain('"n-1" [label="two\\nlines", ');
    expect(dot).toContain('"n\\"1" -> "n-1" [label="tcp \\"80\\"", ');
    const mermaid = renderGraph(g, 'mermaid');
    // ids: distinct graph ids stay distinct, and only letters, digits and _ reach Mermaid
    expect(mermaid).toContain('n_22_1("x#quot;y<br/>back\\slash<br/>#lt;b#gt;")');
    expect(mermaid).toContain('n_2d_1(["two<br/>lines"])');
    expect(mermaid).toContain('n_22_1 ==>|"tcp #quot;80#quot;"| n_2d_1');
    for (const line of mermaid.split('\n').filter((l) => /-->|==>|---/.test(l)))
      expect(line.trim().split(' ')[0]).toMatch(/^[A-Za-z0-9_]+$/);
  });
});
