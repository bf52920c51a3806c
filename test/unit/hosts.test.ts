// Placement and host lists, without contacting anything: libvirt connections are stand-ins that
// report free memory (or fail to connect).
import { validateHosts, validateVm } from '../../lib/spec/index.js';
import { placeVm, HostResolver, libvirtUriFor } from '../../lib/engine/hosts.js';
import { hostStateFor } from '../../lib/engine/records-to-host.js';
import { SpecError, isVirtwireError } from '../../lib/errors/index.js';
import { LocalFiles, RunnerFiles, SshRunner } from '../../lib/host/index.js';
import type { Libvirt } from '../../lib/libvirt/index.js';
import type { HostTarget } from '../../types/vm.js';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine } from '../../lib/engine/container.js';
import { DirStateStore } from '../../lib/engine/state/dir-store.js';
import { RecordingRunner } from '../helpers/recording-runner.js';

const vm = (extra: Record<string, unknown> = {}) =>
  validateVm({
    name: 'web',
    memoryMiB: 1024,
    boot: { kernel: '/k' },
    nics: [{ network: { tenant: 'acme', cidr: '10.1.0.0/24' } }],
    ...extra,
  });
const hosts: HostTarget[] = [
  { name: 'hv1', uri: 'test:///hv1' },
  { name: 'hv2', uri: 'qemu+ssh://root@hv2/system', ssh: { destination: 'root@hv2' } },
  { name: 'hv3', uri: 'test:///hv3' },
];
const GiB = 1024 ** 3;

function connections(free: Record<string, number | Error>) {
  const closed: string[] = [];
  const connect = async (uri: string) => {
    const v = free[uri];
    if (v instanceof Error) throw v;
    return { freeMemory: async () => v, close: async () => void closed.push(uri) } as unknown as Libvirt;
  };
  return { connect, closed };
}

describe('placement', () => {
  test('the host the spec names; an unknown one is bad input with its path', async () => {
    const { connect } = connections({});
    expect((await placeVm(vm({ host: 'hv3' }), hosts, connect))!.name).toBe('hv3');
    const err = await placeVm(vm({ host: 'hv9' }), hosts, connect).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    expect((err as SpecError).problems).toEqual([{ path: 'host', message: 'host hv9 is not one of hv1, hv2, hv3' }]);
    await expect(placeVm(vm({ host: 'hv1' }), [], connect)).rejects.toThrow(
      /host hv1 is not known: no hosts were given/,
    );
  });

  test('else the most free memory that fits; unreachable hosts are passed over; every connection is closed', async () => {
    const { connect, closed } = connections({
      'test:///hv1': 2 * GiB,
      'qemu+ssh://root@hv2/system': new Error('ssh: connect refused'),
      'test:///hv3': 6 * GiB,
    });
    expect((await placeVm(vm(), hosts, connect))!.name).toBe('hv3');
    expect(closed.sort()).toEqual(['test:///hv1', 'test:///hv3']);
    const small = connections({
      'test:///hv1': 2 * GiB,
      'qemu+ssh://root@hv2/system': 3 * GiB,
      'test:///hv3': 512 * 1024 ** 2,
    });
    expect((await placeVm(vm({ memoryMiB: 2560 }), hosts, small.connect))!.name).toBe('hv2');
  });

  test("placement opens a host's libvirt as every other call does: over libssh, with virtwire's known_hosts", async () => {
    const resolver = new HostResolver(createEngine().deps, { uri: 'qemu:///system', stateDir: '/srv/vw', hosts });
    const libssh = 'qemu+libssh://root@hv2/system?known_hosts=%2Fsrv%2Fvw%2Fknown_hosts&known_hosts_verify=normal';
    const { connect } = connections({ 'test:///hv1': 2 * GiB, [libssh]: 3 * GiB, 'test:///hv3': 512 * 1024 ** 2 });
    expect((await placeVm(vm({ memoryMiB: 2560 }), hosts, connect, (h) => resolver.uriOf(h)))!.name).toBe('hv2');
  });

  test('no host fits: NO_HOST naming what each host had', async () => {
    const { connect } = connections({
      'test:///hv1': 256 * 1024 ** 2,
      'qemu+ssh://root@hv2/system': new Error('refused'),
      'test:///hv3': 512 * 1024 ** 2,
    });
    const err = await placeVm(vm(), hosts, connect).catch((e: unknown) => e);
    expect(isVirtwireError(err, 'NO_HOST')).toBe(true);
    expect((err as Error).message).toBe(
      'no host can take VM web (1024 MiB): hv1: 256 MiB free; hv2: unreachable (refused); hv3: 512 MiB free',
    );
  });

  test('no hosts: this machine', async () => {
    expect(await placeVm(vm(), [], connections({}).connect)).toBeUndefined();
  });
});

describe('host lists', () => {
  test('every problem with its path', () => {
    const err = (() => {
      try {
        validateHosts([
          { name: 'hv1', uri: 'test:///x' },
          { name: 'hv1', uri: 'nope', ssh: { destination: '-oProxyCommand=x' } },
          { name: 'Bad', uri: 'qemu:///system', stateDir: 'rel', colour: 1 },
        ]);
      } catch (e) {
        return e as SpecError;
      }
    })()!;
    expect(err.problems.map((p) => p.path)).toEqual([
      'hosts[1].name',
      'hosts[1].uri',
      'hosts[1].ssh.destination',
      'hosts[2].colour',
      'hosts[2].name',
      'hosts[2].stateDir',
    ]);
  });

  test('a host with ssh is worked on through SSH: its runner, its files, its state dir', () => {
    const resolver = new HostResolver(createEngine().deps, { uri: 'qemu:///system', stateDir: '/srv/vw', hosts: [] });
    const remote = resolver.context(hosts[1]);
    expect(remote.runner).toBeInstanceOf(SshRunner);
    expect(remote.plane.files).toBeInstanceOf(RunnerFiles);
    expect([remote.name, remote.uri, remote.stateDir, remote.remote]).toEqual([
      'hv2',
      // libvirt's connection checks host keys against the same file as the host's commands
      'qemu+libssh://root@hv2/system?known_hosts=%2Fsrv%2Fvw%2Fknown_hosts&known_hosts_verify=normal',
      '/var/lib/virtwire',
      true,
    ]);
    const here = resolver.context(hosts[0]);
    expect(here.plane.files).toBeInstanceOf(LocalFiles);
    expect([here.stateDir, here.remote]).toEqual(['/srv/vw', false]);
  });
});

describe('what a spec may ask of SSH and libvirt', () => {
  const problems = (hosts: unknown) => {
    try {
      validateHosts(hosts);
      return {};
    } catch (e) {
      return Object.fromEntries((e as SpecError).problems.map((p) => [p.path, p.message]));
    }
  };

  test('only safe libvirt transports, with only their own parameters', () => {
    const uri = (u: string) => problems([{ name: 'h', uri: u }])['hosts[0].uri'];
    for (const ok of [
      'qemu:///system',
      'qemu+ssh://root@hv1/system?keyfile=/k&known_hosts_verify=auto',
      'qemu+libssh://root@hv1:2222/system?sshauth=privkey&no_tty=1',
      'qemu+tls://hv1/system',
      'test:///default',
    ]) {
      expect([ok, uri(ok)]).toEqual([ok, undefined]);
    }
    expect(uri('qemu+ext:///system?command=/tmp/evil')).toMatch(
      /uses transport qemu\+ext; allowed: qemu:\/\/\/system, qemu\+ssh:\/\//,
    );
    expect(uri('qemu+ssh://root@hv1/system?command=/tmp/evil')).toMatch(
      /has parameter command, which virtwire does not allow/,
    );
    expect(uri('qemu+ssh://root@hv1/system?netcat=/tmp/nc')).toMatch(/has parameter netcat/);
    expect(uri('qemu+ssh://root@hv1/system?socket=/tmp/s')).toMatch(/has parameter socket/);
    expect(uri('qemu+libssh://root@hv1/system?known_hosts_verify=ignore')).toMatch(/turns host-key checking off/);
    expect(uri('qemu+tls://hv1/system?no_verify=1')).toMatch(/turns certificate checking off/);
    expect(uri('qemu+unix:///system?socket=/x')).toMatch(/uses transport qemu\+unix/);
    expect(uri('qemu:///session')).toMatch(/must be qemu:\/\/\/system/);
    // a known_hosts that holds no keys turns checking off as surely as known_hosts_verify=ignore
    expect(uri('qemu+libssh://root@hv1/system?known_hosts=/dev/null')).toMatch(/not a file that can hold host keys/);
    expect(uri('qemu+ssh://root@hv1/system?known_hosts=//proc/self/fd/0')).toMatch(/not a file that can hold/);
  });

  test("libvirt over SSH uses virtwire's known_hosts and policy; qemu+ssh becomes libssh to do so", () => {
    expect(libvirtUriFor('qemu+ssh://root@hv1:2222/system?keyfile=/k&no_tty=1', '/s/known_hosts')).toBe(
      'qemu+libssh://root@hv1:2222/system?keyfile=%2Fk&known_hosts=%2Fs%2Fknown_hosts&known_hosts_verify=normal',
    );
    expect(libvirtUriFor('qemu+libssh2://hv1/system', '/s/known_hosts', 'accept-new')).toBe(
      'qemu+libssh2://hv1/system?known_hosts=%2Fs%2Fknown_hosts&known_hosts_verify=auto',
    );
    // its own file and verification (normal or auto, as validation allows) are kept
    expect(libvirtUriFor('qemu+libssh://hv1/system?known_hosts=/etc/vw/kh&known_hosts_verify=auto', '/s/kh')).toBe(
      'qemu+libssh://hv1/system?known_hosts=%2Fetc%2Fvw%2Fkh&known_hosts_verify=auto',
    );
    expect(libvirtUriFor('qemu:///system', '/s/kh')).toBe('qemu:///system');
    expect(libvirtUriFor('qemu+tls://hv1/system', '/s/kh')).toBe('qemu+tls://hv1/system');
    // on this machine: a known_hosts that is a symlink (to /dev/null, say) is refused, not used
    const dir = mkdtempSync(join(tmpdir(), 'vw-kh-'));
    try {
      symlinkSync('/dev/null', join(dir, 'known_hosts'));
      expect(() => libvirtUriFor('qemu+ssh://hv1/system', join(dir, 'known_hosts'))).toThrow(
        /known_hosts .* is a symbolic link: host keys would not be checked/,
      );
      expect(
        () =>
          new SshRunner({ destination: 'hv1', knownHostsFile: join(dir, 'known_hosts'), controlDir: join(dir, 'c') }),
      ).toThrow(/is a symbolic link/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('SSH: known fields only, absolute paths, a host-key policy that checks', () => {
    const p = problems([
      {
        name: 'h',
        uri: 'qemu+ssh://hv1/system',
        ssh: {
          destination: 'root@hv1',
          hostKeyPolicy: 'off',
          identityFile: 'id_rsa',
          port: 70000,
          colour: 'red',
          knownHostsFile: '/dev/null',
        },
      },
    ]);
    expect(p).toEqual({
      'hosts[0].ssh.knownHostsFile': '"/dev/null" is a device or kernel file: host keys would not be checked',
      'hosts[0].ssh.colour': expect.stringMatching(/unknown field/),
      'hosts[0].ssh.identityFile': expect.stringMatching(/absolute path/),
      'hosts[0].ssh.port': '70000 is out of range 1..65535',
      'hosts[0].ssh.hostKeyPolicy': '"off" is not strict or accept-new (host keys are always checked)',
    });
  });

  test("createVm's own uri is checked the same way, before anything is contacted", async () => {
    const connected: string[] = [];
    const engine = createEngine({
      runner: new RecordingRunner(),
      connect: async (uri) => {
        connected.push(uri);
        throw new Error('not reached');
      },
    });
    const err = await engine.ops.createVm(vm(), { uri: 'qemu+ext:///system?command=/bin/sh' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    expect(connected).toEqual([]);
  });
});

describe('destroyVm on a host', () => {
  test('a VM recorded on a host that is not in the list: NOT_FOUND naming it, nothing contacted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vwunit-'));
    try {
      await new DirStateStore(dir).put({ vm: vm(), accel: 'tcg', createdAt: 'now', host: 'hv2' });
      const runner = new RecordingRunner();
      const connected: string[] = [];
      const engine = createEngine({
        runner,
        connect: async (uri) => {
          connected.push(uri);
          throw new Error('not reached');
        },
        kvm: async () => ({ usable: false, reason: 'test' }),
      });
      const err = await engine.ops.destroyVm('web', { stateDir: dir, hosts: [hosts[0]!] }).catch((e: unknown) => e);
      expect(isVirtwireError(err, 'NOT_FOUND')).toBe(true);
      expect((err as Error).message).toBe('VM web runs on host hv2, which is not among the hosts given (hv1)');
      expect([connected, runner.calls]).toEqual([[], []]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a host's own uplink NIC", () => {
  test("segments go out of the host's NIC; the record (and the segment id) stay as they are", () => {
    const seg = validateVm({
      name: 'web',
      boot: { kernel: '/k' },
      nics: [{ network: { tenant: 'acme', cidr: '10.1.0.0/24', segment: { type: 'vlan', id: 100, uplink: 'eth1' } } }],
    });
    const plain = validateVm({
      name: 'db',
      boot: { kernel: '/k' },
      nics: [{ network: { tenant: 'ops', cidr: '10.2.0.0/24' } }],
    });
    const records = [
      { vm: seg, accel: 'tcg' as const, createdAt: 'now', host: 'hv1' },
      { vm: plain, accel: 'tcg' as const, createdAt: 'now', host: 'hv1' },
      { vm: { ...plain, name: 'x' }, accel: 'tcg' as const, createdAt: 'now', host: 'hv2' },
    ];
    const state = hostStateFor(records, { name: 'hv1', uplink: 'ens5' }, []);
    expect(state.networks.map((n) => [n.network.tenant, n.network.segment])).toEqual([
      ['acme', { type: 'vlan', id: 100, uplink: 'ens5' }],
      ['ops', { type: 'none' }],
    ]);
    expect(records[0]!.vm.nics[0]!.network.segment).toEqual({ type: 'vlan', id: 100, uplink: 'eth1' });
    expect(hostStateFor(records, { name: 'hv1' }, []).networks[0]!.network.segment).toMatchObject({ uplink: 'eth1' });
  });
});

describe('VXLAN peers from the hosts list', () => {
  const on = (name: string, host: string, tenant: string, segment: Record<string, unknown>) => ({
    vm: validateVm({
      name,
      boot: { kernel: '/k' },
      nics: [
        { network: { tenant, cidr: '10.3.0.0/24', segment: { type: 'vxlan', vni: 7000, uplink: 'eth1', ...segment } } },
      ],
    }),
    accel: 'tcg' as const,
    createdAt: 'now',
    host,
    hostTarget: { name: host, uri: `qemu+ssh://root@${host}/system`, address: `192.0.2.${host.slice(2)}` },
  });
  const seg = (records: ReturnType<typeof on>[], host: string) =>
    hostStateFor(records, { name: host, address: `192.0.2.${host.slice(2)}` }, []).networks.map((n) => [
      n.network.tenant,
      n.network.segment,
    ]);

  test('local is the host, remotes exactly the other hosts with the tenant; named peers are kept', () => {
    const records = [
      on('a1', 'hv1', 'acme', {}),
      on('a2', 'hv2', 'acme', {}),
      on('a3', 'hv2', 'acme', {}),
      on('g3', 'hv3', 'globex', {}),
      on('m1', 'hv1', 'mcast', { group: '239.1.1.1' }),
    ];
    expect(seg(records, 'hv1')).toEqual([
      ['acme', { type: 'vxlan', vni: 7000, uplink: 'eth1', local: '192.0.2.1', remotes: ['192.0.2.2'] }],
      ['mcast', { type: 'vxlan', vni: 7000, uplink: 'eth1', group: '239.1.1.1' }],
    ]);
    expect(seg(records, 'hv3')).toEqual([
      ['globex', { type: 'vxlan', vni: 7000, uplink: 'eth1', local: '192.0.2.3', remotes: [] }],
    ]);
    // hv2's last acme VMs go: hv1 has no peer left
    expect(
      seg(
        records.filter((r) => r.host !== 'hv2'),
        'hv1',
      )[0],
    ).toEqual(['acme', { type: 'vxlan', vni: 7000, uplink: 'eth1', local: '192.0.2.1', remotes: [] }]);
  });

  test('a host address must be IPv4', () => {
    expect(() => validateHosts([{ name: 'hv1', uri: 'qemu:///system', address: 'hv1.example' }])).toThrow(
      /hosts\[0\]\.address: "hv1.example" is not an IPv4 address/,
    );
  });
});
