// The golden domain XMLs against libvirt itself: the RelaxNG check (test/golden) says the
// documents are well-formed for the schema; here the QEMU driver parses and defines each one
// (it checks more than the schema: machine types, buses, emulator capabilities), and what it
// hands back (`virsh dumpxml`-style XML with ids, aliases and addresses) parses into the same
// model fields virtwire wrote.
import { readdirSync, readFileSync } from 'node:fs';
import { Libvirt } from '../../lib/libvirt/index.js';
import { VIR_ERR } from '../../lib/errors/index.js';
import { parseDomainXml, domainToXml } from '../../lib/xml/index.js';
import { virtXmlValidate } from '../helpers/xml-validate.js';
import { describeAsRoot } from '../helpers/root.js';

const dir = new URL('../golden/expected/', import.meta.url);
const cases = readdirSync(dir).filter((f) => f.endsWith('.xml'));

describeAsRoot('libvirt defines every golden domain (qemu:///system)', () => {
  let lv: Libvirt;
  let hostTypes: Set<string>;
  beforeAll(async () => {
    lv = await Libvirt.open('qemu:///system');
    // the domain types this host's QEMU driver offers (<guest><arch><domain type=…/>)
    hostTypes = new Set([...(await lv.capabilities()).matchAll(/<domain type='([a-z]+)'/g)].map((m) => m[1]!));
  });
  afterAll(async () => {
    for (const d of await lv.listDomains()) {
      if (!d.name.startsWith('vwtest-golden-')) continue;
      const h = await lv.lookupDomain(d.name);
      await h?.undefine().catch(() => {});
      h?.free();
    }
    await lv.close();
  });

  test('there are golden files', () => expect(cases.length).toBeGreaterThanOrEqual(4));

  test.each(cases)(
    '%s: the QEMU driver defines it and reads it back the same (or refuses a domain type this host lacks)',
    async (file) => {
      const model = parseDomainXml(readFileSync(new URL(file, dir), 'utf8'));
      // a test-owned name and no uuid, so it can never collide with a real domain
      const name = `vwtest-golden-${file.replace(/\.xml$/, '')}`.slice(0, 40);
      const xml = domainToXml({ ...model, name, uuid: undefined });
      if (!hostTypes.has(model.type)) {
        // e.g. type='kvm' on a machine without usable KVM (these CI machines: see design.md). The
        // driver must refuse it with its typed code; the document itself is checked by the schema.
        await expect(lv.defineDomain(xml)).rejects.toMatchObject({ libvirtCode: VIR_ERR.CONFIG_UNSUPPORTED });
        return;
      }
      const d = await lv.defineDomain(xml);
      try {
        const dumped = await d.xml();
        const back = parseDomainXml(dumped);
        expect(back.name).toBe(name);
        expect(back.type).toBe(model.type);
        expect(back.memoryKiB).toBe(model.memoryKiB);
        expect(back.vcpu).toBe(model.vcpu);
        expect(back.os.kernel).toBe(model.os.kernel);
        expect(back.os.cmdline).toBe(model.os.cmdline);
        expect(back.cpu?.mode).toBe(model.cpu?.mode);
        expect(back.devices.interfaces).toEqual(model.devices.interfaces);
        expect(back.devices.disks.map((x) => x.source)).toEqual(model.devices.disks.map((x) => x.source));
        // libvirt's own output, re-rendered by virtwire, is still schema-valid
        expect((await virtXmlValidate(domainToXml(back), 'domain')).ok).toBe(true);
      } finally {
        await d.undefine();
        d.free();
      }
    },
  );
});
