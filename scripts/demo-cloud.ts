// `npm run demo -- --cloud`: the path most users take. A Debian 12 cloud image (built from Debian
// packages on first use, cached) booted from its disk through the firmware; cloud-init makes a
// user with a key generated here, sets the hostname, writes a file; createVm waits until
// cloud-init reports done; then SSH in over the tenant network and show what the guest sees.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVm, destroyVm, type CreatedVm, type ProgressEvent } from '../lib/index.js';
import { buildCloudImage } from '../lib/testing/index.js';

export async function cloudDemo(keep: boolean): Promise<void> {
  const image = await buildCloudImage({ log: (l) => console.log(`demo: ${l}`) });
  const dir = mkdtempSync(join(tmpdir(), 'vwdemo-'));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'demo@virtwire', '-f', join(dir, 'key')]);
  const steps: ProgressEvent[] = [];
  const forwarding = execFileSync('sysctl', ['-n', 'net.ipv4.ip_forward'], { encoding: 'utf8' }).trim();
  let vm: CreatedVm | undefined;
  try {
    console.log(
      `demo: booting the Debian cloud image (${(image.bytes / 1048576).toFixed(0)} MiB qcow2) with cloud-init...`,
    );
    vm = await createVm(
      {
        name: 'acme-cloud',
        vcpus: 2,
        memoryMiB: 1024,
        boot: { image: image.image, sizeGiB: 8 },
        cloudInit: {
          hostname: 'acme-cloud',
          users: [{ name: 'demo', sshAuthorizedKeys: [readFileSync(join(dir, 'key.pub'), 'utf8').trim()], sudo: true }],
          writeFiles: [{ path: '/etc/motd', content: 'provisioned by virtwire\n' }],
        },
        nics: [{ network: { tenant: 'acme', cidr: '10.10.0.0/24' } }],
      },
      { waitFor: 'cloud-init', timeoutMs: 900_000, onProgress: (e) => steps.push(e) },
    );
    const at = (step: string) =>
      ((steps.find((s) => s.step === step && s.status === 'done')?.elapsedMs ?? NaN) / 1000).toFixed(1);
    console.log('\n| VM         | IP         | accel | s to lease | s to cloud-init done |');
    console.log('|------------|------------|-------|------------|----------------------|');
    console.log(
      `| ${vm.name} | ${vm.nics[0]!.ip.padEnd(10)} | ${vm.accel.padEnd(5)} | ${at('lease').padStart(10)} | ${at('cloud-init').padStart(20)} |`,
    );
    const sshArgs = [
      '-i',
      join(dir, 'key'),
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=accept-new',
      '-o',
      `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
      `demo@${vm.nics[0]!.ip}`,
    ];
    const inGuest =
      'hostname; cloud-init status; df -h --output=size / | tail -1; getent hosts deb.debian.org | head -1';
    console.log(`\ndemo: ssh demo@${vm.nics[0]!.ip} '${inGuest}'`);
    console.log(
      execFileSync('ssh', [...sshArgs, inGuest], { encoding: 'utf8' })
        .trimEnd()
        .replace(/^/gm, '  '),
    );
  } finally {
    if (!keep && vm) await destroyVm(vm.name, { missingOk: true });
    if (!keep) execFileSync('sysctl', ['-q', '-w', `net.ipv4.ip_forward=${forwarding}`]);
    rmSync(dir, { recursive: true, force: true });
    if (!keep) console.log('demo: destroyed the cloud guest and its network (--keep leaves it running)');
  }
}
