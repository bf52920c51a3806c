// The iptables backend's side that meets a host: virtwire's chains as `iptables-save` and
// `ebtables-save` print them, the `*-restore --noflush` file that turns what is seen into what is
// wanted (and the one that goes back, for a rollback), and the plan over every table.
import type { HostState } from '../../../types/host.js';
import type { CommandRunner } from '../command-runner.js';
import type { FirewallBackend, FirewallChange, FirewallCommand, FirewallPlan } from './index.js';
import { desiredTables, OWN_CHAIN, type Chain, type TableWant } from './iptables.js';

/** virtwire's chains in one table as `*-save` prints it: rules per chain, jumps from built-ins. */
export interface TableSeen {
  chains: Map<string, string[]>;
  policies: Map<string, string>;
  /** position: 1-based, among all rules of the built-in chain */
  jumps: { from: string; to: string; position?: number }[];
}

export function parseSave(text: string): TableSeen {
  const seen: TableSeen = { chains: new Map(), policies: new Map(), jumps: [] };
  const position = new Map<string, number>();
  for (const line of text.split('\n')) {
    const decl = /^:(\S+) (\S+)/.exec(line);
    if (decl && OWN_CHAIN.test(decl[1]!)) {
      seen.chains.set(decl[1]!, seen.chains.get(decl[1]!) ?? []);
      seen.policies.set(decl[1]!, decl[2]!);
      continue;
    }
    const rule = /^-A (\S+) (.*)$/.exec(line);
    if (!rule) continue;
    const [, chain, body] = rule as unknown as [string, string, string];
    if (OWN_CHAIN.test(chain)) seen.chains.set(chain, [...(seen.chains.get(chain) ?? []), body]);
    else {
      position.set(chain, (position.get(chain) ?? 0) + 1);
      const jump = /^-j (\S+)$/.exec(body);
      if (jump && OWN_CHAIN.test(jump[1]!))
        seen.jumps.push({ from: chain, to: jump[1]!, position: position.get(chain)! });
    }
  }
  return seen;
}

/** The restore file that turns what is seen into what is wanted, or '' when they match. */
export function transition(want: TableWant, seen: TableSeen): string {
  const wanted = new Set(want.chains.map((c) => c.name));
  const intact = (c: Chain) => seen.chains.get(c.name)?.length === c.rules.length;
  const rebuild = want.chains.filter((c) => !intact(c));
  const stale = [...seen.chains.keys()].filter((c) => !wanted.has(c));
  // each wanted jump exactly once, from its own hook; every other jump to a chain of ours goes
  const count = new Map<string, number>();
  for (const j of seen.jumps) count.set(`${j.from} ${j.to}`, (count.get(`${j.from} ${j.to}`) ?? 0) + 1);
  const keep = new Set(want.chains.filter((c) => c.from).map((c) => `${c.from} ${c.name}`));
  const deletes = [...count].flatMap(([pair, n]) => Array.from({ length: keep.has(pair) ? n - 1 : n }, () => pair));
  // in the order of their positions, so each lands where it was counted
  const inserts = want.chains
    .filter((c) => c.from && !count.has(`${c.from} ${c.name}`))
    .sort((a, b) => (a.position ?? 1) - (b.position ?? 1));
  if (rebuild.length + stale.length + deletes.length + inserts.length === 0) return '';
  const lines = [`*${want.table}`];
  // declaring a chain under --noflush creates it or empties it; then it is filled
  for (const c of rebuild)
    lines.push(want.tool === 'ebtables' ? `:${c.name} ${c.policy ?? 'RETURN'}` : `:${c.name} - [0:0]`);
  for (const c of rebuild) for (const r of c.rules) lines.push(`-A ${c.name} ${r}`);
  for (const pair of deletes) lines.push(`-D ${pair.replace(' ', ' -j ')}`);
  for (const c of inserts) lines.push(`-I ${c.from} ${c.position ?? 1} -j ${c.name}`);
  // unreferenced now: emptied first (one stale chain may jump to another), then deleted
  for (const c of stale) lines.push(`-F ${c}`);
  for (const c of stale) lines.push(`-X ${c}`);
  lines.push('COMMIT');
  return lines.join('\n') + '\n';
}

const SAVE = {
  iptables: ['iptables-save', '-t'],
  ip6tables: ['ip6tables-save', '-t'],
  ebtables: ['ebtables-save', '-t'],
} as const;
const RESTORE = {
  iptables: ['iptables-restore', '-w', '--noflush'],
  ip6tables: ['ip6tables-restore', '-w', '--noflush'],
  ebtables: ['ebtables-restore', '--noflush'],
} as const;

/** What `seen` was, as a TableWant, so the rollback is the same transition the other way. */
function asWant(tool: TableWant['tool'], table: string, seen: TableSeen): TableWant {
  const jumps = new Map(seen.jumps.map((j) => [j.to, j]));
  return {
    tool,
    table,
    chains: [...seen.chains].map(([name, rules]) => {
      const jump = jumps.get(name);
      return {
        name,
        rules,
        policy: seen.policies.get(name),
        ...(jump ? { from: jump.from, position: jump.position } : {}),
      };
    }),
  };
}

export const iptablesBackend: FirewallBackend = {
  kind: 'iptables',
  features: ['iptables', 'ebtables'],
  ipv6PortFramesInIpHooks: true,
  async plan(runner: CommandRunner, state: HostState): Promise<FirewallPlan> {
    const commands: FirewallCommand[] = [];
    const restore: FirewallCommand[] = [];
    const changes: FirewallChange[] = [];
    const flush: string[] = [];
    for (const want of desiredTables(state)) {
      const saved = await runner.run([...SAVE[want.tool], want.table], { step: 'firewall: observe' });
      const seen = parseSave(saved.stdout);
      if (want.tool !== 'ebtables' && want.table === 'filter') flush.push(...sgFlushIptables(seen, want));
      const forward = transition(want, seen);
      if (!forward) continue;
      commands.push({ argv: [...RESTORE[want.tool]], input: forward });
      changes.push({
        kind: 'firewall',
        table: `${want.tool} ${want.table}`,
        action: want.chains.length ? 'replace' : 'remove',
      });
      // rollback: from what this apply makes back to what was seen
      const after: TableSeen = {
        chains: new Map(want.chains.map((c) => [c.name, c.rules])),
        policies: new Map(),
        jumps: want.chains.filter((c) => c.from).map((c) => ({ from: c.from!, to: c.name })),
      };
      const back = transition(asWant(want.tool, want.table, seen), after);
      if (back) restore.unshift({ argv: [...RESTORE[want.tool]], input: back });
    }
    return { commands, changes, restore: Promise.resolve(restore), flush: [...new Set(flush)].sort() };
  },
};

/** Member ports whose policy chain is another one now (see sgFlush in nft-table.ts). */
function sgFlushIptables(seen: TableSeen, want: TableWant): string[] {
  const policyOf = (rules: string[]) =>
    new Map(
      rules.flatMap((r) => {
        const m = /^-([ds]) (\S+)\/(?:32|128) -([io]) \S+ -j VWC-[0-9a-f]{12}-([0-9a-f]{6})$/.exec(r);
        return m ? [[`${m[1]} ${m[2]}`, m[4]!] as const] : [];
      }),
    );
  const dispatch = (chains: [string, string[]][]) => chains.find(([name]) => name.startsWith('VWG-'))?.[1] ?? [];
  const before = policyOf(dispatch([...seen.chains]));
  const after = policyOf(dispatch(want.chains.map((c) => [c.name, c.rules])));
  return [...after].filter(([k, v]) => before.get(k) !== v).map(([k]) => k.split(' ')[1]!);
}
