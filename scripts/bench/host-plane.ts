// Benchmark for lib/host (issue: host network plane). 100 tenants x 10 taps (1,000 taps,
// 100 bridges, 100 VXLAN uplinks with one peer each) in a scratch network namespace, applied
// from scratch, re-applied (nothing to change) and torn down — against a baseline in a second
// scratch namespace that spawns one `ip`/`bridge` per device change, as wrapper scripts do
// (and checks each device with one `ip link show` for the no-op). DHCP is off (100 dnsmasq
// processes would measure dnsmasq); virtwire's figures include its nft tables (7,000 rules)
// and QoS observation, which the baseline does not do at all. Needs root.
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostPlane } from '../../lib/host/index.js';
import { validateNetwork, tapName, vxlanDeviceName } from '../../lib/spec/index.js';
import type { HostState } from '../../types/host.js';
import { printTable, type Row } from './table.js';

const TENANTS = 100;
const TAPS = 10;
const OURS = 'vwbench-ours';
const BASE = 'vwbench-base';
const FALLBACK = 'vwbench-ipt';
const NFT_AGAIN = 'vwbench-nft';

function state(): HostState {
  return {
    networks: Array.from({ length: TENANTS }, (_, t) => {
      const network = validateNetwork({
        tenant: `t${t}`,
        cidr: `10.${100 + Math.floor(t / 50)}.${(t % 50) * 4}.0/22`,
        nat: t % 2 === 0,
        segment: { type: 'vxlan', vni: 1000 + t, uplink: 'under0', remotes: ['192.168.78.2'] },
      });
      const base = network.network.split('.').map(Number) as [number, number, number, number];
      const ports = Array.from({ length: TAPS }, (_, i) => ({
        name: tapName(`t${t}vm${i}`, 0),
        kind: 'tap' as const,
        mac: `52:54:00:${(t >> 8).toString(16).padStart(2, '0')}:${(t & 255).toString(16).padStart(2, '0')}:${(i + 16).toString(16)}`,
        ip: `${base[0]}.${base[1]}.${base[2]}.${10 + i}`,
      }));
      return { network, ports, dhcp: false };
    }),
  };
}

async function netns(name: string): Promise<void> {
  await execa('ip', ['netns', 'del', name], { reject: false });
  await execa('ip', ['netns', 'add', name]);
  await execa('ip', ['-n', name, 'link', 'add', 'under0', 'type', 'veth', 'peer', 'name', 'under1']);
  await execa('ip', ['-n', name, 'addr', 'add', '192.168.78.1/24', 'dev', 'under0']);
  await execa('ip', ['-n', name, 'link', 'set', 'under0', 'up']);
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/** The baseline: one process per device change. */
const ipn = (...args: (string | number)[]) => execa('ip', ['-n', BASE, ...args.map(String)]);
async function baselineCreate(s: HostState): Promise<void> {
  for (const net of s.networks) {
    const n = net.network;
    const vx = vxlanDeviceName(n.tenant, (n.segment as { vni: number }).vni);
    await ipn('link', 'add', n.bridge, 'type', 'bridge', 'forward_delay', 0, 'stp_state', 0);
    await ipn('addr', 'add', `${n.gateway}/${n.prefix}`, 'dev', n.bridge);
    await ipn('link', 'set', n.bridge, 'up');
    await ipn(
      'link',
      'add',
      vx,
      'type',
      'vxlan',
      'id',
      (n.segment as { vni: number }).vni,
      'dstport',
      4789,
      'dev',
      'under0',
    );
    await ipn('link', 'set', vx, 'master', n.bridge, 'up');
    await execa('bridge', ['-n', BASE, 'fdb', 'append', '00:00:00:00:00:00', 'dev', vx, 'dst', '192.168.78.2']);
    for (const p of net.ports) {
      await ipn('tuntap', 'add', 'dev', p.name, 'mode', 'tap');
      await ipn('link', 'set', p.name, 'master', n.bridge, 'up');
    }
  }
}
async function baselineCheck(s: HostState): Promise<void> {
  for (const net of s.networks) {
    await ipn('link', 'show', 'dev', net.network.bridge);
    for (const p of net.ports) await ipn('link', 'show', 'dev', p.name);
  }
}
async function baselineDelete(s: HostState): Promise<void> {
  for (const net of s.networks) {
    for (const p of net.ports) await ipn('link', 'del', 'dev', p.name);
    await ipn('link', 'del', 'dev', vxlanDeviceName(net.network.tenant, (net.network.segment as { vni: number }).vni));
    await ipn('link', 'del', 'dev', net.network.bridge);
  }
}

async function main(): Promise<void> {
  const s = state();
  const stateDir = mkdtempSync(join(tmpdir(), 'vwbench-'));
  try {
    await netns(OURS);
    await netns(BASE);
    const plane = new HostPlane({ netns: OURS, stateDir });
    const rows: Row[] = [];
    const oursCreate = await time(() => plane.apply(s));
    const baseCreate = await time(() => baselineCreate(s));
    rows.push({
      what: `from scratch: ${TENANTS * TAPS} taps, ${TENANTS} bridges, ${TENANTS} VXLAN`,
      unit: 's',
      ours: oursCreate,
      baseline: baseCreate,
      baselineName: 'one ip/bridge process per change',
      lowerIsBetter: true,
    });
    let noop = true;
    const oursNoop = await time(async () => (noop = (await plane.apply(s)).noop));
    if (!noop) throw new Error('re-apply was not a no-op');
    const baseNoop = await time(() => baselineCheck(s));
    rows.push({
      what: 're-apply, nothing to change',
      unit: 's',
      ours: oursNoop,
      baseline: baseNoop,
      baselineName: 'one ip link show per device',
      lowerIsBetter: true,
    });
    const oursDown = await time(() => plane.teardown());
    const baseDown = await time(() => baselineDelete(s));
    rows.push({
      what: 'teardown',
      unit: 's',
      ours: oursDown,
      baseline: baseDown,
      baselineName: 'one ip link del per device',
      lowerIsBetter: true,
    });
    const left = await execa('ip', ['-n', OURS, '-o', 'link', 'show']);
    if (left.stdout.split('\n').length !== 3) throw new Error(`teardown left devices behind:\n${left.stdout}`);
    printTable(`host network plane (${TENANTS} tenants x ${TAPS} taps, node ${process.version})`, rows);

    // the same state with each firewall backend, each in a fresh namespace (the first run above
    // also paid for loading modules): what a host without nft pays for the fallback
    const cycle = async (ns: string, firewall: 'nftables' | 'iptables') => {
      await netns(ns);
      const p = new HostPlane({ netns: ns, stateDir: join(stateDir, firewall), firewall });
      const create = await time(() => p.apply(s));
      let quiet = true;
      const again = await time(async () => (quiet = (await p.apply(s)).noop));
      if (!quiet) throw new Error(`${firewall} re-apply was not a no-op`);
      const down = await time(() => p.teardown());
      await execa('ip', ['netns', 'del', ns], { reject: false });
      return { create, again, down };
    };
    const nft = await cycle(NFT_AGAIN, 'nftables');
    const ipt = await cycle(FALLBACK, 'iptables');
    printTable(
      'firewall backends, same state, fresh namespaces: nftables (default) vs the iptables + ebtables fallback',
      [
        {
          what: 'from scratch',
          unit: 's',
          ours: nft.create,
          baseline: ipt.create,
          baselineName: 'iptables/ebtables-restore (19 ebtables rules per port: 8 guard, 11 rate cap)',
          lowerIsBetter: true,
        },
        {
          what: 're-apply, nothing to change',
          unit: 's',
          ours: nft.again,
          baseline: ipt.again,
          baselineName: 'iptables-save/ebtables-save',
          lowerIsBetter: true,
        },
        {
          what: 'teardown',
          unit: 's',
          ours: nft.down,
          baseline: ipt.down,
          baselineName: 'jumps and chains deleted',
          lowerIsBetter: true,
        },
      ],
    );
  } finally {
    for (const ns of [FALLBACK, NFT_AGAIN]) await execa('ip', ['netns', 'del', ns], { reject: false });
    await execa('ip', ['netns', 'del', OURS], { reject: false });
    await execa('ip', ['netns', 'del', BASE], { reject: false });
    rmSync(stateDir, { recursive: true, force: true });
  }
}

await main();
