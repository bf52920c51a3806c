// Fast boots with real guests: the test guest's bzImage is booted as its extracted vmlinux (PVH),
// extracted once for every VM that boots it and kept in the host's cache after the last (pruned on
// demand); fastKernel: false boots the file as given. Concurrent creates (group commit) and
// createVms lease distinct addresses; createVms is all or nothing.
import { mkdtempSync, chmodSync, rmSync, existsSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createVm,
  createVms,
  destroyVm,
  listVms,
  listKernelCache,
  pruneKernelCache,
  SpecError,
} from '../../lib/index.js';
import { Libvirt } from '../../lib/libvirt/index.js';
import { buildTestGuest, testGuestSpec, waitForConsole } from '../../lib/testing/index.js';
import type { TestGuestImage } from '../../lib/testing/index.js';
import type { VmSpec } from '../../types/spec.js';
import { describeAsRoot } from '../helpers/root.js';

const stateDir = mkdtempSync(join(tmpdir(), 'vwfb-'));
chmodSync(stateDir, 0o755);
const opts = { stateDir };
const NET = { tenant: 'vwfb', cidr: '10.77.0.0/24' };
let image: TestGuestImage;
const spec = (name: string, extra: Partial<VmSpec> = {}): VmSpec => ({
  ...testGuestSpec(image, name, [{ network: NET }]),
  ...extra,
});

async function bootedKernel(name: string): Promise<string> {
  const lv = await Libvirt.open('qemu:///system');
  try {
    const xml = await (await lv.lookupDomain(name))!.xml();
    return /<kernel>([^<]+)<\/kernel>/.exec(xml)![1]!;
  } finally {
    await lv.close();
  }
}
const cached = () => readdirSync(join(stateDir, 'kernels')).filter((f) => f.endsWith('.vmlinux'));

describeAsRoot('fast boots and many creates (real guests)', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
  });
  afterAll(async () => {
    for (const vm of await listVms(opts)) await destroyVm(vm.name, { ...opts, missingOk: true }).catch(() => {});
    rmSync(stateDir, { recursive: true, force: true });
  });

  test('concurrent creates boot the extracted vmlinux, one copy for all; it outlives its VMs, never extracted twice', async () => {
    const vms = await Promise.all(['vwfb-a', 'vwfb-b', 'vwfb-c'].map((n) => createVm(spec(n), opts)));
    expect(new Set(vms.map((v) => v.nics[0]!.ip)).size).toBe(3); // group commit kept allocation apart
    const kernels = await Promise.all(vms.map((v) => bootedKernel(v.name)));
    expect(new Set(kernels).size).toBe(1);
    expect(vms.map((v) => v.boot)).toEqual([{ kind: 'pvh' }, { kind: 'pvh' }, { kind: 'pvh' }]);
    expect(kernels[0]).toMatch(new RegExp(`^${join(stateDir, 'kernels')}/[0-9a-f]{20}\\.vmlinux$`));
    expect(cached()).toHaveLength(1);
    // the guest prints its lease once it has it (dnsmasq's lease file may come first)
    for (const v of vms)
      await waitForConsole(v, new RegExp(`VIRTWIRE-LEASE ip=${v.nics[0]!.ip.replaceAll('.', '\\.')} `));
    expect(await listKernelCache(stateDir)).toMatchObject([
      { path: kernels[0], usedBy: ['vwfb-a', 'vwfb-b', 'vwfb-c'] },
    ]);
    for (const v of vms) await destroyVm(v.name, opts);
    // the cache keeps it for the next VM: a create → destroy loop extracts once
    expect(existsSync(kernels[0]!)).toBe(true);
    const { ino, mtimeMs } = statSync(kernels[0]!);
    const again = await createVm(spec('vwfb-d'), opts);
    expect(await bootedKernel(again.name)).toBe(kernels[0]);
    expect(statSync(kernels[0]!).ino).toBe(ino); // the same file, not extracted again
    expect(statSync(kernels[0]!).mtimeMs).toBeGreaterThan(mtimeMs); // used: touched
    await destroyVm(again.name, opts);
    // pruned on demand (it was used a moment ago: only with includeRecent)
    expect(await pruneKernelCache({ stateDir })).toEqual([]);
    expect((await pruneKernelCache({ stateDir, includeRecent: true })).map((k) => k.path)).toEqual([kernels[0]]);
    expect(cached()).toEqual([]);
  });

  test('boot.fastKernel: false boots the bzImage as given', async () => {
    const details: string[] = [];
    const vm = await createVm(spec('vwfb-slow', { boot: { ...spec('x').boot, fastKernel: false } }), {
      ...opts,
      onProgress: (e) => e.detail && details.push(`${e.step}: ${e.detail}`),
    });
    expect(await bootedKernel(vm.name)).toBe(image.kernel);
    // the result and the progress say which path it took, and why not the fast one
    expect(vm.boot).toEqual({ kind: 'kernel', reason: 'boot.fastKernel is false' });
    expect(details).toEqual(['define: boot: kernel (boot.fastKernel is false)']);
    await destroyVm(vm.name, opts);
  });

  test('createVms: every spec checked first (paths by index), then all or nothing', async () => {
    const bad = await createVms([spec('vwfb-m0'), { ...spec('vwfb-m1'), memoryMiB: 1 }, spec('vwfb-m0')], opts).catch(
      (e: unknown) => e,
    );
    expect(bad).toBeInstanceOf(SpecError);
    expect((bad as SpecError).problems.map((p) => p.path)).toEqual(['[1].memoryMiB', '[2].name']);
    // one that fails on the host (its kernel file is not there): the others are destroyed again
    const missing = spec('vwfb-m2', { boot: { kernel: '/nonexistent/vmlinuz' } });
    const failed = await createVms([spec('vwfb-m0'), spec('vwfb-m1'), missing], opts).catch((e: unknown) => e);
    expect((failed as SpecError).problems).toEqual([
      { path: 'boot.kernel', message: '/nonexistent/vmlinuz does not exist' },
    ]);
    expect((await listVms(opts)).map((v) => v.name)).toEqual([]);
    const made = await createVms([spec('vwfb-m0'), spec('vwfb-m1')], opts);
    expect(made.map((v) => v.name)).toEqual(['vwfb-m0', 'vwfb-m1']);
    expect(made[0]!.nics[0]!.ip).not.toBe(made[1]!.nics[0]!.ip);
  });
});
