// VXLAN uplinks between two "hosts" (namespaces joined by a veth underlay, 192.168.77.0/24):
// each host has both tenants' bridges, each with a VXLAN uplink to the other host. Both tenants
// even use the same subnet: only the VNI keeps them apart.
import { HostPlane } from '../../lib/host/index.js';
import { validateNetwork, tapName } from '../../lib/spec/index.js';
import type { HostState } from '../../types/host.js';
import { describeAsRoot } from '../helpers/root.js';
import { Lab } from '../helpers/lab.js';

const lab = new Lab('vwvx');
const UNDERLAY = { hosta: '192.168.77.1', hostb: '192.168.77.2' } as const;

function hostState(host: 'hosta' | 'hostb', guests: { acme: [string, string]; globex: [string, string] }): HostState {
  const other = host === 'hosta' ? UNDERLAY.hostb : UNDERLAY.hosta;
  const net = (tenant: string, vni: number) =>
    validateNetwork({ tenant, cidr: '10.51.0.0/24', nat: false, segment: { type: 'vxlan', vni, uplink: 'under0', local: UNDERLAY[host], remotes: [other] } });
  const port = ([g, ip]: [string, string], mac: string) => ({ name: tapName(g, 0), kind: 'veth' as const, peer: { name: 'eth0', netns: `vwvx-${g}` }, mac, ip });
  return {
    networks: [
      { network: net('acme', 100), dhcp: false, ports: [port(guests.acme, host === 'hosta' ? '52:54:00:51:00:11' : '52:54:00:51:00:12')] },
      { network: net('globex', 200), dhcp: false, ports: [port(guests.globex, host === 'hosta' ? '52:54:00:51:00:21' : '52:54:00:51:00:22')] },
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
    await lab.exec(a, ['ip', 'link', 'add', 'under0', 'type', 'veth', 'peer', 'name', 'under0', 'netns', b]);
    await lab.configureGuest(a, 'under0', `${UNDERLAY.hosta}/24`);
    await lab.configureGuest(b, 'under0', `${UNDERLAY.hostb}/24`);
    planes.push(new HostPlane({ netns: a, stateDir: `${lab.stateDir}/a` }), new HostPlane({ netns: b, stateDir: `${lab.stateDir}/b` }));
    await planes[0]!.apply(hostState('hosta', { acme: ['acme1', '10.51.0.11'], globex: ['glob1', '10.51.0.21'] }));
    await planes[1]!.apply(hostState('hostb', { acme: ['acme2', '10.51.0.12'], globex: ['glob2', '10.51.0.22'] }));
    for (const [g, ip] of [['acme1', '11'], ['acme2', '12'], ['glob1', '21'], ['glob2', '22']] as const) {
      await lab.configureGuest(`vwvx-${g}`, 'eth0', `10.51.0.${ip}/24`);
    }
  });
  afterAll(async () => {
    for (const p of planes) await p.teardown().catch(() => {});
    await lab.cleanup();
  });

  test('the same tenant connects across the hosts', async () => {
    expect(await lab.ping('vwvx-acme1', '10.51.0.12')).toBe(true);
    expect(await lab.ping('vwvx-glob2', '10.51.0.21')).toBe(true);
  });

  test('different tenants do not, even on the same subnet', async () => {
    expect(await lab.ping('vwvx-acme1', '10.51.0.22')).toBe(false);
    expect(await lab.ping('vwvx-glob1', '10.51.0.12')).toBe(false);
  });

  test('the uplinks are VXLAN devices with their VNI, peer and a 1450-byte MTU', async () => {
    const { stdout } = await lab.exec('vwvx-hosta', ['ip', '-j', '-d', 'link', 'show', 'type', 'vxlan']);
    const links = JSON.parse(stdout) as { mtu: number; master: string; linkinfo: { info_data: { id: number } } }[];
    expect(links.map((l) => l.linkinfo.info_data.id).sort()).toEqual([100, 200]);
    expect(links.every((l) => l.mtu === 1450 && l.master.startsWith('vwb'))).toBe(true);
    const fdb = await lab.exec('vwvx-hosta', ['bridge', 'fdb', 'show', 'dev', links.length ? (JSON.parse(stdout)[0].ifname as string) : 'none']);
    expect(fdb.stdout).toContain(`dst ${UNDERLAY.hostb}`);
    // re-applying changes nothing
    expect((await planes[0]!.apply(hostState('hosta', { acme: ['acme1', '10.51.0.11'], globex: ['glob1', '10.51.0.21'] }))).noop).toBe(true);
  });
});
