// The package's shape: ESM, exports pointing at built files with types. `npm test` builds first.
import { readFileSync, existsSync } from 'node:fs';

const root = new URL('../../', import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));

test('ESM package whose exports point at built JS and .d.ts that exist', () => {
  expect(pkg.type).toBe('module');
  expect(pkg.sideEffects).toBe(false);
  const main = pkg.exports['.'];
  for (const file of [main.import, main.types]) expect(existsSync(new URL(file, root))).toBe(true);
});

test('the built entry point exports the public API', async () => {
  const api = await import(new URL(pkg.exports['.'].import, root).href);
  for (const name of ['renderDomainXml', 'parseDomainXml', 'validateVm', 'SpecError', 'LibvirtError', 'HostCommandError', 'ApplyError', 'isVirtwireError', 'Libvirt', 'HostPlane', 'renderDnsmasqConfig']) {
    expect(typeof api[name]).toBe('function');
  }
});
