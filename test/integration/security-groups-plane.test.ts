// Security groups on the host plane, on a real kernel, once per firewall backend: a "host"
// namespace where virtwire builds the tenant bridge and its rules, and guest namespaces on the far
// end of each port's veth running echo services (busybox nc) on ports 80 and 22. The engine's
// part (groups in the state, members' addresses) is in security-groups.test.ts with real guests.
import type { ResultPromise } from 'execa';
import { HostPlane } from '../../lib/host/index.js';
import { validateNetwork, tapName } from '../../lib/spec/index.js';
import type { HostPort, HostSecurityGroup, HostState } from '../../types/host.js';
import type { FirewallKind } from '../../lib/host/firewall/index.js';
import { describeAsRoot } from '../helpers/root.js';
import { Lab } from '../helpers/lab.js';
import { esc, probe } from '../helpers/capture.js';
import { waitFor } from '../helpers/wait.js';

suite('nftables', 'vwsp');
suite('iptables', 'vwsq');

function suite(firewall: FirewallKind, prefix: string): void {
  const lab = new Lab(prefix);
  let host: string;
  let plane: HostPlane;
  const ns: Record<string, string> = {};
  const net = validateNetwork({ tenant: 'acme', cidr: '10.34.0.0/24' });
  const IP = {
    web: '10.34.0.11',
    app: '10.34.0.12',
    other: '10.34.0.13',
    app2: '10.34.0.14',
    plain: '10.34.0.15',
    mute: '10.34.0.16',
  };
  type Guest = keyof typeof IP;
  const GUESTS = Object.keys(IP) as Guest[];

  const port = (guest: Guest, groups: string[] = []): HostPort => ({
    name: tapName(guest, 0),
    kind: 'veth',
    peer: { name: 'eth0', netns: `${prefix}-${guest}` },
    mac: `52:54:00:34:00:${IP[guest].split('.')[3]}`,
    ip: IP[guest],
    hostname: guest,
    ...(groups.length ? { securityGroups: groups } : {}),
  });
  const webGroup = (peer: HostSecurityGroup['rules'][number]['peer']): HostSecurityGroup => ({
    name: 'web',
    rules: [
      { direction: 'ingress', protocol: 'tcp', ports: [[80, 80]], peer },
      { direction: 'ingress', protocol: 'icmp', peer: { any: true } },
    ],
  });
  const appPeer = (...members: Guest[]) => ({ group: 'app', addresses: members.map((m) => IP[m]) });
  // `mute` may only open connections to plain's port 22
  const quiet: HostSecurityGroup = {
    name: 'quiet',
    rules: [{ direction: 'egress', protocol: 'tcp', ports: [[22, 22]], peer: { cidr: `${IP.plain}/32` } }],
  };
  const state = (web: HostSecurityGroup, app2Groups: string[] = []): HostState => ({
    networks: [
      {
        network: net,
        dhcp: false,
        securityGroups: [web, { name: 'app', rules: [] }, quiet],
        ports: [
          port('web', ['web']),
          port('app', ['app']),
          port('other'),
          port('mute', ['quiet']),
          port('app2', app2Groups),
          port('plain'),
        ],
      },
    ],
  });

  /** A line sent to `to`:`p` comes back (its echo service): a connection allowed both ways. */
  async function talks(from: Guest, to: Guest, p: number): Promise<boolean> {
    const r = await lab.exec(ns[from]!, ['busybox', 'nc', '-w', '2', IP[to], String(p)], {
      input: `hello ${from}\n`,
      reject: false,
      timeoutMs: 10_000,
    });
    return r.stdout.includes(`hello ${from}`);
  }

  /**
   * Not `talks`, and proven: `from`'s SYN is captured leaving its port and never at `to`'s, where
   * the host's own ping (sent after it) arrives.
   */
  async function blocked(from: Guest, to: Guest, p: number): Promise<boolean> {
    const syn = `tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0 and dst port ${p}`;
    const attempt = new RegExp(`${esc(IP[from])}\\.\\d+ > ${esc(IP[to])}\\.${p}:`);
    const r = await probe({
      from: { netns: host, dev: tapName(from, 0), filter: syn },
      to: { netns: host, dev: tapName(to, 0), filter: `(${syn}) or icmp` },
      attempt: () => talks(from, to, p),
      sent: attempt,
      barrier: async () => expect(await lab.ping(host, IP[to])).toBe(true),
      arrived: /ICMP echo request/,
    });
    return !r.result && r.delivered === 0;
  }

  describeAsRoot(`security groups on the host plane (namespaces), ${firewall} firewall`, () => {
    beforeAll(async () => {
      await lab.sweep();
      host = await lab.netns('host');
      for (const g of GUESTS) ns[g] = await lab.netns(g);
      plane = new HostPlane({ netns: host, stateDir: lab.stateDir, firewall });
      await plane.apply(state(webGroup(appPeer('app'))));
      for (const g of GUESTS) {
        await lab.configureGuest(ns[g]!, 'eth0', `${IP[g]}/24`, net.gateway);
        for (const p of ['80', '22']) void lab.spawn(ns[g]!, ['busybox', 'nc', '-ll', '-p', p, '-e', 'cat']);
      }
      // every echo service answers from its own namespace before any test relies on it
      for (const g of GUESTS)
        await waitFor(`${g}'s echo service`, 10_000, async () => {
          const r = await lab.exec(ns[g]!, ['busybox', 'nc', '-w', '1', IP[g], '80'], { input: 'x\n', reject: false });
          return r.stdout.includes('x');
        });
    });
    afterAll(async () => {
      await plane?.teardown().catch(() => {});
      await lab.cleanup();
    });

    test('ingress only as the rules allow; replies pass; ports outside groups stay open', async () => {
      expect(await talks('app', 'web', 80)).toBe(true); // tcp 80 from group app, and web's reply
      expect(await blocked('other', 'web', 80)).toBe(true);
      expect(await blocked('app', 'web', 22)).toBe(true);
      expect(await lab.ping(ns.other!, IP.web)).toBe(true); // icmp from anyone
      expect(await blocked('web', 'app', 80)).toBe(true); // app's group allows no ingress at all
      expect(await talks('web', 'plain', 80)).toBe(true); // plain is in no group: open as before
    });

    test('egress rules: only what they allow leaves; the receiver still decides its ingress', async () => {
      expect(await talks('mute', 'plain', 22)).toBe(true);
      expect(await blocked('mute', 'plain', 80)).toBe(true);
      // web lets icmp in; mute may not send it: its echo request leaves its port, never reaches web's
      const ping = await probe({
        from: { netns: host, dev: tapName('mute', 0), filter: 'icmp' },
        to: { netns: host, dev: tapName('web', 0), filter: 'icmp' },
        attempt: () => lab.ping(ns.mute!, IP.web),
        sent: new RegExp(`${esc(IP.mute)} > ${esc(IP.web)}: ICMP echo request`),
        barrier: async () => expect(await lab.ping(host, IP.web)).toBe(true),
        arrived: /ICMP echo request/,
      });
      expect([ping.result, ping.delivered]).toEqual([false, 0]);
      expect(await blocked('plain', 'mute', 80)).toBe(true); // mute is in a group: no ingress rule
    });

    test('a rule changed live flips both sides, and cuts the established flow it now denies', async () => {
      // one connection app -> web:80, held open
      const held = lab.spawn(ns.app!, ['busybox', 'nc', IP.web, '80']) as ResultPromise;
      let echoed = '';
      held.stdout!.on('data', (d: Buffer) => (echoed += d.toString()));
      held.stdin!.write('one\n');
      await waitFor('the held connection to echo', 10_000, () => echoed.includes('one'));

      await plane.apply(state(webGroup({ cidr: `${IP.other}/32` })));
      expect(await talks('other', 'web', 80)).toBe(true);
      expect(await blocked('app', 'web', 80)).toBe(true);
      // its conntrack entry is gone: the next segment is judged as new, and dropped
      const tracked = await lab.exec(host, ['conntrack', '-L', '-s', IP.app, '-d', IP.web], { reject: false });
      expect(tracked.stdout).not.toMatch(/ESTABLISHED/);
      held.stdin!.write('two\n');
      await expect(waitFor('an echo through the cut connection', 3_000, () => echoed.includes('two'))).rejects.toThrow(
        /timed out/,
      );
      held.kill('SIGKILL');
    });

    test('a group peer follows its members: a port joining app reaches web, web untouched', async () => {
      await plane.apply(state(webGroup(appPeer('app'))));
      expect(await blocked('app2', 'web', 80)).toBe(true);
      await plane.apply(state(webGroup(appPeer('app', 'app2')), ['app']));
      expect(await talks('app2', 'web', 80)).toBe(true);
      expect(await talks('app', 'web', 80)).toBe(true);
    });

    test('tampered rules are drift; apply puts them back', async () => {
      const want = state(webGroup(appPeer('app', 'app2')), ['app']);
      expect((await plane.plan(want)).changes).toEqual([]);
      if (firewall === 'nftables') {
        const chains = (await lab.exec(host, ['nft', 'list', 'chains', 'inet'])).stdout;
        const policy = /chain (sgc_[0-9a-f]+_i)/.exec(chains)![1]!;
        await lab.exec(host, ['nft', 'flush', 'chain', 'inet', 'virtwire', policy]);
      } else {
        const saved = (await lab.exec(host, ['iptables-save', '-t', 'filter'])).stdout;
        const chain = /^:(VWC-[0-9a-f]{12}-[0-9a-f]{6}) /m.exec(saved)![1]!;
        await lab.exec(host, ['iptables', '-F', chain]);
      }
      expect((await plane.plan(want)).changes).toContainEqual(expect.objectContaining({ kind: 'firewall' }));
      await plane.apply(want);
      expect((await plane.plan(want)).changes).toEqual([]);
      expect(await blocked('other', 'web', 80)).toBe(true);
    });

    test('without groups the tenant is open again, and teardown leaves nothing', async () => {
      await plane.apply({
        networks: [{ network: net, dhcp: false, ports: GUESTS.map((g) => port(g)) }],
      });
      expect(await talks('other', 'web', 80)).toBe(true);
      expect(await talks('web', 'app', 22)).toBe(true);
      await plane.teardown();
      const rules =
        firewall === 'nftables'
          ? (await lab.exec(host, ['nft', 'list', 'ruleset'])).stdout
          : (await lab.exec(host, ['iptables-save'])).stdout;
      expect(rules).not.toMatch(/sgc_|VWC-|VWG-/);
    });
  });
}
