// A VM's life between create and destroy: list and inspect, start, stop (ACPI, then forced after
// a deadline), reboot (ACPI, then reset). The tenant network, tap and lease stay; a start brings
// the VM back on the same MAC and IP.
import type { CreatedNic, DiskInfo, StopOptions, VmInfo, VmOptions } from '../../../types/vm.js';
import type { ResolvedNic, ResolvedVm } from '../../../types/resolved.js';
import type { DomainState } from '../../libvirt/index.js';
import { diskTargets } from '../../xml/index.js';
import type { EngineDeps } from '../deps.js';
import { withHypervisor, type HostContext } from '../hosts.js';
import { vmPaths } from '../state/paths.js';
import type { VmRecord } from '../state/store.js';
import { bind } from './scope.js';
import { reconcileHost } from '../reconcile.js';
import { locate, untilDomain, withDomain } from './locate.js';
import { rereadBoot } from './reread-boot.js';

const STATES: Record<string, VmInfo['state']> = {
  running: 'running',
  blocked: 'running',
  paused: 'paused',
  pmsuspended: 'paused',
  shutoff: 'shutoff',
  shutdown: 'running',
  crashed: 'crashed',
  nostate: 'shutoff',
};

/** A NIC as createVm, getVm and listVms report it. */
function nicOf(n: ResolvedNic): CreatedNic {
  return {
    tenant: n.network.tenant,
    mac: n.mac,
    ip: n.ip!,
    ...(n.ip6 ? { ip6: n.ip6 } : {}),
    tap: n.tap,
    bridge: n.network.bridge,
    ...(n.forwards ? { forwards: n.forwards } : {}),
    ...(n.floatingIp ? { floatingIp: n.floatingIp } : {}),
  };
}

export const nicsOf = (vm: ResolvedVm): CreatedNic[] => vm.nics.map(nicOf);

function disksOf(vm: ResolvedVm, stateDir: string): DiskInfo[] {
  const paths = vmPaths(stateDir, vm.name);
  return diskTargets(vm).map(({ name, dev }) => {
    if (name === 'root' && 'image' in vm.boot)
      return { name, path: paths.overlay, ...(vm.boot.sizeGiB ? { sizeGiB: vm.boot.sizeGiB } : {}), target: dev };
    const d = vm.disks!.find((x) => x.name === name)!;
    return { name, path: paths.dataDisk(name), sizeGiB: d.sizeGiB, target: dev };
  });
}

function info(record: VmRecord, host: HostContext, state: DomainState | undefined): VmInfo {
  const vm = record.vm;
  return {
    name: vm.name,
    ...(record.host ? { host: record.host } : {}),
    uuid: vm.uuid,
    state: state === undefined ? 'missing' : (STATES[state] ?? 'shutoff'),
    accel: record.accel,
    createdAt: record.createdAt,
    nics: nicsOf(vm),
    disks: disksOf(vm, host.stateDir),
    serialLog: vm.serialLog ?? vmPaths(host.stateDir, vm.name).serialLog,
    memoryMiB: vm.memoryMiB,
    vcpus: vm.vcpus,
  };
}

/** Every VM in the state with libvirt's live state, one connection per host. */
export async function listVms(deps: EngineDeps, options: VmOptions = {}): Promise<VmInfo[]> {
  const { state, hosts } = await bind(deps, options);
  const records = state.records();
  const out: VmInfo[] = [];
  for (const [name, host] of hosts.all(records)) {
    const here = records.filter((r) => r.host === name);
    if (here.length === 0) continue;
    const states = await withHypervisor(
      deps.connect,
      host.uri,
      async (hv) => new Map((await hv.listDomains()).map((d) => [d.name, d.state])),
    );
    for (const r of here) out.push(info(r, host, states.get(r.vm.name)));
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export async function getVm(deps: EngineDeps, name: string, options: VmOptions = {}): Promise<VmInfo | null> {
  return (await listVms(deps, options)).find((v) => v.name === name) ?? null;
}

/**
 * Starts a stopped VM: its host plane first (taps are gone after a host reboot), then the
 * domain; waits for fresh leases.
 */
export async function startVm(
  deps: EngineDeps,
  name: string,
  options: VmOptions & { waitForLease?: boolean } = {},
): Promise<VmInfo> {
  const at = await locate(deps, name, options);
  await reconcileHost(at.state, at.host);
  const before = new Map(
    await Promise.all(
      at.record.vm.nics.map(
        async (n) =>
          [n.mac, (await at.host.plane.leases(n.network.tenant)).find((l) => l.mac === n.mac)?.expiry ?? -1] as const,
      ),
    ),
  );
  await withDomain(deps, at, async (dom, hv) => {
    if (await dom.isActive()) return;
    await rereadBoot(at, hv);
    await dom.start();
  });
  if (options.waitForLease !== false) {
    await Promise.all(
      at.record.vm.nics.map((n) =>
        at.host.plane.waitForLease(n.network.tenant, n.mac, {
          timeoutMs: 300_000,
          newerThan: before.get(n.mac)!,
          ...(options.signal ? { signal: options.signal } : {}),
        }),
      ),
    );
  }
  return info(at.record, at.host, 'running');
}

/** ACPI shutdown, then power off after `timeoutMs` (at once with `force`). True when the guest shut itself down. */
export async function stopVm(
  deps: EngineDeps,
  name: string,
  options: StopOptions = {},
): Promise<{ graceful: boolean }> {
  const at = await locate(deps, name, options);
  return withDomain(deps, at, async (dom, hv) => {
    if (!(await dom.isActive())) return { graceful: true };
    if (!options.force) {
      const off = await untilDomain(
        hv,
        dom,
        () => dom.shutdown(),
        async () => !(await dom.isActive()),
        options.timeoutMs ?? 60_000,
        options.signal,
      );
      if (off) return { graceful: true };
    }
    if (await dom.isActive()) await dom.destroy();
    return { graceful: false };
  });
}

/** ACPI reboot, then a reset after `timeoutMs` (at once with `force`). True when the guest rebooted itself. */
export async function rebootVm(
  deps: EngineDeps,
  name: string,
  options: StopOptions = {},
): Promise<{ graceful: boolean }> {
  const at = await locate(deps, name, options);
  return withDomain(deps, at, async (dom, hv) => {
    if (!options.force) {
      const rebooted = await untilDomain(
        hv,
        dom,
        () => dom.reboot(),
        async (event) => event === 'rebooted',
        options.timeoutMs ?? 60_000,
        options.signal,
      );
      if (rebooted) return { graceful: true };
    }
    await dom.reset();
    return { graceful: false };
  });
}
