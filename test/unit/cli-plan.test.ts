// The CLI's spec file and planner on fixtures: no host, no libvirt.
import { parseSpecText, formatSpecText } from '../../lib/engine/spec-file.js';
import { planChanges, formatPlan, type Observed } from '../../lib/engine/plan.js';
import { allocate } from '../../lib/engine/allocate.js';
import type { VmRecord } from '../../lib/engine/state/store.js';
import { SpecError } from '../../lib/errors/index.js';

const yaml = (extra = '') => `
networks:
  - tenant: acme
    cidr: 10.10.0.0/24
  - tenant: globex
    cidr: 10.20.0.0/24
vms:
  - name: web
    boot: { kernel: /k }
    nics:
      - network: acme
  - name: db
    memoryMiB: 512
    boot: { kernel: /k }
    nics:
      - network: globex
        qos: { egressKbps: 1000 }
${extra}`;

const noHost = { changes: [], ip: [], bridge: [], sysctl: [], firewall: [], tc: [], conntrack: [], namespaces: [] };
const running = (...names: string[]): Observed => ({
  domains: new Map(names.map((n) => [n, 'running'])),
  host: noHost,
});

function applied(text: string): VmRecord[] {
  const records: VmRecord[] = [];
  for (const vm of parseSpecText(text).vms) records.push({ vm: allocate(vm, records), accel: 'tcg', createdAt: 'now' });
  return records;
}

describe('spec file', () => {
  test('NICs name their network by tenant', () => {
    const spec = parseSpecText(yaml());
    expect(spec.vms.map((v) => [v.name, v.nics[0]!.network.cidr])).toEqual([
      ['web', '10.10.0.0/24'],
      ['db', '10.20.0.0/24'],
    ]);
  });

  test('overlapping tenants are explained: which gets a namespace, and why', () => {
    const spec = parseSpecText(
      'networks:\n  - {tenant: a, cidr: 10.1.0.0/24}\n  - {tenant: b, cidr: 10.1.0.0/25}\n  - {tenant: c, cidr: 10.2.0.0/24}\n',
    );
    expect(spec.overlaps).toHaveLength(1);
    expect(spec.overlaps![0]).toMatch(
      /^tenants a \(10\.1\.0\.0\/24\) and b \(10\.1\.0\.0\/25\) overlap: .*namespace of its own/,
    );
    expect(parseSpecText(yaml()).overlaps).toBeUndefined();
  });

  test('plan says which new tenant gets a namespace, and why', () => {
    const text =
      'networks:\n  - {tenant: a, cidr: 10.1.0.0/24}\n  - {tenant: b, cidr: 10.1.0.0/24}\n' +
      'vms:\n  - {name: x, boot: {kernel: /k}, nics: [{network: a}]}\n  - {name: y, boot: {kernel: /k}, nics: [{network: b}]}\n';
    const p = planChanges(parseSpecText(text), [], running());
    const nets = p.changes.filter((c) => c.kind === 'network');
    expect(nets.map((c) => [c.name, c.reason])).toEqual([
      ['a', undefined],
      [
        'b',
        "gets a network namespace of its own for its gateway, DHCP/DNS and NAT (transit 100.64.0.0/30): 10.1.0.0/24 overlaps tenant a's 10.1.0.0/24 on this host",
      ],
    ]);
    expect(formatPlan(p)).toContain('+ network b — create: gets a network namespace of its own');
  });

  test('every problem at once, each with its line', () => {
    const text = [
      'networks:',
      '  - tenant: a',
      '    cidr: 10.1.0.0/24',
      '  - tenant: b',
      '    cidr: 10.1.0.0/25',
      'vms:',
      '  - name: x',
      '    colour: red',
      '    boot: {kernel: /k}',
      '    nics: [{network: a}]',
      '  - name: x',
      '    boot: {kernel: /k}',
      '    nics: [{network: zz}]',
      '',
    ].join('\n');
    const err = (() => {
      try {
        parseSpecText(text, 'f.yaml');
      } catch (e) {
        return e as SpecError;
      }
    })()!;
    expect(err).toBeInstanceOf(SpecError);
    // the overlapping subnets are no problem: explained (below), not refused
    expect(err.problems.map((p) => `${p.line} ${p.path}`)).toEqual([
      '8 vms[0].colour',
      '11 vms[1].name',
      '13 vms[1].nics[0].network',
    ]);
    expect(err.message).toContain('f.yaml:11: vms[1].name: VM x is defined twice');
  });

  test('YAML syntax errors name their line', () => {
    expect(() => parseSpecText('vms:\n  - name: [\n', 'f.yaml')).toThrow(/f\.yaml:\d+: \(syntax\)/);
  });
});

describe('spec file pools', () => {
  const pooled = (pools: string) =>
    [
      'pools:',
      pools,
      'networks:',
      '  - tenant: acme',
      '    cidr: 10.1.0.0/24',
      '    segment: { type: vlan, uplink: eth1 }',
      'vms:',
      '  - name: web',
      '    boot: { kernel: /k }',
      '    nics: [{ network: acme }]',
      '',
    ].join('\n');

  test('bad pools are named with their lines', () => {
    const err = (() => {
      try {
        parseSpecText(pooled('  vlan: [100, 5000]\n  vni: [9, 3]\n  colour: red'), 'f.yaml');
      } catch (e) {
        return e as SpecError;
      }
    })()!;
    expect(err.problems.map((p) => `${p.line} ${p.path}`)).toEqual([
      '4 pools.colour',
      '2 pools.vlan[1]',
      '3 pools.vni',
    ]);
  });

  test('an omitted VLAN id is allocated from the pool once, then kept: no change on the next plan', () => {
    const text = pooled('  vlan: [100, 199]');
    const first = planChanges(parseSpecText(text), [], running());
    const web = first.changes.find((c) => c.name === 'web')!.vm!;
    expect(web.nics[0]!.network.segment).toEqual({ type: 'vlan', id: 100, uplink: 'eth1' });
    const records: VmRecord[] = [{ vm: web, accel: 'tcg', createdAt: 'now' }];
    expect(planChanges(parseSpecText(text), records, running('web')).changes).toEqual([]);
    // a given id that differs from the allocated one is a change (it replaces the VM)
    const moved = planChanges(
      parseSpecText(text.replace('type: vlan, uplink: eth1', 'type: vlan, id: 150, uplink: eth1')),
      records,
      running('web'),
    );
    expect(moved.changes.map((c) => `${c.action} ${c.name}`)).toEqual(['replace web']);
  });
});

describe('plan', () => {
  test('from nothing: every VM and network to create', () => {
    const plan = planChanges(parseSpecText(yaml()), [], running());
    expect(plan.changes.map((c) => `${c.action} ${c.kind} ${c.name}`)).toEqual([
      'create vm web',
      'create vm db',
      'create network acme',
      'create network globex',
    ]);
    expect(formatPlan(plan)).toContain('+ vm web (acme 10.10.0.2) — create');
  });

  test('applied and unchanged: no changes', () => {
    expect(planChanges(parseSpecText(yaml()), applied(yaml()), running('web', 'db')).changes).toEqual([]);
  });

  test('a QoS change updates in place; a memory change forces replacement; a removed VM takes its network', () => {
    const records = applied(yaml());
    const edited = yaml()
      .replace('egressKbps: 1000', 'egressKbps: 2000')
      .replace(/ {2}- name: web[\s\S]*?network: acme\n/, '');
    const plan = planChanges(parseSpecText(edited), records, running('web', 'db'));
    expect(plan.changes.map((c) => `${c.action} ${c.kind} ${c.name}`)).toEqual([
      'update vm db',
      'delete vm web',
      'delete network acme',
    ]);
    expect(plan.changes[0]!.attributes).toEqual([{ name: 'nics[0].qos.egressKbps', from: 1000, to: 2000 }]);
    const bigger = planChanges(
      parseSpecText(yaml().replace('memoryMiB: 512', 'memoryMiB: 1024')),
      records,
      running('web', 'db'),
    );
    expect(bigger.changes).toMatchObject([
      { action: 'replace', name: 'db', attributes: [{ name: 'memoryMiB', from: 512, to: 1024 }] },
    ]);
  });

  test("a NIC's forwards and floating IP change in place; two VMs taking one host port are refused with both", () => {
    const records = applied(yaml());
    const text = yaml().replace(
      '      - network: acme\n',
      '      - network: acme\n        forwards: [{ hostPort: 8080, port: 80 }]\n        floatingIp: 192.0.2.50\n',
    );
    const plan = planChanges(parseSpecText(text), records, running('web', 'db'));
    expect(plan.changes.map((c) => `${c.action} ${c.kind} ${c.name}`)).toEqual(['update vm web']);
    expect(plan.changes[0]!.attributes.map((a) => a.name).sort()).toEqual([
      'nics[0].floatingIp',
      'nics[0].forwards[0].hostPort',
      'nics[0].forwards[0].port',
      'nics[0].forwards[0].protocol',
    ]);
    // db (a new VM in the same file, on the same host) cannot take web's port
    const clash = text.replace(
      '        qos: { egressKbps: 1000 }\n',
      '        qos: { egressKbps: 1000 }\n        forwards: [{ hostPort: 8080, port: 8080 }]\n',
    );
    expect(() => planChanges(parseSpecText(clash), [], running())).toThrow(
      /nics\[0\]\.forwards\[0\]: \*:8080\/tcp on this host is already forwarded by VM web nics\[0\]\.forwards\[0\]/,
    );
  });

  test('allocated addresses stay with their VMs; a new VM gets the next free one', () => {
    const records = applied(yaml());
    const plan = planChanges(
      parseSpecText(yaml('  - name: api\n    boot: { kernel: /k }\n    nics: [{ network: acme }]\n')),
      records,
      running('web', 'db'),
    );
    expect(plan.changes.map((c) => [c.action, c.name, c.vm?.nics[0]!.ip])).toEqual([['create', 'api', '10.10.0.3']]);
  });

  test('drift: a missing or stopped domain and host differences are repairs', () => {
    const records = applied(yaml());
    const web = records[0]!.vm.nics[0]!;
    const observed: Observed = {
      domains: new Map([['db', 'shutoff']]),
      host: {
        ...noHost,
        ip: [`tuntap add dev ${web.tap} mode tap`],
        changes: [
          { kind: 'link', action: 'create', device: web.tap, linkKind: 'tap', tenant: 'acme' },
          { kind: 'dnsmasq', tenant: 'globex', action: 'start' },
        ],
      },
    };
    const plan = planChanges(parseSpecText(yaml()), records, observed);
    expect(plan.changes.map((c) => `${c.action} ${c.kind} ${c.name}: ${c.reason}`)).toEqual([
      'repair vm web: domain missing in libvirt',
      'repair vm db: domain is shutoff, not running',
      'repair network acme: devices missing',
      'repair network globex: dnsmasq not running',
    ]);
  });

  test('-target: the VM and its network only, with the warning; a network target takes its changes alone', () => {
    const plan = planChanges(parseSpecText(yaml()), [], running(), { targets: ['web'] });
    expect(plan.changes.map((c) => `${c.action} ${c.kind} ${c.name}`)).toEqual([
      'create vm web',
      'create network acme',
    ]);
    expect(plan.summary.create).toBe(2);
    expect(plan.warnings?.[0]).toMatch(/^Resource targeting is in effect/);
    const net = planChanges(parseSpecText(yaml()), [], running(), { targets: ['globex'] });
    expect(net.changes.map((c) => `${c.kind} ${c.name}`)).toEqual(['network globex']);
  });

  test('-replace: an unchanged VM, or one with in-place changes, is replaced; a domain unknown to the state too', () => {
    const records = applied(yaml());
    const same = planChanges(parseSpecText(yaml()), records, running('web', 'db'), { replace: ['web'] });
    expect(same.changes).toMatchObject([
      { action: 'replace', name: 'web', reason: 'replacement requested (-replace)' },
    ]);
    const qos = planChanges(parseSpecText(yaml().replace('1000', '2000')), records, running('web', 'db'), {
      replace: ['db'],
    });
    expect(qos.changes).toMatchObject([
      { action: 'replace', name: 'db', attributes: [{ name: 'nics[0].qos.egressKbps' }] },
    ]);
    // `state rm web`: its domain is still there
    const orphan = planChanges(parseSpecText(yaml()), records.slice(1), running('web', 'db'));
    expect(orphan.changes).toMatchObject([
      { action: 'replace', name: 'web', reason: expect.stringMatching(/not in the state/) },
      { action: 'create', kind: 'network', name: 'acme' },
    ]);
  });
});

describe('security groups in the spec file', () => {
  const groups = (peer = 'group: app') => `
securityGroups:
  - name: app
    tenant: acme
    rules: []
  - name: web
    tenant: acme
    rules:
      - { direction: ingress, protocol: tcp, ports: [80, "8000-8100"], peer: { ${peer} } }
`;
  const withGroups = (peer?: string) =>
    yaml(groups(peer)).replace('      - network: acme\n', '      - network: acme\n        securityGroups: [web]\n');

  test('groups are planned before the VMs that join them; a changed rule is an update in place', () => {
    const plan = planChanges(parseSpecText(withGroups()), [], running());
    expect(plan.changes.map((c) => `${c.action} ${c.kind} ${c.name}`).slice(0, 3)).toEqual([
      'create securityGroup app',
      'create securityGroup web',
      'create vm web',
    ]);
    const records = applied(withGroups());
    const have = parseSpecText(withGroups()).securityGroups!;
    expect(planChanges(parseSpecText(withGroups()), records, running('web', 'db'), {}, have).changes).toEqual([]);
    const changed = planChanges(
      parseSpecText(withGroups('cidr: 10.10.0.0/24')),
      records,
      running('web', 'db'),
      {},
      have,
    );
    expect(changed.changes.map((c) => `${c.action} ${c.kind} ${c.name}`)).toEqual(['update securityGroup web']);
    expect(formatPlan(changed)).toContain('~ securityGroup web — update in place');
  });

  test('a NIC joining a group is a live update of its VM', () => {
    const plan = planChanges(
      parseSpecText(withGroups()),
      applied(yaml(groups())),
      running('web', 'db'),
      {},
      parseSpecText(withGroups()).securityGroups,
    );
    expect(plan.changes).toMatchObject([
      { action: 'update', kind: 'vm', name: 'web', attributes: [{ name: 'nics[0].securityGroups[0]', to: 'web' }] },
    ]);
  });

  test('unknown groups, another tenant’s, bad rules: every problem with its line', () => {
    const text = withGroups('group: ghost')
      .replace('securityGroups: [web]', 'securityGroups: [web, nope]')
      .replace('ports: [80, "8000-8100"]', 'ports: [80, 70000]');
    let err: unknown;
    try {
      parseSpecText(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SpecError);
    const problems = (err as SpecError).problems.map((p) => `${p.line}: ${p.path}: ${p.message}`);
    expect(problems).toEqual([
      expect.stringMatching(/^\d+: securityGroups\[1\]\.rules\[0\]\.ports\[1\]: 70000 is out of range/),
      expect.stringMatching(/^\d+: vms\[0\]\.nics\[0\]\.securityGroups\[1\]: no security group named nope/),
    ]);
  });
});

describe('state mv', () => {
  test('a renamed VM keeps its UUID and MACs where the spec leaves them to their defaults: no changes', () => {
    const records = applied(yaml());
    const moved = records.map((r) => (r.vm.name === 'web' ? { ...r, vm: { ...r.vm, name: 'www' } } : r));
    const spec = parseSpecText(yaml().replace('name: web', 'name: www'));
    expect(planChanges(spec, moved, running('www', 'db')).changes).toEqual([]);
    // a MAC the spec does set is the spec's: a change that replaces the VM
    const pinned = parseSpecText(
      yaml()
        .replace('name: web', 'name: www')
        .replace('- network: acme', '- network: acme\n        mac: 52:54:00:00:00:01'),
    );
    expect(planChanges(pinned, moved, running('www', 'db')).changes).toMatchObject([
      { action: 'replace', name: 'www', attributes: [{ name: 'nics[0].mac', to: '52:54:00:00:00:01' }] },
    ]);
  });
});

describe('fmt', () => {
  test('canonical form: indents and spacing normalised, comments and order kept, idempotent', () => {
    const messy = 'vms:\n-   name: x  # first\n    boot: {kernel: /k}\nnetworks: []\n';
    const once = formatSpecText(messy);
    expect(once).toBe('vms:\n  - name: x # first\n    boot: { kernel: /k }\nnetworks: []\n');
    expect(formatSpecText(once)).toBe(once);
    expect(() => formatSpecText('vms: [\n', 'f.yaml')).toThrow(/f\.yaml:2: \(syntax\)/);
  });
});

describe('secrets never printed', () => {
  test('a changed user-data is a replacement shown as (sensitive value); the JSON plan carries no secret', async () => {
    const { redactPlan } = await import('../../lib/engine/plan.js');
    const canary = 'CANARY-7f3a9c';
    const withData = (data: string) =>
      yaml().replace(
        '  - name: web\n    boot: { kernel: /k }',
        `  - name: web\n    boot: { kernel: /k }\n    cloudInit: { userData: "#cloud-config\\npassword: ${data}" }`,
      );
    const records = applied(withData(`${canary}-old`));
    const plan = planChanges(parseSpecText(withData(canary)), records, running('web', 'db'));
    expect(plan.changes.map((c) => [c.action, c.name])).toEqual([['replace', 'web']]);
    expect(plan.changes[0]!.attributes).toEqual([
      { name: 'cloudInit.userData', from: '(sensitive value)', to: '(sensitive value)' },
    ]);
    expect(formatPlan(plan)).not.toContain(canary);
    expect(JSON.stringify(redactPlan(plan))).not.toContain(canary);
    // the plan itself keeps it: applying it must create the VM with its user-data
    expect(plan.changes[0]!.vm!.cloudInit!.userData).toContain(canary);
  });

  test('runcmd, network-config, meta-data and a kernel command line are secrets too', async () => {
    const { redactPlan } = await import('../../lib/engine/plan.js');
    const canary = 'CANARY-8e2b1d';
    const withData = (data: string) =>
      yaml().replace(
        '  - name: web\n    boot: { kernel: /k }',
        [
          '  - name: web',
          `    boot: { kernel: /k, cmdline: "console=ttyS0 token=${data}" }`,
          '    cloudInit:',
          `      runcmd: ["echo ${data}", [curl, "https://x/${data}"]]`,
          `      networkConfig: "version: 2 # ${data}"`,
          `      metaData: { token: ${data} }`,
        ].join('\n'),
      );
    const records = applied(withData(`${canary}-old`));
    const plan = planChanges(parseSpecText(withData(canary)), records, running('web', 'db'));
    expect(plan.changes[0]!.attributes!.map((a) => a.name).sort()).toEqual([
      'boot.cmdline',
      'cloudInit.metaData.token',
      'cloudInit.networkConfig',
      'cloudInit.runcmd[0]',
      'cloudInit.runcmd[1][1]',
    ]);
    expect(
      plan.changes[0]!.attributes!.every((a) => a.from === '(sensitive value)' && a.to === '(sensitive value)'),
    ).toBe(true);
    expect(formatPlan(plan)).not.toContain(canary);
    expect(JSON.stringify(redactPlan(plan))).not.toContain(canary);
  });
});
