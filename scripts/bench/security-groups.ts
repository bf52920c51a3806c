// Benchmark for security groups (issue: who talks to whom). 1,000 ports in 10 tenants, 50 groups
// (5 per tenant, 20 ports each) of 10 rules each — some with a group peer, some a CIDR, some any
// — in a scratch network namespace: the policy applied to devices that exist (from scratch), then
// re-applied with nothing to change. Baseline, in a second scratch namespace in the same run: the
// same policy written as one nft rule per port pair (each destination port's rules, a rule per
// peer member: what a naive firewall script generates), loaded with one `nft -f` and, for the
// no-op, flushed and loaded again (such a script cannot tell it has nothing to do). Needs root.
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostPlane } from '../../lib/host/index.js';
import { validateNetwork, tapName } from '../../lib/spec/index.js';
import type { HostSecurityGroup, HostSecurityRule, HostState } from '../../types/host.js';
import { printTable } from './table.js';

const TENANTS = 10;
const PORTS = 100;
const GROUPS = 5;
const RULES = 10;
const OURS = 'vwbench-sg';
const BASE = 'vwbench-sgbase';

const ipOf = (t: number, i: number) => `10.${120 + t}.0.${10 + i}`;
const groupOf = (i: number) => `g${i % GROUPS}`;

function rules(g: number, members: (group: string) => string[]): HostSecurityRule[] {
  return Array.from({ length: RULES }, (_, i) => {
    const peer: HostSecurityRule['peer'] =
      i % 3 === 0
        ? { group: `g${(g + 1 + i) % GROUPS}`, addresses: members(`g${(g + 1 + i) % GROUPS}`) }
        : i % 3 === 1
          ? { cidr: `10.${200 + i}.0.0/16` }
          : { any: true };
    return {
      direction: i < 8 ? 'ingress' : 'egress',
      protocol: i % 2 ? 'udp' : 'tcp',
      ports: [[1000 + i * 10, 1000 + i * 10 + (i % 4)]],
      peer,
    };
  });
}

function state(withGroups: boolean): HostState {
  return {
    networks: Array.from({ length: TENANTS }, (_, t) => {
      const network = validateNetwork({ tenant: `s${t}`, cidr: `10.${120 + t}.0.0/24` });
      const members = (group: string) =>
        Array.from({ length: PORTS }, (_, i) => i)
          .filter((i) => groupOf(i) === group)
          .map((i) => ipOf(t, i));
      const groups: HostSecurityGroup[] = Array.from({ length: GROUPS }, (_, g) => ({
        name: `g${g}`,
        rules: rules(g, members),
      }));
      return {
        network,
        dhcp: false,
        ...(withGroups ? { securityGroups: groups } : {}),
        ports: Array.from({ length: PORTS }, (_, i) => ({
          name: tapName(`s${t}vm${i}`, 0),
          kind: 'tap' as const,
          mac: `52:54:00:aa:${t.toString(16).padStart(2, '0')}:${i.toString(16).padStart(2, '0')}`,
          ip: ipOf(t, i),
          ...(withGroups ? { securityGroups: [groupOf(i)] } : {}),
        })),
      };
    }),
  };
}

/** The same policy, one rule per (port, rule, peer member): a naive script's output. */
function naiveTable(s: HostState): string {
  const lines: string[] = [];
  for (const net of s.networks) {
    const br = net.network.bridge;
    const groups = new Map(net.securityGroups!.map((g) => [g.name, g]));
    for (const port of net.ports) {
      const mine = port.securityGroups!.flatMap((g) => groups.get(g)!.rules);
      for (const dir of ['ingress', 'egress'] as const) {
        const own = dir === 'ingress' ? `ip daddr ${port.ip}` : `ip saddr ${port.ip}`;
        const other = dir === 'ingress' ? 'ip saddr' : 'ip daddr';
        const these = mine.filter((r) => r.direction === dir);
        if (these.length === 0) continue;
        for (const r of these) {
          const proto = r.ports ? `${r.protocol} dport ${r.ports[0]![0]}-${r.ports[0]![1]}` : '';
          const peers = 'group' in r.peer ? r.peer.addresses : 'cidr' in r.peer ? [r.peer.cidr] : [''];
          for (const p of peers)
            lines.push(`iifname "${br}" oifname "${br}" ${own} ${p ? `${other} ${p}` : ''} ${proto} accept`);
        }
        lines.push(`iifname "${br}" oifname "${br}" ${own} drop`);
      }
    }
  }
  const script = [
    'table inet naive {',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    '    ct state established,related accept',
    ...lines.map((l) => `    ${l}`),
    '  }',
    '}',
  ].join('\n');
  return script;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function netns(name: string): Promise<void> {
  await execa('ip', ['netns', 'del', name], { reject: false });
  await execa('ip', ['netns', 'add', name]);
}

/** Rules in the namespace's kernel, every table (as nft's JSON lists them). */
async function nftRules(ns: string): Promise<number> {
  const { stdout } = await execa('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'ruleset']);
  return (JSON.parse(stdout) as { nftables: object[] }).nftables.filter((o) => 'rule' in o).length;
}

async function main(): Promise<void> {
  const stateDir = mkdtempSync(join(tmpdir(), 'vwbench-sg-'));
  try {
    await netns(OURS);
    await netns(BASE);
    const plane = new HostPlane({ netns: OURS, stateDir, firewall: 'nftables' });
    await plane.apply(state(false)); // the devices: not what this bench measures
    const want = state(true);
    const scratch = await time(() => plane.apply(want));
    const noop = await time(() => plane.apply(want));
    if ((await plane.plan(want)).changes.length) throw new Error('the policy did not converge');
    const ourRules = await nftRules(OURS);

    const naive = naiveTable(want);
    const load = () =>
      execa('ip', ['netns', 'exec', BASE, 'nft', '-f', '-'], {
        input: `table inet naive\ndelete table inet naive\n${naive}\n`,
      });
    const baseScratch = await time(load);
    const baseNoop = await time(load);
    const baseRules = await nftRules(BASE);

    printTable(`security groups (${TENANTS * PORTS} ports, ${TENANTS * GROUPS} groups x ${RULES} rules)`, [
      {
        what: 'policy from scratch',
        unit: 's',
        ours: scratch,
        baseline: baseScratch,
        baselineName: 'one rule per port pair, nft -f',
        lowerIsBetter: true,
      },
      {
        what: 'no-op re-apply',
        unit: 's',
        ours: noop,
        baseline: baseNoop,
        baselineName: 'flush and reload',
        lowerIsBetter: true,
      },
      {
        what: 'rules in the kernel',
        unit: 'count',
        ours: ourRules,
        baseline: baseRules,
        baselineName: 'one rule per port pair',
        lowerIsBetter: true,
      },
    ]);
    console.log(
      '\nvirtwire: re-apply includes observing all 1,000 ports and their tables; its rules do not grow with the ports',
    );
    await plane.teardown();
  } finally {
    await execa('ip', ['netns', 'del', OURS], { reject: false });
    await execa('ip', ['netns', 'del', BASE], { reject: false });
    rmSync(stateDir, { recursive: true, force: true });
  }
}

await main();
