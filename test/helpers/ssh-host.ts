// This machine, reached as a *remote* host: a dropbear SSH server on loopback inside a mount
// namespace of its own, where
//  - /root is a temporary home holding the test's authorized key (root's real ~/.ssh is never
//    touched), and
//  - the remote state dir's dnsmasq/ directory is a private tmpfs, invisible from the test's
//    side: a host plane that wrote its dnsmasq files locally instead of through the host's SSH
//    connection would not find them there (and dnsmasq, started over SSH, would not find them
//    here), so the remote path cannot pass by accident.
// libvirt is reached with its own SSH transport (qemu+libssh://, known hosts in the temp dir).
// Everything runs as processes in that mount namespace and is killed at cleanup.
import { execa, type ResultPromise } from 'execa';
import { mkdtempSync, mkdirSync, chmodSync, copyFileSync, readlinkSync, readdirSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostTarget } from '../../types/vm.js';
import { waitFor } from './wait.js';

export class LoopbackSshHost {
  readonly dir: string;
  readonly stateDir: string;
  private holder?: ResultPromise;
  private server?: ResultPromise;
  private port = 0;

  constructor(
    readonly name: string,
    prefix: string,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
    chmodSync(this.dir, 0o755); // QEMU writes the serial log below stateDir
    this.stateDir = join(this.dir, 'state');
  }

  async start(): Promise<void> {
    const home = join(this.dir, 'home');
    mkdirSync(join(home, '.ssh'), { recursive: true, mode: 0o700 });
    chmodSync(home, 0o700);
    mkdirSync(join(this.stateDir, 'dnsmasq'), { recursive: true, mode: 0o755 });
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(this.dir, 'id')]);
    copyFileSync(join(this.dir, 'id.pub'), join(home, '.ssh', 'authorized_keys'));
    await execa('dropbearkey', ['-t', 'ed25519', '-f', join(this.dir, 'hostkey')]);

    this.holder = execa('unshare', ['--mount', '--propagation', 'private', 'sleep', 'infinity'], { reject: false });
    const pid = String(this.holder.pid);
    const ours = readlinkSync('/proc/self/ns/mnt');
    await waitFor(
      'the mount namespace',
      5_000,
      () => safeReadlink(`/proc/${pid}/ns/mnt`) !== ours && safeReadlink(`/proc/${pid}/ns/mnt`) !== undefined,
    );
    const inside = (argv: string[]) => ['nsenter', '-t', pid, '-m', ...argv];
    await execa(inside(['mount', '--bind', home, '/root'])[0]!, inside(['mount', '--bind', home, '/root']).slice(1));
    const tmpfs = inside(['mount', '-t', 'tmpfs', '-o', 'mode=755', 'tmpfs', join(this.stateDir, 'dnsmasq')]);
    await execa(tmpfs[0]!, tmpfs.slice(1));

    this.port = await freePort();
    const dropbear = inside([
      'dropbear',
      '-F',
      '-E',
      '-s',
      '-p',
      `127.0.0.1:${this.port}`,
      '-r',
      join(this.dir, 'hostkey'),
    ]);
    this.server = execa(dropbear[0]!, dropbear.slice(1), { reject: false });
    await waitFor(`dropbear on port ${this.port}`, 10_000, () => accepts(this.port));
  }

  /** What createVm's `hosts` takes for this host. */
  get target(): HostTarget {
    const key = join(this.dir, 'id');
    const query = new URLSearchParams({
      keyfile: key,
      known_hosts: join(this.dir, 'known_hosts'),
      known_hosts_verify: 'auto',
      sshauth: 'privkey',
      no_tty: '1',
    });
    return {
      name: this.name,
      uri: `qemu+libssh://root@127.0.0.1:${this.port}/system?${query.toString()}`,
      ssh: {
        destination: 'root@127.0.0.1',
        port: this.port,
        identityFile: key,
        hostKeyPolicy: 'accept-new',
        knownHostsFile: join(this.dir, 'known_hosts'),
        controlDir: join(this.dir, 'ctl'),
      },
      stateDir: this.stateDir,
    };
  }

  /** A command on the "remote" side (inside its mount namespace), as root. */
  exec(argv: string[]) {
    return execa('nsenter', ['-t', String(this.holder!.pid), '-m', ...argv], { reject: false });
  }

  /** Kills every process in the host's mount namespace (dropbear, sessions, dnsmasq), then its files. */
  async cleanup(): Promise<void> {
    const pid = this.holder?.pid;
    if (pid) {
      const ns = safeReadlink(`/proc/${pid}/ns/mnt`);
      for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
        if (ns && safeReadlink(`/proc/${p}/ns/mnt`) === ns) await execa('kill', ['-9', p], { reject: false });
      }
    }
    this.server?.kill('SIGKILL');
    this.holder?.kill('SIGKILL');
    await Promise.allSettled([this.server, this.holder]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function safeReadlink(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.on('connect', () => (c.destroy(), resolve(true)));
    c.on('error', () => resolve(false));
  });
}
