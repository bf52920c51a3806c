// Golden files: each spec under specs/ renders byte-for-byte to expected/<name>.xml, and every
// golden file and every XML these tests produce is validated against libvirt's own RelaxNG
// schemas with virt-xml-validate — the independent check a self-written snapshot cannot give.
// The test never writes an expected file: `npm run golden:update` (scripts/golden-update.ts) does,
// explicitly; review its diff before committing. A missing expected file fails the test.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { parseDomainXml, domainToXml } from '../../lib/xml/index.js';
import { renderDomainXml } from '../../lib/engine/index.js';
import { virtXmlValidate } from '../helpers/xml-validate.js';

const dir = new URL('./', import.meta.url);
const cases = readdirSync(new URL('specs/', dir))
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.replace(/\.json$/, ''));

describe('golden domain XML', () => {
  test('there are golden cases', () => expect(cases.length).toBeGreaterThanOrEqual(4));

  test.each(cases)('%s renders byte-for-byte and validates against libvirt schemas', async (name) => {
    const { spec, options } = JSON.parse(readFileSync(new URL(`specs/${name}.json`, dir), 'utf8'));
    const xml = renderDomainXml(spec, options);
    const expectedUrl = new URL(`expected/${name}.xml`, dir);
    if (!existsSync(expectedUrl))
      throw new Error(`golden file expected/${name}.xml is missing: run npm run golden:update and review it`);
    const expected = readFileSync(expectedUrl, 'utf8');
    expect(xml).toBe(expected);
    const schema = await virtXmlValidate(expected, 'domain');
    expect(schema.output).toMatch(/validates/);
    expect(schema.ok).toBe(true);
    // and what parse -> render produces is the same document
    expect(domainToXml(parseDomainXml(expected))).toBe(expected);
  });

  test('the schema check is not a rubber stamp: it rejects a broken document', async () => {
    const broken = renderDomainXml(
      JSON.parse(readFileSync(new URL('specs/minimal-kernel.json', dir), 'utf8')).spec,
    ).replace('<vcpu placement="static">1</vcpu>', '<vcpu placement="static">one</vcpu>');
    const schema = await virtXmlValidate(broken, 'domain');
    expect(schema.ok).toBe(false);
  });

  test('XML re-rendered from real virsh dumpxml output validates', async () => {
    const dump = readFileSync(new URL('../fixtures/qemu-dumpxml.xml', dir), 'utf8');
    expect((await virtXmlValidate(domainToXml(parseDomainXml(dump)), 'domain')).ok).toBe(true);
  });
});
