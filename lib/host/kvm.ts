// Whether a host can run guests under KVM: one rule for this machine and for every remote host,
// asked through the host's own runner and files. KVM is usable only where
//  - the CPU advertises hardware virtualisation (vmx or svm in /proc/cpuinfo): a PVM /dev/kvm
//    without them opens fine, and libvirt's domain capabilities then offer 'kvm', yet QEMU
//    aborts (`failed to set MSR 0x10a`) or the guest kernel hangs; and
//  - /dev/kvm opens read-write for the user QEMU runs as (libvirt-qemu on Debian, or qemu.conf's
//    `user`): where udev never set it to root:kvm 0660, only root can.
// libvirt's `kvm` capability alone is never the answer.
import type { CommandRunner } from './command-runner.js';
import type { HostFiles } from './host-files.js';

/** Debian's compiled-in defaults for qemu.conf's `user` and `group`. */
const DEFAULT_QEMU_USER = 'libvirt-qemu';
const DEFAULT_QEMU_GROUP = 'libvirt-qemu';
const QEMU_CONF = '/etc/libvirt/qemu.conf';

export interface KvmVerdict {
  usable: boolean;
  /** why not, for messages: no vmx/svm, or /dev/kvm not usable by the QEMU user */
  reason?: string;
}

const confValue = (conf: string | undefined, key: string) =>
  new RegExp(`^\\s*${key}\\s*=\\s*"([^"]+)"`, 'm').exec(conf ?? '')?.[1];

/** The user QEMU runs as: qemu.conf's `user = "…"` (a name or `+uid`), else Debian's default. */
function qemuUser(conf: string | undefined): string {
  return confValue(conf, 'user') ?? DEFAULT_QEMU_USER;
}

/**
 * The group QEMU runs as on a host (qemu.conf's `group`, else Debian's libvirt-qemu): a VM's
 * directory is root-owned, 0710, in this group, so QEMU may reach its disks and nobody else may.
 */
export async function qemuGroup(files: HostFiles): Promise<string> {
  const group = confValue(await files.read(QEMU_CONF), 'group') ?? DEFAULT_QEMU_GROUP;
  return group.startsWith('+') ? group.slice(1) : group;
}

export const hasVirtFlags = (cpuinfo: string): boolean => /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo);

export async function kvmVerdict(runner: CommandRunner, files: HostFiles): Promise<KvmVerdict> {
  const cpuinfo = (await files.read('/proc/cpuinfo')) ?? '';
  if (!hasVirtFlags(cpuinfo)) return { usable: false, reason: 'the CPU has no vmx/svm flag' };
  if (!(await files.exists('/dev/kvm'))) return { usable: false, reason: '/dev/kvm does not exist' };
  const user = qemuUser(await files.read(QEMU_CONF));
  // access(2) for that user with its groups; root opens any mode
  const test = ['test', '-r', '/dev/kvm', '-a', '-w', '/dev/kvm'];
  const argv =
    user === 'root' || user === '+0'
      ? test
      : user.startsWith('+')
        ? ['setpriv', `--reuid=${user.slice(1)}`, `--regid=${user.slice(1)}`, '--clear-groups', '--', ...test]
        : // runuser takes the user's primary group and supplementary groups from the passwd database
          ['runuser', '-u', user, '--', ...test];
  const r = await runner.run(argv, { allowFailure: true, step: 'kvm: check /dev/kvm' });
  return r.exitCode === 0
    ? { usable: true }
    : { usable: false, reason: `/dev/kvm cannot be opened by the QEMU user ${user}` };
}
