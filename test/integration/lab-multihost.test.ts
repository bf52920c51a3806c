// Tenant networks across hosts, proven on a kernel that has 802.1Q: three lab hosts under
// QEMU (this machine's kernel has no 802.1Q; the Debian guest kernel does), configured by
// virtwire's host plane through the SSH runner exactly as real hosts would be. Their eth1 NICs
// share a host bridge that plays the physical switch; guests are network namespaces inside the
// lab hosts. Both tenants use the same subnet: only the segment keeps them apart. With DHCP on,
// each host runs the tenant's dnsmasq and gateway for its own guests only.
import { execa } from 'execa';
import { HostPlane, type SshRunner } from '../../lib/host/index.js';
import { validateNetwork, validateVm, tapName, vxlanDeviceName } from '../../lib/spec/index.js';
import { hostStateFor } from '../../lib/engine/records-to-host.js';
import { buildLabHostImage } from '../../lib/testing/lab-image.js';
import type { HostState, HostPort } from '../../types/host.js';
import type { SegmentSpec } from '../../types/spec.js';
import { describeAsRoot } from '../helpers/root.js';
import { LabHosts } from '../helpers/lab-hosts.js';
import { waitFor } from '../helpers/wait.js';

const lab = new LabHosts('vwlab');
const UNDERLAY = (h: number) => `192.168.94.${10 + h}`;
const runners: SshRunner[] = [];
const planes: HostPlane[] = [];

const guest = (tenant: 'a' | 'b', h: number): HostPort => ({
  name: tapName(`${tenant}${h}`, 0),
  kind: 'veth',
  peer: { name: 'eth0', netns: `g${tenant}${h}` },
  mac: `52:54:00:${tenant === 'a' ? 'a1' : 'b1'}:00:0${h}`,
  ip: `10.101.0.${tenant === 'a' ? 10 + h : 20 + h}`,
});
function state(
  h: number,
  seg: (tenant: 'a' | 'b') => SegmentSpec,
  tenants: ('a' | 'b')[] = ['a', 'b'],
  dhcp: ('a' | 'b')[] = [],
): HostState {
  return {
    networks: tenants.map((t) => ({
      network: validateNetwork({
        tenant: t === 'a' ? 'acme' : 'globex',
        cidr: '10.101.0.0/24',
        nat: false,
        segment: seg(t),
      }),
      ports: [guest(t, h)],
      // one host cannot serve DNS on the same gateway address for two tenants (both use 10.101.0.1 here)
      dhcp: dhcp.includes(t),
    })),
  };
}
const vlan = (t: 'a' | 'b'): SegmentSpec => ({ type: 'vlan', id: t === 'a' ? 100 : 200, uplink: 'eth1' });
const vxlan =
  (h: number) =>
  (t: 'a' | 'b'): SegmentSpec => ({
    type: 'vxlan',
    vni: t === 'a' ? 5000 : 6000,
    uplink: 'eth1',
    local: UNDERLAY(h),
    remotes: [UNDERLAY(3 - h)],
  });

const inGuest = (h: number, ns: string, argv: string[]) =>
  runners[h - 1]!.run(['ip', 'netns', 'exec', ns, ...argv], { allowFailure: true });
const ping = async (h: number, ns: string, ip: string) =>
  (await inGuest(h, ns, ['ping', '-c', '1', '-W', '2', ip])).exitCode === 0;

async function guestsUp(on = [1, 2]): Promise<void> {
  for (const h of on) {
    for (const t of ['a', 'b'] as const) {
      const g = guest(t, h);
      await inGuest(h, `g${t}${h}`, ['ip', 'addr', 'replace', `${g.ip}/24`, 'dev', 'eth0']);
      await inGuest(h, `g${t}${h}`, ['ip', 'link', 'set', 'eth0', 'up']);
    }
  }
}

/**
 * Each switch line with the segment it crossed in: `vlan N` on its line, or `vni N` ending the
 * line before (VXLAN's inner frame).
 */
function bySegment(lines: string[]): { seg: string; line: string }[] {
  return lines.map((line, i) => {
    const tag = /vlan (\d+),/.exec(line) ?? /vni (\d+)$/.exec(lines[i - 1] ?? '');
    return { seg: tag?.[1] ?? '', line };
  });
}

/**
 * The matrix: each tenant reaches its own guest on the other host and never the other tenant's.
 * Each attempt (the same subnet: an ARP request for the other tenant's address) is captured on
 * the switch in its own tenant's segment (`seg`: VID or VNI), and never in the other's.
 */
async function expectIsolationMatrix(seg: Record<'a' | 'b', string>): Promise<void> {
  await waitFor('acme across the hosts', 60_000, () => ping(1, 'ga1', '10.101.0.12'));
  await waitFor('globex across the hosts', 60_000, () => ping(2, 'gb2', '10.101.0.21'));
  const attempts = [
    ['a', 1, 'ga1', '10.101.0.11', '10.101.0.22'],
    ['b', 2, 'gb2', '10.101.0.22', '10.101.0.11'],
    ['b', 1, 'gb1', '10.101.0.21', '10.101.0.12'],
  ] as const;
  const lines = await framesDuring('arp or udp port 4789', async () => {
    for (const [, h, ns, , to] of attempts) expect(await ping(h, ns, to)).toBe(false);
  });
  const frames = bySegment(lines);
  for (const [t, , , from, to] of attempts) {
    const sent = frames.filter((f) => f.seg === seg[t] && f.line.includes(`who-has ${to} tell ${from}`));
    const crossed = frames.filter((f) => f.seg !== seg[t] && f.line.includes(`tell ${from}`));
    expect([from, to, sent.length > 0, crossed]).toEqual([from, to, true, []]);
  }
}

/** Frames seen on the lab switch while `traffic` runs, until one matches `want`. */
async function capture(filter: string, want: RegExp, traffic: () => Promise<unknown>): Promise<string> {
  const dump = execa('tcpdump', ['-i', lab.switchBridge, '-e', '-n', '-l', ...filter.split(' ')], {
    reject: false,
    timeout: 30_000,
  });
  let seen = '';
  const found = new Promise<void>((resolve) =>
    dump.stdout!.on('data', (d: Buffer) => {
      seen += d.toString();
      if (want.test(seen)) resolve();
    }),
  );
  await new Promise<void>((resolve) =>
    dump.stderr!.on('data', (d: Buffer) => d.toString().includes('listening on') && resolve()),
  );
  await traffic();
  await Promise.race([found, dump]);
  dump.kill();
  await dump;
  return seen;
}

/** Frames on the lab switch matching `filter` while `traffic` runs (a marker ping closes the window). */
async function framesDuring(filter: string, traffic: () => Promise<void>): Promise<string[]> {
  const dump = execa(
    'tcpdump',
    ['-i', lab.switchBridge, '-e', '-n', '-l', `(${filter}) or (icmp and host 10.101.0.11 and host 10.101.0.12)`],
    { reject: false, timeout: 60_000 },
  );
  let seen = '';
  dump.stdout!.on('data', (d: Buffer) => (seen += d.toString()));
  await new Promise<void>((resolve) =>
    dump.stderr!.on('data', (d: Buffer) => d.toString().includes('listening on') && resolve()),
  );
  await traffic();
  // the marker crosses the switch: once tcpdump printed it, everything before it was printed too
  await waitFor(
    'the marker ping on the switch',
    20_000,
    async () => (await ping(1, 'ga1', '10.101.0.12')) && /ICMP echo/.test(seen),
  );
  dump.kill();
  await dump;
  return seen.split('\n').filter((l) => l && !/ICMP echo/.test(l));
}

describeAsRoot('tenant networks across lab hosts (802.1Q and VXLAN, over SSH)', () => {
  beforeAll(async () => {
    const image = await buildLabHostImage();
    await lab.start(image, 3);
    for (const h of [1, 2, 3]) {
      const r = lab.runner(h);
      runners.push(r);
      planes.push(new HostPlane({ runner: r, stateDir: `${lab.dir}/state${h}` }));
      for (const ns of [`ga${h}`, `gb${h}`]) await r.run(['ip', 'netns', 'add', ns]);
      // the underlay for VXLAN: the lab network's own addressing, not virtwire's
      await r.run(['ip', 'addr', 'add', `${UNDERLAY(h)}/24`, 'dev', 'eth1']);
    }
  }, 300_000);
  afterAll(async () => {
    await lab.cleanup();
  });

  test('the probe over SSH finds 802.1Q on the lab kernel', async () => {
    for (const h of [1, 2]) {
      await planes[h - 1]!.apply(state(h, vlan));
    }
    await guestsUp();
    const { stdout } = await runners[0]!.run(['ip', '-j', '-d', 'link', 'show', 'type', 'vlan']);
    const vlans = JSON.parse(stdout) as {
      ifname: string;
      master: string;
      linkinfo: { info_data: { id: number; protocol: string } };
    }[];
    expect(vlans.map((v) => [v.ifname, v.linkinfo.info_data.protocol, v.linkinfo.info_data.id]).sort()).toEqual([
      ['eth1.100', '802.1Q', 100],
      ['eth1.200', '802.1Q', 200],
    ]);
    expect(vlans.every((v) => v.master.startsWith('vwb'))).toBe(true);
  });

  test('VLAN: each tenant reaches its guest on the other host, never the other tenant (same subnet)', async () => {
    await expectIsolationMatrix({ a: '100', b: '200' });
  });

  test("VLAN: frames on the switch carry 802.1Q tags with each tenant's VID", async () => {
    const a = await capture('vlan 100 and icmp', /vlan 100,/, () => ping(1, 'ga1', '10.101.0.12'));
    expect(a).toMatch(/ethertype 802\.1Q \(0x8100\), length \d+: vlan 100,.*ICMP echo/);
    const b = await capture('vlan 200 and icmp', /vlan 200,/, () => ping(2, 'gb2', '10.101.0.21'));
    expect(b).toMatch(/vlan 200,.*ICMP echo/);
    // and each tenant's frames carry only its own tag
    expect(a).not.toMatch(/vlan 200/);
  });

  test('DHCP and the gateway stay per host: each guest leases from its own host; neither crosses the switch', async () => {
    // both hosts have acme's gateway address and a dnsmasq for acme, on one 802.1Q segment
    for (const h of [1, 2]) await planes[h - 1]!.apply(state(h, vlan, ['a', 'b'], ['a']));
    const crossing = await framesDuring('port 67 or port 68 or (arp and host 10.101.0.1)', async () => {
      for (const h of [1, 2]) {
        const dhcp = await inGuest(h, `ga${h}`, [
          'busybox',
          'udhcpc',
          '-i',
          'eth0',
          '-n',
          '-q',
          '-f',
          '-t',
          '5',
          '-T',
          '2',
          '-s',
          '/bin/true',
        ]);
        expect(dhcp.stdout + dhcp.stderr).toMatch(new RegExp(`lease of 10\\.101\\.0\\.1${h} obtained`));
        await inGuest(h, `ga${h}`, ['ip', 'neigh', 'flush', 'all']);
        expect(await ping(h, `ga${h}`, '10.101.0.1')).toBe(true);
      }
    });
    expect(crossing).toEqual([]);
    for (const h of [1, 2]) {
      // the lease file (on the lab host, read over SSH) has its own guest only
      expect((await planes[h - 1]!.leases('acme')).map((l) => l.ip)).toEqual([`10.101.0.1${h}`]);
      // and the gateway the guest resolved is its own host's bridge
      const bridge = JSON.parse(
        (
          await runners[h - 1]!.run([
            'ip',
            '-j',
            'link',
            'show',
            validateNetwork({ tenant: 'acme', cidr: '10.101.0.0/24' }).bridge,
          ])
        ).stdout,
      ) as { address: string }[];
      const neigh = (await inGuest(h, `ga${h}`, ['ip', 'neigh', 'show', '10.101.0.1'])).stdout;
      expect(neigh).toContain(`lladdr ${bridge[0]!.address}`);
    }
    for (const h of [1, 2]) await planes[h - 1]!.apply(state(h, vlan));
    expect(await planes[0]!.dnsmasqPid('acme')).toBeUndefined();
  });

  test('removing a tenant on one host removes exactly its VLAN device, bridge, port and rules', async () => {
    const before = JSON.parse((await runners[0]!.run(['ip', '-j', 'link', 'show'])).stdout) as { ifname: string }[];
    await planes[0]!.apply(state(1, vlan, ['b']));
    const after = JSON.parse((await runners[0]!.run(['ip', '-j', 'link', 'show'])).stdout) as { ifname: string }[];
    const acmeBridge = validateNetwork({ tenant: 'acme', cidr: '10.101.0.0/24' }).bridge;
    expect(
      before
        .map((l) => l.ifname)
        .filter((n) => !after.some((a) => a.ifname === n))
        .sort(),
    ).toEqual([acmeBridge, 'eth1.100', guest('a', 1).name].sort());
    const rules = (await runners[0]!.run(['nft', 'list', 'ruleset'])).stdout;
    expect(rules).not.toContain(acmeBridge);
    expect(rules).toContain(validateNetwork({ tenant: 'globex', cidr: '10.101.0.0/24' }).bridge);
    expect(await ping(2, 'gb2', '10.101.0.21')).toBe(true); // globex untouched
  });

  test('VXLAN (VNI > 4094): the same matrix, the same isolation', async () => {
    for (const h of [1, 2]) await planes[h - 1]!.apply(state(h, vxlan(h)));
    await guestsUp();
    const { stdout } = await runners[0]!.run(['ip', '-j', 'link', 'show', 'type', 'vlan']);
    expect(JSON.parse(stdout)).toEqual([]); // the VLAN uplinks went with the change of segment
    await expectIsolationMatrix({ a: '5000', b: '6000' });
    const frames = await capture('udp port 4789', /vni 5000\n.*ICMP echo/, () => ping(1, 'ga1', '10.101.0.12'));
    expect(frames).toMatch(/VXLAN, flags \[I\] \(0x08\), vni 5000\n.*10\.101\.0\.11 > 10\.101\.0\.12: ICMP echo/);
  });

  test('VXLAN peers from the hosts list: exactly the hosts with the tenant; a third host sees none of its frames', async () => {
    // the engine's records: acme on lab1 and lab2, globex on lab2 and lab3; no remotes, no group
    const on = (h: number, t: 'a' | 'b') => ({
      vm: validateVm({
        name: `${t}${h}`,
        boot: { kernel: '/k' },
        nics: [
          {
            network: {
              tenant: t === 'a' ? 'acme' : 'globex',
              cidr: '10.101.0.0/24',
              nat: false,
              segment: { type: 'vxlan', vni: t === 'a' ? 5000 : 6000, uplink: 'eth1' },
            },
          },
        ],
      }),
      accel: 'tcg' as const,
      createdAt: 'now',
      host: `lab${h}`,
      hostTarget: { name: `lab${h}`, uri: 'qemu:///system', address: UNDERLAY(h) },
    });
    let records = [on(1, 'a'), on(2, 'a'), on(2, 'b'), on(3, 'b')];
    const tenantsOn = (h: number) => (['a', 'b'] as const).filter((t) => records.some((r) => r.vm.name === `${t}${h}`));
    const derived = (h: number) => (t: 'a' | 'b') =>
      hostStateFor(records, { name: `lab${h}`, uplink: 'eth1', address: UNDERLAY(h) }, []).networks.find(
        (n) => n.network.tenant === (t === 'a' ? 'acme' : 'globex'),
      )!.network.segment as SegmentSpec;
    const applyAll = async () => {
      for (const h of [1, 2, 3]) await planes[h - 1]!.apply(state(h, derived(h), tenantsOn(h)));
      await guestsUp([1, 2, 3]);
    };
    await applyAll();
    const fdb = async (h: number, vni: number) =>
      (
        await runners[h - 1]!.run([
          'bridge',
          'fdb',
          'show',
          'dev',
          vxlanDeviceName(vni === 5000 ? 'acme' : 'globex', vni),
        ])
      ).stdout
        .split('\n')
        .filter((l) => l.startsWith('00:00:00:00:00:00'))
        .map((l) => /dst (\S+)/.exec(l)![1])
        .sort();
    expect(await fdb(1, 5000)).toEqual([UNDERLAY(2)]);
    expect(await fdb(2, 5000)).toEqual([UNDERLAY(1)]);
    expect(await fdb(2, 6000)).toEqual([UNDERLAY(3)]);
    await waitFor('acme lab1 -> lab2', 60_000, () => ping(1, 'ga1', '10.101.0.12'));
    await waitFor('globex lab3 -> lab2', 60_000, () => ping(3, 'gb3', '10.101.0.22'));
    // what reaches lab3's port of the switch while acme talks (ARP broadcasts included): no VNI 5000
    const toLab3 = execa('tcpdump', ['-i', `${lab.prefix}3s`, '-n', '-l', 'udp port 4789'], {
      reject: false,
      timeout: 60_000,
    });
    let seen = '';
    toLab3.stdout!.on('data', (d: Buffer) => (seen += d.toString()));
    await new Promise<void>((resolve) =>
      toLab3.stderr!.on('data', (d: Buffer) => d.toString().includes('listening on') && resolve()),
    );
    for (let i = 0; i < 5; i++) {
      await inGuest(1, 'ga1', ['ip', 'neigh', 'flush', 'all']); // each round broadcasts ARP again
      expect(await ping(1, 'ga1', '10.101.0.12')).toBe(true);
    }
    // globex's traffic to lab3 crosses the same port: once it is seen, acme's would have been too
    await waitFor(
      'globex frames at lab3',
      20_000,
      async () => (await ping(2, 'gb2', '10.101.0.23')) && /vni 6000/.test(seen),
    );
    toLab3.kill();
    await toLab3;
    expect(seen).toMatch(/vni 6000/);
    expect(seen).not.toMatch(/vni 5000/);
    expect(seen).not.toContain(UNDERLAY(1)); // lab1 (acme only) sent lab3 nothing at all

    // acme comes to lab3: every acme host's peers follow; it goes again: they follow back
    records = [...records, on(3, 'a')];
    await applyAll();
    expect(await fdb(1, 5000)).toEqual([UNDERLAY(2), UNDERLAY(3)]);
    await waitFor('acme lab1 -> lab3', 60_000, () => ping(1, 'ga1', '10.101.0.13'));
    records = records.filter((r) => r.vm.name !== 'a3');
    await applyAll();
    expect(await fdb(1, 5000)).toEqual([UNDERLAY(2)]);
  });

  test('teardown over SSH leaves the lab hosts without virtwire devices or tables', async () => {
    for (const p of planes) await p.teardown();
    for (const r of runners) {
      const links = JSON.parse((await r.run(['ip', '-j', 'link', 'show'])).stdout) as { ifname: string }[];
      expect(links.map((l) => l.ifname).filter((n) => n.startsWith('vw') || n.includes('.'))).toEqual([]);
      expect((await r.run(['nft', 'list', 'tables'])).stdout).toBe('');
    }
  });
});
