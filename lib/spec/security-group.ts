// Security groups: their own validation (names, rules, ports, peers, overlapping rules), and the
// checks that need the world around them — a NIC's groups exist and are its tenant's, a peer
// group exists in the same tenant — done by whoever has that world (spec file, state).
import type { ResolvedSecurityGroup, ResolvedSecurityRule } from '../../types/resolved.js';
import type { SecurityGroupSpec } from '../../types/spec.js';
import { checkKeys, checkName, checkSafeText, isRecord } from './checks.js';
import { formatIpv4, parseCidr } from './ipv4.js';
import { formatIpv6, parseCidr6 } from './ipv6.js';
import { Problems, at } from './problems.js';

const GROUP_KEYS = ['name', 'tenant', 'description', 'rules'] as const;
const RULE_KEYS = ['direction', 'protocol', 'ports', 'peer', 'ethertype', 'description'] as const;
const DIRECTIONS = ['ingress', 'egress'] as const;
const PROTOCOLS = ['tcp', 'udp', 'icmp', 'any'] as const;
/** rules per group: enough for any real policy, few enough to keep a typo from becoming a ruleset */
const MAX_RULES = 100;

export function resolveSecurityGroup(p: Problems, path: string, input: unknown): ResolvedSecurityGroup | undefined {
  if (!isRecord(input)) {
    p.add(path || '(root)', 'a security group must be an object with name, tenant and rules');
    return undefined;
  }
  const before = p.list.length;
  checkKeys(p, path, input, GROUP_KEYS);
  checkName(p, at(path, 'name'), input.name);
  checkName(p, at(path, 'tenant'), input.tenant);
  if (input.description !== undefined) checkSafeText(p, at(path, 'description'), input.description);
  const rules: ResolvedSecurityRule[] = [];
  if (!Array.isArray(input.rules)) p.add(at(path, 'rules'), 'must be a list of rules (may be empty)');
  else {
    if (input.rules.length > MAX_RULES) p.add(at(path, 'rules'), `${input.rules.length} rules; at most ${MAX_RULES}`);
    input.rules.forEach((r: unknown, i: number) => {
      const rule = resolveRule(p, at(at(path, 'rules'), i), r);
      if (rule) rules.push(rule);
    });
    rules.forEach((r, i) => {
      const j = rules.findIndex((o, k) => k < i && overlap(o, r));
      if (j >= 0)
        p.add(at(at(path, 'rules'), i), `overlaps rules[${j}] (same direction, protocol and peer, ports in common)`);
    });
  }
  if (p.list.length > before) return undefined;
  return {
    name: input.name as string,
    tenant: input.tenant as string,
    ...(input.description !== undefined ? { description: input.description as string } : {}),
    rules,
  };
}

/** A group on its own, or a SpecError naming every problem. */
export function validateSecurityGroup(spec: SecurityGroupSpec | unknown): ResolvedSecurityGroup {
  const p = new Problems();
  const group = resolveSecurityGroup(p, '', spec);
  p.throwIfAny('security group');
  return group!;
}

function resolveRule(p: Problems, path: string, input: unknown): ResolvedSecurityRule | undefined {
  if (!isRecord(input)) {
    p.add(path, 'a rule must be an object with direction, protocol and peer');
    return undefined;
  }
  const before = p.list.length;
  checkKeys(p, path, input, RULE_KEYS);
  const { direction, protocol } = input;
  if (!DIRECTIONS.includes(direction as never))
    p.add(at(path, 'direction'), `${JSON.stringify(direction ?? null)} is not one of ${DIRECTIONS.join(', ')}`);
  if (!PROTOCOLS.includes(protocol as never))
    p.add(at(path, 'protocol'), `${JSON.stringify(protocol ?? null)} is not one of ${PROTOCOLS.join(', ')}`);
  let ports: [number, number][] | undefined;
  if (input.ports !== undefined) {
    if (protocol !== 'tcp' && protocol !== 'udp')
      p.add(at(path, 'ports'), `ports apply to tcp and udp only, not ${String(protocol)}`);
    else ports = resolvePorts(p, at(path, 'ports'), input.ports);
  }
  const peer = resolvePeer(p, at(path, 'peer'), input.peer);
  const ethertype = resolveEthertype(p, path, input.ethertype, peer);
  if (input.description !== undefined) checkSafeText(p, at(path, 'description'), input.description);
  if (p.list.length > before || !peer) return undefined;
  return {
    direction: direction as ResolvedSecurityRule['direction'],
    protocol: protocol as ResolvedSecurityRule['protocol'],
    ...(ports ? { ports } : {}),
    peer,
    ...(ethertype ? { ethertype } : {}),
    ...(input.description !== undefined ? { description: input.description as string } : {}),
  };
}

/** 80, '8000-8100' or a list of both: sorted inclusive ranges. */
function resolvePorts(p: Problems, path: string, input: unknown): [number, number][] | undefined {
  const items = Array.isArray(input) ? input : [input];
  if (items.length === 0) {
    p.add(path, 'an empty list allows nothing: leave ports out for every port');
    return undefined;
  }
  const ranges: [number, number][] = [];
  items.forEach((item: unknown, i) => {
    const where = Array.isArray(input) ? at(path, i) : path;
    const m = typeof item === 'string' ? /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(item) : undefined;
    const [lo, hi] =
      typeof item === 'number' ? [item, item] : m ? [Number(m[1]), Number(m[2] ?? m[1])] : [Number.NaN, Number.NaN];
    if (!Number.isInteger(lo) || !Number.isInteger(hi)) {
      p.add(where, `${JSON.stringify(item)} is not a port (1-65535) or a range "from-to"`);
    } else if (lo < 1 || hi > 65535) p.add(where, `${JSON.stringify(item)} is out of range 1..65535`);
    else if (lo > hi) p.add(where, `range ${JSON.stringify(item)} ends before it begins`);
    else ranges.push([lo, hi]);
  });
  if (ranges.length !== items.length) return undefined;
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++)
    if (ranges[i]![0] <= ranges[i - 1]![1]) {
      p.add(path, `ports ${ranges[i - 1]!.join('-')} and ${ranges[i]!.join('-')} overlap`);
      return undefined;
    }
  return ranges;
}

function resolvePeer(p: Problems, path: string, input: unknown): ResolvedSecurityRule['peer'] | undefined {
  if (!isRecord(input)) {
    p.add(path, 'required: { cidr: … }, { group: … } or { any: true }');
    return undefined;
  }
  const keys = Object.keys(input);
  if (keys.length !== 1 || !['cidr', 'group', 'any'].includes(keys[0]!)) {
    p.add(path, `exactly one of cidr, group or any (got ${keys.join(', ') || 'none'})`);
    return undefined;
  }
  if ('any' in input) {
    if (input.any !== true) p.add(at(path, 'any'), 'must be true');
    return input.any === true ? { any: true } : undefined;
  }
  if ('group' in input) return checkName(p, at(path, 'group'), input.group) ? { group: input.group } : undefined;
  const text = typeof input.cidr === 'string' ? input.cidr : undefined;
  // either family: its canonical network/prefix, and whether host bits were set
  const c6 = text?.includes(':') ? parseCidr6(text) : undefined;
  const c4 = text !== undefined && !c6 ? parseCidr(text) : undefined;
  const c = c6
    ? { exact: c6.address === c6.network, canonical: `${formatIpv6(c6.network)}/${c6.prefix}` }
    : c4
      ? { exact: c4.address === c4.network, canonical: `${formatIpv4(c4.network)}/${c4.prefix}` }
      : undefined;
  if (!c) {
    p.add(
      at(path, 'cidr'),
      `${JSON.stringify(input.cidr ?? null)} is not an IPv4 or IPv6 CIDR (e.g. 10.0.0.7/32, fd00:10::/64)`,
    );
    return undefined;
  }
  if (!c.exact) {
    p.add(at(path, 'cidr'), `${text} has host bits set; did you mean ${c.canonical}?`);
    return undefined;
  }
  return { cidr: c.canonical };
}

/**
 * `ethertype`: ipv4 or ipv6, as given (absent: both; a CIDR peer's rule applies to its own family
 * whatever it says — the renderers ask ruleFamily — and naming the other one is a problem).
 */
function resolveEthertype(
  p: Problems,
  path: string,
  input: unknown,
  peer: ResolvedSecurityRule['peer'] | undefined,
): ResolvedSecurityRule['ethertype'] {
  const family = peer && 'cidr' in peer ? (peer.cidr.includes(':') ? 'ipv6' : 'ipv4') : undefined;
  if (input === undefined) return undefined;
  if (input !== 'ipv4' && input !== 'ipv6') {
    p.add(at(path, 'ethertype'), `${JSON.stringify(input)} is not ipv4 or ipv6`);
    return undefined;
  }
  if (family && input !== family)
    p.add(at(path, 'ethertype'), `${input}, but the peer ${(peer as { cidr: string }).cidr} is ${family}`);
  return input;
}

const peerKey = (peer: ResolvedSecurityRule['peer']) =>
  'cidr' in peer ? `cidr ${peer.cidr}` : 'group' in peer ? `group ${peer.group}` : 'any';

/** Two rules that allow some of the same traffic in the same way: one is redundant, or a mistake. */
function overlap(a: ResolvedSecurityRule, b: ResolvedSecurityRule): boolean {
  if (a.direction !== b.direction || a.protocol !== b.protocol || peerKey(a.peer) !== peerKey(b.peer)) return false;
  if (a.ethertype && b.ethertype && a.ethertype !== b.ethertype) return false;
  if (!a.ports || !b.ports) return true;
  return a.ports.some(([lo, hi]) => b.ports!.some(([x, y]) => lo <= y && x <= hi));
}

/**
 * The references between groups and NICs, in the world `groups` and `nics` describe: every peer
 * group exists in its group's tenant; every NIC's group exists and is its tenant's.
 */
export function checkSecurityReferences(
  p: Problems,
  groups: { group: ResolvedSecurityGroup; path: string }[],
  nics: { tenant: string; groups: string[]; path: string }[],
  /** groups that exist but are invalid (their own problems are reported): references to them are not */
  invalid: ReadonlySet<string> = new Set(),
): void {
  const byName = new Map(groups.map((g) => [g.group.name, g.group]));
  for (const { group, path } of groups) {
    group.rules.forEach((r, i) => {
      if (!('group' in r.peer) || invalid.has(r.peer.group)) return;
      const peer = byName.get(r.peer.group);
      const where = at(at(at(at(path, 'rules'), i), 'peer'), 'group');
      if (!peer) p.add(where, `no security group named ${r.peer.group}`);
      else if (peer.tenant !== group.tenant)
        p.add(where, `${peer.name} is a group of tenant ${peer.tenant}, not ${group.tenant}`);
    });
  }
  for (const nic of nics) {
    nic.groups.forEach((name, i) => {
      if (invalid.has(name)) return;
      const g = byName.get(name);
      const where = at(nic.path, i);
      if (!g) p.add(where, `no security group named ${name}`);
      else if (g.tenant !== nic.tenant) p.add(where, `${name} is a group of tenant ${g.tenant}, not ${nic.tenant}`);
    });
  }
}
