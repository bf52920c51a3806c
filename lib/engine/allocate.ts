// Allocation against what the host already has: a VM name, MACs, IPs and tap names that no
// other VM uses, and each tenant's network defined the same way by every VM on it. Every
// conflict is reported with its path, like any other bad input.
import type { ResolvedVm } from '../../types/resolved.js';
import { Problems, at, parseIpv4, formatIpv4, sameNetwork } from '../spec/index.js';
import type { VmRecord } from './registry.js';

export function allocate(vm: ResolvedVm, records: VmRecord[]): ResolvedVm {
  const p = new Problems();
  if (records.some((r) => r.vm.name === vm.name)) p.add('name', `a VM named ${vm.name} already exists`);
  const nics = records.flatMap((r) => r.vm.nics.map((n) => ({ vm: r.vm.name, nic: n })));
  const taken = new Map<string, Set<string>>(); // tenant -> IPs
  for (const { nic } of nics) {
    const set = taken.get(nic.network.tenant) ?? new Set<string>();
    if (nic.ip) set.add(nic.ip);
    taken.set(nic.network.tenant, set);
  }
  const out = vm.nics.map((nic) => {
    const path = at('nics', nic.index);
    const other = nics.find((o) => o.nic.network.tenant === nic.network.tenant);
    if (other && !sameNetwork(other.nic.network, nic.network)) {
      p.add(at(path, 'network'), `tenant ${nic.network.tenant} is already defined differently by VM ${other.vm} (${other.nic.network.cidr})`);
    }
    const macOwner = nics.find((o) => o.nic.mac === nic.mac);
    if (macOwner) p.add(at(path, 'mac'), `${nic.mac} is used by VM ${macOwner.vm}`);
    const tapOwner = nics.find((o) => o.nic.tap === nic.tap);
    if (tapOwner) p.add(path, `tap ${nic.tap} is used by VM ${tapOwner.vm}`);
    const used = taken.get(nic.network.tenant) ?? new Set<string>();
    taken.set(nic.network.tenant, used);
    if (nic.ip) {
      if (used.has(nic.ip)) p.add(at(path, 'ip'), `${nic.ip} is already used on tenant ${nic.network.tenant}`);
      used.add(nic.ip);
      return nic;
    }
    const ip = firstFree(nic.network.dhcpRange, used);
    if (!ip) {
      p.add(at(path, 'ip'), `no free address left in ${nic.network.dhcpRange.join('-')} on tenant ${nic.network.tenant}`);
      return nic;
    }
    used.add(ip);
    return { ...nic, ip };
  });
  p.throwIfAny(`VM spec for ${vm.name}`);
  return { ...vm, nics: out };
}

function firstFree([start, end]: [string, string], used: Set<string>): string | undefined {
  for (let a = parseIpv4(start)!; a <= parseIpv4(end)!; a++) {
    const ip = formatIpv4(a);
    if (!used.has(ip)) return ip;
  }
  return undefined;
}
