// The nftables backend's side that meets a host: the script that swaps one table atomically, the
// live table as `nft -j` shows it, and the plan that compares the two (hash, rule count, set
// elements) — a flushed chain or a deleted element is drift, put back by the next apply.
import type { HostState } from '../../../types/host.js';
import type { CommandRunner } from '../command-runner.js';
import type { FirewallBackend, FirewallChange, FirewallCommand, FirewallPlan } from './index.js';
import { hashOf } from './hash.js';
import { renderRuleset, type Family, type Sets, type TableView } from './nft.js';

const TABLE = 'virtwire';

/** The nft script that atomically replaces (or, with an empty body, removes) one table. */
export function tableScript(family: Family, body: string): string {
  // "table X" first makes the delete valid when the table does not exist yet
  const lines = [`table ${family} ${TABLE}`, `delete table ${family} ${TABLE}`];
  // the hash lives in a tiny set's comment: reading it is cheap, comparing a rendered ruleset
  // with nft's own printing of it is not (nft rewrites what it is given)
  if (body)
    lines.push(
      `table ${family} ${TABLE} {`,
      `  set ${HASH_SET} {`,
      '    type ifname',
      `    comment "virtwire:${hashOf(body)}"`,
      '  }',
      body,
      '}',
    );
  return lines.join('\n') + '\n';
}

const HASH_SET = 'applied';

type NftElem = string | { concat: (string | number)[] };
interface NftItem {
  set?: { name: string; comment?: string; elem?: NftElem[] };
  map?: { name: string; elem?: [NftElem, Record<string, { target: string }>][] };
  rule?: unknown;
}

const elemText = (e: NftElem) => (typeof e === 'string' ? e : e.concat.join(' . '));

/** The live table as nft's JSON shows it (null when the table does not exist). */
export function parseTable(json: string): TableView {
  const items = (JSON.parse(json) as { nftables: NftItem[] }).nftables;
  const sets: Sets = {};
  let hash = '';
  for (const { set, map } of items) {
    // a verdict map's element as renderRuleset writes it: `key : jump chain`
    if (map)
      sets[map.name] = (map.elem ?? []).map(([k, v]) => {
        const [verdict, arg] = Object.entries(v)[0] ?? ['', { target: '' }];
        return `${elemText(k)} : ${verdict} ${arg.target}`;
      });
    if (!set) continue;
    if (set.name === HASH_SET) hash = /^virtwire:([0-9a-f]+)$/.exec(set.comment ?? '')?.[1] ?? '';
    // the kernel's own (flow limits): their elements are the traffic's, not virtwire's
    else if (!set.name.startsWith('dyn_')) sets[set.name] = (set.elem ?? []).map(elemText);
  }
  return { hash, rules: items.filter((x) => 'rule' in x).length, sets };
}

const sameSets = (a: Sets, b: Sets) => {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => {
    const x = [...a[k]!].sort();
    const y = [...(b[k] ?? [])].sort();
    return x.length === y.length && x.every((v, i) => v === y[i]);
  });
};

async function liveTable(
  runner: CommandRunner,
  family: Family,
): Promise<{ view: TableView; text: () => Promise<string> } | null> {
  const r = await runner.run(['nft', '-j', 'list', 'table', family, TABLE], {
    allowFailure: true,
    step: 'firewall: observe',
  });
  if (r.exitCode !== 0) return null;
  const text = async () =>
    (await runner.run(['nft', 'list', 'table', family, TABLE], { step: 'firewall: observe' })).stdout;
  return { view: parseTable(r.stdout), text };
}

const NFT = ['nft', '-f', '-'];

export const nftablesBackend: FirewallBackend = {
  kind: 'nftables',
  features: ['nftables', 'nftBridge'],
  ipv6PortFramesInIpHooks: false,
  async plan(runner: CommandRunner, state: HostState): Promise<FirewallPlan> {
    const want = renderRuleset(state);
    const scripts: string[] = [];
    const restores: Promise<string>[] = [];
    const changes: FirewallChange[] = [];
    let flush: string[] = [];
    const families = ['inet', 'bridge'] as const;
    // both tables read at once (each read is a process); planned in order
    const tables = await Promise.all(families.map((f) => liveTable(runner, f)));
    for (const [i, family] of families.entries()) {
      const body = want[family];
      const live = tables[i]!;
      if (family === 'inet') flush = sgFlush(live?.view.sets ?? {}, want.sets.inet);
      const same = body
        ? live !== null &&
          live.view.hash === hashOf(body) &&
          live.view.rules === want.rules[family] &&
          sameSets(want.sets[family], live.view.sets)
        : live === null;
      if (same) continue;
      scripts.push(tableScript(family, body));
      changes.push({ kind: 'firewall', table: `${family} ${TABLE}`, action: body ? 'replace' : 'remove' });
      // what rolls the change back: the table as it is now, read (as text) for both at once
      const current = live === null ? Promise.resolve('') : live.text();
      restores.push(current.then((text) => `table ${family} ${TABLE}\ndelete table ${family} ${TABLE}\n${text}\n`));
    }
    // both tables in one script: one process, and one transaction — the bridge's guards and the
    // inet rules change together or not at all
    const one = (parts: string[]): FirewallCommand[] => (parts.length ? [{ argv: NFT, input: parts.join('') }] : []);
    const restore = Promise.all(restores).then(one);
    restore.catch(() => {}); // raised where apply awaits it (a dry run never does)
    return { commands: one(scripts), changes, restore, flush };
  },
};

/**
 * Member ports whose policy is another chain now (or that just joined a group), and addresses
 * that left a peer group: what conntrack must forget for the new rules to hold for open flows.
 */
export function sgFlush(live: Sets, want: Sets): string[] {
  const out = new Set<string>();
  const split = (e: string) => e.split(' : ') as [string, string];
  for (const name of ['sg_in', 'sg_out', 'sg_in6', 'sg_out6']) {
    const before = new Map((live[name] ?? []).map(split));
    for (const [key, verdict] of (want[name] ?? []).map(split))
      if (before.get(key) !== verdict) out.add(key.split(' . ')[1]!);
  }
  for (const [name, addresses] of Object.entries(live)) {
    // a set no rule names any more: the policies that named it changed, their ports are above
    if (!/^sgm6?_/.test(name) || !(name in want)) continue;
    const kept = new Set(want[name] ?? []);
    for (const a of addresses) if (!kept.has(a)) out.add(a);
  }
  return [...out].sort();
}
