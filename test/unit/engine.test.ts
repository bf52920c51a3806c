// The engine's pure parts: allocation against existing VMs, the host state derived from records,
// the cloud-init seed files, and the state lock.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateVm } from '../../lib/spec/index.js';
import { allocate } from '../../lib/engine/allocate.js';
import { DirStateStore } from '../../lib/engine/state/dir-store.js';
import type { VmRecord } from '../../lib/engine/state/store.js';
import { hostStateFor } from '../../lib/engine/records-to-host.js';
import { seedFiles } from '../../lib/engine/seed.js';
import { FileLock } from '../../lib/host/index.js';

const withStateLock = <T>(dir: string, fn: () => Promise<T>, timeoutMs?: number) =>
  new DirStateStore(dir).withLock(fn, timeoutMs === undefined ? {} : { timeoutMs });
import { SpecError } from '../../lib/errors/index.js';
import type { VmSpec } from '../../types/spec.js';

const acme = { tenant: 'acme', cidr: '10.10.0.0/29' }; // .2 - .6 for guests
const vm = (name: string, nics: VmSpec['nics']) => validateVm({ name, boot: { kernel: '/boot/k' }, nics });
const record = (v: ReturnType<typeof vm>): VmRecord => ({ vm: v, accel: 'tcg', createdAt: 'now' });

describe('allocate', () => {
  test('hands out the first free address of the range, skipping pinned and taken ones', () => {
    const a = allocate(vm('a', [{ network: acme, ip: '10.10.0.3' }]), []);
    const b = allocate(vm('b', [{ network: acme }]), [record(a)]);
    const c = allocate(vm('c', [{ network: acme }]), [record(a), record(b)]);
    expect([a, b, c].map((v) => v.nics[0]!.ip)).toEqual(['10.10.0.3', '10.10.0.2', '10.10.0.4']);
  });

  test("a record's network with its keys in another order is the same network (no conflict)", () => {
    const a = allocate(vm('a', [{ network: acme }]), []);
    // as a record written by another version may hold it: the same values, keys reversed
    const net = a.nics[0]!.network;
    const reordered = Object.fromEntries(Object.entries(net).reverse()) as typeof net;
    const old = record({ ...a, nics: [{ ...a.nics[0]!, network: reordered }] });
    expect(JSON.stringify(reordered)).not.toBe(JSON.stringify(net));
    expect(allocate(vm('b', [{ network: acme }]), [old]).nics[0]!.ip).toBe('10.10.0.3');
  });

  test('every conflict with existing VMs is reported with its path', () => {
    const a = allocate(
      vm('a', [
        { network: acme, ip: '10.10.0.3', mac: '52:54:00:00:00:01' },
        { network: { tenant: 'ops', cidr: '10.9.0.0/24' } },
      ]),
      [],
    );
    const err = (() => {
      try {
        allocate(
          vm('a', [
            { network: acme, ip: '10.10.0.3', mac: '52:54:00:00:00:01' },
            { network: { tenant: 'ops', cidr: '10.8.0.0/24' } },
          ]),
          [record(a)],
        );
      } catch (e) {
        return e as SpecError;
      }
    })();
    expect(err).toBeInstanceOf(SpecError);
    expect(err!.problems.map((p) => p.path)).toEqual([
      'name',
      'nics[0].mac',
      'nics[0]',
      'nics[0].ip',
      'nics[1].network',
      'nics[1].mac',
      'nics[1]',
    ]);
  });

  test('a full range is a clear error', () => {
    const records = ['a', 'b', 'c', 'd', 'e'].reduce<VmRecord[]>(
      (acc, n) => [...acc, record(allocate(vm(n, [{ network: acme }]), acc))],
      [],
    );
    expect(() => allocate(vm('f', [{ network: acme }]), records)).toThrow(
      /no free address left in 10\.10\.0\.2-10\.10\.0\.6/,
    );
  });
});

describe('tenants with overlapping subnets', () => {
  const net = (tenant: string, extra: object = {}) => ({ tenant, cidr: '10.0.0.0/24', ...extra });
  const on = (v: ReturnType<typeof vm>, host?: string): VmRecord => ({ ...record(v), ...(host ? { host } : {}) });

  test('the tenant that arrives second on a host gets a namespace and a transit /30; the first is never rewired', () => {
    const a = allocate(vm('a', [{ network: net('acme'), ip: '10.0.0.5' }]), []);
    const b = allocate(vm('b', [{ network: net('globex'), ip: '10.0.0.5' }]), [on(a)]);
    const c = allocate(vm('c', [{ network: net('initech') }]), [on(a), on(b)]);
    expect([a, b, c].map((v) => v.nics[0]!.network.namespace)).toEqual([
      undefined,
      { transit: '100.64.0.0/30' },
      { transit: '100.64.0.4/30' },
    ]);
    // same addresses in both tenants: each tenant's own
    expect(b.nics[0]!.ip).toBe('10.0.0.5');
    // a tenant keeps its namespace, also once the tenant it overlapped is gone
    const b2 = allocate(vm('b2', [{ network: net('globex') }]), [on(b)]);
    expect(b2.nics[0]!.network.namespace).toEqual({ transit: '100.64.0.0/30' });
    // initech's only VM updated (allocated again, its record's network kept by the plan, the
    // others' records without it): it keeps its /30, though a lower one is free by now
    expect(allocate(c, [on(a)]).nics[0]!.network.namespace).toEqual({ transit: '100.64.0.4/30' });
    // ... unless another tenant took it meanwhile: then a free one, as for any new tenant
    const taken = allocate(vm('t', [{ network: net('umbrella') }]), [on(a)]);
    expect(taken.nics[0]!.network.namespace).toEqual({ transit: '100.64.0.0/30' });
    expect(allocate(b, [on(a), on(taken)]).nics[0]!.network.namespace).toEqual({ transit: '100.64.0.4/30' });
    // on another host, no overlap: plain
    const d = allocate(vm('d', [{ network: net('umbrella') }]), [on(a)], {}, 'h2');
    expect(d.nics[0]!.network.namespace).toBeUndefined();
  });

  test('a freed transit /30 is taken again; the pool can be set; exhaustion, host services and two plain tenants are refused with paths', () => {
    const a = allocate(vm('a', [{ network: net('acme') }]), []);
    // globex's VMs are gone: its /30 is free for the next tenant that needs one
    expect(allocate(vm('c', [{ network: net('initech') }]), [on(a)]).nics[0]!.network.namespace).toEqual({
      transit: '100.64.0.0/30',
    });
    const pool = { transit: '100.100.0.0/30' };
    const b = allocate(vm('b', [{ network: net('globex') }]), [on(a)], pool);
    expect(b.nics[0]!.network.namespace).toEqual({ transit: '100.100.0.0/30' });
    const refused = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as SpecError).problems.map((p) => `${p.path}: ${p.message}`);
      }
      return [];
    };
    expect(refused(() => allocate(vm('c', [{ network: net('initech') }]), [on(a), on(b)], pool))).toEqual([
      expect.stringMatching(/^nics\[0\]\.network\.cidr: .*transit pool 100\.100\.0\.0\/30 is exhausted/),
    ]);
    expect(
      refused(() =>
        allocate(vm('c', [{ network: net('initech', { hostServices: [{ port: 80, protocol: 'tcp' }] }) }]), [on(a)]),
      ),
    ).toEqual([expect.stringMatching(/^nics\[0\]\.network\.hostServices: tenant initech needs a namespace/)]);
    // umbrella is plain on h2; brought to a host where acme is plain, it cannot get a namespace any more
    const u = allocate(vm('u', [{ network: net('umbrella') }]), [on(a)], {}, 'h2');
    expect(refused(() => allocate(vm('u2', [{ network: net('umbrella') }]), [on(a), on(u, 'h2')]))).toEqual([
      expect.stringMatching(
        /^nics\[0\]\.network\.cidr: 10\.0\.0\.0\/24 of tenant umbrella overlaps .* acme on this host/,
      ),
    ]);
  });
});

describe('segment pools', () => {
  const vlanNet = (tenant: string, cidr: string, id?: number) => ({
    tenant,
    cidr,
    segment: { type: 'vlan' as const, uplink: 'eth1', ...(id ? { id } : {}) },
  });
  const idOf = (v: ReturnType<typeof vm>, i = 0) => v.nics[i]!.network.segment as { id?: number; vni?: number };

  test('a new tenant gets the lowest free id; its next VMs get the same; ids in use on any host are skipped', () => {
    const pools = { vlan: [10, 20] as [number, number] };
    const taken = allocate(vm('x', [{ network: vlanNet('ops', '10.7.0.0/24', 10) }]), [], pools);
    const a = allocate(
      vm('a', [{ network: vlanNet('acme', '10.1.0.0/24') }, { network: vlanNet('globex', '10.2.0.0/24') }]),
      [record(taken)],
      pools,
    );
    expect([idOf(a, 0).id, idOf(a, 1).id]).toEqual([11, 12]);
    const b = allocate(vm('b', [{ network: vlanNet('acme', '10.1.0.0/24') }]), [record(taken), record(a)], pools);
    expect(idOf(b).id).toBe(11);
    const v = allocate(
      vm('v', [{ network: { tenant: 'big', cidr: '10.3.0.0/24', segment: { type: 'vxlan', uplink: 'eth1' } } }]),
      [record(a)],
    );
    expect(idOf(v).vni).toBe(4096);
  });

  test('a given id that another tenant uses is refused with its path', () => {
    const a = allocate(vm('a', [{ network: vlanNet('acme', '10.1.0.0/24', 30) }]), []);
    expect(() => allocate(vm('b', [{ network: vlanNet('globex', '10.2.0.0/24', 30) }]), [record(a)])).toThrow(
      /nics\[0\]\.network\.segment\.id: VLAN 30 is used by tenant acme/,
    );
  });

  test('an exhausted VLAN pool points at VXLAN', () => {
    const pools = { vlan: [10, 11] as [number, number] };
    const records = ['a', 'b'].reduce<VmRecord[]>(
      (acc, t, i) => [...acc, record(allocate(vm(t, [{ network: vlanNet(t, `10.${i + 1}.0.0/24`) }]), acc, pools))],
      [],
    );
    const err = (() => {
      try {
        allocate(vm('c', [{ network: vlanNet('c', '10.9.0.0/24') }]), records, pools);
      } catch (e) {
        return e as SpecError;
      }
    })()!;
    expect(err).toBeInstanceOf(SpecError);
    expect(err.problems).toEqual([
      {
        path: 'nics[0].network.segment.id',
        message:
          'the VLAN pool 10-11 is exhausted: all 2 ids are in use; give this network a VXLAN segment (VNIs reach 16777215) to go beyond it',
      },
    ]);
  });
});

test('host state: one network per tenant, one tap port per NIC with its lease and QoS', () => {
  const a = allocate(
    vm('web', [{ network: acme, qos: { egressKbps: 100 } }, { network: { tenant: 'ops', cidr: '10.9.0.0/24' } }]),
    [],
  );
  const b = allocate(vm('db', [{ network: acme }]), [record(a)]);
  const state = hostStateFor([record(a), record(b)], { name: undefined }, []);
  expect(state.networks.map((n) => [n.network.tenant, n.ports.map((p) => p.hostname)])).toEqual([
    ['acme', ['web', 'db']],
    ['ops', ['web-nic1']],
  ]);
  expect(state.networks[0]!.ports[0]).toEqual({
    name: a.nics[0]!.tap,
    kind: 'tap',
    mac: a.nics[0]!.mac,
    ip: '10.10.0.2',
    hostname: 'web',
    qos: { egressKbps: 100 },
  });
});

test('seed files: user-data as given (or an empty cloud-config), meta-data as YAML', () => {
  const v = validateVm({
    name: 'ci',
    boot: { image: '/var/lib/libvirt/images/i.qcow2' },
    cloudInit: { metaData: { zone: 'a: b' } },
    nics: [{ network: acme }],
  });
  const files = seedFiles(v);
  expect(files['user-data']).toBe('#cloud-config\n{}\n');
  expect(files['meta-data']).toBe(`instance-id: ${v.uuid}\nlocal-hostname: ci\nzone: "a: b"\n`);
  // every NIC by its MAC, named eth<i>, DHCP
  expect(files['network-config']).toBe(
    `version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: ${v.nics[0]!.mac}\n    set-name: eth0\n    dhcp4: true\n`,
  );
});

describe('state lock', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'vwlock-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('holders never overlap', async () => {
    let inside = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 8 }, () =>
        withStateLock(dir, async () => {
          inside++;
          most = Math.max(most, inside);
          await new Promise((r) => setImmediate(r));
          inside--;
        }),
      ),
    );
    expect(most).toBe(1);
  });

  test('a lock left by a dead process is taken over', async () => {
    writeFileSync(join(dir, 'lock'), '999999999\n');
    await expect(withStateLock(dir, async () => 'got it', 2_000)).resolves.toBe('got it');
  });

  test('a lock held by a live process times out with LOCKED', async () => {
    // held for real: flock on another open file description (as another process would)
    const held = FileLock.tryAcquire(join(dir, 'lock'), 'virtwire apply -f other.yaml')!;
    try {
      await expect(withStateLock(dir, async () => 'never', 200)).rejects.toMatchObject({ code: 'LOCKED' });
    } finally {
      held.release();
    }
  });
});

describe('records', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'vwrec-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('written with their version; version-0 records are migrated; newer ones refused', async () => {
    const store = new DirStateStore(dir);
    const writeRecord = (_dir: string, r: VmRecord) => store.put(r);
    const readRecords = (_dir: string) => store.records();
    const { mkdirSync } = await import('node:fs');
    const a = allocate(vm('a', [{ network: acme }]), []);
    await writeRecord(dir, record(a));
    expect(readRecords(dir)).toEqual([{ ...record(a), version: 1 }]);
    mkdirSync(join(dir, 'vms', 'old'), { recursive: true });
    writeFileSync(
      join(dir, 'vms', 'old', 'vm.json'),
      JSON.stringify({ ...record(allocate(vm('old', [{ network: acme }]), [record(a)])) }),
    );
    expect(readRecords(dir).map((r) => [r.vm.name, r.version])).toEqual([
      ['a', 1],
      ['old', 1],
    ]);
    writeFileSync(join(dir, 'vms', 'old', 'vm.json'), JSON.stringify({ ...record(a), version: 99 }));
    expect(() => readRecords(dir)).toThrow(/written by a newer virtwire \(record version 99/);
  });
});

describe('cloud-init for real users', () => {
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl vw@test';
  const spec = (cloudInit: unknown) => ({
    name: 'ci',
    boot: { image: '/var/lib/libvirt/images/i.qcow2' },
    cloudInit,
    nics: [{ network: acme }, { network: { tenant: 'ops', cidr: '10.9.0.0/24' } }],
  });

  test('typed fields become #cloud-config (YAML by the yaml package); both NICs get DHCP by MAC', async () => {
    const { parse } = await import('yaml');
    const v = validateVm(
      spec({
        hostname: 'cloudy',
        users: [{ name: 'vw', sshAuthorizedKeys: [key], sudo: true }],
        writeFiles: [{ path: '/etc/motd', content: 'hello: "world"\n', permissions: '0644' }],
        runcmd: [['touch', '/tmp/x'], 'echo $HOME > /tmp/y'],
        packages: ['curl'],
      }),
    );
    const files = seedFiles(v);
    expect(files['user-data']!.startsWith('#cloud-config\n')).toBe(true);
    expect(parse(files['user-data']!)).toEqual({
      hostname: 'cloudy',
      users: [
        {
          name: 'vw',
          ssh_authorized_keys: [key],
          sudo: 'ALL=(ALL) NOPASSWD:ALL',
          shell: '/bin/bash',
          lock_passwd: true,
        },
      ],
      write_files: [{ path: '/etc/motd', content: 'hello: "world"\n', permissions: '0644' }],
      runcmd: [['touch', '/tmp/x'], 'echo $HOME > /tmp/y'],
      packages: ['curl'],
    });
    expect(parse(files['meta-data']!)).toMatchObject({ 'local-hostname': 'cloudy' });
    expect(parse(files['network-config']!)).toEqual({
      version: 2,
      ethernets: {
        eth0: { match: { macaddress: v.nics[0]!.mac }, 'set-name': 'eth0', dhcp4: true },
        eth1: { match: { macaddress: v.nics[1]!.mac }, 'set-name': 'eth1', dhcp4: true },
      },
    });
  });

  test("typed fields and the user's own user-data together: MIME multi-part, the user's script as given", () => {
    const files = seedFiles(validateVm(spec({ hostname: 'h', userData: '#!/bin/sh\necho hi\n' })));
    const ud = files['user-data']!;
    const boundary = /boundary="([^"]+)"/.exec(ud)![1]!;
    const parts = ud.split(`--${boundary}`);
    expect(parts).toHaveLength(4); // preamble, two parts, the closing "--"
    expect(parts[1]).toContain('Content-Type: text/cloud-config');
    expect(parts[1]).toContain('#cloud-config\nhostname: h');
    expect(parts[2]).toContain('Content-Type: text/x-shellscript');
    expect(parts[2]).toContain('\n\n#!/bin/sh\necho hi\n');
  });

  test('every problem with its path, nothing rendered', () => {
    const err = (() => {
      try {
        validateVm(
          spec({
            hostname: 'bad_host',
            users: [
              { name: 'Root!', sshAuthorizedKeys: ['not a key\nline2'], sudo: 'yes', hashedPassword: 'plain' },
              { name: 'ok' },
              { name: 'ok' },
            ],
            writeFiles: [{ path: 'rel/path', content: 1, permissions: '999' }],
            runcmd: [[], 3],
            packages: ['Bad Name'],
            colour: 'red',
          }),
        );
      } catch (e) {
        return e as SpecError;
      }
    })()!;
    expect(err.problems.map((p) => p.path)).toEqual([
      'cloudInit.colour',
      'cloudInit.hostname',
      'cloudInit.users[0].name',
      'cloudInit.users[0].sshAuthorizedKeys[0]',
      'cloudInit.users[0].sudo',
      'cloudInit.users[0].hashedPassword',
      'cloudInit.users[2].name',
      'cloudInit.writeFiles[0].path',
      'cloudInit.writeFiles[0].content',
      'cloudInit.writeFiles[0].permissions',
      'cloudInit.runcmd[0]',
      'cloudInit.runcmd[1]',
      'cloudInit.packages[0]',
    ]);
  });
});
