// Security groups without a kernel: validation collects every problem with its path, references
// are checked against the world, and both backends render a policy whose rule count does not grow
// with the members; a changed policy names exactly the ports whose flows must be cut.
import {
  Problems,
  validateNetwork,
  tapName,
  validateSecurityGroup,
  checkSecurityReferences,
} from '../../lib/spec/index.js';
import { renderRuleset } from '../../lib/host/firewall/nft.js';
import { sgFlush } from '../../lib/host/firewall/nft-table.js';
import { desiredTables } from '../../lib/host/firewall/iptables.js';
import { SpecError } from '../../lib/errors/index.js';
import type { HostPort, HostSecurityGroup, HostState } from '../../types/host.js';

function problemsOf(spec: unknown): string[] {
  try {
    validateSecurityGroup(spec);
  } catch (e) {
    if (e instanceof SpecError) return e.problems.map((p) => `${p.path}: ${p.message}`);
    throw e;
  }
  return [];
}

describe('validating a group', () => {
  test('ports become sorted ranges; a cidr peer is normalised', () => {
    const g = validateSecurityGroup({
      name: 'web',
      tenant: 'acme',
      rules: [
        { direction: 'ingress', protocol: 'tcp', ports: [443, '8000-8100', 80], peer: { cidr: '10.0.0.0/8' } },
        { direction: 'egress', protocol: 'any', peer: { any: true } },
      ],
    });
    expect(g.rules[0]).toEqual({
      direction: 'ingress',
      protocol: 'tcp',
      ports: [
        [80, 80],
        [443, 443],
        [8000, 8100],
      ],
      peer: { cidr: '10.0.0.0/8' },
    });
  });

  test('every problem at once, each with its path', () => {
    const problems = problemsOf({
      name: 'Web!',
      tenant: 'acme',
      rules: [
        { direction: 'inbound', protocol: 'tcp', ports: 70000, peer: { any: true } },
        { direction: 'ingress', protocol: 'icmp', ports: 22, peer: { any: true } },
        { direction: 'ingress', protocol: 'tcp', ports: ['90-80'], peer: { cidr: '10.0.0.7/24' } },
        { direction: 'ingress', protocol: 'udp', peer: { cidr: '10.0.0.0/24', group: 'app' } },
        { direction: 'ingress', protocol: 'tcp', ports: [[1, 2]], peer: {} },
      ],
    });
    expect(problems).toEqual([
      expect.stringMatching(/^name: /),
      expect.stringMatching(/^rules\[0\]\.direction: "inbound" is not one of ingress, egress/),
      'rules[0].ports: 70000 is out of range 1..65535',
      'rules[1].ports: ports apply to tcp and udp only, not icmp',
      'rules[2].ports[0]: range "90-80" ends before it begins',
      'rules[2].peer.cidr: 10.0.0.7/24 has host bits set; did you mean 10.0.0.0/24?',
      'rules[3].peer: exactly one of cidr, group or any (got cidr, group)',
      'rules[4].ports[0]: [1,2] is not a port (1-65535) or a range "from-to"',
      'rules[4].peer: exactly one of cidr, group or any (got none)',
    ]);
  });

  test('overlapping rules are refused; the same ports for another peer are not', () => {
    const rule = (ports: unknown, peer: unknown) => ({ direction: 'ingress', protocol: 'tcp', ports, peer });
    expect(
      problemsOf({
        name: 'web',
        tenant: 'acme',
        rules: [
          rule('80-90', { any: true }),
          rule(85, { any: true }),
          rule(85, { group: 'app' }),
          rule([1, 3, 2], { group: 'db' }),
        ],
      }),
    ).toEqual(['rules[1]: overlaps rules[0] (same direction, protocol and peer, ports in common)']);
  });

  test('references: a NIC names a group of its tenant; a peer group exists in the same tenant', () => {
    const g = (name: string, tenant: string, peer?: string) => ({
      group: validateSecurityGroup({
        name,
        tenant,
        rules: peer ? [{ direction: 'ingress', protocol: 'any', peer: { group: peer } }] : [],
      }),
      path: `securityGroups[${name}]`,
    });
    const p = new Problems();
    checkSecurityReferences(
      p,
      [g('web', 'acme', 'app'), g('app', 'acme'), g('db', 'acme', 'ghost'), g('theirs', 'globex', 'app')],
      [
        { tenant: 'acme', groups: ['web', 'nope'], path: 'vms[0].nics[0].securityGroups' },
        { tenant: 'acme', groups: ['theirs'], path: 'vms[1].nics[0].securityGroups' },
      ],
    );
    expect(p.list.map((x) => `${x.path}: ${x.message}`)).toEqual([
      'securityGroups[db].rules[0].peer.group: no security group named ghost',
      'securityGroups[theirs].rules[0].peer.group: app is a group of tenant acme, not globex',
      'vms[0].nics[0].securityGroups[1]: no security group named nope',
      'vms[1].nics[0].securityGroups[0]: theirs is a group of tenant globex, not acme',
    ]);
  });
});

describe('rendering a policy', () => {
  const net = validateNetwork({ tenant: 'acme', cidr: '10.30.0.0/16' });
  const web: HostSecurityGroup = {
    name: 'web',
    rules: [{ direction: 'ingress', protocol: 'tcp', ports: [[80, 80]], peer: { group: 'app', addresses: [] } }],
  };
  /** `n` web ports and `n` app ports; app's members are web's peers */
  function state(n: number, webRules = web.rules): HostState {
    const port = (role: string, i: number): HostPort => ({
      name: tapName(`${role}${i}`, 0),
      kind: 'tap',
      mac: `52:54:00:30:${role === 'web' ? '01' : '02'}:${(i % 256).toString(16).padStart(2, '0')}`,
      ip: `10.30.${role === 'web' ? 1 : 2}.${i + 1}`,
      securityGroups: [role],
    });
    const apps = Array.from({ length: n }, (_, i) => port('app', i));
    const peer = { group: 'app', addresses: apps.map((p) => p.ip!) };
    return {
      networks: [
        {
          network: net,
          securityGroups: [
            { name: 'web', rules: webRules.map((r) => ('group' in r.peer ? { ...r, peer } : r)) },
            { name: 'app', rules: [] },
          ],
          ports: [...Array.from({ length: n }, (_, i) => port('web', i)), ...apps],
        },
      ],
    };
  }

  test('nftables: rules grow with the groups, never with the members (they are set elements)', () => {
    const small = renderRuleset(state(2));
    const big = renderRuleset(state(200));
    expect(big.rules.inet).toBe(small.rules.inet);
    const maps = big.sets.inet;
    expect(maps.sg_in).toHaveLength(400); // every member port dispatches to its policy
    expect(new Set(maps.sg_in!.map((e) => e.split(' : ')[1])).size).toBe(2); // two policies: web's, app's
    const members = Object.entries(maps).find(([k]) => k.startsWith('sgm_'))!;
    expect(members[1]).toHaveLength(200);
    // the policy chains: replies first, then the rule against the peer set, then drop
    const webChain = big.inet.split('  chain ').find((c) => c.includes('tcp dport { 80 }'))!;
    expect(webChain).toMatch(
      /ct state established,related return[\s\S]*ip saddr @sgm_[0-9a-f]+ tcp dport \{ 80 \} return[\s\S]*drop/,
    );
  });

  test('iptables: one dispatch rule per member port, the policy chains shared', () => {
    const chains = (n: number) => desiredTables(state(n))[0]!.chains;
    const dispatch = (n: number) => chains(n).find((c) => c.name.startsWith('VWG-'))!.rules;
    expect(dispatch(3)).toHaveLength(6); // 6 ports' ingress; no group has egress rules: egress open
    const policies = chains(3).filter((c) => c.name.startsWith('VWC-'));
    expect(policies).toHaveLength(2);
    const webPolicy = policies.find((c) => c.rules.some((r) => r.includes('--dports 80')))!;
    expect(webPolicy.rules[0]).toBe('-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN');
    expect(webPolicy.rules.at(-1)).toBe('-j DROP');
    // a group peer is its members' addresses (iptables has no sets here): one rule each
    expect(webPolicy.rules.filter((r) => r.includes('--dports 80'))).toHaveLength(3);
  });

  test('a changed rule moves its ports to a new policy: exactly their flows are cut', () => {
    const before = renderRuleset(state(3)).sets.inet;
    const after = renderRuleset(
      state(3, [{ direction: 'ingress', protocol: 'tcp', ports: [[81, 81]], peer: { cidr: '10.30.2.0/24' } }]),
    ).sets.inet;
    expect(sgFlush(before, after)).toEqual(['10.30.1.1', '10.30.1.2', '10.30.1.3']);
    expect(sgFlush(before, before)).toEqual([]);
  });

  test('an address that leaves a peer group has its flows cut; the policies stay', () => {
    const three = renderRuleset(state(3)).sets.inet;
    const s = state(3);
    const webGroup = s.networks[0]!.securityGroups![0]!;
    const rule = webGroup.rules[0]!;
    webGroup.rules = [{ ...rule, peer: { group: 'app', addresses: ['10.30.2.1', '10.30.2.2'] } }];
    expect(sgFlush(three, renderRuleset(s).sets.inet)).toEqual(['10.30.2.3']);
  });
});
