// The state in PostgreSQL, against a real server (the private cluster of scripts/postgres.sh) and
// real processes: the schema and its version, records and claims, allocation by many processes at
// once, the locks (a holder killed with SIGKILL, LOCKED naming the holder, shared readers,
// force-unlock), a server restarted while a holder writes, and a network partition.
import { execa, type ResultPromise } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { PgStateStore } from '../../lib/engine/state/pg-store.js';
import { allocate } from '../../lib/engine/allocate.js';
import { validateVm } from '../../lib/spec/index.js';
import { isVirtwireError } from '../../lib/errors/index.js';
import type { VmRecord } from '../../lib/engine/state/store.js';
import { describeAsRoot } from '../helpers/root.js';
import { PartitionProxy, freshDatabase, privateCluster, restartCluster } from '../helpers/postgres.js';

const DIST = new URL('../../dist/lib/', import.meta.url).href;
const dir = mkdtempSync(join(tmpdir(), 'vwpg-'));

const spec = (name: string, tenant = 'acme', cidr = '10.9.0.0/24') =>
  validateVm({
    name,
    memoryMiB: 64,
    boot: { kernel: '/nonexistent/vmlinuz' },
    nics: [{ network: { tenant, cidr, segment: { type: 'vxlan', uplink: 'lo' } } }],
  });

// A child process: opens the store, runs `body` (ESM, with `store`, `allocate`, `spec`, `say`
// and `waitLine` in scope), printing what it says on stdout, one line each.
function child(url: string, body: string): ResultPromise<{ reject: false; stdin: 'pipe'; buffer: true }> {
  const script = `
import { PgStateStore } from '${DIST}engine/state/pg-store.js';
import { allocate } from '${DIST}engine/allocate.js';
import { validateVm } from '${DIST}spec/index.js';
import { createInterface } from 'node:readline';
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const waitLine = async () => (await lines.next()).value;
const say = (s) => process.stdout.write(s + '\\n');
const spec = (name, tenant = 'acme', cidr = '10.9.0.0/24') => validateVm({ name, memoryMiB: 64,
  boot: { kernel: '/nonexistent/vmlinuz' },
  nics: [{ network: { tenant, cidr, segment: { type: 'vxlan', uplink: 'lo' } } }] });
const store = new PgStateStore(process.argv[1], ${JSON.stringify(dir)});
try {
  await store.load();
  ${body}
} catch (e) {
  say('ERROR ' + e.code + ' ' + e.message);
}
process.exit(0);
`;
  return execa('node', ['--input-type=module', '-e', script, url], { reject: false, stdin: 'pipe', buffer: true });
}

/** Resolves with the first stdout line of `proc` matching `re` (rejects when the process ends first). */
function lineOf(proc: ResultPromise, re: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    proc.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      const hit = text.split('\n').find((l) => re.test(l));
      if (hit) resolve(hit);
    });
    void proc.then((r) => reject(new Error(`exited without ${re}: ${String(r.stdout)} ${String(r.stderr)}`)));
  });
}

const record = (vm: ReturnType<typeof spec>): VmRecord => ({ vm, accel: 'tcg', createdAt: 'now' });

describeAsRoot('the state in PostgreSQL (real server, real processes)', () => {
  let admin: string;
  let url: string;
  let drop: () => Promise<void>;
  let store: PgStateStore;

  beforeAll(async () => {
    admin = await privateCluster();
  });
  beforeEach(async () => {
    ({ url, drop } = await freshDatabase(admin, 'state'));
    store = new PgStateStore(url, dir);
    await store.load();
  });
  afterEach(async () => {
    await store.close();
    await drop();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('the schema is created with its version; a database from a newer virtwire is refused', async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const v = await c.query<{ value: string }>(`select value from virtwire.meta where key = 'schema_version'`);
      expect(v.rows[0]!.value).toBe('1');
      await c.query(`update virtwire.meta set value = '99' where key = 'schema_version'`);
    } finally {
      await c.end();
    }
    await store.close(); // a new process: the schema is checked when the database is first opened
    const again = new PgStateStore(url, dir);
    const err = await again.load().catch((e: unknown) => e);
    expect(isVirtwireError(err, 'STATE_UNAVAILABLE') || isVirtwireError(err, 'STATE_INVALID')).toBe(true);
    expect(String((err as Error).message)).toMatch(/schema version 99, written by a newer virtwire/);
    await again.close();
  });

  test('records round-trip to another process; the serial counts every change; a freed address is free again', async () => {
    await store.withLock(async () => {
      await store.put(record(allocate(spec('a'), store.records())));
      await store.put(record(allocate(spec('b'), store.records())));
    });
    const other = await child(
      url,
      `say(JSON.stringify([store.serial(), store.records().map((r) => [r.vm.name, r.vm.nics[0].ip])]));`,
    );
    expect(JSON.parse(other.stdout)).toEqual([
      2,
      [
        ['a', '10.9.0.2'],
        ['b', '10.9.0.3'],
      ],
    ]);
    await store.withLock(async () => {
      await store.forget('a');
      await store.put(record(allocate(spec('c'), store.records())));
    });
    expect(store.records().map((r) => [r.vm.name, r.vm.nics[0]!.ip])).toEqual([
      ['b', '10.9.0.3'],
      ['c', '10.9.0.2'],
    ]);
    expect(store.serial()).toBe(4);
  });

  test('a second writer cannot record what another VM holds, lock or not: STATE_CONFLICT, nothing written', async () => {
    await store.withLock(async () => store.put(record(allocate(spec('a'), store.records()))));
    const a = store.get('a')!;
    // allocated against a state that did not see `a` (as a writer without the lock would)
    const stale = allocate(spec('b'), []);
    expect(stale.nics[0]!.ip).toBe(a.vm.nics[0]!.ip);
    const err = await store.put(record(stale)).catch((e: unknown) => e);
    expect(isVirtwireError(err, 'STATE_CONFLICT')).toBe(true);
    expect((err as Error).message).toContain(`ip acme/${a.vm.nics[0]!.ip} is held by a`);
    const fresh = new PgStateStore(url, dir);
    await fresh.load();
    expect(fresh.records().map((r) => r.vm.name)).toEqual(['a']);
    expect(fresh.serial()).toBe(1);
    await fresh.close();
    // another tenant's segment id is refused the same way
    const otherTenant = allocate(spec('c', 'globex', '10.10.0.0/24'), []);
    expect(otherTenant.nics[0]!.network.segment).toMatchObject({ vni: 4096 });
    const clash = await store.put(record(otherTenant)).catch((e: unknown) => e);
    expect((clash as Error).message).toContain('vni 4096 is held by tenant:acme');
  });

  test('8 processes × 5 creates at once in one tenant: 40 distinct addresses, one VNI; a second tenant its own', async () => {
    const body = `
      const me = process.pid;
      for (let i = 0; i < 5; i++) {
        await store.withLock(async () => {
          const tenant = i % 2 ? 'acme' : 'acme';
          await store.put({ vm: allocate(spec('vm-' + me + '-' + i, tenant), store.records()), accel: 'tcg', createdAt: 'now' });
        }, { timeoutMs: 60000 });
      }
      await store.withLock(async () => {
        await store.put({ vm: allocate(spec('g-' + me, 'globex', '10.10.0.0/24'), store.records()), accel: 'tcg', createdAt: 'now' });
      }, { timeoutMs: 60000 });
      say('done');`;
    const runs = await Promise.all(Array.from({ length: 8 }, () => child(url, body)));
    for (const r of runs) expect(r.stdout.trim()).toBe('done');
    await store.load();
    const acme = store.records().filter((r) => r.vm.nics[0]!.network.tenant === 'acme');
    const globex = store.records().filter((r) => r.vm.nics[0]!.network.tenant === 'globex');
    expect(acme).toHaveLength(40);
    expect(new Set(acme.map((r) => r.vm.nics[0]!.ip)).size).toBe(40);
    expect(new Set(acme.map((r) => (r.vm.nics[0]!.network.segment as { vni: number }).vni))).toEqual(new Set([4096]));
    expect(globex).toHaveLength(8);
    expect(new Set(globex.map((r) => r.vm.nics[0]!.ip)).size).toBe(8);
    expect(new Set(globex.map((r) => (r.vm.nics[0]!.network.segment as { vni: number }).vni))).toEqual(new Set([4097]));
    expect(store.serial()).toBe(48);
  }, 120_000);

  test('a holder killed with SIGKILL: the lock is taken at once by another process', async () => {
    const holder = child(
      url,
      `await store.withLock(async () => {
         await store.put({ vm: allocate(spec('half'), store.records()), accel: 'tcg', createdAt: 'now' });
         say('held');
         await waitLine();
       });`,
    );
    await lineOf(holder, /^held$/);
    // while it lives, the lock is busy: LOCKED after the wait, naming the holder's process
    const busy = await store.withLock(async () => 'got', { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(isVirtwireError(busy, 'LOCKED')).toBe(true);
    expect((busy as Error).message).toMatch(new RegExp(`pid ${holder.pid} on `));
    holder.kill('SIGKILL');
    await holder;
    // the server ends the dead client's session and its lock with it: a 5 s wait is the deadline
    const t0 = Date.now();
    const got = await store.withLock(async () => store.records().map((r) => r.vm.name), { timeoutMs: 5_000 });
    expect(got).toEqual(['half']); // what it recorded before it died stays, for plan to repair
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  test('the command lock: LOCKED naming the holder; shared readers together; -lock-timeout waits; force-unlock ends the holder', async () => {
    const holder = child(
      url,
      `await store.withCommandLock('virtwire apply -f tenants.yaml', async () => {
         say('held');
         await waitLine();
         try { await store.withLock(async () => store.put({ vm: allocate(spec('late'), store.records()), accel: 'tcg', createdAt: 'now' })); say('wrote'); }
         catch (e) { say('ERROR ' + e.code + ' ' + e.message); }
       });`,
    );
    await lineOf(holder, /^held$/);
    const err = await store.withCommandLock('virtwire plan', async () => 1).catch((e: unknown) => e);
    expect(isVirtwireError(err, 'LOCKED')).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`virtwire apply -f tenants.yaml \\(pid ${holder.pid} on `));
    const info = await store.commandLockHolder();
    expect(info.locked).toBe(true);
    // -lock-timeout: told who holds it, then LOCKED when the wait runs out
    const told: string[] = [];
    const waited = await store
      .withCommandLock('virtwire apply', async () => 1, { timeoutMs: 300, onWait: (h) => told.push(h!.command) })
      .catch((e: unknown) => e);
    expect(isVirtwireError(waited, 'LOCKED')).toBe(true);
    expect(told[0]).toContain('virtwire apply -f tenants.yaml');
    // force-unlock: the holder's sessions end; its next write fails; the lock is free
    const said = await store.forceUnlock(info.holder!.pid);
    expect(said).toMatch(new RegExp(`ended \\d session\\(s\\) of process ${holder.pid} on `));
    holder.stdin!.write('go\n');
    const out = (await holder).stdout;
    expect(out).toMatch(/ERROR STATE_UNAVAILABLE/);
    expect(out).not.toContain('wrote');
    expect(await store.withCommandLock('virtwire plan', async () => 'free')).toBe('free');
    // shared: two readers at once
    const inner = await store.withCommandLock(
      'plan 1',
      () => store.withCommandLock('plan 2', async () => 'both', { shared: true }),
      {
        shared: true,
      },
    );
    expect(inner).toBe('both');
  });

  test('the server restarted while a holder writes: a clear error, nothing half-recorded', async () => {
    const holder = child(
      url,
      `await store.withLock(async () => {
         await store.put({ vm: allocate(spec('first'), store.records()), accel: 'tcg', createdAt: 'now' });
         say('wrote first');
         await waitLine();
         await store.put({ vm: allocate(spec('second'), store.records()), accel: 'tcg', createdAt: 'now' });
         say('wrote second');
       });`,
    );
    await lineOf(holder, /^wrote first$/);
    await store.close();
    await restartCluster();
    holder.stdin!.write('go\n');
    const out = (await holder).stdout;
    expect(out).not.toContain('wrote second');
    expect(out).toMatch(/ERROR STATE_UNAVAILABLE the state lock's session to .* ended .*nothing more was recorded/);
    store = new PgStateStore(url, dir);
    await store.load();
    expect(store.records().map((r) => r.vm.name)).toEqual(['first']);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const owners = await c.query<{ owner: string }>('select distinct owner from virtwire.owners order by owner');
      expect(owners.rows.map((r) => r.owner)).toEqual(['first', 'tenant:acme']);
    } finally {
      await c.end();
    }
  }, 120_000);

  test('a partition between operator and database: the next write fails within the timeout; nothing half-recorded', async () => {
    const proxy = new PartitionProxy({ host: '127.0.0.1', port: Number(new URL(url).port) });
    await proxy.start();
    try {
      const holder = child(
        proxy.via(url),
        `await store.withLock(async () => {
           await store.put({ vm: allocate(spec('before'), store.records()), accel: 'tcg', createdAt: 'now' });
           say('wrote before');
           await waitLine();
           try { await store.check(); say('checked'); } catch (e) { say('CHECK ' + e.code); }
           await store.put({ vm: allocate(spec('after'), store.records()), accel: 'tcg', createdAt: 'now' });
           say('wrote after');
         });`,
      );
      await lineOf(holder, /^wrote before$/);
      proxy.cut();
      holder.stdin!.write('go\n');
      const out = (await holder).stdout;
      expect(out).toContain('CHECK STATE_UNAVAILABLE'); // what createVm asks before changing a host
      expect(out).not.toContain('wrote after');
      expect(out).toMatch(/ERROR STATE_UNAVAILABLE/);
      await store.load();
      expect(store.records().map((r) => r.vm.name)).toEqual(['before']);
      // the server still keeps the partitioned session (its proxy end is alive): force-unlock ends it
      const busy = await store.withLock(async () => 1, { timeoutMs: 300 }).catch((e: unknown) => e);
      expect(isVirtwireError(busy, 'LOCKED')).toBe(true);
      const id = Number(/session (\d+)/.exec((busy as Error).message)![1]);
      expect(await store.forceUnlock(id)).toMatch(/ended \d session/);
      expect(await store.withLock(async () => 'free', { timeoutMs: 5_000 })).toBe('free');
    } finally {
      await proxy.stop();
    }
  }, 120_000);
});
