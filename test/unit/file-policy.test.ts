// The files a VM spec names, checked where they are (here: this machine's files in a temp dir)
// before anything is made: boot files regular and under the readable directories, the serial log
// in the VM's own directory.
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkVmFiles } from '../../lib/engine/file-policy.js';
import { SpecError } from '../../lib/errors/index.js';
import { LocalFiles } from '../../lib/host/index.js';
import { validatePathPolicy, validateVm } from '../../lib/spec/index.js';
import type { PathPolicy } from '../../types/vm.js';

const dir = mkdtempSync(join(tmpdir(), 'vw-files-'));
const state = join(dir, 'state');
const elsewhere = join(dir, 'elsewhere');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => {
  mkdirSync(join(state, 'vms', 'web'), { recursive: true });
  mkdirSync(elsewhere);
  writeFileSync(join(state, 'base.qcow2'), '');
  writeFileSync(join(elsewhere, 'disk.qcow2'), '');
  symlinkSync('/dev/null', join(state, 'null.qcow2'));
  symlinkSync(join(elsewhere, 'disk.qcow2'), join(state, 'link.qcow2'));
  symlinkSync(elsewhere, join(state, 'vms', 'web', 'out'));
  symlinkSync('/etc/hostname', join(state, 'vms', 'web', 'serial.log'));
});

const problems = async (boot: Record<string, string>, extra: Record<string, unknown> = {}, policy?: PathPolicy) => {
  const vm = validateVm({ name: 'web', boot, nics: [{ network: { tenant: 'acme', cidr: '10.10.0.0/24' } }], ...extra });
  const err = await checkVmFiles(vm, new LocalFiles(), state, policy).catch((e: unknown) => e);
  if (err === undefined) return {};
  expect(err).toBeInstanceOf(SpecError);
  return Object.fromEntries((err as SpecError).problems.map((p) => [p.path, p.message]));
};

describe("a VM's files", () => {
  test('a regular file under the state dir is fine; what does not exist says so', async () => {
    expect(await problems({ image: join(state, 'base.qcow2') })).toEqual({});
    expect(await problems({ kernel: join(state, 'nope') })).toEqual({
      'boot.kernel': `${join(state, 'nope')} does not exist`,
    });
  });

  test('a device, a host file, a file elsewhere or a symlink out of the roots is refused, each named', async () => {
    expect(await problems({ image: '/dev/null' })).toEqual({
      'boot.image': '/dev/null is not a regular file (a device or directory)',
    });
    expect(await problems({ image: join(state, 'null.qcow2') })).toEqual({
      'boot.image': `${join(state, 'null.qcow2')} is not a regular file (a device or directory)`,
    });
    expect((await problems({ kernel: '/etc/hostname', initrd: join(state, 'link.qcow2') })) as object).toEqual({
      'boot.kernel': expect.stringMatching(/^\/etc\/hostname is outside the directories a VM may read \(.*\/boot;/),
      'boot.initrd': expect.stringContaining(
        `${join(state, 'link.qcow2')} (${join(elsewhere, 'disk.qcow2')}) is outside`,
      ),
    });
    // the operator may allow a directory
    expect(await problems({ image: join(state, 'link.qcow2') }, {}, { read: [elsewhere] })).toEqual({});
  });

  test("the serial log goes only into the VM's own directory, not through a symlink, never onto another file", async () => {
    expect(await problems({ image: join(state, 'base.qcow2') }, { serialLog: '/root/.ssh/authorized_keys' })).toEqual({
      serialLog: expect.stringMatching(/^\/root\/\.ssh\/authorized_keys is outside the VM's directory \(/),
    });
    const out = join(state, 'vms', 'web', 'out', 'log');
    expect(await problems({ image: join(state, 'base.qcow2') }, { serialLog: out })).toEqual({
      serialLog: `${out} is in ${elsewhere} through a symbolic link`,
    });
    const link = join(state, 'vms', 'web', 'serial.log');
    expect(await problems({ image: join(state, 'base.qcow2') }, { serialLog: link })).toEqual({
      serialLog: `${link} exists and is not a regular file of its own (a symbolic link, a device)`,
    });
    expect(
      await problems({ image: join(state, 'base.qcow2') }, { serialLog: join(state, 'vms', 'web', 'c.log') }),
    ).toEqual({});
    expect(
      await problems(
        { image: join(state, 'base.qcow2') },
        { serialLog: join(elsewhere, 'c.log') },
        { write: [elsewhere] },
      ),
    ).toEqual({});
  });

  test("the operator's policy is absolute directories only", () => {
    expect(() => validatePathPolicy({ read: ['rel'], write: 'x', colour: 1 })).toThrow(SpecError);
    try {
      validatePathPolicy({ read: ['rel'], write: 'x', colour: 1 });
    } catch (e) {
      expect((e as SpecError).problems.map((p) => p.path)).toEqual(['paths.colour', 'paths.read[0]', 'paths.write']);
    }
  });
});
