// QoS on a real kernel: iperf3 between two guest namespaces on one tenant bridge, one of them
// limited. "egress" is what the guest sends (shaped on an ifb its port's ingress is redirected
// to: this kernel has no police action), "ingress" what it receives (htb on the port).
import { HostPlane } from '../../lib/host/index.js';
import { validateNetwork, tapName } from '../../lib/spec/index.js';
import type { HostPort, HostState } from '../../types/host.js';
import { describeAsRoot } from '../helpers/root.js';
import { Lab } from '../helpers/lab.js';

const lab = new Lab('vwqs');
const net = validateNetwork({ tenant: 'qos', cidr: '10.41.0.0/24', nat: false });
const guest = (g: string, mac: string, ip: string, qos?: HostPort['qos']): HostPort => ({
  name: tapName(g, 0),
  kind: 'veth',
  peer: { name: 'eth0', netns: `vwqs-${g}` },
  mac,
  ip,
  ...(qos ? { qos } : {}),
});
const state = (kbps: number): HostState => ({
  networks: [
    {
      network: net,
      dhcp: false,
      ports: [
        guest('limited', '52:54:00:41:00:11', '10.41.0.11', { egressKbps: kbps, ingressKbps: kbps }),
        guest('server', '52:54:00:41:00:12', '10.41.0.12'),
      ],
    },
  ],
});

/** Mbit/s the receiver saw over 4 s (the first second, TCP's slow start, left out). */
async function iperf(reverse: boolean): Promise<number> {
  const args = ['iperf3', '-c', '10.41.0.12', '-t', '4', '-O', '1', '-J', ...(reverse ? ['-R'] : [])];
  const r = await lab.exec('vwqs-limited', args, { timeoutMs: 30_000 });
  return JSON.parse(r.stdout).end.sum_received.bits_per_second / 1e6;
}

describeAsRoot('QoS with tc (iperf3 between namespaces)', () => {
  let plane: HostPlane;
  beforeAll(async () => {
    await lab.sweep();
    const host = await lab.netns('host');
    await lab.netns('limited');
    await lab.netns('server');
    plane = new HostPlane({ netns: host, stateDir: lab.stateDir });
    await plane.apply(state(10_000));
    await lab.configureGuest('vwqs-limited', 'eth0', '10.41.0.11/24');
    await lab.configureGuest('vwqs-server', 'eth0', '10.41.0.12/24');
    const server = lab.spawn('vwqs-server', ['iperf3', '-s', '-B', '10.41.0.12', '--forceflush']);
    await new Promise<void>((resolve, reject) => {
      server.stdout!.on('data', (d: Buffer) => d.toString().includes('Server listening') && resolve());
      server.on('exit', () => reject(new Error('iperf3 server exited')));
    });
  });
  afterAll(async () => {
    await plane?.teardown().catch(() => {});
    await lab.cleanup();
  });

  test.each([10, 50])(
    '%i Mbit/s: both directions within 10%% of the configured rate',
    async (mbit) => {
      const report = await plane.apply(state(mbit * 1000));
      if (mbit !== 10) expect(report.changes.find((c) => c.step === 'qos')!.count).toBeGreaterThan(0);
      const sent = await iperf(false);
      const received = await iperf(true);
      console.log(`QoS ${mbit} Mbit/s: guest sends ${sent.toFixed(2)}, receives ${received.toFixed(2)} Mbit/s`);
      expect(Math.abs(sent - mbit) / mbit).toBeLessThan(0.1);
      expect(Math.abs(received - mbit) / mbit).toBeLessThan(0.1);
    },
    60_000,
  );

  test('the same QoS applied again changes nothing', async () => {
    const report = await plane.apply(state(50_000));
    expect(report.noop).toBe(true);
  });

  test("a deleted redirect filter (the port's ingress qdisc kept) is drift: planned, repaired", async () => {
    const port = tapName('limited', 0);
    const hasRedirect = async () =>
      (await lab.exec('vwqs-host', ['tc', 'filter', 'show', 'dev', port, 'parent', 'ffff:'])).stdout.includes(
        'Redirect to device',
      );
    expect(await hasRedirect()).toBe(true);
    await lab.exec('vwqs-host', ['tc', 'filter', 'del', 'dev', port, 'parent', 'ffff:']);
    expect(await hasRedirect()).toBe(false);
    expect((await plane.plan(state(50_000))).changes).toEqual([
      { kind: 'qos', action: 'set', device: port, tenant: net.tenant },
    ]);
    await plane.apply(state(50_000));
    expect(await hasRedirect()).toBe(true);
    expect((await plane.apply(state(50_000))).noop).toBe(true);
  });

  test('without QoS the same path runs far faster than the limit (the limit is what slowed it)', async () => {
    const open = state(50_000);
    delete open.networks[0]!.ports[0]!.qos;
    await plane.apply(open);
    expect(await iperf(false)).toBeGreaterThan(100);
  }, 60_000);
});
