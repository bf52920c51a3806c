// The FFI binding against libvirt's in-process test driver (no daemon needed). The same suite
// runs against a real libvirtd in test/integration/libvirt.test.ts.
import { Libvirt } from '../../lib/libvirt/index.js';
import { VIR_ERR } from '../../lib/errors/index.js';
import { libvirtSuite } from '../helpers/libvirt-suite.js';
import { buildXml } from '../../lib/xml/index.js';
import { eventLoop } from '../../lib/libvirt/event-loop.js';

const testDomain = (name: string) =>
  buildXml({ domain: { $: { type: 'test' }, name, memory: 65536, os: { type: 'hvm' } } });
const testNetwork = (name: string) =>
  buildXml({
    network: {
      name,
      bridge: { $: { name: 'virbr9' } },
      ip: { $: { address: '192.168.254.1', netmask: '255.255.255.0' } },
    },
  });

afterAll(() => Libvirt.shutdown());

describe('libvirt binding on test:///default', () => {
  libvirtSuite({
    uri: 'test:///default',
    domainXml: testDomain,
    networkXml: testNetwork,
    prefix: 'vwtest-',
    alreadyRunningCode: VIR_ERR.INTERNAL_ERROR,
  });
});

describe('the event loop thread', () => {
  test('one thread serves connection after connection: paused while none is open, not ended', async () => {
    const first = await Libvirt.open('test:///default');
    const thread = eventLoop.threadId();
    await first.close();
    const second = await Libvirt.open('test:///default');
    expect(thread).toBeDefined();
    // ended with the last connection (as it was), the next open started a thread of its own
    expect(eventLoop.threadId()).toBe(thread);
    await second.close();
  });
});

describe('behaviour under load (test:///default)', () => {
  let lv: Libvirt;
  beforeAll(async () => (lv = await Libvirt.open('test:///default')));
  afterAll(() => lv.close());

  test('10,000 lookup/xml/free cycles grow RSS by less than 20 MiB', async () => {
    // A 4 KiB description makes every XML string large enough that a missing free() of
    // virDomainGetXMLDesc's result (10,000 x 4 KiB = 40 MiB) cannot hide under the bound.
    const xml = testDomain('vwleak').replace('<memory>', `<description>${'x'.repeat(4096)}</description><memory>`);
    const d = await lv.defineDomain(xml);
    d.free();
    const cycle = async () => {
      const h = (await lv.lookupDomain('vwleak'))!;
      await h.xml();
      h.free();
    };
    // JS garbage is not a leak: collect the main heap before both readings (npm test runs node
    // with --expose-gc), so what remains is C memory libvirt allocated and nobody freed.
    const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
    // Warm up to steady state first: per-thread malloc arenas and the workers' heaps grow by
    // ~25 MiB over the first ~30,000 calls and then stay flat (measured), while a real leak keeps
    // climbing at the same slope. Warm-up ends when 2,000 more cycles add less than 1 MiB.
    let settled = process.memoryUsage().rss;
    for (let batch = 0; batch < 25; batch++) {
      for (let i = 0; i < 2000; i++) await cycle();
      gc();
      const now = process.memoryUsage().rss;
      if (now - settled < 1048576) break;
      settled = now;
    }
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 10_000; i++) await cycle();
    gc();
    const grownMiB = (process.memoryUsage().rss - before) / 1048576;
    const last = (await lv.lookupDomain('vwleak'))!;
    await last.undefine();
    last.free();
    expect(grownMiB).toBeLessThan(20);
  }, 120_000);
});
