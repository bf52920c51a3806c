// Benchmark for the CLI's planner (issue: CLI). 1,000 VMs in 100 tenant networks, one VM's QoS
// changed in the spec: plan it against libvirt's test:///default driver (1,000 domains defined and
// running) and a simulated host — a CommandRunner that answers the host plane's observation
// commands as a host in exactly the recorded state would, and records anything else — then show
// that applying it would touch only that VM's devices. Baseline, measured in the same run: the
// same plan observing libvirt one domain at a time (a lookup + state call per VM, as wrapper
// scripts do with `virsh domstate`) instead of one virConnectListAllDomains.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Libvirt, HostPlane, type CommandRunner, type RunOptions, type RunResult } from '../../lib/index.js';
import { renderResolvedDomainXml } from '../../lib/xml/index.js';
import { validateVm, ifbName } from '../../lib/spec/index.js';
import { allocate } from '../../lib/engine/allocate.js';
import type { VmRecord } from '../../lib/engine/state/store.js';
import { hostStateFor } from '../../lib/engine/records-to-host.js';
import { domainFiles } from '../../lib/engine/state/paths.js';
import { planChanges, type Observed } from '../../lib/engine/plan.js';
import { desiredLinks, VXLAN_OVERHEAD } from '../../lib/host/links.js';
import { renderRuleset } from '../../lib/host/firewall/nft.js';
import { tableScript } from '../../lib/host/firewall/nft-table.js';
import type { SpecFile } from '../../lib/engine/spec-file.js';
import type { HostState, HostCapabilities } from '../../types/host.js';
import { printTable } from './table.js';

const TENANTS = 100;
const PER = 10;
const caps: HostCapabilities = {
  bridge: true,
  tap: true,
  veth: true,
  vlan: false,
  vxlan: true,
  ifb: true,
  nftables: true,
  nftBridge: true,
  iptables: true,
  ebtables: true,
  qdiscs: { htb: true, tbf: true, sfq: false, fq_codel: false, ingress: true },
  actions: { police: false, mirred: true },
  dnsmasq: true,
  brNetfilter: true,
  conntrack: true,
};

/** Answers observation commands as a host in `state` would; records every other command. */
class SimulatedHost implements CommandRunner {
  readonly netns = undefined;
  readonly changes: { argv: string[]; input?: string }[] = [];
  constructor(private readonly state: HostState) {}

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const out = (stdout: string) => ({ stdout, stderr: '', exitCode: 0 });
    const key = argv.join(' ');
    // every tenant's VXLAN segment rides on eth1 (MTU 1500): 1450 inside
    const links = desiredLinks(
      this.state,
      new Map(this.state.networks.map((n) => [n.network.tenant, 1500 - VXLAN_OVERHEAD])),
    );
    const uplink = { ifname: 'eth1', flags: ['UP'], mtu: 1500, linkinfo: {} };
    if (key === 'ip -j -d addr show') {
      const data = (l: (typeof links)[number]) => {
        if (l.kind === 'tap') return { type: 'tap' };
        if (l.kind !== 'vxlan') return {};
        const [, id, local, group, link, port] = l.identity.split(':');
        return { id: Number(id), ...(local ? { local } : {}), ...(group ? { group } : {}), link, port: Number(port) };
      };
      const devices = links.map((l) => ({
        ifname: l.name,
        master: l.master,
        flags: ['UP', ...(l.noArp ? ['NOARP'] : [])],
        mtu: l.mtu ?? 1500,
        linkinfo: {
          info_kind: l.kind === 'tap' ? 'tun' : l.kind,
          info_data: {
            ...data(l),
            ...(l.kind === 'bridge' ? { no_linklocal_learn: 1 } : {}),
            ...(l.nfCallIptables ? { nf_call_iptables: 1 } : {}),
            ...(l.nfCallIp6tables ? { nf_call_ip6tables: 1 } : {}),
          },
          ...(l.master ? { info_slave_kind: 'bridge', info_slave_data: { learning: l.guestMac === undefined } } : {}),
        },
        addr_info: l.addresses.map((a) => ({
          family: a.includes(':') ? 'inet6' : 'inet',
          local: a.split('/')[0],
          prefixlen: Number(a.split('/')[1]),
        })),
      }));
      return out(JSON.stringify([uplink, ...devices]));
    }
    if (argv[0] === 'nft' && argv.includes('list')) {
      const family = argv[argv.length - 2] as 'inet' | 'bridge';
      const r = renderRuleset(this.state);
      const hash = /comment "virtwire:([0-9a-f]+)"/.exec(tableScript(family, r[family]))![1];
      // as `nft -j list table` prints it: the hash set, the sets with their elements, the rules
      const sets = Object.entries(r.sets[family]).map(([name, elems]) => ({
        set: { name, elem: elems.map((e) => (e.includes(' . ') ? { concat: e.split(' . ') } : e)) },
      }));
      return out(
        JSON.stringify({
          nftables: [
            { set: { name: 'applied', comment: `virtwire:${hash}` } },
            ...sets,
            ...Array.from({ length: r.rules[family] }, () => ({ rule: {} })),
          ],
        }),
      );
    }
    if (key === 'tc -j qdisc show') {
      const q = this.state.networks.flatMap((n) =>
        n.ports
          .filter((p) => p.qos?.egressKbps)
          .flatMap((p) => [
            { kind: 'htb', handle: '1:', dev: ifbName(p.name), root: true },
            { kind: 'ingress', handle: 'ffff:', dev: p.name },
          ]),
      );
      return out(JSON.stringify(q));
    }
    if (key === 'tc -batch -' && options.input?.startsWith('class show')) {
      const rates = new Map(
        this.state.networks.flatMap((n) =>
          n.ports.filter((p) => p.qos?.egressKbps).map((p) => [ifbName(p.name), p.qos!.egressKbps!]),
        ),
      );
      return out(
        options.input
          .trim()
          .split('\n')
          .map(
            (l) => `class htb 1:1 root prio 0 rate ${rates.get(l.split(' ')[3]!)}Kbit ceil 0 burst 1600b cburst 1600b`,
          )
          .join('\n'),
      );
    }
    if (key === 'sysctl -n net.ipv4.ip_forward') return out('1');
    // the bridges' settings as `grep -H . <files>` prints them, and the ports' static FDB entries
    if (argv[0] === 'grep') {
      const values = new Map(links.flatMap((l) => Object.entries(l.sysctls ?? {})));
      return out(
        argv
          .filter((a) => a.startsWith('/proc/sys/net/'))
          .map((f) => `${f}:${values.get(f.slice('/proc/sys/net/'.length))}`)
          .join('\n'),
      );
    }
    if (key === 'bridge -j fdb show')
      return out(
        JSON.stringify(
          links
            .filter((l) => l.guestMac)
            .map((l) => ({ mac: l.guestMac, ifname: l.name, master: l.master, state: 'static', flags: ['sticky'] })),
        ),
      );
    if (key === 'tc -batch -' && options.input?.startsWith('filter show'))
      return out(
        options.input
          .trim()
          .split('\n')
          .map(
            (l) => `filter ... action order 1: mirred (Egress Redirect to device ${ifbName(l.split(' ')[3]!)}) stolen`,
          )
          .join('\n'),
      );
    this.changes.push({ argv: [...argv], ...(options.input ? { input: options.input } : {}) });
    return out('');
  }
}

function records(changedKbps?: number): { spec: SpecFile; recs: VmRecord[] } {
  const recs: VmRecord[] = [];
  const vms = [];
  for (let t = 0; t < TENANTS; t++) {
    const network = {
      tenant: `t${t}`,
      cidr: `10.${100 + Math.floor(t / 50)}.${(t % 50) * 4}.0/22`,
      segment: { type: 'vxlan' as const, vni: 1000 + t, uplink: 'eth1' },
    };
    for (let i = 0; i < PER; i++) {
      const kbps = t === 42 && i === 7 && changedKbps ? changedKbps : 5000;
      const vm = validateVm({
        name: `t${t}-vm${i}`,
        boot: { kernel: '/k' },
        nics: [{ network, qos: { egressKbps: kbps } }],
      });
      const placed = allocate(vm, recs);
      recs.push({ vm: placed, accel: 'tcg', createdAt: '' });
      vms.push(placed);
    }
  }
  return { spec: { networks: [], vms }, recs };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vwbench-plan-'));
  const lv = await Libvirt.open('test:///default');
  try {
    const { recs } = records();
    const { spec } = records(9000); // the file as edited: one VM's QoS changed
    for (const r of recs) {
      const xml = renderResolvedDomainXml(r.vm, { files: domainFiles(dir, r.vm) }).replace(
        '<domain type="qemu">',
        '<domain type="test">',
      );
      const d = await lv.defineDomain(xml);
      await d.start();
      d.free();
    }
    // the recorded state, with DHCP observed as running (dnsmasq is a process; not simulated)
    const state = hostStateFor(recs, { name: undefined }, []);
    state.networks.forEach((n) => (n.dhcp = false));
    const host = new SimulatedHost(state);
    const plane = new HostPlane({ runner: host, stateDir: dir, capabilities: caps });

    const planWith = async (domains: () => Promise<Map<string, string>>) => {
      const t0 = performance.now();
      const observed: Observed = { domains: await domains(), host: await plane.plan(state) };
      const p = planChanges(spec, recs, observed);
      return { p, ms: performance.now() - t0 };
    };
    const bulk = () => lv.listDomains().then((l) => new Map(l.map((d) => [d.name, d.state])));
    const oneByOne = async () => {
      const m = new Map<string, string>();
      for (const r of recs) {
        const d = await lv.lookupDomain(r.vm.name);
        if (d) m.set(r.vm.name, (await d.state()).state);
        d?.free();
      }
      return m;
    };
    await planWith(bulk); // warm-up
    const ours = await planWith(bulk);
    const base = await planWith(oneByOne);
    if (
      ours.p.changes.length !== 1 ||
      ours.p.changes[0]!.name !== 't42-vm7' ||
      ours.p.changes[0]!.action !== 'update'
    ) {
      throw new Error(
        `expected one in-place update of t42-vm7, got ${JSON.stringify(ours.p.changes.slice(0, 5).map((c) => [c.action, c.name, c.reason]))}`,
      );
    }
    // what applying it would run on the host: only that VM's devices
    const after = hostStateFor(
      recs.map((r) => (r.vm.name === 't42-vm7' ? { ...r, vm: ours.p.changes[0]!.vm! } : r)),
      { name: undefined },
      [],
    );
    after.networks.forEach((n) => (n.dhcp = false));
    const applyPlan = await plane.plan(after);
    const lines = [...applyPlan.ip, ...applyPlan.bridge, ...applyPlan.tc];
    const mine = ours.p.changes[0]!.vm!.nics.flatMap((n) => [n.tap, ifbName(n.tap)]);
    const foreign = lines.filter((l) => !mine.some((d) => l.split(' ').includes(d)));
    printTable(`plan of ${recs.length} VMs in ${TENANTS} networks, one VM changed (test:///default + simulated host)`, [
      {
        what: 'plan, one VM changed',
        unit: 'ms',
        ours: ours.ms,
        baseline: base.ms,
        baselineName: 'libvirt observed one domain at a time',
        lowerIsBetter: true,
      },
    ]);
    console.log(
      `\napply would run ${lines.length} host command line(s), all for t42-vm7's devices: ${foreign.length === 0 ? 'yes' : `NO (${foreign.length} others)`}; firewall rewritten: ${applyPlan.firewall.length ? 'yes' : 'no'}`,
    );
    for (const l of lines) console.log(`  ${l}`);
  } finally {
    await lv.close();
    await Libvirt.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
