// Fast boots with real guests: the test guest's bzImage is booted as its extracted vmlinux (PVH)
// and its gzip initrd as the same archives uncompressed, each made once for every VM that boots
// it and kept in the host's cache after the last (pruned on demand); fastKernel: false boots the
// files as given. Concurrent creates (group commit) and
// createVms lease distinct addresses; createVms is all or nothing.
import { mkdtempSync, chmodSync, rmSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
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

const BIN = new URL('../../dist/scripts/virtwire.js', import.meta.url).pathname;
const stateDir = mkdtempSync(join(tmpdir(), 'vwfb-'));
chmodSync(stateDir, 0o755);
const opts = { stateDir };
const NET = { tenant: 'vwfb', cidr: '10.77.0.0/24' };
let image: TestGuestImage;
const spec = (name: string, extra: Partial<VmSpec> = {}): VmSpec => ({
  ...testGuestSpec(image, name, [{ network: NET }]),
  ...extra,
});

/** The kernel and initrd the VM's domain loads. */
async function booted(name: string): Promise<{ kernel: string; initrd: string }> {
  const lv = await Libvirt.open('qemu:///system');
  try {
    const xml = await (await lv.lookupDomain(name))!.xml();
    return { kernel: /<kernel>([^<]+)<\/kernel>/.exec(xml)![1]!, initrd: /<initrd>([^<]+)<\/initrd>/.exec(xml)![1]! };
  } finally {
    await lv.close();
  }
}
const cached = () => readdirSync(join(stateDir, 'kernels')).filter((f) => /\.(vmlinux|cpio)$/.test(f));

describeAsRoot('fast boots and many creates (real guests)', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
  });
  afterAll(async () => {
    for (const vm of await listVms(opts)) await destroyVm(vm.name, { ...opts, missingOk: true }).catch(() => {});
    rmSync(stateDir, { recursive: true, force: true });
  });

  test('concurrent creates boot the extracted vmlinux and the initrd uncompressed, one copy each for all; they outlive their VMs, never made twice', async () => {
    const vms = await Promise.all(['vwfb-a', 'vwfb-b', 'vwfb-c'].map((n) => createVm(spec(n), opts)));
    expect(new Set(vms.map((v) => v.nics[0]!.ip)).size).toBe(3); // group commit kept allocation apart
    const files = await Promise.all(vms.map((v) => booted(v.name)));
    const [{ kernel, initrd }] = files as [{ kernel: string; initrd: string }];
    expect(new Set(files.map((f) => `${f.kernel} ${f.initrd}`)).size).toBe(1);
    const fast = { kind: 'pvh', initrd: { kind: 'unpacked' } };
    expect(vms.map((v) => v.boot)).toEqual([fast, fast, fast]);
    expect(kernel).toMatch(new RegExp(`^${join(stateDir, 'kernels')}/[0-9a-f]{20}\\.vmlinux$`));
    expect(initrd).toMatch(new RegExp(`^${join(stateDir, 'kernels')}/[0-9a-f]{20}\\.cpio$`));
    // the guest's initramfs: the same archive its gzip initrd holds, uncompressed
    expect(readFileSync(initrd)).toEqual(gunzipSync(readFileSync(image.initrd)));
    expect(cached()).toHaveLength(2);
    // the guest prints its lease once it has it (dnsmasq's lease file may come first): it ran
    // the init of that initramfs
    for (const v of vms)
      await waitForConsole(v, new RegExp(`VIRTWIRE-LEASE ip=${v.nics[0]!.ip.replaceAll('.', '\\.')} `));
    const users = ['vwfb-a', 'vwfb-b', 'vwfb-c'];
    expect(await listKernelCache(stateDir)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ path: kernel, kind: 'kernel', usedBy: users }),
        expect.objectContaining({ path: initrd, kind: 'initrd', usedBy: users }),
      ]),
    );
    // the CLI shows the same: each entry's kind, and the VMs booting it
    const listed = (await execa('node', [BIN, '--state-dir', stateDir, 'cache', 'list'])).stdout.split('\n');
    for (const kind of ['kernel', 'initrd'])
      expect(listed).toContainEqual(
        expect.stringMatching(new RegExp(`^${kind} +[0-9a-f]{20} .* by ${users.join(', ')}$`)),
      );
    expect(listed.at(-1)).toMatch(/^1 kernel, 1 initrd, \d+\.\d MiB$/);
    for (const v of vms) await destroyVm(v.name, opts);
    // the cache keeps them for the next VM: a create → destroy loop unpacks once
    expect(existsSync(kernel) && existsSync(initrd)).toBe(true);
    const before = [kernel, initrd].map((f) => statSync(f));
    const again = await createVm(spec('vwfb-d'), opts);
    expect(await booted(again.name)).toEqual({ kernel, initrd });
    [kernel, initrd].forEach((f, i) => {
      expect(statSync(f).ino).toBe(before[i]!.ino); // the same file, not made again
      expect(statSync(f).mtimeMs).toBeGreaterThan(before[i]!.mtimeMs); // used: touched
    });
    await destroyVm(again.name, opts);
    // pruned on demand (used a moment ago: only with includeRecent)
    expect(await pruneKernelCache({ stateDir })).toEqual([]);
    expect((await pruneKernelCache({ stateDir, includeRecent: true })).map((k) => k.path).sort()).toEqual(
      [kernel, initrd].sort(),
    );
    expect(cached()).toEqual([]);
  });

  test('boot.fastKernel: false boots the bzImage as given', async () => {
    const details: string[] = [];
    const vm = await createVm(spec('vwfb-slow', { boot: { ...spec('x').boot, fastKernel: false } }), {
      ...opts,
      onProgress: (e) => e.detail && details.push(`${e.step}: ${e.detail}`),
    });
    expect(await booted(vm.name)).toEqual({ kernel: image.kernel, initrd: image.initrd });
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
