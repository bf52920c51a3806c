// The package's shape: ESM, exports pointing at built files with types. `npm test` builds first.
import { readFileSync, existsSync } from 'node:fs';

const root = new URL('../../', import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));

test('ESM package whose exports point at built JS and .d.ts that exist', () => {
  expect(pkg.type).toBe('module');
  // only the composition root has a side effect (the reflect-metadata polyfill tsyringe needs)
  expect(pkg.sideEffects).toEqual(['./dist/lib/engine/container.js']);
  for (const entry of ['.', './testing']) {
    const e = pkg.exports[entry];
    for (const file of [e.import, e.types]) expect(existsSync(new URL(file, root))).toBe(true);
  }
});

test('virtwire/testing exports the guest helpers', async () => {
  const testing = await import(new URL(pkg.exports['./testing'].import, root).href);
  for (const name of ['buildTestGuest', 'GuestLab', 'withGuests', 'waitForConsole', 'testGuestSpec'])
    expect(typeof testing[name]).toBe('function');
});

test('the built entry point exports the public API', async () => {
  const api = await import(new URL(pkg.exports['.'].import, root).href);
  for (const name of [
    'renderDomainXml',
    'parseDomainXml',
    'validateVm',
    'SpecError',
    'LibvirtError',
    'HostCommandError',
    'ApplyError',
    'isVirtwireError',
    'Libvirt',
    'HostPlane',
    'renderDnsmasqConfig',
    'createVm',
    'destroyVm',
  ]) {
    expect(typeof api[name]).toBe('function');
  }
});
