// `npm run demo`, stage one: renders the domain XML of two tenants' sample VMs and has libvirt's
// own schema validator check it. (Once createVm lands, the demo boots real guests instead.)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderDomainXml, parseDomainXml, type VmSpec } from '../lib/index.js';

const acme = { tenant: 'acme', cidr: '10.10.0.0/24' };
const globex = { tenant: 'globex', cidr: '10.20.0.0/24' };
const specs: VmSpec[] = [
  { name: 'acme-web', boot: { kernel: '/var/lib/virtwire/guest/vmlinuz', initrd: '/var/lib/virtwire/guest/initrd.img' }, nics: [{ network: acme }] },
  { name: 'globex-db', memoryMiB: 512, boot: { kernel: '/var/lib/virtwire/guest/vmlinuz' }, nics: [{ network: globex, qos: { egressKbps: 10000 } }] },
];

const dir = mkdtempSync(join(tmpdir(), 'virtwire-demo-'));
try {
  for (const spec of specs) {
    const xml = renderDomainXml(spec);
    const file = join(dir, `${spec.name}.xml`);
    writeFileSync(file, xml);
    const check = spawnSync('virt-xml-validate', [file, 'domain'], { encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`libvirt's schema rejects ${spec.name}: ${check.stderr}`);
    const model = parseDomainXml(xml);
    const nic = model.devices.interfaces[0]!;
    console.log(`${spec.name.padEnd(10)} type=${model.type} tap=${nic.target?.dev} mac=${nic.mac}  schema: valid`);
  }
  console.log('\n' + renderDomainXml(specs[0]!));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
