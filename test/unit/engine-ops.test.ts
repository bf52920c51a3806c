// The engine driven through its composition root with fake collaborators (test/helpers/fake-
// engine.ts): the rollback of createVm at each step, a slow runner against the call's deadline,
// destroy, and import into a state that holds other hosts' VMs — without a host or a daemon.
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplyError, SpecError, isVirtwireError } from '../../lib/errors/index.js';
import { DirStateStore } from '../../lib/engine/state/dir-store.js';
import { allocate } from '../../lib/engine/allocate.js';
import { validateVm, bridgeName } from '../../lib/spec/index.js';
import { buildXml } from '../../lib/xml/index.js';
import type { CommandRunner, RunOptions, RunResult } from '../../lib/host/index.js';
import type { VmSpec } from '../../types/spec.js';
import { fakeEngine } from '../helpers/fake-engine.js';

const acme = { tenant: 'acme', cidr: '10.10.0.0/24' };
const kernelVm = (name = 'web'): VmSpec => ({
  name,
  boot: { kernel: '/boot/k', initrd: '/boot/i' },
  nics: [{ network: acme }],
});
const imageVm = (name = 'web'): VmSpec => ({
  name,
  boot: { image: '/var/lib/libvirt/images/base.qcow2' },
  cloudInit: { userData: '#cloud-config\n' },
  nics: [{ network: acme }],
});

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'vwops-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('createVm through the container, with fakes', () => {
  test('success: record, host plane, domain defined and started, lease', async () => {
    const { engine, hv, plane } = fakeEngine();
    const vm = await engine.ops.createVm(kernelVm(), { stateDir: dir });
    expect(vm).toMatchObject({
      name: 'web',
      accel: 'tcg',
      nics: [{ tenant: 'acme', ip: '10.10.0.2', bridge: bridgeName('acme') }],
    });
    expect(new DirStateStore(dir).records().map((r) => r.vm.name)).toEqual(['web']);
    expect(plane(dir).ports()).toEqual([vm.nics[0]!.tap]);
    expect(hv().domains.get('web')).toMatchObject({ active: true });
    expect(hv().closed).toBe(1);
  });

  // each step's failure, injected into the collaborator that step uses
  const failures: [string, (f: ReturnType<typeof fakeEngine>) => void, VmSpec][] = [
    ['network', (f) => (f.plane(dir).failNextApply = true), kernelVm()],
    ['disks', () => undefined, imageVm()], // the runner below fails qemu-img create
    ['define', (f) => f.hv().failOn.add('defineDomain'), kernelVm()],
    ['start', (f) => f.hv().failOn.add('start'), kernelVm()],
    ['lease', (f) => (f.plane(dir).lease = 'fail'), kernelVm()],
  ];

  test.each(failures)('a failure at step "%s" rolls back everything the call made', async (step, inject, spec) => {
    const runner = failingRunner((argv) => argv[0] === 'qemu-img' && argv[1] === 'create');
    const f = fakeEngine({ runner });
    inject(f);
    // a VM that stays: the failed one must not take its tenant network with it
    await fakeEngine({ runner }).engine.ops.createVm(kernelVm('db'), { stateDir: dir });
    const steps: string[] = [];
    const err = await f.engine.ops
      .createVm(spec, { stateDir: dir, onProgress: (e) => steps.push(`${e.step}:${e.status}`) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplyError);
    expect(err).toMatchObject({ step, rolledBack: true });
    expect(steps[steps.length - 1]).toBe(`${step}:failed`);
    // the record is gone, the host plane holds only the VM that stays, no domain is left
    expect(new DirStateStore(dir).records().map((r) => r.vm.name)).toEqual(['db']);
    expect(existsSync(join(dir, 'vms', 'web'))).toBe(false);
    expect(
      f
        .plane(dir)
        .last()!
        .networks.flatMap((n) => n.ports.map((p) => p.hostname)),
    ).toEqual(['db']);
    expect(f.hv().domains.has('web')).toBe(false);
  });

  test("waitFor 'ssh': after the lease, until the first NIC's port 22 answers (ssh-keyscan from its host)", async () => {
    let answers = 0;
    const runner: CommandRunner = {
      async run(argv: readonly string[]): Promise<RunResult> {
        if (argv[0] !== 'ssh-keyscan') return { stdout: '', stderr: '', exitCode: 0 };
        // the first two attempts find no SSH server yet
        return ++answers < 3
          ? { stdout: '', stderr: 'connect refused', exitCode: 1 }
          : {
              stdout: `${argv[argv.length - 1]} ssh-ed25519 AAAAC3Nza`,
              stderr: '# 10.10.0.2:22 SSH-2.0-OpenSSH_9.2p1',
              exitCode: 0,
            };
      },
    };
    const { engine } = fakeEngine({ runner });
    const steps: string[] = [];
    await engine.ops.createVm(kernelVm(), {
      stateDir: dir,
      waitFor: 'ssh',
      onProgress: (e) => e.status === 'done' && steps.push(e.step),
    });
    expect(steps).toEqual(['validate', 'network', 'disks', 'define', 'start', 'lease', 'ssh']);
    expect(answers).toBe(3);
  });

  test('bad input: SpecError before any collaborator is used', async () => {
    const { engine, hv, plane } = fakeEngine();
    const err = await engine.ops.createVm({ ...kernelVm(), name: 'Bad' }, { stateDir: dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    expect([hv().calls, plane(dir).applied]).toEqual([[], []]);
  });

  test('a slow runner against the deadline: TIMEOUT, and what was made is rolled back', async () => {
    const runner = slowRunner(300, (argv) => argv[0] === 'qemu-img');
    const { engine, hv, plane } = fakeEngine({ runner });
    const err = await engine.ops.createVm(imageVm(), { stateDir: dir, timeoutMs: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplyError);
    expect(isVirtwireError((err as ApplyError).cause, 'TIMEOUT')).toBe(true);
    expect((err as ApplyError).rolledBack).toBe(true);
    expect(new DirStateStore(dir).records()).toEqual([]);
    // whichever step the deadline caught, the host plane ends without the VM
    expect(plane(dir).last() ?? { networks: [] }).toEqual({ networks: [] });
    expect(hv().calls).not.toContain('defineDomain');
  });

  test('accel kvm where the host cannot: HOST_UNSUPPORTED naming the reason, nothing made', async () => {
    const { engine, plane } = fakeEngine();
    const err = await engine.ops.createVm({ ...kernelVm(), accel: 'kvm' }, { stateDir: dir }).catch((e: unknown) => e);
    expect(isVirtwireError(err, 'HOST_UNSUPPORTED')).toBe(true);
    expect((err as Error).message).toBe(
      "accel 'kvm' was asked for VM web, but KVM is not usable here (the CPU has no vmx/svm flag); use 'auto' or 'tcg'",
    );
    expect(plane(dir).applied).toEqual([]);
  });
});

describe('destroyVm through the container', () => {
  test('undefines the domain, forgets the record, re-applies the plane without it', async () => {
    const { engine, hv, plane } = fakeEngine();
    await engine.ops.createVm(kernelVm(), { stateDir: dir });
    expect(await engine.ops.destroyVm('web', { stateDir: dir })).toBe(true);
    expect(hv().domains.size).toBe(0);
    expect(plane(dir).last()).toEqual({ networks: [] });
    expect(await engine.ops.destroyVm('web', { stateDir: dir, missingOk: true })).toBe(false);
    await expect(engine.ops.destroyVm('web', { stateDir: dir })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('renameVm through the container', () => {
  test("boot files read from the VM's own disk move with its directory: the record and the definition name them there", async () => {
    const { engine, hv } = fakeEngine();
    await engine.ops.createVm(imageVm(), { stateDir: dir });
    hv().domains.get('web')!.active = false; // libvirt renames only shut-off domains
    // as a start after a change inside the guest leaves it (reread-boot.ts): its own kernel
    // (no PVH note) and initrd in its directory
    const state = new DirStateStore(dir);
    const own = join(dir, 'vms', 'web', 'boot');
    await state.withLock(async () =>
      state.put({
        ...state.get('web')!,
        kernel: join(own, 'vmlinuz'),
        imageBoot: { initrd: join(own, 'initrd.img'), cmdline: 'root=/dev/vda1 ro', digest: 'd'.repeat(20) },
      }),
    );
    await engine.ops.renameVm('web', 'app', { stateDir: dir });
    const moved = join(dir, 'vms', 'app', 'boot');
    const record = new DirStateStore(dir).get('app')!;
    expect([record.kernel, record.imageBoot?.initrd]).toEqual([join(moved, 'vmlinuz'), join(moved, 'initrd.img')]);
    const xml = hv().domains.get('app')!.xml;
    expect(xml).toContain(`<kernel>${join(moved, 'vmlinuz')}</kernel>`);
    expect(xml).toContain(`<initrd>${join(moved, 'initrd.img')}</initrd>`);
  });
});

describe("import into a state that holds other hosts' VMs", () => {
  test("only this machine's VMs reach this machine's host plane", async () => {
    const { engine, hv, plane } = fakeEngine();
    const store = new DirStateStore(dir);
    const near = allocate(validateVm(kernelVm('near')), []);
    await store.put({ vm: near, accel: 'tcg', createdAt: 'now' });
    const far = allocate(validateVm(kernelVm('far')), [{ vm: near, accel: 'tcg', createdAt: 'now' }]);
    await store.put({
      vm: far,
      accel: 'tcg',
      createdAt: 'now',
      host: 'hv2',
      hostTarget: { name: 'hv2', uri: 'qemu+ssh://root@hv2/system', ssh: { destination: 'root@hv2' } },
    });
    // a shut-off domain of this machine, its NIC on acme's bridge
    const xml = buildXml({
      domain: {
        $: { type: 'qemu' },
        name: ['ext'],
        memory: [{ _: '262144', $: { unit: 'KiB' } }],
        vcpu: ['1'],
        os: [{ type: [{ _: 'hvm', $: { arch: 'x86_64', machine: 'pc' } }], kernel: ['/boot/k'] }],
        devices: [
          {
            interface: [
              {
                $: { type: 'bridge' },
                mac: [{ $: { address: '52:54:00:12:34:56' } }],
                source: [{ $: { bridge: bridgeName('acme') } }],
              },
            ],
          },
        ],
      },
    });
    await hv().defineDomain(xml);
    const { vm, dropped } = await engine.ops.importDomain('ext', 'adopted', { stateDir: dir });
    expect(dropped).toEqual([]);
    expect(vm.nics[0]).toMatchObject({ mac: '52:54:00:12:34:56', ip: '10.10.0.4' });
    const hostnames = plane(dir)
      .last()!
      .networks.flatMap((n) => n.ports.map((p) => p.hostname));
    expect(hostnames.sort()).toEqual(['adopted', 'near']);
    expect(hv().domains.has('adopted')).toBe(true);
  });
});

/** A runner that fails the commands `fails` matches (and answers qemu-img info). */
function failingRunner(fails: (argv: readonly string[]) => boolean): CommandRunner {
  return {
    async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
      if (fails(argv)) {
        const { HostCommandError } = await import('../../lib/errors/index.js');
        throw new HostCommandError({ argv, exitCode: 1, stderr: 'injected', step: options.step });
      }
      return { stdout: argv[1] === 'info' ? '{"format":"qcow2"}' : '', stderr: '', exitCode: 0 };
    },
  };
}

/** A runner whose matching commands take `ms` (the others answer at once). */
function slowRunner(ms: number, slow: (argv: readonly string[]) => boolean): CommandRunner {
  return {
    async run(argv: readonly string[]): Promise<RunResult> {
      if (slow(argv)) await new Promise((r) => setTimeout(r, ms));
      return { stdout: argv[1] === 'info' ? '{"format":"qcow2"}' : '', stderr: '', exitCode: 0 };
    },
  };
}

describe('updateVm and NIC hot-plug through the container', () => {
  const base = (over: Partial<VmSpec> = {}): VmSpec => ({
    ...kernelVm(),
    nics: [{ network: acme, qos: { egressKbps: 1000 } }],
    ...over,
  });

  test('QoS changes live (the host plane only); memory within its maximum through the balloon', async () => {
    const { engine, hv, plane } = fakeEngine();
    await engine.ops.createVm(base({ memoryMiB: 512, maxMemoryMiB: 1024 }), { stateDir: dir });
    const applied = plane(dir).applied.length;
    expect(
      await engine.ops.updateVm(
        base({ memoryMiB: 512, maxMemoryMiB: 1024, nics: [{ network: acme, qos: { egressKbps: 2000 } }] }),
        { stateDir: dir },
      ),
    ).toEqual({ changes: ['nics[0].qos.egressKbps'], live: true });
    expect(plane(dir).applied.length).toBe(applied + 1);
    expect(plane(dir).last()!.networks[0]!.ports[0]!.qos).toEqual({ egressKbps: 2000 });
    expect(
      await engine.ops.updateVm(
        base({ memoryMiB: 768, maxMemoryMiB: 1024, nics: [{ network: acme, qos: { egressKbps: 2000 } }] }),
        { stateDir: dir },
      ),
    ).toEqual({ changes: ['memoryMiB'], live: true });
    expect(hv().domains.get('web')!.memoryKiB).toBe(768 * 1024);
    expect(new DirStateStore(dir).get('web')!.vm.memoryMiB).toBe(768);
  });

  test('what cannot change live is a SpecError naming the fields, nothing changed; allowRestart redefines and starts', async () => {
    const { engine, hv, plane } = fakeEngine();
    await engine.ops.createVm(base(), { stateDir: dir });
    const applied = plane(dir).applied.length;
    const err = await engine.ops
      .updateVm(base({ vcpus: 2, memoryMiB: 512 }), { stateDir: dir })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    expect((err as SpecError).problems.map((p) => p.path)).toEqual(['memoryMiB', 'vcpus']);
    expect([plane(dir).applied.length, new DirStateStore(dir).get('web')!.vm.vcpus]).toEqual([applied, 1]);
    const boots = hv().domains.get('web')!.boots;
    expect(
      await engine.ops.updateVm(base({ vcpus: 2, memoryMiB: 512 }), { stateDir: dir, allowRestart: true }),
    ).toEqual({
      changes: ['memoryMiB', 'vcpus'],
      live: false,
    });
    expect(hv().domains.get('web')!.xml).toContain('<vcpu placement="static">2</vcpu>');
    expect(hv().domains.get('web')!.boots).toBe(boots + 1);
  });

  test('attach: host plane first, then the device on its own tap; detach a middle NIC: the others keep their taps', async () => {
    const { engine, hv, plane } = fakeEngine();
    const created = await engine.ops.createVm(
      base({ nics: [{ network: acme }, { network: { tenant: 'ops', cidr: '10.9.0.0/24' } }] }),
      { stateDir: dir },
    );
    const nic = await engine.ops.attachNic(
      'web',
      { network: { tenant: 'dev', cidr: '10.8.0.0/24' } },
      { stateDir: dir },
    );
    expect(nic).toMatchObject({ tenant: 'dev', ip: '10.8.0.2' });
    expect(plane(dir).ports()).toContain(nic.tap);
    expect(hv().domains.get('web')!.devices).toEqual([
      expect.stringContaining(`<target dev="${nic.tap}" managed="no"/>`),
    ]);
    await engine.ops.detachNic('web', created.nics[1]!.mac, { stateDir: dir });
    const taps = new DirStateStore(dir).get('web')!.vm.nics.map((n) => n.tap);
    expect(taps).toEqual([created.nics[0]!.tap, nic.tap]);
    expect(plane(dir).ports().sort()).toEqual([...taps].sort());
    await expect(engine.ops.detachNic('web', '52:54:00:00:00:99', { stateDir: dir })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });
});
