// The binding's behaviour, written once and run against two URIs: test:///default in the unit
// tier (no daemon) and a real libvirtd on qemu:///system in the integration tier.
import { Libvirt, type DomainEvent } from '../../lib/libvirt/index.js';
import { LibvirtError, VIR_ERR, isVirtwireError } from '../../lib/errors/index.js';
import { Collector } from './wait.js';

export interface SuiteTarget {
  uri: string;
  /** XML of a domain named `name` that this driver can define and start */
  domainXml: (name: string) => string;
  /** XML of a libvirt network named `name` this driver can create */
  networkXml: (name: string) => string;
  /** prefix for every object the suite creates, so leftovers are recognisable */
  prefix: string;
  /** what this driver reports for starting a running domain (driver-specific in libvirt) */
  alreadyRunningCode: number;
}

export function libvirtSuite(target: SuiteTarget): void {
  let lv: Libvirt;
  const created: string[] = [];
  const name = (s: string) => {
    const n = `${target.prefix}${s}`;
    created.push(n);
    return n;
  };

  beforeAll(async () => {
    lv = await Libvirt.open(target.uri);
  });
  afterAll(async () => {
    // remove whatever a failing test left behind
    for (const n of created) {
      const d = await lv.lookupDomain(n).catch(() => null);
      if (d) {
        if (await d.isActive()) await d.destroy().catch(() => {});
        if (await d.isPersistent().catch(() => false)) await d.undefine().catch(() => {});
        d.free();
      }
      const net = await lv.lookupNetwork(n).catch(() => null);
      if (net) {
        if (await net.isActive()) await net.destroy().catch(() => {});
        await net.undefine().catch(() => {});
        net.free();
      }
    }
    await lv.close();
  });

  test('connection facts', async () => {
    expect(lv.isAlive()).toBe(true);
    expect(Libvirt.libraryVersion()).toBeGreaterThanOrEqual(9_000_000);
    expect(await lv.libVersion()).toBe(Libvirt.libraryVersion());
    expect(await lv.version()).toBeGreaterThan(0);
    expect((await lv.hostname()).length).toBeGreaterThan(0);
    expect(await lv.capabilities()).toMatch(/<capabilities>[\s\S]*<host>/);
    expect(await lv.freeMemory()).toBeGreaterThan(0);
  });

  test('define, look up, list, start, inspect, stop and undefine a domain', async () => {
    const n = name('life');
    const d = await lv.defineDomain(target.domainXml(n));
    expect(d.name).toBe(n);
    expect(d.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(await d.isPersistent()).toBe(true);
    expect(await d.isActive()).toBe(false);
    expect((await d.state()).state).toBe('shutoff');
    const listed = (await lv.listDomains()).find((x) => x.name === n);
    expect(listed).toMatchObject({ uuid: d.uuid, id: -1, state: 'shutoff' });
    const again = await lv.lookupDomain(n);
    expect(again?.uuid).toBe(d.uuid);
    expect((await lv.lookupDomainByUuid(d.uuid))?.name).toBe(n);
    again?.free();

    await d.start();
    expect(await d.isActive()).toBe(true);
    expect((await d.state()).state).toBe('running');
    const running = (await lv.listDomains()).find((x) => x.name === n)!;
    expect(running.id).toBeGreaterThan(0);
    expect(await d.xml()).toContain(`<name>${n}</name>`);
    expect(await d.xml({ inactive: true })).toContain(`<uuid>${d.uuid}</uuid>`);

    await d.destroy();
    expect((await d.state()).state).toBe('shutoff');
    await d.undefine();
    d.free();
    expect(await lv.lookupDomain(n)).toBeNull();
  });

  test('a transient domain disappears when destroyed', async () => {
    const n = name('transient');
    const d = await lv.createDomain(target.domainXml(n));
    expect(await d.isPersistent()).toBe(false);
    expect(await d.isActive()).toBe(true);
    await d.destroy();
    d.free();
    expect(await lv.lookupDomain(n)).toBeNull();
  });

  test("failures are LibvirtErrors with libvirt's numeric code and the function name", async () => {
    const err = await lv.defineDomain('<domain').catch((e) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect(isVirtwireError(err, 'LIBVIRT')).toBe(true);
    expect(err.func).toBe('virDomainDefineXML');
    expect(err.libvirtCode).toBe(VIR_ERR.XML_DETAIL);
    const n = name('dup');
    const d = await lv.defineDomain(target.domainXml(n));
    await d.start();
    const twice = await d.start().catch((e) => e);
    expect(twice).toBeInstanceOf(LibvirtError);
    expect(twice.libvirtCode).toBe(target.alreadyRunningCode);
    expect(twice.func).toBe('virDomainCreate');
    await d.destroy();
    await d.undefine();
    d.free();
    expect(await lv.lookupDomain(n)).toBeNull();
  });

  test('lifecycle events arrive on the main thread: defined, started, stopped, undefined', async () => {
    const n = name('events');
    const events = new Collector<DomainEvent>();
    const sub = await lv.onDomainEvent((e) => e.name === n && events.push(e));
    try {
      const d = await lv.defineDomain(target.domainXml(n));
      await events.next('defined', (e) => e.type === 'defined');
      await d.start();
      await events.next('started', (e) => e.type === 'started');
      await d.destroy();
      await events.next('stopped', (e) => e.type === 'stopped');
      await d.undefine();
      await events.next('undefined', (e) => e.type === 'undefined');
      d.free();
      // QEMU also reports the intermediate 'resumed' (it starts paused) and 'shutdown'; the
      // milestones must arrive in this order whatever the driver adds between them.
      const milestones = new Set(['defined', 'started', 'stopped', 'undefined']);
      expect(events.items.map((e) => e.type).filter((t) => milestones.has(t))).toEqual([
        'defined',
        'started',
        'stopped',
        'undefined',
      ]);
      expect(new Set(events.items.map((e) => e.uuid)).size).toBe(1);
    } finally {
      await sub.off();
    }
    // after off(), nothing more is delivered
    const count = events.items.length;
    const d = await lv.defineDomain(target.domainXml(name('events2')));
    await d.undefine();
    d.free();
    expect(events.items.length).toBe(count);
  });

  test('libvirt networks: define, start, list, xml, destroy, undefine', async () => {
    const n = name('net');
    const net = await lv.defineNetwork(target.networkXml(n));
    expect((await lv.listNetworks()).find((x) => x.name === n)).toMatchObject({ active: false, persistent: true });
    await net.start();
    expect(await net.isActive()).toBe(true);
    expect(await net.xml()).toContain(`<name>${n}</name>`);
    await net.destroy();
    await net.undefine();
    net.free();
    expect(await lv.lookupNetwork(n)).toBeNull();
  });

  test('200 concurrent define/undefine calls never stall the event loop for more than 100 ms', async () => {
    // The pool's threads start on first use; start them before measuring, as a long-lived
    // process would have them.
    await Promise.all(Array.from({ length: 8 }, () => lv.version()));
    // A binding that blocked the main thread would stall every burst; a machine busy with
    // other work (2 cores shared with libvirtd, QEMU and jest) can stall any one burst. So the
    // burst runs up to three times and the best one must stay under the bound.
    const gaps: number[] = [];
    for (let attempt = 0; attempt < 3 && !(gaps.length && Math.min(...gaps) < 100); attempt++) {
      // a full collection of the test process's heap is a pause that is not the binding's
      (globalThis as { gc?: () => void }).gc?.();
      let last = performance.now();
      let worstGap = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        worstGap = Math.max(worstGap, now - last);
        last = now;
      }, 10);
      const names = Array.from({ length: 200 }, (_, i) => name(`load${attempt}-${i}`));
      try {
        await Promise.all(
          names.map(async (n) => {
            const d = await lv.defineDomain(target.domainXml(n));
            await d.undefine();
            d.free();
          }),
        );
      } finally {
        clearInterval(timer);
      }
      gaps.push(worstGap);
      const left = new Set(names);
      expect((await lv.listDomains()).filter((d) => left.has(d.name))).toEqual([]);
    }
    expect(Math.min(...gaps)).toBeLessThan(100);
  }, 60_000);

  test('a freed handle fails with CLOSED instead of crashing', async () => {
    const n = name('freed');
    const d = await lv.defineDomain(target.domainXml(n));
    d.free();
    d.free(); // twice is harmless
    const err = await d.start().catch((e) => e);
    expect(isVirtwireError(err, 'CLOSED')).toBe(true);
    const again = (await lv.lookupDomain(n))!;
    await again.undefine();
    again.free();
  });

  test('handles of a closed connection fail with CLOSED', async () => {
    const other = await Libvirt.open(target.uri);
    const n = name('closed');
    const d = await other.defineDomain(target.domainXml(n));
    await other.close();
    // rejected promises, never synchronous throws, for async methods
    const pending = d.xml();
    expect(isVirtwireError(await pending.catch((e) => e), 'CLOSED')).toBe(true);
    expect(() => other.isAlive()).toThrow(/closed/);
    expect(isVirtwireError(await other.listDomains().catch((e) => e), 'CLOSED')).toBe(true);
    const mine = (await lv.lookupDomain(n))!;
    await mine.undefine();
    mine.free();
  });
}
