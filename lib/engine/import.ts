// `virtwire import <domain> --as <name>`: adopts a shut-off libvirt domain into the state, so
// plan/apply manage it from then on. Its NICs must be on tenant bridges virtwire manages (an
// ethernet tap enslaved to one, or type='bridge' with one as source): that is how each NIC's
// tenant is known; its MACs are kept, its address comes from the tenant's leases or is allocated.
// The domain is then redefined with virtwire's own XML (same UUID): its NICs become taps that
// virtwire makes, with QoS, anti-spoofing and the static lease; `apply` starts it.
import type { ResolvedNic, ResolvedVm } from '../../types/resolved.js';
import { SpecError, VirtwireError } from '../errors/index.js';
import { HostPlane, ExecaRunner, linkMaster } from '../host/index.js';
import { Libvirt } from '../libvirt/index.js';
import { parseDomainXml, renderResolvedDomainXml, DEFAULT_STATE_DIR } from '../xml/index.js';
import { validateVm } from '../spec/index.js';
import { allocate } from './allocate.js';
import { withStateLock } from './lock.js';
import { readRecords, writeRecord, hostStateOf, removeVmDir } from './registry.js';

export async function importDomain(domain: string, as: string, target: { stateDir?: string; uri?: string } = {}): Promise<ResolvedVm> {
  const stateDir = target.stateDir ?? DEFAULT_STATE_DIR;
  const lv = await Libvirt.open(target.uri ?? 'qemu:///system');
  try {
    const dom = await lv.lookupDomain(domain);
    if (!dom) throw new VirtwireError('NOT_FOUND', `libvirt has no domain named ${domain}`);
    try {
      return await withStateLock(stateDir, async () => {
        const records = readRecords(stateDir);
        const model = parseDomainXml(await dom.xml({ inactive: true }));
        const networks = new Map(records.flatMap((r) => r.vm.nics.map((n) => [n.network.bridge, n.network] as const)));
        const problems: { path: string; message: string }[] = [];
        const nics: ResolvedNic[] = [];
        for (const [i, ifc] of model.devices.interfaces.entries()) {
          const dev = ifc.target?.dev;
          const bridge = ifc.type === 'bridge' ? ifc.source?.bridge : dev ? await linkMaster(new ExecaRunner(), dev) : undefined;
          const network = bridge ? networks.get(bridge) : undefined;
          if (!network || !ifc.mac) {
            problems.push({ path: `nics[${i}]`, message: `interface ${dev ?? ifc.mac ?? i} is not on a tenant bridge virtwire manages${bridge ? ` (it is on ${bridge})` : ''}` });
            continue;
          }
          const lease = (await new HostPlane({ stateDir }).leases(network.tenant)).find((l) => l.mac === ifc.mac!.toLowerCase());
          nics.push({ index: i, network, mac: ifc.mac.toLowerCase(), tap: '', ...(lease ? { ip: lease.ip } : {}) });
        }
        const disk = model.devices.disks.find((d) => d.device === 'disk')?.source?.file;
        const boot = model.os.kernel ? { kernel: model.os.kernel, ...(model.os.initrd ? { initrd: model.os.initrd } : {}), ...(model.os.cmdline ? { cmdline: model.os.cmdline } : {}) } : disk ? { image: disk } : undefined;
        if (!boot) problems.push({ path: 'boot', message: 'the domain boots neither a kernel nor a disk image' });
        if (problems.length > 0) throw new SpecError(problems, `domain ${domain}`);
        // validate the adopted VM like any spec (name, sizes), then allocate what is missing
        const base = validateVm({ name: as, uuid: model.uuid, vcpus: model.vcpu, memoryMiB: Math.round(model.memoryKiB / 1024), accel: model.type === 'kvm' ? 'kvm' : 'auto', boot, nics: nics.map((n) => ({ network: { tenant: n.network.tenant, cidr: n.network.cidr, gateway: n.network.gateway, dhcpRange: n.network.dhcpRange, nat: n.network.nat, segment: n.network.segment }, mac: n.mac, ...(n.ip ? { ip: n.ip } : {}) })) });
        const vm = allocate({ ...base, nics: base.nics.map((n, i) => ({ ...n, network: nics[i]!.network })) }, records);
        if (await dom.isActive()) throw new VirtwireError('APPLY_FAILED', `shut ${domain} down first: virtwire adopts a domain by redefining it (and libvirt renames only shut-off domains)`);
        if (domain !== as) await dom.rename(as);
        const record = { vm, accel: model.type === 'kvm' ? ('kvm' as const) : ('tcg' as const), createdAt: new Date().toISOString() };
        writeRecord(stateDir, record);
        try {
          // its taps join the host plane's state: QoS, anti-spoofing and its static lease
          await new HostPlane({ stateDir }).apply(hostStateOf([...records, record]));
          const redefined = await lv.defineDomain(renderResolvedDomainXml(vm, { stateDir, kvmUsable: record.accel === 'kvm' }));
          redefined.free();
        } catch (e) {
          removeVmDir(stateDir, as);
          throw e;
        }
        return vm;
      });
    } finally {
      dom.free();
    }
  } finally {
    await lv.close();
  }
}
