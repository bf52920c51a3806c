// VXLAN uplinks between two "hosts" (namespaces joined by a veth underlay, 192.168.77.0/24):
// each host has both tenants' bridges, each with a VXLAN uplink to the other host. Both tenants
// even use the same subnet: only the VNI keeps them apart. The underlay has an MTU of 1400, as
// many clouds' NICs do: the segment gets 1350, and a guest's full-size frame crosses.
import { HostPlane, LocalRunner } from '../../lib/host/index.js';
import { isVirtwireError, type HostCommandError } from '../../lib/errors/index.js';
import { validateNetwork, tapName } from '../../lib/spec/index.js';
import type { HostState } from '../../types/host.js';
import { describeAsRoot } from '../helpers/root.js';
import { Lab } from '../helpers/lab.js';
import { esc, probe } from '../helpers/capture.js';

const lab = new Lab('vwvx');
const UNDERLAY = { hosta: '192.168.77.1', hostb: '192.168.77.2' } as const;
const UNDERLAY_MTU = 1400;
const SEGMENT_MTU = UNDERLAY_MTU - 50;

function hostState(host: 'hosta' | 'hostb', guests: { acme: [string, string]; globex: [string, string] }): HostState {
  const other = host === 'hosta' ? UNDERLAY.hostb : UNDERLAY.hosta;
  const net = (tenant: string, vni: number) =>
    validateNetwork({
      tenant,
      cidr: '10.51.0.0/24',
      nat: false,
      segment: { type: 'vxlan', vni, uplink: 'under0', local: UNDERLAY[host], remotes: [other] },
    });
  const port = ([g, ip]: [string, string], mac: string) => ({
    name: tapName(g, 0),
    kind: 'veth' as const,
    peer: { name: 'eth0', netns: `vwvx-${g}` },
    mac,
    ip,
  });
  return {
    networks: [
      {
        network: net('acme', 100),
        dhcp: false,
        ports: [port(guests.acme, host === 'hosta' ? '52:54:00:51:00:11' : '52:54:00:51:00:12')],
      },
      {
        network: net('globex', 200),
        dhcp: false,
        ports: [port(guests.globex, host === 'hosta' ? '52:54:00:51:00:21' : '52:54:00:51:00:22')],
      },
    ],
  };
}

describeAsRoot('VXLAN uplinks between two hosts (namespaces)', () => {
  const planes: HostPlane[] = [];
  beforeAll(async () => {
    await lab.sweep();
    const a = await lab.netns('hosta');
    const b = await lab.netns('hostb');
    for (const g of ['acme1', 'acme2', 'glob1', 'glob2']) await lab.netns(g);
    await lab.underlay(a, b, 'under0', UNDERLAY_MTU, `${UNDERLAY.hosta}/24`, `${UNDERLAY.hostb}/24`);
    planes.push(
      new HostPlane({ netns: a, stateDir: `${lab.stateDir}/a` }),
      new HostPlane({ netns: b, stateDir: `${lab.stateDir}/b` }),
    );
    await planes[0]!.apply(hostState('hosta', { acme: ['acme1', '10.51.0.11'], globex: ['glob1', '10.51.0.21'] }));
    await planes[1]!.apply(hostState('hostb', { acme: ['acme2', '10.51.0.12'], globex: ['glob2', '10.51.0.22'] }));
    for (const [g, ip] of [
      ['acme1', '11'],
      ['acme2', '12'],
      ['glob1', '21'],
      ['glob2', '22'],
    ] as const) {
      await lab.configureGuest(`vwvx-${g}`, 'eth0', `10.51.0.${ip}/24`);
    }
  });
  afterAll(async () => {
    for (const p of planes) await p.teardown().catch(() => {});
    await lab.cleanup();
  });

  test('the same tenant connects across the hosts', async () => {
    expect(await lab.reaches('vwvx-acme1', '10.51.0.12')).toBe(true);
    expect(await lab.reaches('vwvx-glob2', '10.51.0.21')).toBe(true);
  });

  test('different tenants do not, even on the same subnet', async () => {
    // each attempt (an ARP for the other tenant's guest, flooded into its own VNI) is captured
    // leaving its port on host A and never at the target's port on host B, where the target's own
    // tenant's ping from host A (the barrier, over the same underlay) arrives
    for (const [from, fromIp, to, toIp, peer, peerIp] of [
      ['acme1', '10.51.0.11', 'glob2', '10.51.0.22', 'glob1', '10.51.0.21'],
      ['glob1', '10.51.0.21', 'acme2', '10.51.0.12', 'acme1', '10.51.0.11'],
    ] as const) {
      const r = await probe({
        from: { netns: 'vwvx-hosta', dev: tapName(from, 0), filter: 'arp or icmp' },
        to: { netns: 'vwvx-hostb', dev: tapName(to, 0), filter: 'arp or icmp' },
        attempt: () => lab.ping(`vwvx-${from}`, toIp),
        sent: new RegExp(`who-has ${esc(toIp)} tell`),
        barrier: async () => expect(await lab.reaches(`vwvx-${peer}`, toIp)).toBe(true),
        arrived: new RegExp(`${esc(peerIp)} > ${esc(toIp)}: ICMP`),
        delivered: new RegExp(`tell ${esc(fromIp)}|${esc(fromIp)} >`),
      });
      expect([r.result, r.delivered]).toEqual([false, 0]);
    }
  });

  test('the uplinks are VXLAN devices with their VNI, peer and the underlay MTU − 50', async () => {
    const { stdout } = await lab.exec('vwvx-hosta', ['ip', '-j', '-d', 'link', 'show', 'type', 'vxlan']);
    const links = JSON.parse(stdout) as { mtu: number; master: string; linkinfo: { info_data: { id: number } } }[];
    expect(links.map((l) => l.linkinfo.info_data.id).sort()).toEqual([100, 200]);
    expect(links.every((l) => l.mtu === SEGMENT_MTU && l.master.startsWith('vwb'))).toBe(true);
    // the bridges and the guests' ports (the guest end of each veth too) have the segment's MTU
    const all = JSON.parse((await lab.exec('vwvx-hosta', ['ip', '-j', 'link', 'show'])).stdout) as {
      ifname: string;
      mtu: number;
    }[];
    expect(all.filter((l) => /^vw[bt]/.test(l.ifname)).map((l) => l.mtu)).toEqual([
      SEGMENT_MTU,
      SEGMENT_MTU,
      SEGMENT_MTU,
      SEGMENT_MTU,
    ]);
    const guestEnd = JSON.parse((await lab.exec('vwvx-acme1', ['ip', '-j', 'link', 'show', 'eth0'])).stdout) as {
      mtu: number;
    }[];
    expect(guestEnd[0]!.mtu).toBe(SEGMENT_MTU);
    const fdb = await lab.exec('vwvx-hosta', [
      'bridge',
      'fdb',
      'show',
      'dev',
      links.length ? (JSON.parse(stdout)[0].ifname as string) : 'none',
    ]);
    expect(fdb.stdout).toContain(`dst ${UNDERLAY.hostb}`);
    // re-applying changes nothing
    expect(
      (await planes[0]!.apply(hostState('hosta', { acme: ['acme1', '10.51.0.11'], globex: ['glob1', '10.51.0.21'] })))
        .noop,
    ).toBe(true);
  });
});

describeAsRoot('VXLAN over a 1400-byte underlay: path MTU, too-small uplinks, batch errors, MTU drift', () => {
  // the describe above has made and torn down its own lab; this one reuses its shape
  const lab2 = new Lab('vwvy');
  let plane: HostPlane;
  const state = (): HostState => ({
    networks: [
      {
        network: validateNetwork({
          tenant: 'acme',
          cidr: '10.52.0.0/24',
          nat: false,
          segment: { type: 'vxlan', vni: 100, uplink: 'under0', local: UNDERLAY.hosta, remotes: [UNDERLAY.hostb] },
        }),
        ports: [
          {
            name: tapName('g1', 0),
            kind: 'veth' as const,
            peer: { name: 'eth0', netns: 'vwvy-g1' },
            mac: '52:54:00:52:00:11',
            ip: '10.52.0.11',
          },
        ],
      },
    ],
  });
  let peer: HostPlane;
  beforeAll(async () => {
    await lab2.sweep();
    const a = await lab2.netns('hosta');
    const b = await lab2.netns('hostb');
    await lab2.netns('g1');
    await lab2.netns('g2');
    await lab2.exec(a, [
      'ip',
      'link',
      'add',
      'under0',
      'mtu',
      String(UNDERLAY_MTU),
      'type',
      'veth',
      'peer',
      'name',
      'under0',
      'mtu',
      String(UNDERLAY_MTU),
      'netns',
      b,
    ]);
    await lab2.configureGuest(a, 'under0', `${UNDERLAY.hosta}/24`);
    await lab2.configureGuest(b, 'under0', `${UNDERLAY.hostb}/24`);
    plane = new HostPlane({ netns: a, stateDir: `${lab2.stateDir}/a` });
    peer = new HostPlane({ netns: b, stateDir: `${lab2.stateDir}/b` });
    await plane.apply(state());
    const other = state().networks[0]!;
    await peer.apply({
      networks: [
        {
          ...other,
          dhcp: false,
          network: {
            ...other.network,
            segment: { type: 'vxlan', vni: 100, uplink: 'under0', local: UNDERLAY.hostb, remotes: [UNDERLAY.hosta] },
          },
          ports: [
            {
              name: tapName('g2', 0),
              kind: 'veth',
              peer: { name: 'eth0', netns: 'vwvy-g2' },
              mac: '52:54:00:52:00:12',
              ip: '10.52.0.12',
            },
          ],
        },
      ],
    });
    await lab2.configureGuest('vwvy-g1', 'eth0', '10.52.0.11/24');
    await lab2.configureGuest('vwvy-g2', 'eth0', '10.52.0.12/24');
  });
  afterAll(async () => {
    await plane?.teardown().catch(() => {});
    await peer?.teardown().catch(() => {});
    await lab2.cleanup();
  });

  test('a full-size ping with DF crosses the segment; one byte more does not', async () => {
    const guest = JSON.parse((await lab2.exec('vwvy-g1', ['ip', '-j', 'link', 'show', 'eth0'])).stdout) as {
      mtu: number;
    }[];
    expect(guest[0]!.mtu).toBe(SEGMENT_MTU);
    expect(
      await lab2.exec('vwvy-hosta', ['cat', `${lab2.stateDir}/a/dnsmasq/acme/dnsmasq.conf`]).then((r) => r.stdout),
    ).toContain(`dhcp-option=option:mtu,${SEGMENT_MTU}`);
    const payload = SEGMENT_MTU - 28; // IPv4 20 + ICMP 8
    const ping = (size: number) =>
      lab2.exec('vwvy-g1', ['ping', '-c', '1', '-W', '2', '-M', 'do', '-s', String(size), '10.52.0.12'], {
        reject: false,
      });
    expect((await ping(payload)).exitCode).toBe(0);
    expect((await ping(payload + 1)).exitCode).not.toBe(0);
  });

  test('an uplink too small for the segment is refused before anything changes', async () => {
    await lab2.exec('vwvy-hostb', ['ip', 'link', 'set', 'under0', 'mtu', '1300']);
    try {
      const before = (await lab2.exec('vwvy-hostb', ['ip', '-j', 'link', 'show'])).stdout;
      const err = await peer
        .apply({
          networks: [
            {
              ...state().networks[0]!,
              ports: [],
              network: validateNetwork({
                tenant: 'newt',
                cidr: '10.53.0.0/24',
                nat: false,
                segment: { type: 'vxlan', vni: 300, uplink: 'under0' },
              }),
            },
          ],
        })
        .catch((e: unknown) => e);
      expect(isVirtwireError(err, 'HOST_UNSUPPORTED')).toBe(true);
      expect((err as Error).message).toBe(
        "uplink under0 has MTU 1300; tenant newt's VXLAN segment needs at least 1330 (1280 for the guests + 50 for VXLAN over IPv4)",
      );
      expect((await lab2.exec('vwvy-hostb', ['ip', '-j', 'link', 'show'])).stdout).toBe(before);
    } finally {
      await lab2.exec('vwvy-hostb', ['ip', 'link', 'set', 'under0', 'mtu', String(UNDERLAY_MTU)]);
    }
  });

  test("when the uplink's MTU changes, plan shows the segment's devices and dnsmasq to change; apply follows", async () => {
    await lab2.exec('vwvy-hosta', ['ip', 'link', 'set', 'under0', 'mtu', '1380']);
    try {
      const plan = await plane.plan(state());
      expect(plan.ip.filter((l) => l.endsWith('mtu 1330')).length).toBe(3); // bridge, VXLAN device, port
      expect(plan.changes.filter((c) => c.kind === 'dnsmasq')).toEqual([
        { kind: 'dnsmasq', tenant: 'acme', action: 'restart' },
      ]); // DHCP hands out the new MTU
      await plane.apply(state());
      expect((await plane.plan(state())).ip).toEqual([]);
    } finally {
      await lab2.exec('vwvy-hosta', ['ip', 'link', 'set', 'under0', 'mtu', String(UNDERLAY_MTU)]);
      await plane.apply(state());
    }
  });

  test("a failing batch names the failing line and its device, not just 'Command failed -:2'", async () => {
    const runner = new LocalRunner('vwvy-hosta');
    const err = await runner
      .run(['ip', '-batch', '-'], {
        input: 'link add vwxprobe type vxlan id 9 dstport 4789 dev under0\nlink set dev vwxprobe mtu 1450\n',
        step: 'links: apply',
      })
      .catch((e: unknown) => e as HostCommandError);
    await lab2.exec('vwvy-hosta', ['ip', 'link', 'del', 'vwxprobe'], { reject: false });
    expect(isVirtwireError(err, 'HOST_COMMAND')).toBe(true);
    expect((err as HostCommandError).line).toEqual({
      number: 2,
      text: 'link set dev vwxprobe mtu 1450',
      device: 'vwxprobe',
    });
    expect((err as Error).message).toContain('at input line 2 "link set dev vwxprobe mtu 1450" (device vwxprobe)');
  });
});
