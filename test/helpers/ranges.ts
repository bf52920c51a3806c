// Address ranges the integration tier puts on devices, checked against what this host already
// uses. A test that puts an address on a device in the host's namespace takes that subnet's route
// while it runs: on one machine the documentation range 203.0.113.0/24 held the package
// registries' addresses, so a test's "outside" veth took the machine's route to its registry.
// Hence: the "outside" subnet is picked at run time from 198.18.0.0/15 (benchmarking range) as
// the first /24 that no route, address, resolver or registry address of this host falls in; the
// fixed tenant ranges the tests use are checked once per file (integration-setup.ts) and a
// collision fails loudly, naming the range and what holds it.
import { execa } from 'execa';
import { lookup } from 'node:dns/promises';
import { readFileSync, readdirSync } from 'node:fs';
import { formatIpv4, inSubnet, parseCidr } from '../../lib/spec/index.js';

interface Claim {
  cidr: string;
  /** what holds it, for the error: "route … dev eth0", "address on eth0", "resolver", … */
  by: string;
}

/**
 * The fixed ranges the tests put on devices in the host's own namespace: tenant subnets
 * (10.9.0.0/24 … 10.122.0.0/24), the transit pool's first /16 and the lab hosts' management
 * network (helpers/lab-hosts.ts). Ranges used only inside a test's namespaces are not listed.
 */
export const TEST_RANGES = ['10.0.0.0/9', '100.64.0.0/16', '192.168.93.0/24'] as const;

const POOL = '198.18.0.0/15';

const readText = (path: string) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

/** Registry hosts as this machine's package clients are configured (npm and apt), never named here. */
function registryHosts(): string[] {
  const urls: string[] = [];
  if (process.env.npm_config_registry) urls.push(process.env.npm_config_registry);
  const aptFiles = ['/etc/apt/sources.list'];
  try {
    for (const f of readdirSync('/etc/apt/sources.list.d')) aptFiles.push(`/etc/apt/sources.list.d/${f}`);
  } catch {
    // no apt sources directory: not a Debian host, nothing to read
  }
  for (const f of aptFiles) urls.push(...(readText(f).match(/\bhttps?:\/\/[^\s/]+/g) ?? []));
  return [...new Set(urls.map((u) => new URL(u).hostname).filter(Boolean))];
}

async function addressesOf(host: string): Promise<string[]> {
  try {
    return (await lookup(host, { all: true, family: 4 })).map((a) => a.address);
  } catch {
    return []; // unresolvable here: it cannot be routed into a test's range either
  }
}

/** Everything on this host that an address of a test must not fall into. */
async function hostClaims(): Promise<Claim[]> {
  const claims: Claim[] = [];
  const routes = JSON.parse((await execa('ip', ['-j', '-4', 'route', 'show', 'table', 'all'])).stdout) as {
    dst: string;
    dev?: string;
    table?: string;
  }[];
  for (const r of routes) {
    // the default route covers everything by design; local/broadcast entries repeat addresses
    if (r.dst === 'default' || r.table === 'local') continue;
    claims.push({ cidr: r.dst.includes('/') ? r.dst : `${r.dst}/32`, by: `route ${r.dst} dev ${r.dev ?? '?'}` });
  }
  const links = JSON.parse((await execa('ip', ['-j', '-4', 'addr'])).stdout) as {
    ifname: string;
    addr_info: { local: string; prefixlen: number }[];
  }[];
  for (const l of links)
    for (const a of l.addr_info) claims.push({ cidr: `${a.local}/${a.prefixlen}`, by: `address on ${l.ifname}` });
  for (const m of readText('/etc/resolv.conf').matchAll(/^nameserver\s+([0-9.]+)\s*$/gm))
    claims.push({ cidr: `${m[1]}/32`, by: 'resolver (/etc/resolv.conf)' });
  for (const host of registryHosts())
    for (const a of await addressesOf(host)) claims.push({ cidr: `${a}/32`, by: 'a package registry address' });
  return claims;
}

function overlaps(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  if (!x || !y) throw new Error(`not an IPv4 CIDR: ${x ? b : a}`);
  return inSubnet(x.network, y.network, y.prefix) || inSubnet(y.network, x.network, x.prefix);
}

let claimsOnce: Promise<Claim[]> | undefined;
const claims = () => (claimsOnce ??= hostClaims());

/** Throws, naming each range and what on this host holds it, if any of `ranges` is in use here. */
export async function assertRangesFree(ranges: readonly string[]): Promise<void> {
  const all = await claims();
  const hits = ranges.flatMap((r) => all.filter((c) => overlaps(r, c.cidr)).map((c) => `${r}: ${c.cidr} (${c.by})`));
  if (hits.length > 0)
    throw new Error(
      `the test ranges collide with this host's own (a test would take its route while it runs):\n  ${hits.join('\n  ')}`,
    );
}

export interface OutsideRange {
  /** e.g. 198.18.0.0/24 */
  cidr: string;
  /** the host's end of the test's uplink veth (.1) */
  host: string;
  /** "the internet" beyond it (.2) */
  outside: string;
  /** another address in the range, for DNS answers and the like (.99) */
  spare: string;
  prefix: 24;
}

/** The first /24 of 198.18.0.0/15 that nothing on this host claims. */
async function pickOutsideRange(): Promise<OutsideRange> {
  const all = await claims();
  const pool = parseCidr(POOL)!;
  for (let n = pool.network; n < pool.network + 2 ** (32 - pool.prefix); n += 256) {
    const cidr = `${formatIpv4(n)}/24`;
    if (all.some((c) => overlaps(cidr, c.cidr))) continue;
    return { cidr, host: formatIpv4(n + 1), outside: formatIpv4(n + 2), spare: formatIpv4(n + 99), prefix: 24 };
  }
  throw new Error(`no /24 of ${POOL} is free of this host's routes, addresses, resolver and registry addresses`);
}

/** The outside range for this test file (picked once; every test in the file uses the same). */
export const OUTSIDE: OutsideRange = await pickOutsideRange();
