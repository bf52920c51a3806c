// Network namespaces a test makes for itself, all named with one recognisable prefix, and
// removed (with every process still running inside them) even when the test fails.
import { execa, type ResultPromise } from 'execa';
import { rmSync, mkdtempSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tapName } from '../../lib/spec/index.js';
import type { HostPort } from '../../types/host.js';

export class Lab {
  private readonly namespaces: string[] = [];
  private readonly children: ResultPromise[] = [];
  readonly stateDir: string;

  /** `prefix` must be short (names must fit 15 chars where they become device names) */
  constructor(readonly prefix: string) {
    this.stateDir = mkdtempSync(join(tmpdir(), `${prefix}-`));
    // dnsmasq drops to its own user before it reads dhcp-hostsfile: the state dir must be
    // traversable, as /var/lib/virtwire is (mkdtemp makes it 0700)
    chmodSync(this.stateDir, 0o755);
  }

  /** Removes namespaces with this prefix that a killed earlier run left behind. */
  async sweep(): Promise<void> {
    const { stdout } = await execa('ip', ['netns', 'list']);
    for (const line of stdout.split('\n')) {
      const name = line.split(' ')[0];
      if (name?.startsWith(`${this.prefix}-`)) await deleteNetns(name);
    }
  }

  async netns(name: string): Promise<string> {
    const full = `${this.prefix}-${name}`;
    await execa('ip', ['netns', 'add', full]);
    this.namespaces.push(full);
    await this.exec(full, ['ip', 'link', 'set', 'lo', 'up']);
    return full;
  }

  exec(ns: string, argv: string[], options: { reject?: boolean; input?: string; timeoutMs?: number } = {}) {
    return execa('ip', ['netns', 'exec', ns, ...argv], {
      reject: options.reject ?? true,
      input: options.input,
      timeout: options.timeoutMs ?? 30_000,
    });
  }

  /**
   * The host's port of a "guest" namespace `<prefix>-<guest>` (made with netns(guest)): a veth
   * whose far end is that namespace's eth0 with the guest's MAC, named as a VM's tap would be.
   */
  vethPort(guest: string, mac: string, ip: string): HostPort {
    return {
      name: tapName(`${this.prefix}${guest}`, 0),
      kind: 'veth',
      peer: { name: 'eth0', netns: `${this.prefix}-${guest}` },
      mac,
      ip,
      hostname: guest,
    };
  }

  /** A long-running process inside `ns`, killed at cleanup. */
  spawn(ns: string, argv: string[]): ResultPromise {
    const child = execa('ip', ['netns', 'exec', ns, ...argv], { reject: false, buffer: false });
    this.children.push(child);
    return child;
  }

  /** The body an HTTP GET from `ns` gets within `seconds`, or undefined (a blocked path). */
  async fetch(ns: string, url: string, seconds = 5): Promise<string | undefined> {
    // busybox wget -T segfaults on Debian's busybox-static (design notes): bound it with timeout
    const argv = ['timeout', String(seconds), 'busybox', 'wget', '-q', '-O', '-', url];
    const r = await this.exec(ns, argv, { reject: false });
    return r.exitCode === 0 ? r.stdout.trim() : undefined;
  }

  /**
   * An HTTP server in `ns` on address:port answering `body` (killed at cleanup); resolves once it
   * listens, with the set of client addresses it has seen (kept current).
   */
  async serveHttp(ns: string, address: string, port: number, body: string): Promise<Set<string>> {
    const clients = new Set<string>();
    const child = this.spawn(ns, [
      'node',
      '-e',
      `require('http').createServer((q, s) => { console.log('client ' + q.socket.remoteAddress); s.end(${JSON.stringify(body)}); })
        .listen(${port}, ${JSON.stringify(address)}, () => console.log('listening'));`,
    ]);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        for (const m of d.toString().matchAll(/client (\S+)/g)) clients.add(m[1]!.replace('::ffff:', ''));
        if (d.toString().includes('listening')) resolve();
      });
      child.on('exit', () => reject(new Error(`HTTP server in ${ns} exited`)));
    });
    return clients;
  }

  /** Succeeds when one ping from `ns` to `ip` is answered within 1 s (a blocked path: false). */
  async ping(ns: string, ip: string): Promise<boolean> {
    const r = await this.exec(ns, ['busybox', 'ping', '-c', '1', '-W', '1', ip], { reject: false });
    return r.exitCode === 0;
  }

  /**
   * Whether `ip` answers a ping from `ns` within `deadlineMs`: for a path that must be open right
   * after a change (a first packet may wait on ARP, or be lost while a table is swapped).
   */
  async reaches(ns: string, ip: string, deadlineMs = 5_000): Promise<boolean> {
    const until = Date.now() + deadlineMs;
    do {
      if (await this.ping(ns, ip)) return true;
    } while (Date.now() < until);
    return false;
  }

  /**
   * Two "hosts" joined by a veth named `dev` on both ends, with an MTU (an underlay), each end
   * given its address (CIDR) and up.
   */
  async underlay(a: string, b: string, dev: string, mtu: number, addrA: string, addrB: string): Promise<void> {
    const m = String(mtu);
    await this.exec(a, ['ip', 'link', 'add', dev, 'mtu', m, 'type', 'veth', 'peer', 'name', dev, 'mtu', m, 'netns', b]);
    await this.configureGuest(a, dev, addrA);
    await this.configureGuest(b, dev, addrB);
  }

  /** A guest namespace's interface: address, up, default route. */
  async configureGuest(ns: string, dev: string, cidr: string, gateway?: string): Promise<void> {
    await this.exec(ns, ['ip', 'addr', 'add', cidr, 'dev', dev]);
    await this.exec(ns, ['ip', 'link', 'set', dev, 'up']);
    if (gateway) await this.exec(ns, ['ip', 'route', 'add', 'default', 'via', gateway]);
  }

  /** Replaces a guest namespace's address (and its default route, which goes with it). */
  async setGuestAddress(ns: string, dev: string, cidr: string, gateway: string): Promise<void> {
    await this.exec(ns, ['ip', 'addr', 'flush', 'dev', dev]);
    await this.exec(ns, ['ip', 'addr', 'add', cidr, 'dev', dev]);
    await this.exec(ns, ['ip', 'route', 'replace', 'default', 'via', gateway]);
  }

  async cleanup(): Promise<void> {
    for (const c of this.children) c.kill('SIGKILL');
    // first the namespaces' processes: a server's forked handlers keep a child's stderr open
    for (const ns of this.namespaces.reverse()) await deleteNetns(ns);
    await Promise.allSettled(this.children);
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}

async function deleteNetns(ns: string): Promise<void> {
  // processes left inside (dnsmasq, servers) would keep the namespace's devices alive
  const pids = await execa('ip', ['netns', 'pids', ns], { reject: false });
  for (const pid of pids.stdout.split('\n').filter(Boolean)) await execa('kill', ['-9', pid], { reject: false });
  await execa('ip', ['netns', 'del', ns], { reject: false });
}
