// Lab hosts for multi-host tests: small Linux hosts under QEMU (TCG) booted from the lab image
// (lib/testing/lab-image.ts), each with a management NIC on a host bridge (SSH) and a
// "physical" NIC on another host bridge that plays the switch. Everything is named with the
// lab's prefix and removed at cleanup, QEMU processes included.
import { execa, type ResultPromise } from 'execa';
import { mkdtempSync, chmodSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SshRunner } from '../../lib/host/index.js';
import { waitForConsole } from '../../lib/testing/index.js';
import type { LabHostImage } from '../../lib/testing/lab-image.js';
import { waitFor } from './wait.js';

export class LabHosts {
  readonly dir = mkdtempSync(join(tmpdir(), 'vwlab-'));
  private readonly qemus: ResultPromise[] = [];
  private readonly links: string[] = [];
  readonly mgmtBridge: string;
  /** the lab's "physical switch": a host bridge joining every lab host's eth1 */
  readonly switchBridge: string;

  constructor(
    readonly prefix: string,
    readonly mgmtNet = '192.168.93',
  ) {
    chmodSync(this.dir, 0o755);
    this.mgmtBridge = `${prefix}m`;
    this.switchBridge = `${prefix}sw`;
  }

  mgmtIp(i: number): string {
    return `${this.mgmtNet}.${10 + i}`;
  }

  runner(i: number): SshRunner {
    return new SshRunner({
      destination: `root@${this.mgmtIp(i)}`,
      identityFile: join(this.dir, 'key'),
      hostKeyPolicy: 'accept-new',
      knownHostsFile: join(this.dir, 'known_hosts'),
      controlDir: join(this.dir, 'ssh'),
    });
  }

  async start(image: LabHostImage, count: number): Promise<void> {
    await this.cleanupLinks();
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(this.dir, 'key')]);
    const [type, key] = readFileSync(join(this.dir, 'key.pub'), 'utf8').split(' ');
    await this.link(this.mgmtBridge, ['type', 'bridge']);
    await execa('ip', ['addr', 'add', `${this.mgmtNet}.1/24`, 'dev', this.mgmtBridge]);
    await this.link(this.switchBridge, ['type', 'bridge']);
    for (let i = 1; i <= count; i++) {
      const [m, s] = [`${this.prefix}${i}m`, `${this.prefix}${i}s`];
      for (const [tap, bridge] of [
        [m, this.mgmtBridge],
        [s, this.switchBridge],
      ] as const) {
        await execa('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
        this.links.push(tap);
        await execa('ip', ['link', 'set', tap, 'master', bridge, 'up']);
      }
      const serial = join(this.dir, `lab${i}.log`);
      this.qemus.push(
        execa(
          'qemu-system-x86_64',
          [
            '-accel',
            'tcg',
            '-m',
            '384',
            '-nodefaults',
            '-display',
            'none',
            '-no-user-config',
            '-kernel',
            image.kernel,
            '-initrd',
            image.initrd,
            '-append',
            `${image.cmdline} vw.name=lab${i} vw.mgmt=${this.mgmtIp(i)}/24 vw.sshkey=${type}:${key}`,
            '-netdev',
            `tap,id=m,ifname=${m},script=no,downscript=no`,
            '-device',
            `virtio-net-pci,netdev=m,mac=52:54:00:93:00:${10 + i}`,
            '-netdev',
            `tap,id=s,ifname=${s},script=no,downscript=no`,
            '-device',
            `virtio-net-pci,netdev=s,mac=52:54:00:94:00:${10 + i}`,
            '-serial',
            `file:${serial}`,
          ],
          { reject: false },
        ),
      );
    }
    for (let i = 1; i <= count; i++) {
      await waitForConsole(
        { serialLog: join(this.dir, `lab${i}.log`), name: `lab${i}` },
        /VIRTWIRE-LAB-READY/,
        120_000,
      );
      const r = this.runner(i);
      // dropbear is started just before the READY line; its first answer takes a moment under TCG
      await waitFor(
        `SSH to lab${i}`,
        60_000,
        () =>
          r.run(['true'], { allowFailure: true }).then(
            (x) => x.exitCode === 0,
            () => false,
          ),
        200,
      );
    }
  }

  private async link(name: string, args: string[]): Promise<void> {
    await execa('ip', ['link', 'add', name, ...args]);
    this.links.push(name);
    await execa('ip', ['link', 'set', name, 'up']);
  }

  private async cleanupLinks(): Promise<void> {
    const { stdout } = await execa('ip', ['-j', 'link', 'show']);
    for (const l of JSON.parse(stdout) as { ifname: string }[]) {
      if (l.ifname.startsWith(this.prefix) && !/-[0-9a-f]{6}$/.test(l.ifname))
        await execa('ip', ['link', 'del', l.ifname], { reject: false });
    }
  }

  async cleanup(): Promise<void> {
    for (const q of this.qemus) q.kill('SIGKILL');
    await Promise.allSettled(this.qemus);
    // the SSH control masters (ControlPersist) are processes of this lab too
    await execa('pkill', ['-f', `ControlPath=${join(this.dir, 'ssh')}`], { reject: false });
    for (const l of this.links.reverse()) await execa('ip', ['link', 'del', l], { reject: false });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
