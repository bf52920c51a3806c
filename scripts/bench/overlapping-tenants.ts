// What a tenant's own namespace costs (issue: overlapping tenants), to decide between giving one
// only to a tenant that overlaps another (what virtwire does) and giving every tenant one:
// 1. the host plane: 20 tenants with DHCP (a dnsmasq each) and 2 taps each, applied from scratch,
//    re-applied and torn down — all namespaced (one subnet for all) vs all plain (a subnet each),
//    each in a scratch network namespace;
// 2. the data path: a guest (a namespace behind a veth port) to an "outside" namespace beyond the
//    host's uplink — TCP throughput (iperf3) and ping round trips — through a namespaced tenant
//    (two NATs, one more hop) vs a plain one (one NAT), on the same host.
// Needs root.
import { execa } from 'execa';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostPlane } from '../../lib/host/index.js';
import { validateNetwork, tapName, namespaceNames } from '../../lib/spec/index.js';
import type { HostNetwork, HostState } from '../../types/host.js';
import { printTable, type Row } from './table.js';

const TENANTS = 20;
const PREFIX = 'vwbo';

function tenants(namespaced: boolean): HostState {
  return {
    networks: Array.from({ length: TENANTS }, (_, t): HostNetwork => {
      const tenant = `${PREFIX}${namespaced ? 'n' : 'p'}${t}`;
      const cidr = namespaced ? '10.120.0.0/24' : `10.121.${t}.0/24`;
      const network = {
        ...validateNetwork({ tenant, cidr }),
        ...(namespaced ? { namespace: { transit: `100.64.0.${4 * t}/30` } } : {}),
      };
      const ports = [0, 1].map((i) => ({
        name: tapName(`${tenant}v${i}`, 0),
        kind: 'tap' as const,
        mac: `52:54:00:77:${t.toString(16).padStart(2, '0')}:${(16 + i).toString(16)}`,
        ip: network.network.replace(/\.0$/, `.${10 + i}`),
      }));
      return { network, ports };
    }),
  };
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function fresh(name: string): Promise<string> {
  await execa('ip', ['netns', 'del', name], { reject: false });
  await execa('ip', ['netns', 'add', name]);
  await execa('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

const inNs = (ns: string, argv: string[]) => execa('ip', ['netns', 'exec', ns, ...argv]);

async function planeCycle(namespaced: boolean, stateDir: string) {
  const ns = await fresh(`${PREFIX}-${namespaced ? 'n' : 'p'}`);
  const s = tenants(namespaced);
  const plane = new HostPlane({ netns: ns, stateDir: join(stateDir, ns) });
  const create = await time(() => plane.apply(s));
  let noop = true;
  const again = await time(async () => (noop = (await plane.apply(s)).noop));
  if (!noop) throw new Error('re-apply was not a no-op');
  const down = await time(() => plane.teardown());
  await execa('ip', ['netns', 'del', ns], { reject: false });
  return { create, again, down };
}

/** One guest on a plain tenant and one on a namespaced tenant with the same subnet, an outside, iperf3. */
async function dataPath(stateDir: string) {
  const host = await fresh(`${PREFIX}-host`);
  const out = await fresh(`${PREFIX}-out`);
  const guests = { plain: await fresh(`${PREFIX}-gp`), namespaced: await fresh(`${PREFIX}-gn`) };
  await execa('ip', ['-n', host, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', out]);
  await inNs(host, ['ip', 'addr', 'add', '203.0.113.1/24', 'dev', 'up0']);
  await inNs(host, ['ip', 'link', 'set', 'up0', 'up']);
  await inNs(out, ['ip', 'addr', 'add', '203.0.113.2/24', 'dev', 'eth0']);
  await inNs(out, ['ip', 'link', 'set', 'eth0', 'up']);
  const net = (tenant: string, namespace?: string): HostNetwork => ({
    network: {
      ...validateNetwork({ tenant, cidr: '10.122.0.0/24' }),
      ...(namespace ? { namespace: { transit: namespace } } : {}),
    },
    ports: [
      {
        name: tapName(`${tenant}g`, 0),
        kind: 'veth',
        peer: { name: 'eth0', netns: tenant === `${PREFIX}dp` ? guests.plain : guests.namespaced },
        mac: tenant === `${PREFIX}dp` ? '52:54:00:78:00:10' : '52:54:00:78:00:20',
        ip: '10.122.0.10',
      },
    ],
    dhcp: false,
  });
  const plane = new HostPlane({ netns: host, stateDir: join(stateDir, 'dp') });
  await plane.apply({ networks: [net(`${PREFIX}dp`), net(`${PREFIX}dn`, '100.64.1.0/30')] });
  for (const g of Object.values(guests)) {
    await inNs(g, ['ip', 'addr', 'add', '10.122.0.10/24', 'dev', 'eth0']);
    await inNs(g, ['ip', 'link', 'set', 'eth0', 'up']);
    await inNs(g, ['ip', 'route', 'add', 'default', 'via', '10.122.0.1']);
  }
  const server = execa('ip', ['netns', 'exec', out, 'iperf3', '-s', '-B', '203.0.113.2'], { reject: false });
  const measure = async (g: string) => {
    // the first ping also waits for ARP on both hops: warm up first
    await inNs(g, ['ping', '-c', '3', '-i', '0.2', '203.0.113.2']);
    const ping = await inNs(g, ['ping', '-q', '-c', '50', '-i', '0.02', '203.0.113.2']);
    const rtt = Number(/= [\d.]+\/([\d.]+)\//.exec(ping.stdout)![1]);
    let r;
    for (let attempt = 0; ; attempt++) {
      r = await execa('ip', ['netns', 'exec', g, 'iperf3', '-J', '-t', '3', '-c', '203.0.113.2'], { reject: false });
      if (r.exitCode === 0 || attempt > 20) break; // the server may not listen yet
      await new Promise((res) => setTimeout(res, 100));
    }
    const bps = (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
      .bits_per_second;
    return { rtt, mbit: bps / 1e6 };
  };
  try {
    return { plain: await measure(guests.plain), namespaced: await measure(guests.namespaced) };
  } finally {
    server.kill('SIGKILL');
    await server;
    await plane.teardown();
    for (const ns of [host, out, ...Object.values(guests)]) await execa('ip', ['netns', 'del', ns], { reject: false });
  }
}

async function main(): Promise<void> {
  const stateDir = mkdtempSync(join(tmpdir(), `${PREFIX}-`));
  chmodSync(stateDir, 0o755); // dnsmasq reads its hostsfile as its own user
  try {
    const ns = await planeCycle(true, stateDir);
    const plain = await planeCycle(false, stateDir);
    const name = (n: string) => `plain tenants (${n})`;
    printTable(`a namespace per tenant vs none: host plane, ${TENANTS} tenants with DHCP, 2 taps each`, [
      {
        what: 'from scratch',
        unit: 's',
        ours: ns.create,
        baseline: plain.create,
        baselineName: name('a subnet each'),
        lowerIsBetter: true,
      },
      {
        what: 're-apply, nothing to change',
        unit: 's',
        ours: ns.again,
        baseline: plain.again,
        baselineName: name('same'),
        lowerIsBetter: true,
      },
      {
        what: 'teardown',
        unit: 's',
        ours: ns.down,
        baseline: plain.down,
        baselineName: name('same'),
        lowerIsBetter: true,
      },
    ] satisfies Row[]);
    const d = await dataPath(stateDir);
    printTable('a guest to the outside: through its tenant namespace (NAT twice) vs a plain tenant (NAT once)', [
      {
        what: 'TCP throughput',
        unit: 'Mbit/s',
        ours: d.namespaced.mbit,
        baseline: d.plain.mbit,
        baselineName: 'plain tenant, iperf3 3 s',
      },
      {
        what: 'ping round trip',
        unit: 'ms',
        ours: d.namespaced.rtt,
        baseline: d.plain.rtt,
        baselineName: 'plain tenant, 50 pings',
        lowerIsBetter: true,
      },
    ]);
    console.log(
      `\n(namespaces: ${namespaceNames(`${PREFIX}dn`).netns} and ${TENANTS} like it; "speed-up" below 1 is the namespace's cost)`,
    );
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
}

await main();
