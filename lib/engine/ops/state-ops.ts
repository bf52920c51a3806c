// The state itself, as Terraform's `state` and `refresh` commands treat it: forget a VM without
// touching the host, rename one, drop the records of domains that are gone, and the command lock.
import { existsSync, rmSync } from 'node:fs';
import type { VmOptions } from '../../../types/vm.js';
import { SpecError, VirtwireError } from '../../errors/index.js';
import { FileLock } from '../../host/index.js';
import { Problems, checkName } from '../../spec/index.js';
import { renderResolvedDomainXml } from '../../xml/index.js';
import type { EngineDeps } from '../deps.js';
import { applyHost } from '../reconcile.js';
import { withHypervisor } from '../hosts.js';
import { domainFiles, statePaths, vmPaths } from '../state/paths.js';
import { bind } from './scope.js';
import { locate } from './locate.js';

/** Forgets a VM: its record goes, nothing on its host changes (its domain, disks and taps stay). */
export async function forgetVm(deps: EngineDeps, name: string, options: VmOptions = {}): Promise<void> {
  const at = locate(deps, name, options);
  await at.state.withLock(async () => at.state.forget(name));
}

/**
 * Renames a VM: its record, its libvirt domain (which must be shut off: libvirt renames only
 * those), its directory on its host and its DNS name; its UUID, MACs, IPs and taps stay.
 */
export async function renameVm(deps: EngineDeps, from: string, to: string, options: VmOptions = {}): Promise<void> {
  const at = locate(deps, from, options);
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
        if (dom) await dom.rename(to);
        await at.host.plane.files.rename(vmPaths(at.host.stateDir, from).dir, vmPaths(at.host.stateDir, to).dir);
        if (at.host.remote || at.host.stateDir !== at.state.dir) at.state.forget(from);
        else rmSync(vmPaths(at.state.dir, to).record, { force: true }); // moved with its directory
        at.state.put({ ...at.record, vm });
        // its files are at their new paths: the definition follows (same UUID: libvirt replaces it)
        if (dom)
          (
            await hv.defineDomain(
              renderResolvedDomainXml(vm, {
                kvmUsable: at.record.accel === 'kvm',
                files: domainFiles(at.host.stateDir, vm, at.record.kernel, at.record.imageBoot),
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

/** Records whose domain is gone from its host are dropped; nothing on a host changes. */
export async function refreshState(
  deps: EngineDeps,
  options: VmOptions = {},
): Promise<{ checked: string[]; removed: string[] }> {
  const { state, hosts } = bind(deps, options);
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
        state.forget(r.vm.name);
        removed.push(r.vm.name);
      }
    }
    return { checked: records.map((r) => r.vm.name), removed };
  });
}

export interface LockInfo {
  locked: boolean;
  /** the holder's pid: the lock's ID for force-unlock */
  id?: number;
  command?: string;
  since?: string;
}

/** Whether a command holds the state's command lock, and who. */
export function lockInfo(stateDir: string): LockInfo {
  const file = statePaths(stateDir).commandLock;
  if (!existsSync(file)) return { locked: false };
  const probe = FileLock.tryAcquire(file, 'virtwire lock probe', { shared: true });
  probe?.release();
  const holder = FileLock.holder(file);
  return {
    locked: probe === undefined,
    ...(holder ? { id: holder.pid, command: holder.command, since: holder.since } : {}),
  };
}

/**
 * Terraform's force-unlock. The lock is flock(2): the kernel releases it when its holder exits or
 * is killed, so it is never stale — there is nothing to break. A lock held by a live process
 * stays held (stop that process: it is the one changing the state); otherwise this says so.
 */
export function forceUnlock(stateDir: string, id: number): string {
  const info = lockInfo(stateDir);
  if (!info.locked)
    return `the state in ${stateDir} is not locked (locks of processes that died are released by the kernel)`;
  if (info.id !== id) throw new VirtwireError('NOT_FOUND', `the lock's ID is ${info.id ?? 'unknown'}, not ${id}`);
  throw new VirtwireError(
    'LOCKED',
    `lock ${id} is held by live process ${id} running "${info.command}" since ${info.since}: it cannot be broken; stop that process (kill ${id}) and its lock goes with it`,
  );
}
