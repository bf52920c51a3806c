// The state itself, as Terraform's `state` and `refresh` commands treat it: forget a VM without
// touching the host, rename one, drop the records of domains that are gone, and the command lock.
import { resolve } from 'node:path';
import type { VmOptions } from '../../../types/vm.js';
import { SpecError, VirtwireError } from '../../errors/index.js';
import { Problems, checkName, checkStateUrl, isDatabaseUrl, redactUrl } from '../../spec/index.js';
import { renderResolvedDomainXml } from '../../xml/index.js';
import type { EngineDeps } from '../deps.js';
import { applyHost } from '../reconcile.js';
import { withHypervisor } from '../hosts.js';
import { domainFiles, vmPaths } from '../state/paths.js';
import type { VmRecord } from '../state/store.js';
import { openState, openWhere, type StateWhere } from '../state/open.js';
import { bind } from './scope.js';
import { locate } from './locate.js';

/** Forgets a VM: its record goes, nothing on its host changes (its domain, disks and taps stay). */
export async function forgetVm(deps: EngineDeps, name: string, options: VmOptions = {}): Promise<void> {
  const at = await locate(deps, name, options);
  await at.state.withLock(async () => await at.state.forget(name));
}

/**
 * Renames a VM: its record, its libvirt domain (which must be shut off: libvirt renames only
 * those), its directory on its host and its DNS name; its UUID, MACs, IPs and taps stay.
 */
export async function renameVm(deps: EngineDeps, from: string, to: string, options: VmOptions = {}): Promise<void> {
  const at = await locate(deps, from, options);
  const p = new Problems();
  if (checkName(p, 'to', to) && at.state.get(to)) p.add('to', `a VM named ${to} already exists`);
  p.throwIfAny('rename');
  await withHypervisor(deps.connect, at.host.uri, async (hv) => {
    const dom = await hv.lookupDomain(from);
    try {
      if (dom && (await dom.isActive())) {
        throw new SpecError(
          [{ path: 'from', message: `${from} is running: stop it first (libvirt renames only shut-off domains)` }],
          'rename',
        );
      }
      await at.state.withLock(async () => {
        const vm = { ...at.record.vm, name: to };
        const [fromDir, toDir] = [from, to].map((n) => vmPaths(at.host.stateDir, n).dir) as [string, string];
        if (dom) await dom.rename(to);
        await at.host.plane.files.rename(fromDir, toDir);
        // a directory state's record moved with the VM's directory: put() rewrites it under the new
        // name, with the boot files read from its own disk (reread-boot.ts), which moved with it
        const record = movedBootFiles({ ...at.record, vm }, fromDir, toDir);
        await at.state.forget(from);
        await at.state.put(record);
        // its files are at their new paths: the definition follows (same UUID: libvirt replaces it)
        if (dom)
          (
            await hv.defineDomain(
              renderResolvedDomainXml(vm, {
                kvmUsable: record.accel === 'kvm',
                files: domainFiles(at.host.stateDir, vm, record),
              }),
            )
          ).free();
        await applyHost(at.state, at.host);
      });
    } finally {
      dom?.free();
    }
  });
}

/** `record` with the boot files it names inside `fromDir` named inside `toDir` instead. */
function movedBootFiles(record: VmRecord, fromDir: string, toDir: string): VmRecord {
  const moved = (f: string) => (f.startsWith(`${fromDir}/`) ? `${toDir}${f.slice(fromDir.length)}` : f);
  const { kernel, initrd, imageBoot } = record;
  return {
    ...record,
    ...(kernel ? { kernel: moved(kernel) } : {}),
    ...(initrd ? { initrd: moved(initrd) } : {}),
    ...(imageBoot?.initrd ? { imageBoot: { ...imageBoot, initrd: moved(imageBoot.initrd) } } : {}),
  };
}

/** Records whose domain is gone from its host are dropped; nothing on a host changes. */
export async function refreshState(
  deps: EngineDeps,
  options: VmOptions = {},
): Promise<{ checked: string[]; removed: string[] }> {
  const { state, hosts } = await bind(deps, options);
  return state.withLock(async () => {
    const records = state.records();
    const removed: string[] = [];
    for (const [name, ctx] of hosts.all(records)) {
      const here = records.filter((r) => r.host === name);
      if (here.length === 0) continue;
      const present = await withHypervisor(
        deps.connect,
        ctx.uri,
        async (hv) => new Set((await hv.listDomains()).map((d) => d.name)),
      );
      for (const r of here) {
        if (present.has(r.vm.name)) continue;
        await state.forget(r.vm.name);
        removed.push(r.vm.name);
      }
    }
    return { checked: records.map((r) => r.vm.name), removed };
  });
}

export interface LockInfo {
  locked: boolean;
  /** the lock's ID for force-unlock: the holder's pid (a directory) or database session */
  id?: number;
  command?: string;
  since?: string;
}

/** Whether a command holds the state's command lock, and who. */
export async function lockInfo(where?: StateWhere): Promise<LockInfo> {
  const { locked, holder } = await openWhere(where).commandLockHolder();
  return { locked, ...(holder ? { id: holder.pid, command: holder.command, since: holder.since } : {}) };
}

/**
 * Terraform's force-unlock. A directory's lock is flock(2), released by the kernel when its
 * holder dies: never stale, nothing to break. A database's lock dies with its session; ending
 * that session is what force-unlock does there (the holder can record nothing more).
 */
export function forceUnlock(where: StateWhere, id: number): Promise<string> {
  return openWhere(where).forceUnlock(id);
}

/**
 * Moves a state to `to` (a PostgreSQL URL, or this machine's state dir) without touching any
 * host: records and security groups are copied under both states' locks, then removed from the
 * source (a directory keeps its VM files: they are per-host files either way). The target must
 * be empty. Returns the names of the VMs moved.
 */
export async function migrateState(from: StateWhere, to: string): Promise<string[]> {
  // the locks read both states: no snapshot before them
  const source = openWhere(from);
  const p = new Problems();
  const toDb = isDatabaseUrl(to);
  if (toDb) checkStateUrl(p, 'to', to);
  else if (resolve(to) !== resolve(source.dir))
    p.add(
      'to',
      `a directory state holds its VM files beside its records: migrate to this machine's state dir ${source.dir} ` +
        `(or name another with --state-dir), not ${to}`,
    );
  if (toDb ? redactUrl(to) === source.where : source.where === source.dir)
    p.add('to', `is where the state already is (${source.where})`);
  p.throwIfAny('state migrate');
  const target = openState(source.dir, toDb ? to : undefined);
  return source.withLock(() =>
    target.withLock(async () => {
      if (target.records().length > 0 || target.securityGroups().length > 0)
        throw new VirtwireError(
          'STATE_CONFLICT',
          `${target.where} already holds a state (${target.records().length} VMs, ${target.securityGroups().length} security groups): migrate only into an empty one`,
        );
      const records = source.records();
      const groups = source.securityGroups();
      try {
        for (const g of groups) await target.putSecurityGroup(g);
        for (const r of records) await target.put(r);
      } catch (e) {
        // all or nothing: what was copied goes again, the source is untouched
        for (const r of records) await target.forget(r.vm.name).catch(() => undefined);
        for (const g of groups) await target.removeSecurityGroup(g.name).catch(() => undefined);
        throw e;
      }
      for (const r of records) await source.forget(r.vm.name);
      for (const g of groups) await source.removeSecurityGroup(g.name);
      return records.map((r) => r.vm.name);
    }),
  );
}
