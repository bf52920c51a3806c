import type { VmSpec } from '../../types/spec.js';
import type { ResolvedNetwork, ResolvedNic, ResolvedVm } from '../../types/resolved.js';
import { at, Problems } from './problems.js';
import { PACKET_RATE } from './qos.js';
import { checkFloatingIp, floatingClaims, forwardClaims, resolveForwards } from './forwards.js';
import { checkAbsolutePath, checkInt, checkKeys, checkName, checkPositive, checkSafeText, isRecord } from './checks.js';
import { inSubnet, parseIpv4 } from './ipv4.js';
import { formatIpv6, inPrefix6, parseIpv6, slaacOf } from './ipv6.js';
import { deriveMac, parseMac } from './mac.js';
import { stableUuid, tapName } from './names.js';
import { resolveNetwork, sameNetwork, subnetOf } from './network.js';
import { checkCloudInit } from './cloud-init.js';

const VM_KEYS = [
  'name',
  'uuid',
  'vcpus',
  'memoryMiB',
  'maxMemoryMiB',
  'disks',
  'accel',
  'boot',
  'cloudInit',
  'nics',
  'serialLog',
  'host',
] as const;
const NIC_KEYS = ['network', 'mac', 'ip', 'ip6', 'qos', 'securityGroups', 'forwards', 'floatingIp'] as const;
const QOS_KEYS = ['egressKbps', 'ingressKbps', 'burstKiB', 'packetsPerSecond'] as const;
const BANDWIDTH_KEYS = ['egressKbps', 'ingressKbps', 'burstKiB'] as const;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const VM_DEFAULTS = { vcpus: 1, memoryMiB: 256, accel: 'auto' } as const;

/** Validates a VmSpec, collecting every problem into `p`; returns the resolved VM when there are none. */
export function resolveVm(p: Problems, path: string, input: unknown): ResolvedVm | undefined {
  if (!isRecord(input)) {
    p.add(path || '(root)', 'must be an object');
    return undefined;
  }
  const before = p.list.length;
  checkKeys(p, path, input, VM_KEYS);
  const spec = input as Partial<VmSpec>;
  checkName(p, at(path, 'name'), spec.name);
  if (spec.uuid !== undefined && (typeof spec.uuid !== 'string' || !UUID_RE.test(spec.uuid))) {
    p.add(at(path, 'uuid'), 'must be a lower-case UUID (8-4-4-4-12 hex)');
  }
  if (spec.vcpus !== undefined) checkInt(p, at(path, 'vcpus'), spec.vcpus, 1, 64);
  if (spec.memoryMiB !== undefined) checkInt(p, at(path, 'memoryMiB'), spec.memoryMiB, 64, 1048576);
  if (spec.maxMemoryMiB !== undefined && checkInt(p, at(path, 'maxMemoryMiB'), spec.maxMemoryMiB, 64, 1048576)) {
    const current = spec.memoryMiB ?? VM_DEFAULTS.memoryMiB;
    if (typeof current === 'number' && spec.maxMemoryMiB < current)
      p.add(at(path, 'maxMemoryMiB'), `${spec.maxMemoryMiB} is below memoryMiB ${current}`);
  }
  checkDataDisks(p, at(path, 'disks'), spec.disks);
  if (spec.accel !== undefined && !['auto', 'kvm', 'tcg'].includes(spec.accel as string)) {
    p.add(at(path, 'accel'), `${JSON.stringify(spec.accel)} is not one of auto, kvm, tcg`);
  }
  checkBoot(p, at(path, 'boot'), spec.boot);
  checkCloudInit(p, at(path, 'cloudInit'), spec.cloudInit);
  if (spec.serialLog !== undefined) checkAbsolutePath(p, at(path, 'serialLog'), spec.serialLog);
  if (spec.host !== undefined) checkName(p, at(path, 'host'), spec.host);
  const nics = resolveNics(p, at(path, 'nics'), spec.nics, typeof spec.name === 'string' ? spec.name : '');

  if (p.list.length > before || !nics) return undefined;
  const name = spec.name as string;
  return {
    name,
    uuid: spec.uuid ?? stableUuid(name),
    vcpus: spec.vcpus ?? VM_DEFAULTS.vcpus,
    memoryMiB: spec.memoryMiB ?? VM_DEFAULTS.memoryMiB,
    ...(spec.maxMemoryMiB !== undefined ? { maxMemoryMiB: spec.maxMemoryMiB } : {}),
    ...(spec.disks?.length
      ? { disks: spec.disks.map((d) => ({ name: d.name, sizeGiB: d.sizeGiB, bus: d.bus ?? ('virtio' as const) })) }
      : {}),
    accel: spec.accel ?? VM_DEFAULTS.accel,
    boot: { ...spec.boot! },
    ...(spec.cloudInit !== undefined ? { cloudInit: spec.cloudInit } : {}),
    nics,
    ...(spec.serialLog !== undefined ? { serialLog: spec.serialLog } : {}),
    ...(spec.host !== undefined ? { host: spec.host } : {}),
  };
}

/** Data disks: at most 8, names unique, sizes in whole GiB, virtio. */
function checkDataDisks(p: Problems, path: string, disks: unknown): void {
  if (disks === undefined) return;
  if (!Array.isArray(disks)) return p.add(path, 'must be a list of { name, sizeGiB, bus? }');
  if (disks.length > 8) p.add(path, `${disks.length} disks; at most 8`);
  const names = new Set<string>();
  disks.forEach((d: unknown, i) => {
    const dp = at(path, i);
    if (!isRecord(d)) return p.add(dp, 'must be { name, sizeGiB, bus? }');
    checkKeys(p, dp, d, ['name', 'sizeGiB', 'bus']);
    if (checkName(p, at(dp, 'name'), d.name)) {
      if (names.has(d.name)) p.add(at(dp, 'name'), `disk ${d.name} is listed twice`);
      names.add(d.name);
    }
    checkInt(p, at(dp, 'sizeGiB'), d.sizeGiB, 1, 65536);
    if (d.bus !== undefined && d.bus !== 'virtio') p.add(at(dp, 'bus'), `${JSON.stringify(d.bus)} is not virtio`);
  });
}

/** Validates a VmSpec and throws one SpecError naming every problem; nothing else happens. */
export function validateVm(spec: unknown): ResolvedVm {
  const p = new Problems();
  const vm = resolveVm(p, '', spec);
  p.throwIfAny('VM spec');
  return vm!;
}

function checkBoot(p: Problems, path: string, boot: unknown): void {
  if (!isRecord(boot)) {
    p.add(path, 'required: { kernel, initrd?, cmdline? } or { image, sizeGiB? }');
    return;
  }
  if ('kernel' in boot && 'image' in boot) {
    p.add(path, 'give either kernel (direct kernel boot) or image (disk boot), not both');
    return;
  }
  if ('kernel' in boot) {
    checkKeys(p, path, boot, ['kernel', 'initrd', 'cmdline', 'fastKernel']);
    if (boot.fastKernel !== undefined && typeof boot.fastKernel !== 'boolean')
      p.add(at(path, 'fastKernel'), 'must be true or false');
    checkAbsolutePath(p, at(path, 'kernel'), boot.kernel);
    if (boot.initrd !== undefined) checkAbsolutePath(p, at(path, 'initrd'), boot.initrd);
    if (boot.cmdline !== undefined) checkSafeText(p, at(path, 'cmdline'), boot.cmdline, { allowEmpty: true });
  } else if ('image' in boot) {
    checkKeys(p, path, boot, ['image', 'sizeGiB', 'fastKernel']);
    if (boot.fastKernel !== undefined && typeof boot.fastKernel !== 'boolean')
      p.add(at(path, 'fastKernel'), 'must be true or false');
    checkAbsolutePath(p, at(path, 'image'), boot.image);
    if (boot.sizeGiB !== undefined) checkInt(p, at(path, 'sizeGiB'), boot.sizeGiB, 1, 65536);
  } else {
    p.add(path, 'needs kernel (direct kernel boot) or image (disk boot)');
  }
}

function resolveNics(p: Problems, path: string, input: unknown, vmName: string): ResolvedNic[] | undefined {
  if (!Array.isArray(input) || input.length === 0) {
    p.add(path, 'at least one NIC is required');
    return undefined;
  }
  if (input.length > 16) p.add(path, `${input.length} NICs; at most 16`);
  const nics: ResolvedNic[] = [];
  const byTenant = new Map<string, { network: ResolvedNetwork; path: string }>();
  const macs = new Map<string, string>();
  const ips = new Map<string, string>();
  // host ports and floating IPs: each NIC's own
  const ports = forwardClaims();
  const floating = floatingClaims();
  let ok = true;
  input.forEach((raw, index) => {
    const nicPath = at(path, index);
    if (!isRecord(raw)) {
      p.add(nicPath, 'must be an object');
      ok = false;
      return;
    }
    checkKeys(p, nicPath, raw, NIC_KEYS);
    const network = resolveNetwork(p, at(nicPath, 'network'), raw.network);
    if (network) {
      const seen = byTenant.get(network.tenant);
      if (seen && !sameNetwork(seen.network, network)) {
        p.add(at(nicPath, 'network'), `tenant ${network.tenant} is defined differently at ${seen.path}`);
        ok = false;
      } else if (!seen) byTenant.set(network.tenant, { network, path: at(nicPath, 'network') });
    }

    let mac = deriveMac(`${vmName}\0${index}`);
    if (raw.mac !== undefined) {
      const parsed = typeof raw.mac === 'string' ? parseMac(raw.mac) : { error: 'must be a string' };
      if ('error' in parsed) {
        p.add(at(nicPath, 'mac'), parsed.error);
        ok = false;
      } else mac = parsed.mac;
    }
    const macSeen = macs.get(mac);
    if (macSeen !== undefined) {
      p.add(at(nicPath, 'mac'), `${mac} is already used by ${macSeen}`);
      ok = false;
    } else macs.set(mac, nicPath);

    let ip: string | undefined;
    const subnet = network ? undefined : subnetOf(raw.network);
    if (raw.ip !== undefined) {
      const value = typeof raw.ip === 'string' ? parseIpv4(raw.ip) : undefined;
      if (value === undefined) {
        p.add(at(nicPath, 'ip'), `${JSON.stringify(raw.ip)} is not an IPv4 address`);
        ok = false;
      } else if (network ?? subnet) {
        // the subnet as given, even when another field of the network is wrong: every problem is reported
        const sub = (network ?? subnet)!;
        const net = parseIpv4(sub.network)!;
        if (!inSubnet(value, net, sub.prefix)) p.add(at(nicPath, 'ip'), `${raw.ip} is outside ${sub.cidr}`);
        else if (raw.ip === sub.network || raw.ip === sub.broadcast) {
          p.add(at(nicPath, 'ip'), `${raw.ip} is the network or broadcast address of ${sub.cidr}`);
        } else if (raw.ip === sub.gateway) p.add(at(nicPath, 'ip'), `${raw.ip} is the gateway of ${sub.cidr}`);
        else ip = raw.ip as string;
        const ipSeen = ips.get(raw.ip as string);
        if (ipSeen !== undefined) p.add(at(nicPath, 'ip'), `${raw.ip} is already used by ${ipSeen}`);
        else ips.set(raw.ip as string, nicPath);
        if (ip === undefined) ok = false;
      }
    }

    const ip6 = resolveNicIp6(p, at(nicPath, 'ip6'), raw.ip6, network, mac, ips, nicPath);
    if (ip6 === false) ok = false;

    const qosOk = checkQos(p, at(nicPath, 'qos'), raw.qos);
    const groups = checkGroupNames(p, at(nicPath, 'securityGroups'), raw.securityGroups);
    const forwards = resolveForwards(p, at(nicPath, 'forwards'), raw.forwards, network, ports);
    const floatingIp = checkFloatingIp(p, at(nicPath, 'floatingIp'), raw.floatingIp, network);
    if (floatingIp) floating.claim(p, at(nicPath, 'floatingIp'), floatingIp, nicPath);
    if (!network || !qosOk || !groups || !forwards || floatingIp === false) {
      ok = false;
      return;
    }
    nics.push({
      index,
      network,
      mac,
      ...(ip !== undefined ? { ip } : {}),
      ...(ip6 ? ip6 : {}),
      ...(raw.qos !== undefined ? { qos: { ...(raw.qos as object) } } : {}),
      tap: tapName(vmName, index),
      ...(groups.length ? { securityGroups: groups } : {}),
      ...(forwards.length ? { forwards } : {}),
      ...(floatingIp ? { floatingIp } : {}),
    });
  });
  return ok ? nics : undefined;
}

/**
 * A NIC's IPv6 address: the one given (in its network's cidr6, not its gateway, not another NIC's),
 * else its SLAAC address. None on a network without IPv6 (an ip6 there is a problem). False: a problem.
 */
function resolveNicIp6(
  p: Problems,
  path: string,
  input: unknown,
  network: ResolvedNetwork | undefined,
  mac: string,
  seen: Map<string, string>,
  nicPath: string,
): { ip6: string; ip6Pinned?: true } | undefined | false {
  const v6 = network?.ipv6;
  if (input === undefined) return v6 ? { ip6: slaacOf(mac, v6.network) } : undefined;
  const value = typeof input === 'string' ? parseIpv6(input) : undefined;
  if (value === undefined) {
    p.add(path, `${JSON.stringify(input)} is not an IPv6 address`);
    return false;
  }
  if (!network) return false;
  if (!v6) {
    p.add(path, `the network of tenant ${network.tenant} has no cidr6`);
    return false;
  }
  const ip6 = formatIpv6(value);
  const net = parseIpv6(v6.network)!;
  if (!inPrefix6(value, net, 64)) p.add(path, `${input} is outside ${v6.cidr}`);
  else if (value === net) p.add(path, `${input} is the subnet-router anycast address of ${v6.cidr}`);
  else if (ip6 === v6.gateway) p.add(path, `${input} is the gateway of ${v6.cidr}`);
  else {
    const other = seen.get(ip6);
    if (other !== undefined) p.add(path, `${input} is already used by ${other}`);
    else {
      seen.set(ip6, nicPath);
      return { ip6, ip6Pinned: true };
    }
  }
  return false;
}

/** A NIC's security groups: distinct names, in the order given (existence is checked where groups are known). */
function checkGroupNames(p: Problems, path: string, input: unknown): string[] | undefined {
  if (input === undefined) return [];
  if (!Array.isArray(input)) {
    p.add(path, 'must be a list of security group names');
    return undefined;
  }
  const before = p.list.length;
  input.forEach((name: unknown, i) => {
    if (checkName(p, at(path, i), name) && input.indexOf(name) !== i) p.add(at(path, i), `${name} is listed twice`);
  });
  return p.list.length === before ? [...(input as string[])] : undefined;
}

function checkQos(p: Problems, path: string, qos: unknown): boolean {
  if (qos === undefined) return true;
  if (!isRecord(qos)) {
    p.add(path, 'must be an object');
    return false;
  }
  const before = p.list.length;
  checkKeys(p, path, qos, QOS_KEYS);
  for (const key of BANDWIDTH_KEYS) if (qos[key] !== undefined) checkPositive(p, at(path, key), qos[key]);
  if (qos.packetsPerSecond !== undefined)
    checkInt(p, at(path, 'packetsPerSecond'), qos.packetsPerSecond, PACKET_RATE.min, PACKET_RATE.max);
  if (qos.burstKiB !== undefined && qos.egressKbps === undefined && qos.ingressKbps === undefined) {
    p.add(path, 'burstKiB needs egressKbps or ingressKbps');
  }
  return p.list.length === before;
}
