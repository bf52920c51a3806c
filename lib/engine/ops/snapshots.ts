// Snapshots of a VM's disks through libvirt's snapshot API: internal qcow2 snapshots (the disk,
// and the memory while it runs), so a revert puts back the files — and a running guest — of the
// snapshot's time. For VMs with qcow2 disks (disk boot, or data disks).
import type { SnapshotSummary, VmOptions } from '../../../types/vm.js';
import { SpecError } from '../../errors/index.js';
import { checkName, Problems, checkSafeText } from '../../spec/index.js';
import { snapshotToXml, parseXmlSync } from '../../xml/index.js';
import type { EngineDeps } from '../deps.js';
import { locate, withDomain, type Located } from './locate.js';

export interface SnapshotSpec {
  /** /^[a-z][a-z0-9-]{0,30}$/ */
  name: string;
  description?: string;
}

function checkSnapshot(at: Located, snap: SnapshotSpec): void {
  const p = new Problems();
  checkName(p, 'name', snap.name);
  if (snap.description !== undefined) checkSafeText(p, 'description', snap.description, { allowEmpty: true });
  const vm = at.record.vm;
  if (!('image' in vm.boot) && !vm.disks?.length)
    p.add('(vm)', `VM ${vm.name} boots a kernel and has no disk: there is nothing to snapshot`);
  p.throwIfAny(`snapshot of VM ${vm.name}`);
}

export async function snapshotVm(
  deps: EngineDeps,
  name: string,
  snap: SnapshotSpec | string,
  options: VmOptions = {},
): Promise<SnapshotSummary> {
  const at = await locate(deps, name, options);
  const spec = typeof snap === 'string' ? { name: snap } : snap;
  checkSnapshot(at, spec);
  await withDomain(deps, at, (dom) => dom.createSnapshot(snapshotToXml(spec)));
  return (await listSnapshots(deps, name, options)).find((s) => s.name === spec.name)!;
}

export async function revertVm(deps: EngineDeps, name: string, snap: string, options: VmOptions = {}): Promise<void> {
  const at = await locate(deps, name, options);
  await withDomain(deps, at, async (dom) => {
    if (!(await dom.listSnapshots()).some((s) => s.name === snap))
      throw new SpecError([{ path: 'snapshot', message: `VM ${name} has no snapshot ${snap}` }], 'revert');
    await dom.revertToSnapshot(snap);
  });
}

export async function deleteSnapshot(
  deps: EngineDeps,
  name: string,
  snap: string,
  options: VmOptions = {},
): Promise<void> {
  const at = await locate(deps, name, options);
  await withDomain(deps, at, (dom) => dom.deleteSnapshot(snap));
}

export async function listSnapshots(
  deps: EngineDeps,
  name: string,
  options: VmOptions = {},
): Promise<SnapshotSummary[]> {
  const at = await locate(deps, name, options);
  const list = await withDomain(deps, at, (dom) => dom.listSnapshots());
  return list
    .map(({ name: n, xml }) => {
      const doc = parseXmlSync(xml).domainsnapshot as Record<string, { _?: string }[]> | undefined;
      const field = (k: string) => doc?.[k]?.[0]?._;
      const created = Number(field('creationTime'));
      return {
        name: n,
        ...(field('description') !== undefined ? { description: field('description')! } : {}),
        state: field('state') ?? 'unknown',
        createdAt: Number.isFinite(created) ? new Date(created * 1000).toISOString() : '',
      };
    })
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}
