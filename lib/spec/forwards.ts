// A NIC's ways in from outside its tenant: port forwards (`nics[].forwards`) and a floating IP
// (`nics[].floatingIp`). Validated here, each problem with its path; conflicts with other VMs on
// the same host are the allocator's (lib/engine/allocate.ts), with both paths.
import type { ResolvedForward, ResolvedNetwork } from '../../types/resolved.js';
import { checkInt, checkKeys, isRecord } from './checks.js';
import { inSubnet, parseIpv4 } from './ipv4.js';
import { at, type Problems } from './problems.js';

const FORWARD_KEYS = ['hostPort', 'port', 'protocol', 'address'] as const;

/**
 * Whether `a` can be a host's address that traffic is sent to: unicast, not 0.0.0.0/8, the
 * loopback, link-local, multicast or broadcast. An error, or undefined.
 */
function hostAddressProblem(a: unknown): string | undefined {
  const n = typeof a === 'string' ? parseIpv4(a) : undefined;
  if (n === undefined) return `${JSON.stringify(a)} is not an IPv4 address`;
  const first = n >>> 24;
  if (first === 0 || first === 127) return `${a as string} is not an address other hosts can send to`;
  if (n >>> 16 === (169 << 8) + 254) return `${a as string} is link-local`;
  if (first >= 224) return `${a as string} is multicast or reserved`;
  return undefined;
}

/** What two forwards on one host collide on: protocol and port, on one address or on all. */
const forwardKey = (f: ResolvedForward) => `${f.protocol}/${f.hostPort}`;
const forwardsClash = (a: ResolvedForward, b: ResolvedForward) =>
  forwardKey(a) === forwardKey(b) && (a.address === undefined || b.address === undefined || a.address === b.address);
const forwardLabel = (f: ResolvedForward) => `${f.address ?? '*'}:${f.hostPort}/${f.protocol}`;

/**
 * What is taken so far (host ports, floating IPs), each by whom: one taken again is a problem
 * naming both. Shared by a VM's NICs, a host's ports, and the records of the VMs already made.
 */
class Claims<T> {
  private readonly held: { t: T; by: string }[] = [];

  constructor(
    private readonly clash: (a: T, b: T) => boolean,
    private readonly taken: (t: T, by: string) => string,
  ) {}

  /** Records `t` as taken by `by`, without checking (what already exists). */
  hold(t: T, by: string): void {
    this.held.push({ t, by });
  }

  /** Reports `t` at `path` if something holds it already; else it is now held by `by` (default `path`). */
  claim(p: Problems, path: string, t: T, by = path): void {
    const twin = this.held.find((h) => this.clash(h.t, t));
    if (twin) p.add(path, this.taken(t, twin.by));
    else this.hold(t, by);
  }
}

/** Host ports (`where`: how the message places them, e.g. ' on this host'). */
export const forwardClaims = (where = '') =>
  new Claims<ResolvedForward>(forwardsClash, (f, by) => `${forwardLabel(f)}${where} is already forwarded by ${by}`);

export const floatingClaims = () =>
  new Claims<string>(
    (a, b) => a === b,
    (ip, by) => `${ip} is already the floating IP of ${by}`,
  );

/** A NIC's forwards; undefined when any is wrong (each problem reported with its path). */
export function resolveForwards(
  p: Problems,
  path: string,
  input: unknown,
  network: ResolvedNetwork | undefined,
  /** the host ports the other NICs (or ports) checked with these took */
  claims = forwardClaims(),
): ResolvedForward[] | undefined {
  if (input === undefined) return [];
  if (!Array.isArray(input)) {
    p.add(path, 'must be a list of { hostPort, port, protocol?, address? }');
    return undefined;
  }
  const before = p.list.length;
  if (input.length && network && !network.nat)
    p.add(path, `tenant ${network.tenant}'s network is not NAT'd: nothing outside it can be forwarded in`);
  const out: ResolvedForward[] = [];
  input.forEach((raw: unknown, i) => {
    const fp = at(path, i);
    if (!isRecord(raw)) {
      p.add(fp, 'must be { hostPort, port, protocol?, address? }');
      return;
    }
    checkKeys(p, fp, raw, FORWARD_KEYS);
    const okHost = checkInt(p, at(fp, 'hostPort'), raw.hostPort, 1, 65535);
    const okPort = checkInt(p, at(fp, 'port'), raw.port, 1, 65535);
    const protocol = raw.protocol ?? 'tcp';
    if (protocol !== 'tcp' && protocol !== 'udp') p.add(at(fp, 'protocol'), "must be 'tcp' or 'udp'");
    const bad = raw.address === undefined ? undefined : hostAddressProblem(raw.address);
    if (bad) p.add(at(fp, 'address'), bad);
    if (!okHost || !okPort || bad || (protocol !== 'tcp' && protocol !== 'udp')) return;
    const f: ResolvedForward = {
      hostPort: raw.hostPort as number,
      port: raw.port as number,
      protocol,
      ...(raw.address !== undefined ? { address: raw.address as string } : {}),
    };
    claims.claim(p, fp, f);
    out.push(f);
  });
  return p.list.length === before ? out : undefined;
}

/** A NIC's floating IP: a host address outside its own subnet, on a NAT'd network. */
export function checkFloatingIp(
  p: Problems,
  path: string,
  input: unknown,
  network: ResolvedNetwork | undefined,
): string | undefined | false {
  if (input === undefined) return undefined;
  const bad = hostAddressProblem(input);
  if (bad) {
    p.add(path, bad);
    return false;
  }
  const a = input as string;
  if (network) {
    if (inSubnet(parseIpv4(a)!, parseIpv4(network.network)!, network.prefix)) {
      p.add(path, `${a} is inside the NIC's own subnet ${network.cidr}`);
      return false;
    }
    if (!network.nat) {
      p.add(path, `tenant ${network.tenant}'s network is not NAT'd: it has no way out to take an address on`);
      return false;
    }
  }
  return a;
}
