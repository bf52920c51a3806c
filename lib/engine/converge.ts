// What the CLI's plan/apply/destroy/show do, on top of the engine: observe, plan, converge.
import type { ResolvedVm } from '../../types/resolved.js';
import type { VmSpec, NetworkSpec } from '../../types/spec.js';
import type { CreatedVm } from '../../types/vm.js';
import { HostPlane, type HostPlan } from '../host/index.js';
import { Libvirt } from '../libvirt/index.js';
import { DEFAULT_STATE_DIR, vmPaths } from '../xml/index.js';
import { readRecords, writeRecord, hostStateOf, type VmRecord } from './registry.js';
import { withStateLock } from './lock.js';
import { planChanges, type Plan, type Observed, type Change } from './plan.js';
import type { SpecFile } from './spec-file.js';
import type { VmEngine } from './vm-engine.js';

export interface Target {
  stateDir?: string;
  uri?: string;
}

const dirOf = (t: Target) => t.stateDir ?? DEFAULT_STATE_DIR;
const uriOf = (t: Target) => t.uri ?? 'qemu:///system';

export async function observe(target: Target, records = readRecords(dirOf(target))): Promise<Observed> {
  const lv = await Libvirt.open(uriOf(target));
  try {
    const domains = new Map((await lv.listDomains()).map((d) => [d.name, d.state]));
    const host = await new HostPlane({ stateDir: dirOf(target) }).plan(hostStateOf(records));
    return { domains, host };
  } finally {
    await lv.close();
  }
}

export async function plan(spec: SpecFile, target: Target): Promise<Plan> {
  const records = readRecords(dirOf(target));
  return planChanges(spec, records, await observe(target, records));
}

/** The VmSpec that makes exactly this resolved VM (its allocated addresses pinned). */
export function specOf(vm: ResolvedVm): VmSpec {
  return {
    name: vm.name,
    uuid: vm.uuid,
    vcpus: vm.vcpus,
    memoryMiB: vm.memoryMiB,
    accel: vm.accel,
    boot: vm.boot,
    ...(vm.cloudInit ? { cloudInit: vm.cloudInit } : {}),
    ...(vm.serialLog ? { serialLog: vm.serialLog } : {}),
    nics: vm.nics.map((n) => {
      const { tenant, cidr, gateway, dhcpRange, nat, uplink, segment } = n.network;
      const network: NetworkSpec = { tenant, cidr, gateway, dhcpRange, nat, segment, ...(uplink ? { uplink } : {}) };
      return { network, mac: n.mac, ...(n.ip ? { ip: n.ip } : {}), ...(n.qos ? { qos: n.qos } : {}) };
    }),
  };
}

export interface ConvergeOptions extends Target {
  engine: VmEngine;
  report: (change: Change, status: 'start' | 'done' | 'failed', detail?: string) => void;
}

/** Makes the plan true: deletions and replacements' removals first, then creations in parallel, then repairs. */
export async function converge(p: Plan, options: ConvergeOptions): Promise<CreatedVm[]> {
  const stateDir = dirOf(options);
  const uri = uriOf(options);
  const step = async (c: Change, fn: () => Promise<unknown>) => {
    options.report(c, 'start');
    try {
      await fn();
      options.report(c, 'done');
    } catch (e) {
      options.report(c, 'failed', (e as Error).message);
      throw e;
    }
  };
  const vmChanges = p.changes.filter((c) => c.kind === 'vm');
  for (const c of vmChanges.filter((c) => c.action === 'delete' || c.action === 'replace' || c.repair === 'recreate')) {
    // a replacement or re-creation is reported once, by its create below
    const destroy = () => options.engine.destroy(c.name, { stateDir, uri, missingOk: true });
    if (c.action === 'delete') await step(c, destroy);
    else await destroy();
  }
  for (const c of vmChanges.filter((c) => c.action === 'update')) {
    await step(c, () => withStateLock(stateDir, async () => {
      const rec = readRecords(stateDir).find((r) => r.vm.name === c.name)!;
      writeRecord(stateDir, { ...rec, vm: c.vm! });
      await new HostPlane({ stateDir }).apply(hostStateOf(readRecords(stateDir)));
    }));
  }
  const creates = vmChanges.filter((c) => c.action === 'create' || c.action === 'replace' || c.repair === 'recreate');
  const created: CreatedVm[] = [];
  const results = await Promise.allSettled(creates.map((c) => step(c, async () => created.push(await options.engine.create(specOf(c.vm!), { stateDir, uri })))));
  for (const c of vmChanges.filter((c) => c.repair === 'start')) {
    await step(c, async () => {
      const lv = await Libvirt.open(uri);
      try {
        const d = await lv.lookupDomain(c.name);
        await d?.start();
        d?.free();
      } finally {
        await lv.close();
      }
    });
  }
  for (const c of p.changes.filter((c) => c.kind === 'network' && c.action === 'repair')) {
    await step(c, () => withStateLock(stateDir, () => new HostPlane({ stateDir }).apply(hostStateOf(readRecords(stateDir)))));
  }
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return created;
}

/** What apply would run on the host, read-only: the plane's exact batches for the end state, and the libvirt calls. */
export async function dryRun(p: Plan, target: Target): Promise<{ host: HostPlan; libvirt: string[]; disks: string[] }> {
  const stateDir = dirOf(target);
  const records = readRecords(stateDir);
  const removed = new Set(p.changes.filter((c) => c.kind === 'vm' && (c.action === 'delete' || c.action === 'replace')).map((c) => c.name));
  const changed = new Map(p.changes.filter((c) => c.vm).map((c) => [c.name, c.vm!]));
  const after: VmRecord[] = [
    ...records.filter((r) => !removed.has(r.vm.name)).map((r) => ({ ...r, vm: changed.get(r.vm.name) ?? r.vm })),
    ...p.changes.filter((c) => c.vm && (c.action === 'create' || c.action === 'replace')).map((c) => ({ vm: c.vm!, accel: 'tcg' as const, createdAt: '' })),
  ];
  const host = await new HostPlane({ stateDir }).plan(hostStateOf(after));
  const libvirt: string[] = [];
  const disks: string[] = [];
  for (const c of p.changes.filter((c) => c.kind === 'vm')) {
    if (c.action === 'delete' || c.action === 'replace') libvirt.push(`virDomainDestroy(${c.name}) if running`, `virDomainUndefineFlags(${c.name}, MANAGED_SAVE|NVRAM)`);
    if (c.action === 'create' || c.action === 'replace' || c.repair === 'recreate') {
      libvirt.push(`virDomainDefineXML(${c.name})`, `virDomainCreate(${c.name})`);
      if (c.vm && 'image' in c.vm.boot) disks.push(`qemu-img create -q -f qcow2 -F <base format> -b ${c.vm.boot.image} ${vmPaths(stateDir, c.name).overlay}`);
      if (c.vm?.cloudInit) disks.push(`xorriso -as genisoimage … -output ${vmPaths(stateDir, c.name).seedIso} -volid cidata`);
    }
    if (c.repair === 'start') libvirt.push(`virDomainCreate(${c.name})`);
  }
  return { host, libvirt, disks };
}

/** Removes every VM in the state and whatever the host plane still has. */
export async function destroyAll(target: Target, engine: VmEngine, report: (name: string) => void): Promise<string[]> {
  const stateDir = dirOf(target);
  const names = readRecords(stateDir).map((r) => r.vm.name);
  for (const name of names) {
    await engine.destroy(name, { stateDir, uri: uriOf(target), missingOk: true });
    report(name);
  }
  await withStateLock(stateDir, () => new HostPlane({ stateDir }).apply(hostStateOf(readRecords(stateDir))));
  return names;
}
