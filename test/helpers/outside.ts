// "The internet" for tests with real guests on NAT networks built in the host's own namespace: a
// namespace beyond a veth the test makes (in a range no route or address of this host covers,
// picked by ranges.ts: the host's end OUTSIDE.host, the outside OUTSIDE.outside), with an HTTP
// server on :8080 that answers "outside" and records who asked.
import { execa } from 'execa';
import type { Lab } from './lab.js';
import { OUTSIDE } from './ranges.js';

export class Outside {
  /** the client addresses the server has seen: after NAT, the host's only */
  clients = new Set<string>();
  private forwarding = '';

  constructor(
    private readonly lab: Lab,
    /** the host's end of the veth (the test's device: a recognisable name) */
    readonly uplink: string,
  ) {}

  async start(): Promise<void> {
    await execa('ip', ['link', 'del', this.uplink], { reject: false });
    this.forwarding = (await execa('sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim();
    const out = await this.lab.netns('out');
    await execa('ip', ['link', 'add', this.uplink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', out]);
    await execa('ip', ['addr', 'add', `${OUTSIDE.host}/24`, 'dev', this.uplink]);
    await execa('ip', ['link', 'set', this.uplink, 'up']);
    await this.lab.configureGuest(out, 'eth0', `${OUTSIDE.outside}/24`);
    this.clients = await this.lab.serveHttp(out, OUTSIDE.outside, 8080, 'outside');
  }

  /** Removes the veth and puts ip_forward back (the lab's cleanup removes the namespace). */
  async stop(): Promise<void> {
    await execa('ip', ['link', 'del', this.uplink], { reject: false });
    if (this.forwarding) await execa('sysctl', ['-q', '-w', `net.ipv4.ip_forward=${this.forwarding}`]);
  }
}
