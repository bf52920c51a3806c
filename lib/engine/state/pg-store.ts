// The state in PostgreSQL: one truth for every operator, CI runner and service replica managing
// the same hosts (Terraform's `pg` backend does the same). Records, security groups, the serial,
// the allocation claims and the locks live in the database; per-host files (disks, seeds, serial
// logs, kernel cache) stay in `dir` on each host, as with a directory state.
//
// Locks are advisory locks held by a session of their own, so they die with their holder (kill -9,
// a lost machine: the server ends the session). Every write made under the state lock goes through
// that same session in one transaction with the serial's bump: if the session is gone (database
// restarted, network partition) the write fails and nothing is half-recorded — and since a
// create records before it changes a host, it stops before changing a host it could not record.
// The claims (claims.ts) make double allocation impossible by construction, even for a writer
// that holds no lock: a unique key per address, MAC, tap, segment id and transit /30.
import { hostname } from 'node:os';
import { rmSync } from 'node:fs';
import pg from 'pg';
import type { ResolvedSecurityGroup } from '../../../types/resolved.js';
import { VirtwireError, isVirtwireError } from '../../errors/index.js';
import type { LockHolder } from '../../host/index.js';
import { claimsOf } from './claims.js';
import { redactUrl, redactUrls } from '../../spec/index.js';
import { vmPaths, type VmPaths } from './paths.js';
import { SCHEMA, migrateSchema } from './pg-schema.js';
import {
  inProcessTurn,
  migrateRecord,
  RECORD_VERSION,
  type CommandLockOptions,
  type StateStore,
  type VmRecord,
} from './store.js';

/** How long one statement may take before the state counts as unreachable (a partition). */
const QUERY_TIMEOUT_MS = 10_000;
// pg_advisory_lock(int, int) keys: "vwl" and which lock
const LOCK_CLASS = 0x76776c;
const STATE_LOCK = 1;
const COMMAND_LOCK = 2;

interface Snapshot {
  records: VmRecord[];
  groups: ResolvedSecurityGroup[];
  serial: number;
}

// One pool per database URL in a process; idle connections let the process exit.
const pools = new Map<string, { pool: pg.Pool; ready: Promise<void> }>();

function poolFor(url: string, where: string): { pool: pg.Pool; ready: Promise<void> } {
  let entry = pools.get(url);
  if (!entry) {
    const pool = new pg.Pool({
      connectionString: url,
      max: 4,
      allowExitOnIdle: true,
      idleTimeoutMillis: 5_000,
      connectionTimeoutMillis: QUERY_TIMEOUT_MS,
      query_timeout: QUERY_TIMEOUT_MS,
      keepAlive: true,
      application_name: 'virtwire',
    });
    // an idle pooled connection whose server went away: the pool drops it; the next query reconnects
    pool.on('error', () => undefined);
    const ready = (async () => {
      const client = await pool.connect();
      try {
        await migrateSchema(client, where);
      } finally {
        client.release();
      }
    })();
    ready.catch(() => pools.delete(url));
    entry = { pool, ready };
    pools.set(url, entry);
  }
  return entry;
}

interface HeldLock {
  which: number;
  backend: number;
  os_pid: number | null;
  host: string | null;
  command: string | null;
  since: Date | null;
}

/** The command locks this process holds, by database URL (see commandStillHeld). */
const commandSessions = new Map<string, Set<LockSession>>();

/** A connection of its own that holds an advisory lock; `lost` is set when the server or network ends it. */
interface LockSession {
  client: pg.PoolClient;
  backendPid: number;
  lost?: Error;
}

export class PgStateStore implements StateStore {
  readonly where: string;
  private snapshot: Snapshot = { records: [], groups: [], serial: 0 };
  private session: LockSession | undefined;

  constructor(
    private readonly url: string,
    readonly dir: string,
  ) {
    this.where = redactUrl(url);
  }

  vmPaths(name: string): VmPaths {
    return vmPaths(this.dir, name);
  }

  private async pool(): Promise<pg.Pool> {
    const { pool, ready } = poolFor(this.url, this.where);
    await ready.catch((e: unknown) => {
      throw this.unavailable('could not be opened', e);
    });
    return pool;
  }

  async load(): Promise<void> {
    if (this.session) return this.loadWith(this.session.client);
    const client = await this.connect();
    let ok = false;
    try {
      await this.loadWith(client);
      ok = true;
    } finally {
      client.release(!ok);
    }
  }

  /** One consistent read of everything (a repeatable-read transaction). */
  private async loadWith(client: pg.ClientBase): Promise<void> {
    try {
      await client.query('begin isolation level repeatable read read only');
      const vms = await client.query<{ name: string; record: VmRecord }>(
        `select name, record from ${SCHEMA}.vms order by name`,
      );
      const groups = await client.query<{ grp: ResolvedSecurityGroup }>(
        `select grp from ${SCHEMA}.security_groups order by name`,
      );
      const serial = await client.query<{ value: string }>(`select value from ${SCHEMA}.meta where key = 'serial'`);
      await client.query('commit');
      this.snapshot = {
        records: vms.rows.map((r) => migrateRecord(r.record, `${this.where} (vm ${r.name})`)),
        groups: groups.rows.map((r) => r.grp),
        serial: Number(serial.rows[0]?.value ?? 0),
      };
    } catch (e) {
      if (isVirtwireError(e)) throw e;
      if (this.session?.client === client) this.session.lost ??= asError(e);
      throw this.unavailable('could not be read', e);
    }
  }

  records(): VmRecord[] {
    return this.snapshot.records;
  }

  get(name: string): VmRecord | undefined {
    return this.snapshot.records.find((r) => r.vm.name === name);
  }

  securityGroups(): ResolvedSecurityGroup[] {
    return this.snapshot.groups;
  }

  serial(): number {
    return this.snapshot.serial;
  }

  async put(record: VmRecord): Promise<void> {
    const stamped = { ...record, version: RECORD_VERSION };
    await this.write(async (c) => {
      const name = record.vm.name;
      await c.query(
        `insert into ${SCHEMA}.vms (name, record) values ($1, $2)
         on conflict (name) do update set record = excluded.record, updated_at = now()`,
        [name, JSON.stringify(stamped)],
      );
      const held = await this.dropUses(c, name);
      for (const claim of claimsOf(stamped)) {
        // taken, or kept by its owner; a row held by another owner is not updated: a conflict
        const got = await c.query(
          `insert into ${SCHEMA}.owners (kind, key, owner) values ($1, $2, $3)
           on conflict (kind, key) do update set owner = excluded.owner where owners.owner = excluded.owner
           returning owner`,
          [claim.kind, claim.key, claim.owner],
        );
        if (got.rowCount === 0) {
          const held = await c.query<{ owner: string }>(
            `select owner from ${SCHEMA}.owners where kind = $1 and key = $2`,
            [claim.kind, claim.key],
          );
          throw new VirtwireError(
            'STATE_CONFLICT',
            `VM ${name} cannot be recorded: ${claim.kind} ${claim.key} is held by ${held.rows[0]?.owner ?? 'another VM'} in ${this.where}`,
          );
        }
        await c.query(`insert into ${SCHEMA}.uses (vm, kind, key) values ($1, $2, $3)`, [name, claim.kind, claim.key]);
      }
      await this.releaseUnused(c, held);
    });
    this.snapshot = {
      ...this.snapshot,
      records: replaced(this.snapshot.records, stamped, (r) => r.vm.name),
    };
  }

  async remove(name: string): Promise<void> {
    await this.forget(name);
    rmSync(this.vmPaths(name).dir, { recursive: true, force: true });
  }

  async forget(name: string): Promise<void> {
    await this.write(async (c) => {
      const held = await this.dropUses(c, name);
      await c.query(`delete from ${SCHEMA}.vms where name = $1`, [name]);
      await this.releaseUnused(c, held);
    });
    this.snapshot = { ...this.snapshot, records: this.snapshot.records.filter((r) => r.vm.name !== name) };
  }

  async putSecurityGroup(group: ResolvedSecurityGroup): Promise<void> {
    await this.write((c) =>
      c.query(
        `insert into ${SCHEMA}.security_groups (name, grp) values ($1, $2)
         on conflict (name) do update set grp = excluded.grp`,
        [group.name, JSON.stringify(group)],
      ),
    );
    this.snapshot = {
      ...this.snapshot,
      groups: replaced(this.snapshot.groups, group, (g) => g.name),
    };
  }

  async removeSecurityGroup(name: string): Promise<void> {
    await this.write((c) => c.query(`delete from ${SCHEMA}.security_groups where name = $1`, [name]));
    this.snapshot = { ...this.snapshot, groups: this.snapshot.groups.filter((g) => g.name !== name) };
  }

  /** Deletes what `vm` holds, returning it: the keys a change of that VM may have freed. */
  private async dropUses(c: pg.ClientBase, vm: string): Promise<{ kind: string; key: string }[]> {
    return (
      await c.query<{ kind: string; key: string }>(`delete from ${SCHEMA}.uses where vm = $1 returning kind, key`, [vm])
    ).rows;
  }

  /** Of the keys a VM held, releases those no VM uses any more (only those: no scan of every claim). */
  private async releaseUnused(c: pg.ClientBase, held: { kind: string; key: string }[]): Promise<void> {
    if (held.length === 0) return;
    await c.query(
      `delete from ${SCHEMA}.owners o
         using unnest($1::text[], $2::text[]) as h(kind, key)
         where o.kind = h.kind and o.key = h.key
           and not exists (select 1 from ${SCHEMA}.uses u where u.kind = o.kind and u.key = o.key)`,
      [held.map((h) => h.kind), held.map((h) => h.key)],
    );
  }

  /**
   * One transaction with the serial's bump, through the lock's session when the lock is held (so
   * a lost session can write nothing), else through the pool.
   */
  private async write(fn: (c: pg.ClientBase) => Promise<unknown>): Promise<void> {
    const session = this.session;
    if (session?.lost) throw this.lockLost(session.lost);
    await this.commandStillHeld(false);
    const client = session?.client ?? (await this.connect());
    let broken = false;
    try {
      await client.query('begin');
      await fn(client);
      const serial = await client.query<{ value: string }>(
        `update ${SCHEMA}.meta set value = (value::bigint + 1)::text where key = 'serial' returning value`,
      );
      await client.query('commit');
      this.snapshot = { ...this.snapshot, serial: Number(serial.rows[0]!.value) };
    } catch (e) {
      if (isVirtwireError(e)) {
        // refused by us mid-transaction (a conflict): the connection is fine
        await client.query('rollback').catch(() => undefined);
        throw e;
      }
      // a connection that failed or timed out is not asked again (its next query would wait out
      // the timeout too): it is dropped, and the server rolls the transaction back
      broken = true;
      if (session) session.lost ??= asError(e);
      throw session ? this.lockLost(e) : this.unavailable('could not be written', e);
    } finally {
      if (!session) client.release(broken);
    }
  }

  async check(): Promise<void> {
    const session = this.session;
    if (session?.lost) throw this.lockLost(session.lost);
    try {
      if (session) await session.client.query('select 1');
      else await (await this.pool()).query('select 1');
    } catch (e) {
      if (session) session.lost ??= asError(e);
      throw session ? this.lockLost(e) : this.unavailable('is unreachable', e);
    }
  }

  async withLock<T>(fn: () => Promise<T>, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<T> {
    return inProcessTurn(`pg:${this.url}`, async () => {
      const session = await this.lock(STATE_LOCK, 'exclusive', thisCommand(), {
        timeoutMs: options.timeoutMs ?? 120_000,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      this.session = session;
      try {
        await this.commandStillHeld(true);
        await this.loadWith(session.client);
        return await fn();
      } finally {
        this.session = undefined;
        await this.unlock(session, STATE_LOCK, 'exclusive');
      }
    });
  }

  async withCommandLock<T>(command: string, fn: () => Promise<T>, options: CommandLockOptions = {}): Promise<T> {
    const mode = options.shared === true ? 'shared' : 'exclusive';
    let session = await this.lock(COMMAND_LOCK, mode, command, { timeoutMs: 0 });
    if (!session.held) {
      const busy = session;
      if (!options.timeoutMs) {
        const holder = (await this.holderOf(COMMAND_LOCK, busy.client)).holder;
        busy.client.release();
        throw this.locked(holder);
      }
      options.onWait?.((await this.holderOf(COMMAND_LOCK, busy.client)).holder);
      busy.client.release();
      session = await this.lock(COMMAND_LOCK, mode, command, { timeoutMs: options.timeoutMs });
    }
    const mine = commandSessions.get(this.url) ?? new Set<LockSession>();
    commandSessions.set(this.url, mine.add(session));
    try {
      return await fn();
    } finally {
      mine.delete(session);
      await this.unlock(session, COMMAND_LOCK, mode);
    }
  }

  /**
   * A command whose lock was taken from it (force-unlock ended its session, the server restarted)
   * may not go on: every state lock and write of this process checks its command sessions first.
   */
  private async commandStillHeld(ping: boolean): Promise<void> {
    for (const s of commandSessions.get(this.url) ?? []) {
      if (!s.lost && ping) await s.client.query('select 1').catch((e: unknown) => (s.lost ??= asError(e)));
      if (s.lost) throw this.lockLost(s.lost);
    }
  }

  /**
   * Takes an advisory lock on a session of its own: at once (`timeoutMs` 0: `held` false when
   * busy) or waiting up to `timeoutMs` (LOCKED naming the holder when it runs out).
   */
  private async lock(
    which: number,
    mode: 'shared' | 'exclusive',
    command: string,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<LockSession & { held: boolean }> {
    const client = await this.connect();
    const session: LockSession & { held: boolean } = { client, backendPid: 0, held: false };
    const onError = (e: Error) => (session.lost ??= e);
    client.on('error', onError);
    const fail = (e: unknown) => {
      client.off('error', onError);
      client.release(true);
      throw e;
    };
    const suffix = mode === 'shared' ? '_shared' : '';
    let onAbort: (() => void) | undefined;
    try {
      session.backendPid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      if (options.timeoutMs === 0) {
        const r = await client.query<{ ok: boolean }>(`select pg_try_advisory_lock${suffix}($1, $2) as ok`, [
          LOCK_CLASS,
          which,
        ]);
        if (!r.rows[0]!.ok) {
          client.off('error', onError);
          return session;
        }
      } else {
        if (options.signal) {
          const pool = await this.pool();
          // a cancelled wait: the server cancels the lock statement, which then fails
          onAbort = () => void pool.query('select pg_cancel_backend($1)', [session.backendPid]).catch(() => undefined);
          options.signal.addEventListener('abort', onAbort, { once: true });
          if (options.signal.aborted) onAbort();
        }
        await client.query(`select set_config('lock_timeout', $1, false)`, [`${options.timeoutMs}ms`]);
        await client.query({
          text: `select pg_advisory_lock${suffix}($1, $2)`,
          values: [LOCK_CLASS, which],
          query_timeout: options.timeoutMs + QUERY_TIMEOUT_MS,
        } as pg.QueryConfig);
        await client.query(`select set_config('lock_timeout', '0', false)`);
      }
      session.held = true;
      // notes of sessions that ended without removing theirs (killed) go first
      await client.query(`delete from ${SCHEMA}.holders where backend_pid not in (select pid from pg_stat_activity)`);
      await client.query(
        `insert into ${SCHEMA}.holders (backend_pid, os_pid, host, command) values ($1, $2, $3, $4)
         on conflict (backend_pid) do update set os_pid = excluded.os_pid, host = excluded.host,
           command = excluded.command, since = now()`,
        // a command line may carry the state's URL: never its password
        [session.backendPid, process.pid, hostname(), redactUrls(command)],
      );
      return session;
    } catch (e) {
      if (options.signal?.aborted)
        return fail(new VirtwireError('ABORTED', 'waiting for the state lock was cancelled'));
      const code = (e as { code?: string }).code;
      // 55P03 lock_not_available: lock_timeout ran out
      if (code === '55P03') return fail(this.locked((await this.holderOf(which)).holder, e));
      return fail(this.unavailable('could not be locked', e));
    } finally {
      if (onAbort) options.signal?.removeEventListener('abort', onAbort);
    }
  }

  private async unlock(session: LockSession, which: number, mode: 'shared' | 'exclusive'): Promise<void> {
    const suffix = mode === 'shared' ? '_shared' : '';
    try {
      if (session.lost) throw session.lost;
      await session.client.query(`delete from ${SCHEMA}.holders where backend_pid = $1`, [session.backendPid]);
      await session.client.query(`select pg_advisory_unlock${suffix}($1, $2)`, [LOCK_CLASS, which]);
      session.client.release();
    } catch {
      // a session that cannot unlock is ended instead: its locks go with it
      session.client.release(true);
    }
  }

  /** The sessions holding virtwire's advisory locks in this database (pg_locks), with their notes. */
  private async heldLocks(via?: pg.ClientBase): Promise<HeldLock[]> {
    const q = via ?? (await this.pool());
    const r = await q.query<HeldLock>(
      `select l.objid::integer as which, l.pid as backend, h.os_pid, h.host, h.command, h.since
         from pg_locks l left join ${SCHEMA}.holders h on h.backend_pid = l.pid
        where l.locktype = 'advisory' and l.granted and l.classid = $1 and l.objsubid = 2
          and l.database = (select oid from pg_database where datname = current_database())
        order by h.since nulls last`,
      [LOCK_CLASS],
    );
    return r.rows;
  }

  /** The live holder of a lock (the longest-holding one of a shared lock). */
  private async holderOf(which: number, via?: pg.ClientBase): Promise<{ locked: boolean; holder?: LockHolder }> {
    const row = (await this.heldLocks(via)).find((h) => h.which === which);
    if (!row) return { locked: false };
    return {
      locked: true,
      holder: {
        pid: row.backend,
        command: row.command ? `${row.command} (pid ${row.os_pid} on ${row.host})` : 'unknown',
        since: (row.since ?? new Date()).toISOString(),
      },
    };
  }

  commandLockHolder(): Promise<{ locked: boolean; holder?: LockHolder }> {
    return this.holderOf(COMMAND_LOCK);
  }

  /**
   * The lock's ID is its holder's database session (the state lock's or the command lock's).
   * Ending it — and every other session of the same process — releases its locks; the holder's
   * next write then fails (it can record nothing more). For a holder that cannot be reached (a
   * partitioned machine whose sessions the server still keeps alive).
   */
  async forceUnlock(id: number): Promise<string> {
    const held = await this.heldLocks();
    if (held.length === 0) return `the state in ${this.where} is not locked (locks die with their holder's session)`;
    const target = held.find((r) => r.backend === id);
    if (!target)
      throw new VirtwireError(
        'NOT_FOUND',
        `no lock of ${this.where} has ID ${id}; held by session ${held.map((r) => r.backend).join(', ')}`,
      );
    const ended = await (
      await this.pool()
    ).query<{ pid: number }>(
      `select pid from (select $1::integer as pid
         union select backend_pid from ${SCHEMA}.holders where host = $2 and os_pid = $3) s
        where pid in (select pid from pg_stat_activity where application_name = 'virtwire')
          and pg_terminate_backend(pid)`,
      [id, target.host, target.os_pid],
    );
    const who = target.host ? `process ${target.os_pid} on ${target.host}` : `session ${id}`;
    return `ended ${ended.rowCount} session(s) of ${who}: its locks are released and it can record nothing more`;
  }

  async close(): Promise<void> {
    const entry = pools.get(this.url);
    if (!entry) return;
    pools.delete(this.url);
    await entry.pool.end();
  }

  private async connect(): Promise<pg.PoolClient> {
    const pool = await this.pool();
    try {
      return await pool.connect();
    } catch (e) {
      throw this.unavailable('is unreachable', e);
    }
  }

  private locked(holder: LockHolder | undefined, cause?: unknown): VirtwireError {
    const who = holder ? `session ${holder.pid}: ${holder.command} (since ${holder.since})` : 'another session';
    return new VirtwireError(
      'LOCKED',
      `the state in ${this.where} is locked by ${who}`,
      cause === undefined ? {} : { cause },
    );
  }

  private unavailable(what: string, cause: unknown): VirtwireError {
    return new VirtwireError('STATE_UNAVAILABLE', `the state in ${this.where} ${what}: ${messageOf(cause)}`, { cause });
  }

  private lockLost(cause: unknown): VirtwireError {
    return new VirtwireError(
      'STATE_UNAVAILABLE',
      `the state lock's session to ${this.where} ended (${messageOf(cause)}): nothing more was recorded and no host ` +
        `was changed after it; run plan to see what is left to do`,
      { cause },
    );
  }
}

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));
/** This process's command line, for lock notes. */
const thisCommand = (): string => process.argv.slice(1).join(' ');
/** `list` (sorted by name) with `item` in place of its namesake, still sorted. */
function replaced<T>(list: T[], item: T, nameOf: (x: T) => string): T[] {
  const name = nameOf(item);
  return [...list.filter((x) => nameOf(x) !== name), item].sort((a, b) =>
    nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0,
  );
}

const asError = (e: unknown): Error => (e instanceof Error ? e : new Error(String(e)));
