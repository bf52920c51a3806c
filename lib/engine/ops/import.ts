// `virtwire import <domain> --as <name>`: adopts a shut-off libvirt domain of this machine into
// the state, so plan/apply manage it from then on. Its NICs must be on tenant bridges virtwire
// manages (an ethernet tap enslaved to one, or type='bridge' with one as source): that is how each
// NIC's tenant is known; its MACs are kept, its address comes from the tenant's leases or is
// allocated. The domain is then redefined with virtwire's own XML (same UUID): its NICs become
// taps that virtwire makes, with QoS, anti-spoofing and the static lease; `apply` starts it.
// A disk-booted domain keeps its disk: it becomes the read-only base of the VM's overlay
// (vms/<name>/disk.qcow2, made here), so its data is there and virtwire never writes or deletes
// it. What the model does not carry (other disks, graphics, firmware, ...) is listed as dropped.
import type { ResolvedNic } from '../../../types/resolved.js';
import type { ImportedVm } from '../../../types/vm.js';
import { SpecError, VirtwireError } from '../../errors/index.js';
import { linkMaster } from '../../host/index.js';
import { parseDomainXml, renderResolvedDomainXml, unmodelledDevices } from '../../xml/index.js';
import { validateVm } from '../../spec/index.js';
import type { EngineDeps } from '../deps.js';
import { allocate } from '../allocate.js';
import { applyHost } from '../reconcile.js';
import { withHypervisor } from '../hosts.js';
import { domainFiles } from '../state/paths.js';
import { createOverlay, prepareVmDir } from '../disks.js';
import { removeRecord } from './remove-record.js';
import { bind, type ScopeOptions } from './scope.js';

export async function importDomain(
  deps: EngineDeps,
  domain: string,
  as: string,
  options: ScopeOptions = {},
): Promise<ImportedVm> {
  const { state, hosts } = await bind(deps, { ...options, hosts: [] });
  const here = hosts.context(undefined);
  return withHypervisor(deps.connect, here.uri, async (hv) => {
    const dom = await hv.lookupDomain(domain);
    if (!dom) throw new VirtwireError('NOT_FOUND', `libvirt has no domain named ${domain}`);
    try {
      return await state.withLock(async () => {
        const records = state.records();
        const xml = await dom.xml({ inactive: true });
        const model = parseDomainXml(xml);
        // the tenant networks of this machine's VMs, by bridge
        const networks = new Map(
          records
            .filter((r) => r.host === undefined)
            .flatMap((r) => r.vm.nics.map((n) => [n.network.bridge, n.network] as const)),
        );
        const problems: { path: string; message: string }[] = [];
        const nics: ResolvedNic[] = [];
        for (const [i, ifc] of model.devices.interfaces.entries()) {
          const dev = ifc.target?.dev;
          const bridge =
            ifc.type === 'bridge' ? ifc.source?.bridge : dev ? await linkMaster(here.runner, dev) : undefined;
          const network = bridge ? networks.get(bridge) : undefined;
          if (!network || !ifc.mac) {
            problems.push({
              path: `nics[${i}]`,
              message: `interface ${dev ?? ifc.mac ?? i} is not on a tenant bridge virtwire manages${bridge ? ` (it is on ${bridge})` : ''}`,
            });
            continue;
          }
          const lease = (await here.plane.leases(network.tenant)).find((l) => l.mac === ifc.mac!.toLowerCase());
          nics.push({ index: i, network, mac: ifc.mac.toLowerCase(), tap: '', ...(lease ? { ip: lease.ip } : {}) });
        }
        const disk = model.devices.disks.find((d) => d.device === 'disk')?.source?.file;
        const os = model.os;
        const boot = os.kernel
          ? {
              kernel: os.kernel,
              ...(os.initrd ? { initrd: os.initrd } : {}),
              ...(os.cmdline ? { cmdline: os.cmdline } : {}),
            }
          : disk
            ? { image: disk }
            : undefined;
        if (!boot) problems.push({ path: 'boot', message: 'the domain boots neither a kernel nor a disk image' });
        if (problems.length > 0) throw new SpecError(problems, `domain ${domain}`);
        // validate the adopted VM like any spec (name, sizes), then allocate what is missing
        const base = validateVm({
          name: as,
          uuid: model.uuid,
          vcpus: model.vcpu,
          memoryMiB: Math.round(model.memoryKiB / 1024),
          accel: model.type === 'kvm' ? 'kvm' : 'auto',
          boot,
          nics: nics.map((n) => {
            const { tenant, cidr, gateway, dhcpRange, nat, segment } = n.network;
            return {
              network: { tenant, cidr, gateway, dhcpRange, nat, segment },
              mac: n.mac,
              ...(n.ip ? { ip: n.ip } : {}),
            };
          }),
        });
        const vm = allocate({ ...base, nics: base.nics.map((n, i) => ({ ...n, network: nics[i]!.network })) }, records);
        if (await dom.isActive())
          throw new VirtwireError(
            'APPLY_FAILED',
            `shut ${domain} down first: virtwire adopts a domain by redefining it (and libvirt renames only shut-off domains)`,
          );
        const record = {
          vm,
          accel: model.type === 'kvm' ? ('kvm' as const) : ('tcg' as const),
          createdAt: deps.clock.now().toISOString(),
        };
        await state.put(record);
        let renamed = false;
        try {
          // its taps join this machine's host plane: QoS, anti-spoofing and its static lease
          await applyHost(state, here);
          await prepareVmDir(here.plane.files, here.stateDir, as);
          await createOverlay(here.runner, here.plane.files, vm, here.stateDir);
          if (domain !== as) {
            await dom.rename(as);
            renamed = true;
          }
          const files = domainFiles(here.stateDir, vm);
          (await hv.defineDomain(renderResolvedDomainXml(vm, { files, kvmUsable: record.accel === 'kvm' }))).free();
        } catch (e) {
          // the domain as it was, no record, no files, no taps
          if (renamed) await dom.rename(domain).catch(() => undefined);
          await removeRecord(state, here, as);
          throw e;
        }
        return { vm, dropped: unmodelledDevices(xml) };
      });
    } finally {
      dom.free();
    }
  });
}
