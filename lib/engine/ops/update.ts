// Changing a VM in place. What can change without a restart is changed live and said so: QoS and
// a network's host services (the host plane only), NICs added or removed (host plane first, then
// libvirt's hot-plug; a removed NIC's tap goes after the guest let it go), a NIC's security groups
// (the rules only), memory within the domain's maximum (the balloon). Anything else is a SpecError
// naming the fields — unless `allowRestart`: stop, redefine (same UUID, MACs, IPs), start. The
// record follows every change, so `plan` shows no drift afterwards.
import type { CreatedNic, UpdateOptions, UpdateResult, VmOptions } from '../../../types/vm.js';
import type { NicSpec } from '../../../types/spec.js';
import type { ResolvedNic, ResolvedVm } from '../../../types/resolved.js';
import { SpecError, VirtwireError } from '../../errors/index.js';
import { deriveMac, tapName, validateVm, isRecord } from '../../spec/index.js';
import { interfaceToXml, nicInterface, renderResolvedDomainXml } from '../../xml/index.js';
import { waitUntil } from '../../host/index.js';
import type { DomainHandle } from '../../libvirt/index.js';
import type { EngineDeps } from '../deps.js';
import { allocate } from '../allocate.js';
import { applyHost, syncPeerHosts } from '../reconcile.js';
import { diffVm, pinToRecord, LIVE_CHANGE } from '../plan.js';
import { createDataDisks } from '../disks.js';
import { domainFiles } from '../state/paths.js';
import { locate, withDomain, type Located } from './locate.js';
import { nicsOf } from './lifecycle.js';
import { specOf } from '../spec-of.js';
import { checkVmGroups } from './security-groups.js';
import { kernelFor, recordedBoot } from '../kernel/fast-kernel.js';
import { bootedFiles } from '../kernel/kernel-cache.js';

/** The spec as it will be recorded: allocations kept, new NICs on devices of their own. */
function next(at: Located, spec: unknown): ResolvedVm {
  const vm = validateVm(spec);
  const rec = at.record;
  const pinned = pinToRecord(vm, rec);
  // a NIC the record does not have gets the next free device index (earlier ones may have been
  // detached), and a MAC of that index unless the spec gives one
  let index = Math.max(-1, ...rec.vm.nics.map((n) => n.index));
  const given = isRecord(spec) && Array.isArray(spec.nics) ? spec.nics : [];
  const nics = pinned.nics.map((n, i): ResolvedNic => {
    if (rec.vm.nics.some((r) => r.mac === n.mac && r.tap === n.tap)) return n;
    index += 1;
    const mac = isRecord(given[i]) && given[i].mac !== undefined ? n.mac : deriveMac(`${vm.name}\0${index}`);
    return { ...n, index, mac, tap: tapName(vm.name, index) };
  });
  const others = at.state.records().filter((r) => r.vm.name !== vm.name);
  return allocate({ ...pinned, nics }, others);
}

/**
 * What changes, and whether each can be made live. NICs are matched by MAC (a NIC detached from
 * the middle does not shift the others): a NIC added or removed is hot-plug; a kept NIC's QoS or
 * its network's host services change live; anything else of a NIC, and every other field but
 * memory within the domain's maximum, needs a restart.
 */
function changesOf(from: ResolvedVm, to: ResolvedVm): { live: string[]; restart: string[] } {
  const live: string[] = [];
  const restart: string[] = [];
  const max = from.maxMemoryMiB ?? from.memoryMiB;
  for (const { name } of diffVm({ ...from, nics: [] }, { ...to, nics: [] })) {
    const memory = name === 'memoryMiB' && to.memoryMiB <= max && from.maxMemoryMiB === to.maxMemoryMiB;
    (memory ? live : restart).push(name);
  }
  to.nics.forEach((nic, i) => {
    const before = from.nics.find((n) => n.mac === nic.mac);
    if (!before) return live.push(`nics[${i}] (added)`);
    for (const { name } of diffVm({ ...from, nics: [before] }, { ...from, nics: [nic] })) {
      const path = name.replace(/^nics\[0\]/, `nics[${i}]`);
      (LIVE_CHANGE.test(path) ? live : restart).push(path);
    }
  });
  for (const nic of from.nics) if (!to.nics.some((n) => n.mac === nic.mac)) live.push(`nics (${nic.mac} removed)`);
  return { live, restart };
}

export async function updateVm(deps: EngineDeps, spec: unknown, options: UpdateOptions = {}): Promise<UpdateResult> {
  const name = isRecord(spec) && typeof spec.name === 'string' ? spec.name : '';
  const at = await locate(deps, name, options);
  const from = at.record.vm;
  const to = next(at, spec);
  checkVmGroups(at.state, to);
  const { live, restart } = changesOf(from, to);
  const names = [...restart, ...live].sort();
  if (names.length === 0) return { changes: [], live: true };
  if (restart.length > 0 && !options.allowRestart) {
    throw new SpecError(
      restart.map((path) => ({
        path,
        message:
          'cannot change while the VM runs: pass { allowRestart: true } (stop, redefine, start), or destroy and create it',
      })),
      `update of VM ${name}`,
    );
  }
  if (restart.length > 0) await restartWith(deps, at, to);
  else await changeLive(deps, at, from, to);
  return { changes: names, live: restart.length === 0 };
}

async function changeLive(deps: EngineDeps, at: Located, from: ResolvedVm, to: ResolvedVm): Promise<void> {
  const removed = from.nics.filter((n) => !to.nics.some((t) => t.mac === n.mac));
  const added = to.nics.filter((n) => !from.nics.some((f) => f.mac === n.mac));
  await withDomain(deps, at, async (dom) => {
    const running = await dom.isActive();
    const where = { live: running, config: true };
    // a removed NIC leaves the guest first; its tap goes with the host plane below
    for (const nic of removed) {
      await dom.detachDevice(interfaceToXml(nicInterface(nic)), where);
      if (running) await untilGone(dom, nic.mac);
    }
    await at.state.withLock(async () => {
      await at.state.put({ ...at.record, vm: to });
      await applyHost(at.state, at.host);
      await syncPeerHosts(at.state, at.hosts, [from, to], at.record.host);
    });
    // an added NIC's tap, QoS and anti-spoofing exist before the guest sees the device
    for (const nic of added) await dom.attachDevice(interfaceToXml(nicInterface(nic)), where);
    if (to.memoryMiB !== from.memoryMiB) await dom.setMemory(to.memoryMiB * 1024, where);
  });
}

/** The device with this MAC is gone from the running guest (it acts on the unplug request). */
async function untilGone(dom: DomainHandle, mac: string): Promise<void> {
  // libvirt reports the removal as a device event the binding does not subscribe to: the live XML is read instead
  await waitUntil(
    async () => !(await dom.xml()).includes(`address="${mac}"`) && !(await dom.xml()).includes(`address='${mac}'`),
    {
      timeoutMs: 60_000,
      intervalMs: 200,
      what: `the guest to release NIC ${mac}`,
    },
  );
}

async function restartWith(deps: EngineDeps, at: Located, to: ResolvedVm): Promise<void> {
  await withDomain(deps, at, async (dom, hv) => {
    if (await dom.isActive()) await dom.destroy();
    const choice = await kernelFor(at.host, to, at.record.accel, {
      inUse: () => bootedFiles(at.state.records()),
    });
    await at.state.withLock(async () => {
      // a changed boot: the old extracted kernel stays in the cache
      const { kernel: _k, initrd: _r, imageBoot: _i, ...rest } = at.record;
      await at.state.put({ ...rest, vm: to, ...recordedBoot(choice) });
      await applyHost(at.state, at.host);
      await syncPeerHosts(at.state, at.hosts, [at.record.vm, to], at.record.host);
    });
    const newDisks = (to.disks ?? []).filter((d) => !(at.record.vm.disks ?? []).some((o) => o.name === d.name));
    await createDataDisks(at.host.runner, at.host.plane.files, { ...to, disks: newDisks }, at.host.stateDir);
    // same UUID: libvirt replaces the definition
    const xml = renderResolvedDomainXml(to, {
      kvmUsable: at.record.accel === 'kvm',
      files: domainFiles(at.host.stateDir, to, choice),
    });
    (await hv.defineDomain(xml)).free();
    await dom.start();
  });
}

/** Hot-plugs a NIC on a tenant network (host plane first) and waits for its lease. */
export async function attachNic(
  deps: EngineDeps,
  name: string,
  nic: NicSpec,
  options: VmOptions = {},
): Promise<CreatedNic> {
  const at = await locate(deps, name, options);
  const spec = specOf(at.record.vm);
  await updateVm(deps, { ...spec, nics: [...spec.nics, nic] }, options);
  const created = (await locate(deps, name, options)).record.vm.nics.at(-1)!;
  await at.host.plane.waitForLease(created.network.tenant, created.mac, {
    timeoutMs: 300_000,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return nicsOf({ ...at.record.vm, nics: [created] })[0]!;
}

/** Unplugs the NIC with this MAC (the guest lets it go), then removes its tap. */
export async function detachNic(deps: EngineDeps, name: string, mac: string, options: VmOptions = {}): Promise<void> {
  const at = await locate(deps, name, options);
  const spec = specOf(at.record.vm);
  const nics = spec.nics.filter((n) => n.mac !== mac.toLowerCase());
  if (nics.length === spec.nics.length) throw new VirtwireError('NOT_FOUND', `VM ${name} has no NIC with MAC ${mac}`);
  if (nics.length === 0)
    throw new SpecError(
      [{ path: 'nics', message: `${mac} is the VM's only NIC: a VM keeps at least one` }],
      `detach from VM ${name}`,
    );
  await updateVm(deps, { ...spec, nics }, options);
}
