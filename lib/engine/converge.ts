// What the CLI's plan/apply/destroy/show do, on top of the engine: observe, plan, converge.
import type { ResolvedVm } from '../../types/resolved.js';
import type { VmSpec, NetworkSpec } from '../../types/spec.js';
import type { CreatedVm, HostTarget } from '../../types/vm.js';
import { ExecaRunner, type HostPlan } from '../host/index.js';
import { VirtwireError } from '../errors/index.js';
import { hostContext, hostStateFor, recordsOn, type HostContext } from './hosts.js';
import { Libvirt } from '../libvirt/index.js';
import { DEFAULT_STATE_DIR, vmPaths } from '../xml/index.js';
import { readRecords, writeRecord, type VmRecord } from './registry.js';
import { withStateLock } from './lock.js';
import { planChanges, type Plan, type Observed, type Change } from './plan.js';
import type { SpecFile } from './spec-file.js';
import type { VmEngine } from './vm-engine.js';

export interface Target {
  stateDir?: string;
  uri?: string;
  /** the spec file's hosts: (records keep the host they were made on as well) */
  hosts?: HostTarget[];
}

const dirOf = (t: Target) => t.stateDir ?? DEFAULT_STATE_DIR;
const uriOf = (t: Target) => t.uri ?? 'qemu:///system';

/**
 * Every host the state or the spec involves, and how to reach it: this machine (VMs recorded
 * without a host), and each named host — from the spec's hosts, else as its records keep it.
 */
function contexts(target: Target, records: VmRecord[]): Map<string | undefined, HostContext> {
  const known = new Map<string, HostTarget>();
  for (const r of records) if (r.host && r.hostTarget) known.set(r.host, r.hostTarget);
  for (const h of target.hosts ?? []) known.set(h.name, h);
  const local = { runner: new ExecaRunner(), uri: uriOf(target), stateDir: dirOf(target) };
  const out = new Map<string | undefined, HostContext>();
  // this machine takes part unless every VM lives on named hosts
  if (!target.hosts?.length || records.some((r) => r.host === undefined)) out.set(undefined, hostContext(undefined, local));
  for (const [name, h] of known) out.set(name, hostContext(h, local));
  for (const r of records) {
    if (r.host !== undefined && !out.has(r.host)) throw new VirtwireError('NOT_FOUND', `VM ${r.vm.name} is recorded on host ${r.host}, which neither the spec's hosts nor the record describe`);
  }
  return out;
}

/** HostPlans of several hosts as one (drift is found per tenant by device names). */
function merge(plans: HostPlan[]): HostPlan {
  return {
    ip: plans.flatMap((p) => p.ip),
    bridge: plans.flatMap((p) => p.bridge),
    firewall: plans.flatMap((p) => p.firewall),
    tc: plans.flatMap((p) => p.tc),
    dnsmasq: plans.flatMap((p) => p.dnsmasq),
  };
}

export async function observe(target: Target, records = readRecords(dirOf(target))): Promise<Observed> {
  const domains = new Map<string, string>();
  const plans: HostPlan[] = [];
  for (const [name, ctx] of contexts(target, records)) {
    // without hosts, every domain of this machine counts; with hosts, each VM's state on its own host
    const all = name === undefined && !target.hosts?.length;
    const here = new Set(recordsOn(records, name).map((r) => r.vm.name));
    const lv = await Libvirt.open(ctx.uri);
    try {
      for (const d of await lv.listDomains()) if (all || here.has(d.name)) domains.set(d.name, d.state);
    } finally {
      await lv.close();
    }
    plans.push(await ctx.plane.plan(hostStateFor(records, ctx)));
  }
  return { domains, host: merge(plans) };
}

export async function plan(spec: SpecFile, target: Target): Promise<Plan> {
  const records = readRecords(dirOf(target));
  return planChanges(spec, records, await observe({ ...target, hosts: target.hosts ?? spec.hosts }, records));
}

/** Re-applies one host's plane from the records (in the state lock). */
function reapply(stateDir: string, ctx: HostContext): Promise<unknown> {
  return withStateLock(stateDir, () => ctx.plane.apply(hostStateFor(readRecords(stateDir), ctx)));
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
    ...(vm.host ? { host: vm.host } : {}),
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
  const hosts = options.hosts;
  const records = readRecords(stateDir);
  const ctxs = contexts(options, records);
  // updates and restarts stay on the host the VM is recorded on
  const hostOfVm = new Map(records.map((r) => [r.vm.name, r.host]));
  const ctxOf = (name: string) => ctxs.get(hostOfVm.get(name))!;
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
    const destroy = () => options.engine.destroy(c.name, { stateDir, uri, ...(hosts ? { hosts } : {}), missingOk: true });
    if (c.action === 'delete') await step(c, destroy);
    else await destroy();
  }
  for (const c of vmChanges.filter((c) => c.action === 'update')) {
    await step(c, async () => {
      const ctx = ctxOf(c.name);
      await withStateLock(stateDir, async () => {
        const rec = readRecords(stateDir).find((r) => r.vm.name === c.name)!;
        writeRecord(stateDir, { ...rec, vm: c.vm! });
      });
      await reapply(stateDir, ctx);
    });
  }
  const creates = vmChanges.filter((c) => c.action === 'create' || c.action === 'replace' || c.repair === 'recreate');
  const created: CreatedVm[] = [];
  const results = await Promise.allSettled(creates.map((c) => step(c, async () => created.push(await options.engine.create(specOf(c.vm!), { stateDir, uri, ...(hosts ? { hosts } : {}) })))));
  for (const c of vmChanges.filter((c) => c.repair === 'start')) {
    await step(c, async () => {
      const lv = await Libvirt.open(ctxOf(c.name).uri);
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
    // every host that has a VM on this tenant
    const where = new Set(readRecords(stateDir).filter((r) => r.vm.nics.some((n) => n.network.tenant === c.name)).map((r) => r.host));
    await step(c, async () => {
      for (const [name, ctx] of ctxs) if (where.has(name)) await reapply(stateDir, ctx);
    });
  }
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return created;
}

/** What apply would run on the hosts, read-only: the planes' exact batches for the end state, and the libvirt calls. */
export async function dryRun(p: Plan, target: Target): Promise<{ host: HostPlan; libvirt: string[]; disks: string[] }> {
  const stateDir = dirOf(target);
  const records = readRecords(stateDir);
  const removed = new Set(p.changes.filter((c) => c.kind === 'vm' && (c.action === 'delete' || c.action === 'replace')).map((c) => c.name));
  const changed = new Map(p.changes.filter((c) => c.vm).map((c) => [c.name, c.vm!]));
  const after: VmRecord[] = [
    ...records.filter((r) => !removed.has(r.vm.name)).map((r) => ({ ...r, vm: changed.get(r.vm.name) ?? r.vm })),
    // a new VM without a host is placed at apply time (by free memory): its host is not known yet
    ...p.changes.filter((c) => c.vm && (c.action === 'create' || c.action === 'replace')).map((c) => ({ vm: c.vm!, accel: 'tcg' as const, createdAt: '', ...(c.vm!.host ? { host: c.vm!.host } : {}) })),
  ];
  const ctxs = contexts(target, records);
  const plans: HostPlan[] = [];
  for (const ctx of ctxs.values()) plans.push(await ctx.plane.plan(hostStateFor(after, ctx)));
  const host = merge(plans);
  const libvirt: string[] = [];
  const disks: string[] = [];
  for (const c of p.changes.filter((c) => c.kind === 'vm')) {
    const at = c.vm?.host ? ` on ${c.vm.host}` : '';
    if (c.action === 'delete' || c.action === 'replace') libvirt.push(`virDomainDestroy(${c.name}) if running`, `virDomainUndefineFlags(${c.name}, MANAGED_SAVE|NVRAM)`);
    if (c.action === 'create' || c.action === 'replace' || c.repair === 'recreate') {
      libvirt.push(`virDomainDefineXML(${c.name})${at}`, `virDomainCreate(${c.name})${at}`);
      const dir = ctxs.get(c.vm?.host)?.stateDir ?? stateDir;
      if (c.vm && 'image' in c.vm.boot) disks.push(`qemu-img create -q -f qcow2 -F <base format> -b ${c.vm.boot.image} ${vmPaths(dir, c.name).overlay}${at}`);
      if (c.vm?.cloudInit) disks.push(`xorriso -as genisoimage … -output ${vmPaths(dir, c.name).seedIso} -volid cidata${at}`);
    }
    if (c.repair === 'start') libvirt.push(`virDomainCreate(${c.name})`);
  }
  return { host, libvirt, disks };
}

/** Removes every VM in the state and whatever the host planes still have. */
export async function destroyAll(target: Target, engine: VmEngine, report: (name: string) => void): Promise<string[]> {
  const stateDir = dirOf(target);
  const records = readRecords(stateDir);
  const ctxs = contexts(target, records);
  for (const { vm } of records) {
    await engine.destroy(vm.name, { stateDir, uri: uriOf(target), ...(target.hosts ? { hosts: target.hosts } : {}), missingOk: true });
    report(vm.name);
  }
  for (const ctx of ctxs.values()) await reapply(stateDir, ctx);
  return records.map((r) => r.vm.name);
}
