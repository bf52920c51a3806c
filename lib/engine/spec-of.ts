// The VmSpec that makes exactly a resolved VM: every default written out and what allocation chose
// (MACs, IPs, segment ids) pinned. Re-creating from it, or changing one field of it, changes
// nothing else.
import type { ResolvedVm } from '../../types/resolved.js';
import type { NetworkSpec, VmSpec } from '../../types/spec.js';

export function specOf(vm: ResolvedVm): VmSpec {
  return {
    name: vm.name,
    uuid: vm.uuid,
    vcpus: vm.vcpus,
    memoryMiB: vm.memoryMiB,
    ...(vm.maxMemoryMiB !== undefined ? { maxMemoryMiB: vm.maxMemoryMiB } : {}),
    accel: vm.accel,
    boot: vm.boot,
    ...(vm.disks?.length ? { disks: vm.disks } : {}),
    ...(vm.cloudInit ? { cloudInit: vm.cloudInit } : {}),
    ...(vm.serialLog ? { serialLog: vm.serialLog } : {}),
    ...(vm.host ? { host: vm.host } : {}),
    nics: vm.nics.map((n) => {
      const { tenant, cidr, gateway, dhcpRange, nat, uplink, segment, hostServices, dns, ipv6 } = n.network;
      const network: NetworkSpec = {
        tenant,
        cidr,
        gateway,
        dhcpRange,
        nat,
        segment,
        ...(uplink ? { uplink } : {}),
        ...(hostServices ? { hostServices } : {}),
        ...(dns ? { dns } : {}),
        // nat6 is given on a NAT network only (a network without NAT keeps IPv6 inside)
        ...(ipv6
          ? {
              cidr6: ipv6.cidr,
              gateway6: ipv6.gateway,
              ...(ipv6.outbound !== 'none' ? { nat6: ipv6.outbound === 'nat' } : {}),
            }
          : {}),
      };
      return {
        network,
        mac: n.mac,
        ...(n.ip ? { ip: n.ip } : {}),
        ...(n.ip6 && n.ip6Pinned ? { ip6: n.ip6 } : {}),
        ...(n.qos ? { qos: n.qos } : {}),
        ...(n.securityGroups ? { securityGroups: n.securityGroups } : {}),
        ...(n.forwards ? { forwards: n.forwards } : {}),
        ...(n.floatingIp ? { floatingIp: n.floatingIp } : {}),
      };
    }),
  };
}
